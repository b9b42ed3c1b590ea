"""Tests of `metrics.bdmc` and the ``bdmc`` evaluator: sandwich bounds on simulated data."""

import math

import pytest
import torch

from benchmark.datasets import create_dataset
from benchmark.evaluators import get_evaluator
from benchmark.evaluators.likelihood import BDMCConfig
from metrics.ais import HMCSettings
from metrics.bdmc import bdmc_bounds, simulate_data
from registry import create_model, list_models
from registry.base import LikelihoodUndefined
from tests._linear_gaussian import DATA_DIM, LATENT_DIM, NOISE_STD, oracle_dataset, oracle_model


@pytest.fixture(scope="module")
def model():
    return oracle_model(oracle_dataset(num_test=10))


def run(model, steps: int, **kwargs):
    settings = {"num_examples": 60, "num_chains": 16, "hmc": HMCSettings(5, 0.1), "seed": 0}
    return bdmc_bounds(model, num_steps=steps, **(settings | kwargs))


def test_bounds_sandwich_the_exact_log_likelihood(model):
    """Closed-form reference: lower <= exact log p(x) <= upper on average, and the gap is small.

    linear_vae (D = 8, d = 3, sigma = 0.5), 60 simulated examples, 16 chains, 100 steps from the
    prior: each bound is within 3 standard errors on its side of the exact value, within 0.05
    nats of it, and the mean gap is below 0.1 nats.
    """
    result = run(model, steps=100)
    exact = model.exact_log_marginal(result.x).detach()
    for bound, side in ((result.lower, -1), (result.upper, 1)):
        error = bound.log_likelihood - exact  # (N,)
        stderr = error.std().item() / math.sqrt(len(error))
        assert side * error.mean().item() > -3 * stderr
        assert abs(error.mean().item()) < 0.05
    assert result.gap.mean().item() < 0.1


def test_gap_shrinks_with_more_annealing_steps(model):
    """Property: with 3 steps the bounds are loose (gap > 1 nat); with 100, tight (< 0.1 nats)."""
    loose = run(model, steps=3).gap.mean().item()
    tight = run(model, steps=100).gap.mean().item()
    assert loose > 1.0 and tight < 0.1 and loose > 10 * tight


def test_simulated_data_come_from_the_model(model):
    """Closed-form reference: simulated x have the marginal mean b and covariance W W^T + s^2 I."""
    torch.manual_seed(0)
    z, x = simulate_data(model, 20000)
    assert z.shape == (20000, LATENT_DIM) and x.shape == (20000, DATA_DIM)
    with torch.no_grad():
        weight, bias = model.weight.double(), model.bias.double()
        cov = weight @ weight.T + NOISE_STD**2 * torch.eye(DATA_DIM, dtype=torch.float64)
    assert (x.double().mean(0) - bias).abs().max().item() < 4 * math.sqrt(cov.max() / 20000)
    torch.testing.assert_close(torch.cov(x.double().T), cov, atol=0.05, rtol=0.05)


def test_reverse_chains_start_at_the_generating_latents(model):
    """Contract: the result keeps the simulated (z, x) pairs; the seed fixes everything."""
    first, second = run(model, steps=5, num_examples=4), run(model, steps=5, num_examples=4)
    assert torch.equal(first.x, second.x) and torch.equal(first.z, second.z)
    assert torch.equal(first.upper.log_weights, second.upper.log_weights)
    assert first.upper.log_weights.shape == (16, 4)


def test_bad_settings_raise(model):
    """Bad input: non-positive counts raise ValueError naming the argument."""
    with pytest.raises(ValueError, match="Expected `num_examples`"):
        run(model, steps=2, num_examples=0)
    with pytest.raises(ValueError, match="Expected `num_chains`"):
        run(model, steps=2, num_chains=0)


@pytest.mark.parametrize("name", list_models())
def test_bdmc_runs_on_every_registered_model(name):
    """Contract: BDMC simulates data and gives finite bounds for every registered model."""
    torch.manual_seed(0)
    try:
        model = create_model(name, data_shape=(1, 4, 4))
    except ValueError:
        model = create_model(name, data_shape=(6,))
    model.eval()
    settings = {"num_examples": 2, "num_chains": 2, "num_steps": 2, "hmc": HMCSettings(2)}
    if not getattr(model, "continuous_latents", True) or not model.has_prior:
        with pytest.raises(LikelihoodUndefined):
            bdmc_bounds(model, seed=0, **settings)
        return
    result = bdmc_bounds(model, seed=0, **settings)
    assert torch.isfinite(result.gap).all() and result.gap.shape == (2,)


def test_bdmc_evaluator_records_bounds_gap_and_settings(model):
    """Contract: the ``bdmc`` evaluator returns lower, upper and gap with parameters."""
    dataset = create_dataset(
        "linear_gaussian",
        data_dim=DATA_DIM,
        latent_dim=LATENT_DIM,
        num_train=10,
        num_valid=10,
        num_test=10,
    )
    config = BDMCConfig(num_examples=6, chains=4, steps=10, leapfrog_steps=3)
    results = get_evaluator("bdmc").function(model=model, dataset=dataset, config=config, seed=1)
    assert set(results) == {"bdmc_lower", "bdmc_upper", "bdmc_gap"}
    gap = results["bdmc_gap"]
    assert gap.value == pytest.approx(results["bdmc_upper"].value - results["bdmc_lower"].value)
    assert gap.higher_is_better is False and gap.n == 6 and gap.unit == "nats"
    for key, value in {
        "chains": 4,
        "steps": 10,
        "leapfrog_steps": 3,
        "seed": 1,
        "init": "prior",
        "estimator": "bdmc",
        "num_examples": 6,
    }.items():
        assert gap.params[key] == value
    assert 0 <= gap.diagnostics["forward_acceptance_rate_mean"] <= 1
    assert 0 <= gap.diagnostics["reverse_acceptance_rate_mean"] <= 1
    assert len(gap.diagnostics["per_example"]) == 6
