"""Tests of the SAP score, discrete (the study's) and continuous variants (reference notes §2.4)."""

import numpy as np
import pytest
from scipy.stats import pearsonr

from metrics.disentanglement import sap_score
from metrics.disentanglement.sap import continuous_sap_matrix, top_two_gap
from tests._toy_ground_truth import (
    Noise,
    constant,
    duplicated,
    identity,
    rotation,
    toy_sample,
    toy_splits,
)


def test_continuous_sap_matrix_is_squared_pearson_correlation():
    """Scipy reference: S[i, j] = pearsonr(z_i, y_j)^2; a constant code gets 0."""
    codes, factors = toy_sample(rotation(), 500)
    codes = np.concatenate([codes, np.ones((500, 1))], axis=1)  # (N, 6) with a constant code
    matrix = continuous_sap_matrix(codes, factors)
    for i in range(5):
        for j in range(5):
            assert matrix[i, j] == pytest.approx(pearsonr(codes[:, i], factors[:, j])[0] ** 2)
    assert (matrix[5] == 0).all()


def test_top_two_gap_closed_form():
    """Closed-form reference: mean over columns of best minus second best."""
    scores = np.array([[0.9, 0.2], [0.5, 0.6], [0.1, 0.1]])
    assert top_two_gap(scores) == pytest.approx(((0.9 - 0.5) + (0.6 - 0.2)) / 2)


def test_sap_identity_matches_reference_values():
    """Property: with the study's sizes the identity code gives dlib's structurally bounded
    discrete SAP (reference 0.2414) and a continuous SAP of about 1 (reference 0.9998)."""
    scores = sap_score(*toy_splits(identity), random_state=0)
    assert scores["SAP_score"] == pytest.approx(0.2414, abs=0.01)
    assert scores["SAP_score_continuous"] > 0.99


def test_sap_noise_is_at_chance():
    """Property: noise scores about 0 in both variants."""
    scores = sap_score(*toy_splits(Noise(), 2000, 1000), random_state=0)
    assert scores["SAP_score"] < 0.03 and scores["SAP_score_continuous"] < 0.01


def test_sap_rotation_is_penalised():
    """Property: a rotation lowers both variants well below the identity's."""
    scores = sap_score(*toy_splits(rotation(), 2000, 1000), random_state=0)
    assert scores["SAP_score"] < 0.15 and scores["SAP_score_continuous"] < 0.5


def test_sap_duplicated_and_constant_codes_score_zero():
    """Property: duplicated latents tie for every factor (SAP 0), and so do constant codes."""
    for representation in (duplicated, constant):
        scores = sap_score(*toy_splits(representation, 2000, 1000), random_state=0)
        assert scores == {"SAP_score": 0.0, "SAP_score_continuous": 0.0}


def test_discrete_sap_depends_on_code_scale_but_continuous_does_not():
    """Property (reference pitfall 9): scaling a perfect code by 10 raises the discrete score
    (regularised SVM) and leaves the R^2 variant unchanged."""
    splits = toy_splits(identity, 2000, 1000)
    scaled = (10 * splits[0], splits[1], 10 * splits[2], splits[3])
    plain, large = sap_score(*splits, random_state=0), sap_score(*scaled, random_state=0)
    assert large["SAP_score"] > plain["SAP_score"] + 0.03
    assert large["SAP_score_continuous"] == pytest.approx(plain["SAP_score_continuous"])


def test_sap_rejects_mismatched_splits():
    """Contract: train and test must have the same codes and factors; D >= 2."""
    codes, factors = toy_sample(identity, 100)
    with pytest.raises(ValueError, match="same numbers"):
        sap_score(codes, factors, codes[:, :3], factors, random_state=0)
    with pytest.raises(ValueError, match="at least 2 codes"):
        sap_score(codes[:, :1], factors, codes[:, :1], factors, random_state=0)
