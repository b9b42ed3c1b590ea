"""Tests for `metrics.active_units` and the ``active_units`` evaluator (Burda et al. 2016)."""

import numpy as np
import pytest
import torch

from benchmark.datasets import create_dataset
from benchmark.evaluators import get_evaluator
from benchmark.evaluators.inference import ActiveUnitsConfig
from metrics.active_units import active_units, posterior_mean_activity
from registry import create_model, list_models
from registry.base import MetricUndefined

DATA_DIM, LATENT_DIM = 8, 6


def vae_ignoring_inputs(dead_units: list[int]):
    """Return an MLP VAE whose posterior-mean head has zero weights for `dead_units`.

    Those units' posterior means equal their bias for every x, so their activity is exactly 0.
    """
    torch.manual_seed(0)
    model = create_model("vae", data_shape=(DATA_DIM,), latent_dim=LATENT_DIM)
    head = model.encoder[-1][-1]  # last Linear; outputs (loc, raw scale), loc first
    with torch.no_grad():
        head.weight.mul_(10.0)  # spread the live units' means well above the threshold
        head.weight[dead_units] = 0.0
    return model.eval()


@pytest.mark.parametrize("dead_units", [[], [1, 4], [0, 1, 2, 3, 4, 5]])
def test_units_that_ignore_x_are_exactly_the_inactive_ones(dead_units):
    """Property: with k units constructed to ignore x, exactly those k units are inactive."""
    model = vae_ignoring_inputs(dead_units)
    x = torch.randn(300, DATA_DIM, generator=torch.Generator().manual_seed(1))
    result = active_units(model, x, threshold=0.01, batch_size=128)["active_units"]
    inactive = [u for u, on in enumerate(result.diagnostics["active"]) if not on]
    assert inactive == dead_units
    assert result.value == LATENT_DIM - len(dead_units)
    assert result.stderr is None and result.params["num_examples"] == 300


def test_activity_matches_numpy_population_variance():
    """numpy reference: A_u is np.var (ddof 0) over x of the posterior means, across batches."""
    model = vae_ignoring_inputs([2])
    x = torch.randn(250, DATA_DIM, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        means = model.encode(x).mean.double().numpy()
    expected = np.var(means, axis=0)
    activity = posterior_mean_activity(model, x, batch_size=64)
    np.testing.assert_allclose(activity.numpy(), expected, rtol=1e-10, atol=1e-14)
    assert activity[2].item() == 0.0


def threshold_model():
    """Return a linear VAE whose unit 0 has posterior means ±0.125 (variance exactly 1/64)."""
    model = create_model("linear_vae", data_shape=(2,), latent_dim=2)
    with torch.no_grad():
        model.encoder_weight.copy_(torch.tensor([[0.125, 0.0], [0.0, 1.0]]))
    return model


def test_threshold_is_strict():
    """Property: a unit whose activity equals the threshold is inactive (paper: A_u > 0.01)."""
    model = threshold_model()
    x = torch.tensor([[1.0, 0.0], [-1.0, 3.0]]).repeat(5, 1)  # unit 0 means: ±0.125
    at = active_units(model, x, threshold=1 / 64, batch_size=10)["active_units"]
    below = active_units(model, x, threshold=1 / 64 - 1e-9, batch_size=10)["active_units"]
    assert at.diagnostics["activity"][0] == 1 / 64
    assert at.diagnostics["active"] == [False, True]
    assert below.diagnostics["active"] == [True, True]
    assert at.params["comparison"] == ">"


def test_counts_per_latent_group():
    """Property: `latent_groups` splits the count per layer in the order of z."""
    model = vae_ignoring_inputs([0, 3, 4])
    x = torch.randn(200, DATA_DIM, generator=torch.Generator().manual_seed(3))
    results = active_units(model, x, threshold=0.01, batch_size=200, latent_groups=[2, 4])
    assert results["active_units"].diagnostics["per_group"] == [1, 2]
    assert results["active_units_group1"].value == 1
    assert results["active_units_group2"].value == 2
    with pytest.raises(ValueError, match="latent_groups"):
        active_units(model, x, threshold=0.01, batch_size=200, latent_groups=[2, 3])


def test_evaluator_uses_first_training_examples_and_records_settings():
    """Contract: the evaluator reads its split, counts on the first N examples, records the seed."""
    dataset = create_dataset(
        "linear_gaussian", data_dim=DATA_DIM, latent_dim=3, num_train=120, num_valid=10, num_test=10
    )
    model = vae_ignoring_inputs([5])
    config = ActiveUnitsConfig(num_examples=100)
    results = get_evaluator("active_units").function(
        model=model, dataset=dataset, config=config, seed=7
    )
    expected = active_units(
        model, dataset.evaluation_data("train")[:100], threshold=0.01, batch_size=500
    )["active_units"]
    assert results["active_units"].diagnostics == expected.diagnostics
    assert results["active_units"].params["seed"] == 7
    assert results["active_units"].params["split"] == "train"
    with pytest.raises(ValueError, match="num_examples"):
        get_evaluator("active_units").function(
            model=model, dataset=dataset, config=ActiveUnitsConfig(num_examples=121), seed=0
        )


@pytest.mark.parametrize("name", list_models())
def test_every_model_gets_an_activity_per_unit(name):
    """Contract: every registered model has one activity per latent unit and a count in [0, D]."""
    torch.manual_seed(0)
    try:
        model = create_model(name, data_shape=(1, 8, 8))
    except ValueError:
        model = create_model(name, data_shape=(16,))
    x = torch.bernoulli(torch.full((20, *model.data_shape), 0.5))
    groups = getattr(model.eval(), "group_sizes", None)
    if model.point_mass_posterior:  # quantised codes: n/a with the reason, checked below
        with pytest.raises(MetricUndefined, match="point mass"):
            active_units(model, x, threshold=0.01, batch_size=8, latent_groups=groups)
        return
    results = active_units(model, x, threshold=0.01, batch_size=8, latent_groups=groups)
    activity = results["active_units"].diagnostics["activity"]
    assert len(activity) == model.latent_dim and min(activity) >= 0
    assert results["active_units"].value == sum(a > 0.01 for a in activity)
    assert sum(results["active_units"].diagnostics["per_group"]) == results["active_units"].value


def test_quantised_codes_have_no_active_units_and_say_why():
    """VQ-VAE's encoder outputs vary far above 0.01 only because the codebook sets their scale
    (the fashion_mnist run counted 784 of 784 "active"), so the metric is n/a for point-mass
    posteriors, naming the diagnostic that replaces it; Gaussian posteriors are unaffected."""
    for name in ("vq_vae", "vq_vae2"):
        assert create_model(name, data_shape=(1, 8, 8)).point_mass_posterior
    assert not create_model("vae", data_shape=(1, 8, 8)).point_mass_posterior
    model = create_model("vq_vae", data_shape=(1, 8, 8)).eval()
    x = torch.bernoulli(torch.full((20, 1, 8, 8), 0.5))
    with pytest.raises(MetricUndefined, match="codes_used") as error:
        active_units(model, x, threshold=0.01, batch_size=8)
    assert "VQVAE" in error.value.reason
