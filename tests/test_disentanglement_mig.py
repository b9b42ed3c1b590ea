"""Tests of the discretized Mutual Information Gap (reference notes §2.3, §6)."""

import math

import numpy as np
import pytest

from metrics.disentanglement import mutual_information_gap
from tests._toy_ground_truth import (
    Noise,
    constant,
    duplicated,
    identity,
    rotation,
    toy_sample,
    with_zeros,
)

# MIG is cheap, so these use the study's 10,000 points (reference values are for that size).
N = 10_000


def test_mig_closed_form_balanced_design():
    """Closed-form reference: on a balanced 4 x 4 design, a code per factor gives MIG = 1, and a
    code that also carries factor 0 closes factor 0's gap, giving (0 + 1) / 2."""
    y0, y1 = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    factors = np.tile(np.stack([y0.ravel(), y1.ravel()], axis=1), (25, 1))  # (400, 2)
    assert mutual_information_gap(factors.astype(float), factors) == pytest.approx(1.0)
    # 16 distinct values fall in 16 distinct bins of width 15 / 20.
    joint = np.stack([factors[:, 0], factors[:, 0] + 4 * factors[:, 1]], axis=1).astype(float)
    assert mutual_information_gap(joint, factors) == pytest.approx(0.5)


def test_mig_identity_matches_reference_value():
    """Property: the identity code is about perfect (dlib reference on the toy: 0.9969)."""
    assert mutual_information_gap(*toy_sample(identity, N)) == pytest.approx(0.9969, abs=2e-3)


def test_mig_noise_is_at_chance():
    """Property: pure noise scores about 0 (reference 0.0004)."""
    assert 0 <= mutual_information_gap(*toy_sample(Noise(), N)) < 0.01


def test_mig_rotation_is_penalised():
    """Property: a rotation mixes factors across codes, so the gap collapses (reference 0.25 for
    its own rotation; the value depends on the rotation)."""
    assert mutual_information_gap(*toy_sample(rotation(), N)) < 0.3


def test_mig_duplicated_code_has_no_gap():
    """Property: duplicated latents give exactly zero gap for every factor."""
    assert mutual_information_gap(*toy_sample(duplicated, N)) == 0.0


def test_mig_constant_and_dead_codes_do_not_crash():
    """Property: a constant code scores 0; dead codes beside a perfect one do not matter."""
    assert mutual_information_gap(*toy_sample(constant, 2000)) == 0.0
    assert mutual_information_gap(*toy_sample(with_zeros, N)) > 0.99  # reference 0.994


def test_mig_invariant_to_code_permutation_and_sign():
    """Property: permuting and negating codes leaves MIG unchanged up to histogram edge effects."""
    codes, factors = toy_sample(rotation(), N)
    flipped = -codes[:, ::-1]
    assert mutual_information_gap(flipped, factors) == pytest.approx(
        mutual_information_gap(codes, factors), abs=1e-2
    )


@pytest.mark.parametrize(
    ("codes", "factors", "match"),
    [
        (np.zeros((10, 1)), np.arange(10)[:, None] % 2, "at least 2 codes"),
        (np.zeros((10, 2)), np.zeros((10, 1), dtype=int), "constant"),
        (np.full((10, 2), math.nan), np.arange(10)[:, None] % 2, "finite"),
        (np.zeros((10, 2)), np.zeros((9, 1), dtype=int), "same N"),
    ],
)
def test_mig_rejects_bad_input(codes, factors, match):
    """Contract: bad input raises ValueError naming the problem instead of returning NaN."""
    with pytest.raises(ValueError, match=match):
        mutual_information_gap(codes, factors)
