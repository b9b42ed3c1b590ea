"""Tests of the sampler, the representations and the driver that runs all six scores.

A 3-factor toy (sizes 3, 4, 5) and tiny sample sizes keep the end-to-end runs to a few seconds.
"""

import math

import numpy as np
import pytest
import torch

from metrics.disentanglement import (
    SCORES,
    BetaVAEScoreConfig,
    DCIConfig,
    FactorVAEScoreConfig,
    MIGConfig,
    ModularityExplicitnessConfig,
    SAPConfig,
    disentanglement_scores,
    mean_representation,
    sample_codes_and_factors,
    sampled_representation,
)
from registry import create_model
from tests._toy_ground_truth import ToyGroundTruth, identity, rotation

SIZES = (3, 4, 5)
TINY = {
    "beta_vae": BetaVAEScoreConfig(batch_size=16, num_train=100, num_eval=50),
    "factor_vae": FactorVAEScoreConfig(
        batch_size=16, num_train=100, num_eval=50, num_variance_estimate=300
    ),
    "mig": MIGConfig(num_train=500),
    "sap": SAPConfig(num_train=300, num_test=200),
    "dci": DCIConfig(num_train=200, num_test=100),
    "modularity_explicitness": ModularityExplicitnessConfig(num_train=300, num_test=200),
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(
        "vae", data_shape=(3,), latent_dim=4, architecture={"trunk": "mlp", "hidden": [16]}
    ).eval()


def test_sample_codes_and_factors_replays_the_reference_batches():
    """Contract: factors are drawn batch by batch (dlib's generate_batch_factor_code), codes and
    factors come back as (N, D) float64 and (N, K) int64."""
    data = ToyGroundTruth(SIZES)
    codes, factors = sample_codes_and_factors(
        data, identity, num_points=37, rng=np.random.RandomState(4), batch_size=16
    )
    replay = np.random.RandomState(4)
    expected = np.concatenate([data.sample_factors(n, replay) for n in (16, 16, 5)])
    np.testing.assert_array_equal(factors, expected)
    assert codes.shape == (37, 3) and codes.dtype == np.float64 and factors.dtype == np.int64
    np.testing.assert_allclose(codes, data.sample_observations_from_factors(expected, replay))


@pytest.mark.parametrize(
    ("representation", "match"),
    [(lambda x: x[:, 0], r"shape \(16, D\)"), (lambda x: x * math.nan, "finite")],
)
def test_sampler_rejects_bad_representations(representation, match):
    """Contract: a representation returning the wrong shape or NaN raises ValueError."""
    with pytest.raises(ValueError, match=match):
        sample_codes_and_factors(
            ToyGroundTruth(SIZES),
            representation,
            num_points=16,
            rng=np.random.RandomState(0),
            batch_size=16,
        )


def test_driver_rejects_bad_requests():
    """Contract: non-ground-truth data, single-valued factors, unknown scores and mistyped
    configs raise with the expected error types."""
    with pytest.raises(TypeError, match="GroundTruthData"):
        disentanglement_scores(object(), identity)
    with pytest.raises(ValueError, match="ints >= 2"):
        disentanglement_scores(ToyGroundTruth((1, 4)), identity)
    with pytest.raises(ValueError, match="irs"):
        disentanglement_scores(ToyGroundTruth(SIZES), identity, scores=["mig", "irs"])
    with pytest.raises(TypeError, match="MIGConfig"):
        disentanglement_scores(
            ToyGroundTruth(SIZES), identity, scores=["mig"], configs={"mig": TINY["sap"]}
        )
    with pytest.raises(ValueError, match="sap"):
        disentanglement_scores(
            ToyGroundTruth(SIZES), identity, scores=["mig"], configs={"sap": TINY["sap"]}
        )


def test_driver_is_bit_for_bit_reproducible_and_per_score_seeded():
    """Property: all six scores with their sub-scores are bit-identical for a fixed seed; each
    score has its own RandomState, so running one alone gives the same value; a new seed
    changes the values."""
    data, representation = ToyGroundTruth(SIZES), rotation(3)
    first = disentanglement_scores(data, representation, configs=TINY, seed=0)
    assert list(first) == list(SCORES)
    assert set(first["dci"]) == {
        "disentanglement",
        "completeness",
        "informativeness_train",
        "informativeness_test",
    }
    assert first == disentanglement_scores(data, representation, configs=TINY, seed=0)
    alone = disentanglement_scores(
        data, representation, scores=["mig"], configs={"mig": TINY["mig"]}, seed=0
    )
    assert alone["mig"] == first["mig"]
    other = disentanglement_scores(
        data,
        representation,
        scores=["mig", "sap"],
        configs={k: TINY[k] for k in ("mig", "sap")},
        seed=1,
    )
    assert other["mig"] != first["mig"] and other["sap"] != first["sap"]


def test_mean_representation_is_the_posterior_mean(model):
    """Contract: the mean representation returns E_q(z|x)[z] as a numpy array (N, D)."""
    x = np.random.RandomState(0).rand(7, 3).astype(np.float32)
    codes = mean_representation(model)(x)
    with torch.no_grad():
        expected = model.encode(torch.from_numpy(x)).mean.numpy()
    assert isinstance(codes, np.ndarray) and codes.shape == (7, 4)
    np.testing.assert_array_equal(codes, expected)


def test_sampled_representation_is_seeded_restartable_and_private(model):
    """Property: draws are reproducible per seed, differ between calls, rewind on restart,
    scatter around the mean, and leave the global torch RNG untouched."""
    x = np.random.RandomState(0).rand(2000, 3).astype(np.float32)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    sampled = sampled_representation(model, seed=7)
    first, second = sampled(x), sampled(x)
    assert torch.equal(torch.get_rng_state(), before)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, sampled_representation(model, seed=7)(x))
    sampled.restart()
    np.testing.assert_array_equal(sampled(x), first)
    with torch.no_grad():
        q_z = model.encode(torch.from_numpy(x))
    standardized = (first - q_z.mean.numpy()) / q_z.stddev.numpy()  # (N, D) ~ N(0, 1)
    assert abs(standardized.mean()) < 0.05 and abs(standardized.std() - 1) < 0.05


def test_driver_restarts_a_sampled_representation_per_score(model):
    """Property: with a sampled representation a score's value does not depend on the scores
    run before it, and the whole run is reproducible."""
    data, configs = ToyGroundTruth(SIZES), {k: TINY[k] for k in ("sap", "mig")}
    both = disentanglement_scores(
        data, sampled_representation(model, seed=3), scores=["sap", "mig"], configs=configs
    )
    alone = disentanglement_scores(
        data, sampled_representation(model, seed=3), scores=["mig"], configs={"mig": TINY["mig"]}
    )
    assert both["mig"] == alone["mig"]
    mean = disentanglement_scores(
        data, mean_representation(model), scores=["mig"], configs={"mig": TINY["mig"]}
    )
    assert mean["mig"] != alone["mig"]
