"""Tests of the ``disentanglement`` evaluator: spec schema, names, Estimates, and errors."""

from dataclasses import asdict

import numpy as np
import pytest
import torch

from benchmark.evaluators import get_evaluator
from benchmark.evaluators.disentanglement import DisentanglementConfig
from metrics.disentanglement import SCORES
from registry import create_model
from registry._typecheck import check_value
from tests._toy_ground_truth import ToyGroundTruth

SIZES = (3, 4, 5)
TINY = DisentanglementConfig(
    num_train=200, num_eval=100, num_variance_estimate=300, intervention_batch_size=16
)
NAMES = {
    "beta_vae_score",
    "beta_vae_score_train",
    "factor_vae_score",
    "factor_vae_score_train",
    "factor_vae_num_active_dims",
    "mig",
    "sap",
    "sap_continuous",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "dci_informativeness_train",
    "modularity",
    "explicitness",
    "explicitness_train",
}


class FactorSplits:
    """A stand-in for a registry dataset that carries its sampler as `ground_truth`."""

    name = "toy_factors"

    def __init__(self) -> None:
        self.ground_truth = ToyGroundTruth(SIZES)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(
        "vae", data_shape=(3,), latent_dim=4, architecture={"trunk": "mlp", "hidden": [16]}
    ).eval()


def evaluate(model, dataset, config=TINY, seed=0):
    return get_evaluator("disentanglement").function(
        model=model, dataset=dataset, config=config, seed=seed
    )


def test_config_defaults_are_the_study_defaults():
    """Contract: the spec schema defaults to Locatello et al.'s settings and all six scores."""
    assert get_evaluator("disentanglement").config_type is DisentanglementConfig
    assert asdict(DisentanglementConfig()) == {
        "representation": "mean",
        "scores": SCORES,
        "num_train": 10_000,
        "num_eval": 5_000,
        "num_variance_estimate": 10_000,
        "intervention_batch_size": 64,
        "batch_size": 16,
        "num_bins": 20,
        "prune_threshold": 0.05,
    }
    spec = check_value("eval.disentanglement", {"scores": ["mig", "dci"]}, DisentanglementConfig)
    assert spec.scores == ("mig", "dci")
    with pytest.raises(ValueError, match="irs"):
        check_value("eval.disentanglement", {"scores": ["irs"]}, DisentanglementConfig)


def test_evaluator_returns_every_score_as_an_estimate(model):
    """Contract: every score and sub-score comes back as an Estimate with its sample size,
    settings, seed, representation and chance level."""
    results = evaluate(model, FactorSplits())
    assert set(results) == NAMES
    assert results["mig"].n == 200 and results["sap"].n == 100
    assert results["beta_vae_score"].diagnostics["chance"] == pytest.approx(1 / 3)
    assert results["dci_informativeness"].diagnostics["chance"] == pytest.approx(
        np.mean(1 / np.array(SIZES))
    )
    for estimate in results.values():
        assert estimate.stderr is None and 0 <= estimate.value <= max(4, estimate.value)
        assert estimate.params["seed"] == 0 and estimate.params["representation"] == "mean"
        assert "scikit-learn" in estimate.params["versions"]
    assert (
        results["mig"].params["num_bins"] == 20 and results["mig"].params["key"] == "discrete_mig"
    )
    assert results["factor_vae_num_active_dims"].unit == "count"


def test_evaluator_sampled_representation_is_reproducible(model):
    """Property: a sampled-representation run is bit-for-bit reproducible for a fixed seed and
    differs from the mean representation's."""
    config = DisentanglementConfig(
        representation="sampled", scores=("mig", "sap"), num_train=300, num_eval=100
    )
    first = evaluate(model, ToyGroundTruth(SIZES), config)
    again = evaluate(model, ToyGroundTruth(SIZES), config)
    assert {k: v.value for k, v in first.items()} == {k: v.value for k, v in again.items()}
    mean = evaluate(
        model,
        ToyGroundTruth(SIZES),
        DisentanglementConfig(scores=("mig",), num_train=300, num_eval=100),
    )
    assert mean["mig"].value != first["mig"].value
    assert first["mig"].params["representation"] == "sampled"


def test_evaluator_rejects_a_dataset_without_ground_truth(model):
    """Contract: a dataset without factors raises a ValueError naming the fix."""
    with pytest.raises(ValueError, match="ground-truth dataset such as `dsprites`"):
        evaluate(model, object())


def test_evaluator_rejects_a_model_of_another_shape():
    """Contract: the model must take the dataset's observations."""
    model = create_model(
        "vae", data_shape=(4,), latent_dim=2, architecture={"trunk": "mlp", "hidden": [8]}
    )
    with pytest.raises(ValueError, match="observation_shape"):
        evaluate(model, FactorSplits())
