"""Tests of DCI with gradient-boosted trees (reference notes §2.5).

Sample sizes are reduced (500 train / 250 test points; 300 / 150 for continuous codes, whose
trees are slower); the cost is dominated by the 100 x 51 trees per fit. Bands allow for that.
Dead codes are covered by the closed-form importance matrices (a zero row leaves D and C at 1).
"""

import math

import numpy as np
import pytest

from metrics.disentanglement import dci, dci_completeness, dci_disentanglement
from tests._toy_ground_truth import (
    Noise,
    constant,
    duplicated,
    identity,
    rotation,
    toy_splits,
)


@pytest.mark.parametrize(
    ("importance", "expected_d", "expected_c"),
    [
        (np.eye(3), 1.0, 1.0),  # one code per factor
        (np.ones((3, 3)), 0.0, 0.0),  # every code serves every factor
        (np.zeros((3, 3)), 0.0, 0.0),  # no code used at all
        # duplicated codes: each factor split over 2 of 10 codes -> C = 1 - log 2 / log 10
        (np.vstack([np.eye(5), np.eye(5)]) / 2, 1.0, 1 - math.log(2) / math.log(10)),
        # a dead code does not lower D (zero weight), and lowers nothing else
        (np.vstack([np.eye(2), np.zeros((1, 2))]), 1.0, 1.0),
    ],
)
def test_dci_closed_form_importance_matrices(importance, expected_d, expected_c):
    """Closed-form reference: D and C of hand-built importance matrices."""
    assert dci_disentanglement(importance) == pytest.approx(expected_d, abs=1e-8)
    assert dci_completeness(importance) == pytest.approx(expected_c, abs=1e-8)


def test_dci_weights_codes_by_their_share_of_importance():
    """Closed-form reference: code 0 serves factor 0 alone (D_0 = 1), code 1 splits evenly over
    both (D_1 = 0), with weights rho = (1/4, 3/4), so D = 1/4; C_j by hand with log base 2."""
    importance = np.array([[0.5, 0.0], [0.75, 0.75]])
    assert dci_disentanglement(importance) == pytest.approx(0.5 / 2.0, abs=1e-8)
    p0 = np.array([0.5, 0.75]) / 1.25  # factor 0's importance over the two codes
    h0 = -(p0 * np.log2(p0)).sum()
    expected_c = (1.25 / 2.0) * (1 - h0) + (0.75 / 2.0) * 1.0
    assert dci_completeness(importance) == pytest.approx(expected_c, abs=1e-8)


def test_dci_identity_is_perfect():
    """Property: the identity code gives D = C = 1 and perfect informativeness."""
    scores = dci(*toy_splits(identity, 500, 250), random_state=0)
    assert scores["disentanglement"] > 0.99 and scores["completeness"] > 0.99
    assert scores["informativeness_test"] > 0.99


def test_dci_duplicated_codes_lower_completeness_only():
    """Property: duplicated latents keep D = 1 and give C = 1 - log 2 / log 10 = 0.699 (dlib's
    unit test; toy reference 0.7009)."""
    scores = dci(*toy_splits(duplicated, 500, 250), random_state=0)
    assert scores["disentanglement"] > 0.99
    assert scores["completeness"] == pytest.approx(1 - math.log(2) / math.log(10), abs=0.03)


def test_dci_noise_is_at_chance():
    """Property: noise gives D, C about 0 and test accuracy about mean 1/|y_j| = 0.145."""
    scores = dci(*toy_splits(Noise(), 300, 150), random_state=0)
    assert scores["disentanglement"] < 0.05 and scores["completeness"] < 0.05
    assert scores["informativeness_test"] == pytest.approx(
        np.mean(1 / np.array([3, 6, 10, 16, 16])), abs=0.05
    )


def test_dci_rotation_is_penalised():
    """Property: a rotation spreads each factor over codes (reference D, C about 0.3)."""
    scores = dci(*toy_splits(rotation(), 300, 150), random_state=0)
    assert scores["disentanglement"] < 0.5 and scores["completeness"] < 0.5


def test_dci_constant_code_is_handled():
    """Property: a constant code is never split on (D = C = 0); accuracy is the majority class."""
    splits = toy_splits(constant, 300, 200)
    scores = dci(*splits, random_state=0)
    assert scores["disentanglement"] == pytest.approx(0.0, abs=1e-8)
    assert scores["completeness"] == pytest.approx(0.0, abs=1e-8)
    assert scores["informativeness_test"] < 0.4


def test_dci_is_seeded():
    """Property: the same seed gives bit-identical results (dlib's trees are unseeded); a
    smaller 3-factor toy keeps it cheap."""
    splits = toy_splits(rotation(3), 300, 100, sizes=(3, 4, 5))
    first = dci(*splits, random_state=3)
    assert first == dci(*splits, random_state=3)
    assert 0 < first["disentanglement"] < 1
