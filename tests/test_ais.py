"""Tests of `metrics.ais` and the ``ais`` evaluator: annealed importance sampling with HMC."""

import math
from dataclasses import replace

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from benchmark.evaluators import get_evaluator
from benchmark.evaluators.likelihood import AISConfig, BDMCConfig, NLLConfig, certify_ais
from metrics.ais import (
    AnnealingPath,
    HMCSettings,
    ais_log_likelihood,
    annealing_schedule,
    evaluate_chains,
    hmc_transition,
    looser_than_importance_warning,
)
from metrics.bdmc import MAX_BDMC_GAP, bdmc_warning
from registry import create_model, list_models
from registry.base import LikelihoodUndefined
from tests._linear_gaussian import DATA_DIM, oracle_dataset, oracle_model


@pytest.fixture(scope="module")
def dataset():
    return oracle_dataset(num_test=100)


@pytest.fixture(scope="module")
def model(dataset):
    return oracle_model(dataset)


@pytest.mark.parametrize("init, chains, steps", [("prior", 64, 200), ("encoder", 16, 50)])
def test_ais_is_within_005_nats_of_exact(dataset, model, init, chains, steps):
    """Closed-form reference: linear_vae on linear_gaussian (D = 8, d = 3, sigma = 0.5).

    100 test examples, 5 leapfrog steps, sigmoid schedule: |mean(AIS) - mean(exact)| < 0.05 nats
    from the prior (64 chains, 200 steps; error ~0.01 ± 0.008) and from the encoder (16 chains,
    50 steps). Being a stochastic lower bound, the mean error is also below 3 standard errors.
    """
    x = dataset.evaluation_data("test")
    result = ais_log_likelihood(
        model, x, num_chains=chains, num_steps=steps, hmc=HMCSettings(5, 0.1), init=init, seed=0
    )
    error = result.log_likelihood - model.exact_log_marginal(x)  # (N,)
    assert abs(error.mean().item()) < 0.05
    assert error.mean().item() < 3 * error.std().item() / math.sqrt(len(x))
    assert result.log_weights.shape == (chains, 100)
    assert 0.5 < result.acceptance_rate.mean().item() < 1.0


@pytest.mark.parametrize("init", ["prior", "encoder"])
def test_one_step_ais_is_importance_sampling_from_the_initial_distribution(model, init):
    """Scipy reference: with T = 1, log w = log p(x, z_0) - log pi_0(z_0), z_0 ~ pi_0.

    The draws are replayed from the same seed; every density and the log-mean-exp are scipy's.
    """
    x = torch.randn(3, DATA_DIM) + model.bias.detach()
    result = ais_log_likelihood(model, x, num_chains=5, num_steps=1, init=init, seed=11)
    torch.manual_seed(11)
    path = AnnealingPath(model, x, init)
    z = path.sample_initial(5).double().numpy()  # (C, B, d)
    weight, bias = model.weight.detach().double().numpy(), model.bias.detach().double().numpy()
    noise_var = math.exp(2 * model.log_noise_std.item())
    log_lik = scipy.stats.norm.logpdf(
        x.double().numpy(), z @ weight.T + bias, math.sqrt(noise_var)
    ).sum(-1)  # (C, B)
    log_prior = scipy.stats.norm.logpdf(z).sum(-1)
    if init == "prior":
        log_initial = log_prior
    else:
        q_z = model.encode(x).base_dist
        loc, scale = q_z.loc.detach().double().numpy(), q_z.scale.detach().double().numpy()
        log_initial = scipy.stats.norm.logpdf(z, loc, scale).sum(-1)
    log_w = log_lik + log_prior - log_initial
    np.testing.assert_allclose(result.log_weights.numpy(), log_w, atol=1e-4)
    expected = scipy.special.logsumexp(log_w, axis=0) - math.log(5)
    np.testing.assert_allclose(result.log_likelihood.numpy(), expected, atol=1e-4)


def test_hmc_transition_leaves_the_exact_posterior_invariant(dataset, model):
    """Closed-form reference: HMC at beta = 1 keeps exact posterior samples at N(mu, Sigma).

    4000 chains start at exact draws of p(z|x) for one x; after 10 transitions (step 0.2, 5
    leapfrog steps) their mean and covariance match the exact ones within Monte Carlo error.
    """
    torch.manual_seed(0)
    x = dataset.evaluation_data("test")[:1]
    with torch.no_grad():
        posterior = model.exact_posterior(x)
    z = posterior.sample((4000,)).float()  # (C, 1, d)
    path = AnnealingPath(model, x, "prior")
    step_size = torch.tensor([0.2])
    accepted = []
    for _ in range(10):
        z, accept = hmc_transition(path, evaluate_chains(path, z, 1.0), 1.0, step_size, 5)
        accepted.append(accept.double().mean().item())
    samples = z[:, 0].double()  # (C, d)
    mean, cov = posterior.mean[0], posterior.covariance_matrix[0]
    stderr = torch.sqrt(torch.diagonal(cov) / 4000)
    assert ((samples.mean(0) - mean).abs() < 4 * stderr).all()
    tolerance = 0.1 * cov.diagonal().max().item()
    torch.testing.assert_close(torch.cov(samples.T), cov, atol=tolerance, rtol=0)
    assert 0.3 < np.mean(accepted) < 1.0  # moves are made, so the test is not vacuous


def test_schedules_match_their_closed_forms():
    """Closed-form reference: linear t/T; sigmoid rescaled expit(8 t / T - 4) (Grosse et al.)."""
    t = np.arange(11) / 10
    np.testing.assert_allclose(annealing_schedule(10, "linear").numpy(), t)
    s = scipy.special.expit(8 * t - 4)
    expected = (s - s[0]) / (s[-1] - s[0])
    np.testing.assert_allclose(annealing_schedule(10, "sigmoid").numpy(), expected, rtol=1e-12)
    betas = annealing_schedule(500, "sigmoid")
    assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()


def test_step_size_adapts_towards_the_target_acceptance(model):
    """Property: a too-large initial step shrinks, a tiny one grows, and no adaptation keeps it."""
    x = torch.randn(4, DATA_DIM) + model.bias.detach()
    run = lambda hmc: ais_log_likelihood(model, x, num_chains=8, num_steps=60, hmc=hmc, seed=1)  # noqa: E731
    assert (run(HMCSettings(3, 0.5)).step_size < 0.5).all()
    assert (run(HMCSettings(3, 1e-3)).step_size > 1e-3).all()
    fixed = run(HMCSettings(3, 0.05, adapt=False))
    assert torch.equal(fixed.step_size, torch.full((4,), 0.05))


def test_same_seed_gives_identical_results(model):
    """Property: deterministic given the seed (bitwise); another seed gives other chains."""
    x = torch.randn(3, DATA_DIM)
    runs = [ais_log_likelihood(model, x, num_chains=4, num_steps=20, seed=s) for s in (5, 5, 6)]
    assert torch.equal(runs[0].log_weights, runs[1].log_weights)
    assert torch.equal(runs[0].step_size, runs[1].step_size)
    assert not torch.equal(runs[0].log_weights, runs[2].log_weights)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"init": "posterior"}, "Expected `init`"),
        ({"schedule": "cosine"}, "Expected `schedule`"),
        ({"num_steps": 0}, "Expected `num_steps`"),
        ({"num_chains": 0}, "Expected `num_chains`"),
        ({"hmc": HMCSettings(0)}, "Expected `leapfrog_steps`"),
        ({"hmc": HMCSettings(step_size=1.0)}, "Expected `step_size`"),
        ({"hmc": HMCSettings(target_accept=1.0)}, "Expected `target_accept`"),
    ],
)
def test_bad_settings_raise(model, settings, message):
    """Bad input: each invalid setting raises a ValueError naming it."""
    kwargs = {"num_chains": 2, "num_steps": 2, "seed": 0} | settings
    with pytest.raises(ValueError, match=message):
        ais_log_likelihood(model, torch.randn(2, DATA_DIM), **kwargs)


def test_discrete_latents_are_refused(model, monkeypatch):
    """Contract: a model declaring discrete latents gets LikelihoodUndefined, not a number."""
    monkeypatch.setattr(model, "continuous_latents", False, raising=False)
    with pytest.raises(LikelihoodUndefined, match="AIS"):
        ais_log_likelihood(model, torch.randn(2, DATA_DIM), num_chains=2, num_steps=2, seed=0)


def test_a_diverging_trajectory_is_rejected_not_raised():
    """Property (Neal 2011, Sec. 5.3): a leapfrog trajectory that leaves the region where a
    hierarchical prior's networks are finite (here a step size of 1e8) is a rejected proposal:
    the chains stay where they were, instead of distribution argument validation raising."""
    torch.manual_seed(0)
    model = create_model("ladder_vae", data_shape=(1, 8, 8)).eval()
    x = torch.bernoulli(torch.full((3, 1, 8, 8), 0.5))
    path = AnnealingPath(model, x, "prior")
    state = evaluate_chains(path, path.sample_initial(4), 0.5)  # (4, 3, D)
    z, accept = hmc_transition(path, state, 0.5, torch.full((3,), 1e8), leapfrog_steps=3)
    assert not accept.any()
    torch.testing.assert_close(z, state.z, rtol=0, atol=0)


def build(name: str):
    try:
        return create_model(name, data_shape=(1, 4, 4)), (1, 4, 4)
    except ValueError:
        return create_model(name, data_shape=(6,)), (6,)


@pytest.mark.parametrize("name", list_models())
def test_ais_runs_on_every_registered_model(name):
    """Contract: AIS from the prior and from the encoder gives finite bounds for every model."""
    torch.manual_seed(0)
    model, shape = build(name)
    model.eval()
    x = torch.rand(2, *shape).round()
    if not getattr(model, "continuous_latents", True) or not model.has_prior:
        with pytest.raises(LikelihoodUndefined):
            ais_log_likelihood(model, x, num_chains=2, num_steps=2, seed=0)
        return
    for init in ("prior", "encoder"):
        result = ais_log_likelihood(
            model, x, num_chains=3, num_steps=2, hmc=HMCSettings(2), init=init, seed=0
        )
        assert result.log_likelihood.shape == (2,)
        assert torch.isfinite(result.log_likelihood).all()
    assert not any(p.grad is not None for p in model.parameters())  # grads w.r.t. z only


def test_ais_evaluator_records_settings_and_diagnostics(dataset, model):
    """Contract: the ``ais`` evaluator's estimates, parameters and diagnostics."""
    model.train()
    config = AISConfig(chains=4, steps=20, leapfrog_steps=3, num_examples=10, batch_size=4)
    results = get_evaluator("ais").function(model=model, dataset=dataset, config=config, seed=2)
    assert model.training
    model.eval()
    lower, nll = results["ais_log_likelihood"], results["ais_nll"]
    assert lower.value == pytest.approx(-nll.value) and lower.n == 10
    assert lower.higher_is_better is True and nll.higher_is_better is False
    for key, value in {
        "chains": 4,
        "steps": 20,
        "leapfrog_steps": 3,
        "step_size": 0.01,
        "seed": 2,
        "init": "prior",
        "schedule": "sigmoid",
        "num_examples": 10,
        "target_accept": 0.65,
        "unit": "nats",
        "estimator": "ais",
    }.items():
        assert lower.params[key] == value
    for key in ("acceptance_rate_mean", "final_step_size_mean", "chain_ess_mean"):
        assert math.isfinite(lower.diagnostics[key])
    assert len(lower.diagnostics["per_example"]) == 10
    again = get_evaluator("ais").function(model=model, dataset=dataset, config=config, seed=2)
    assert again["ais_nll"].value == nll.value


def test_ais_records_importance_sampling_on_the_same_examples(dataset, model):
    """Contract: ``is_nll`` is the ``nll`` evaluator's IS NLL of exactly the AIS examples (same
    K, seed and passes give the same per-example values), and AIS - IS is their paired mean."""
    config = AISConfig(chains=4, steps=20, leapfrog_steps=3, num_examples=10, batch_size=5, is_k=60)
    results = get_evaluator("ais").function(model=model, dataset=dataset, config=config, seed=3)
    nll_config = NLLConfig(k=60, chunk=100, batch_size=5, num_examples=40)
    nll = get_evaluator("nll").function(model=model, dataset=dataset, config=nll_config, seed=3)
    is_nll = results["is_nll"]
    assert is_nll.n == 10 and is_nll.params["k"] == 60 and is_nll.kind == "estimate"
    assert is_nll.diagnostics["per_example"] == nll["nll"].diagnostics["per_example"][:10]
    ais_values = np.array(results["ais_nll"].diagnostics["per_example"])
    paired = ais_values - np.array(is_nll.diagnostics["per_example"])
    diagnostics = results["ais_nll"].diagnostics
    assert diagnostics["ais_minus_is_nll_mean"] == pytest.approx(paired.mean(), abs=1e-5)


def test_bdmc_gap_certifies_ais_with_the_same_settings(dataset, model, monkeypatch):
    """Contract: a BDMC gap above the threshold flags AIS run with the same settings, and only
    those; the gap is recorded beside the AIS estimates either way."""
    settings = {"chains": 3, "steps": 10, "leapfrog_steps": 2}
    ais = get_evaluator("ais").function(
        model=model,
        dataset=dataset,
        config=AISConfig(**settings, num_examples=4, is_k=30),
        seed=0,
    )
    bdmc = get_evaluator("bdmc").function(
        model=model, dataset=dataset, config=BDMCConfig(**settings, num_examples=3), seed=0
    )
    certified = certify_ais(ais, bdmc)
    gap = bdmc["bdmc_gap"].value
    assert certified["ais_nll"].diagnostics["bdmc_gap"] == gap
    assert certified["ais_nll"].diagnostics["bdmc_gap_applies"] is True
    assert (certified["ais_nll"].warning is None) == (gap <= MAX_BDMC_GAP)
    assert bdmc_warning(MAX_BDMC_GAP + 0.5).startswith("BDMC gap 1.50 nats")
    flagged = replace(bdmc["bdmc_gap"], warning=bdmc_warning(MAX_BDMC_GAP + 0.5))
    certified = certify_ais(ais, {**bdmc, "bdmc_gap": flagged})
    assert "BDMC gap 1.50 nats" in certified["ais_log_likelihood"].warning
    assert certified["is_nll"].warning == ais["is_nll"].warning  # IS is not certified by BDMC
    other = get_evaluator("bdmc").function(
        model=model,
        dataset=dataset,
        config=BDMCConfig(chains=3, steps=11, leapfrog_steps=2, num_examples=3),
        seed=0,
    )
    other = {**other, "bdmc_gap": replace(other["bdmc_gap"], warning="too wide")}
    uncertified = certify_ais(ais, other)
    assert uncertified["ais_nll"].diagnostics["bdmc_gap_applies"] is False
    assert uncertified["ais_nll"].warning == ais["ais_nll"].warning


def test_looser_than_importance_warning_needs_two_paired_standard_errors():
    """Reference definition: AIS 3.5 ± 0.5 nats above IS (7 standard errors) is flagged; 0.5 ±
    1.5 and AIS below IS are not; one example (no standard error) gives no verdict."""
    warning = looser_than_importance_warning(3.5, 0.5, is_k=5000)
    assert warning == (
        "AIS is 3.50 ± 0.50 nats looser than IS with K = 5000 on the same examples: "
        "too few temperatures or chains for this model"
    )
    assert looser_than_importance_warning(0.5, 1.5, is_k=10) is None
    assert looser_than_importance_warning(-3.5, 0.5, is_k=10) is None
    assert looser_than_importance_warning(5.0, None, is_k=10) is None


def test_ais_looser_than_importance_sampling_is_flagged(dataset, model):
    """Contract: one temperature from the prior with 2 chains is IS from the prior with K = 2,
    far looser than IS from the oracle's optimal diagonal encoder with K = 60, so both AIS
    estimates carry the warning; 64 chains x 200 temperatures (within 0.05 nats of exact, see
    above) do not."""
    short = AISConfig(chains=2, steps=1, leapfrog_steps=1, num_examples=20, batch_size=10, is_k=60)
    results = get_evaluator("ais").function(model=model, dataset=dataset, config=short, seed=0)
    for name in ("ais_nll", "ais_log_likelihood"):
        assert "looser than IS with K = 60" in results[name].warning
    long = replace(short, chains=64, steps=200, leapfrog_steps=5)
    results = get_evaluator("ais").function(model=model, dataset=dataset, config=long, seed=0)
    assert results["ais_nll"].warning is None and results["ais_log_likelihood"].warning is None
