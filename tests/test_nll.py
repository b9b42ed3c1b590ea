"""Tests of `metrics.nll` and the ``nll`` evaluator: importance-sampled log p(x) and its bounds."""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

import benchmark.evaluators.likelihood as likelihood
from benchmark.evaluators import get_evaluator
from benchmark.evaluators.likelihood import NLLConfig
from metrics.nll import (
    MAX_UNRELIABLE_SHARE,
    MIN_MEAN_ESS,
    ImportanceSampledLikelihood,
    bits_per_dim,
    importance_sampled_log_likelihood,
    likelihood_warning,
    negative_log_likelihood_estimates,
)
from metrics.psis import pareto_k_hat
from registry import create_model
from registry.estimators import effective_sample_size, log_importance_weights, log_mean_exp
from registry.trunks import Architecture
from tests._linear_gaussian import oracle_dataset, oracle_model


@pytest.fixture(scope="module")
def dataset():
    return oracle_dataset(num_test=200)


def true_model(dataset, *, encoder_std_factor: float = 1.0, encoder_shift: float = 0.0):
    """Return a `linear_vae` with the dataset's true W, b, sigma and a diagonal Gaussian encoder.

    The encoder is the best diagonal one (exact mean, KL-optimal variances), optionally with its
    standard deviations scaled and its mean shifted, to make importance sampling harder.
    """
    model = oracle_model(dataset)
    with torch.no_grad():
        model.encoder_log_std.add_(math.log(encoder_std_factor))
        model.encoder_bias.add_(encoder_shift)
    return model.eval()


def estimate(model, x, num_samples: int, seed: int = 0, **kwargs) -> ImportanceSampledLikelihood:
    settings = {"chunk_size": 1000, "batch_size": 100, "pareto_k": num_samples >= 21} | kwargs
    return importance_sampled_log_likelihood(
        model, x, num_samples=num_samples, seed=seed, **settings
    )


@pytest.mark.parametrize("encoder_std_factor, encoder_shift", [(1.0, 0.0), (1.5, 0.3)])
def test_importance_sampling_at_k5000_is_within_005_nats_of_exact(
    dataset, encoder_std_factor, encoder_shift
):
    """Closed-form reference: linear_vae on linear_gaussian (D = 8, d = 3, sigma = 0.5).

    200 test examples, K = 5000: |mean(log p̂) - mean(exact log p(x))| < 0.05 nats, with the
    best diagonal encoder (ELBO gap ~0.11 nats) and with a wider, shifted one (mean k̂ < 0.7).
    """
    model = true_model(dataset, encoder_std_factor=encoder_std_factor, encoder_shift=encoder_shift)
    x = dataset.evaluation_data("test")
    result = estimate(model, x, num_samples=5000)
    exact = model.exact_log_marginal(x)
    assert abs((result.log_likelihood - exact).mean().item()) < 0.05
    assert (result.log_likelihood - exact).abs().max().item() < 0.2
    assert result.pareto_k.mean().item() < 0.7


def test_iwae_bound_increases_with_k_and_stays_below_exact(dataset):
    """Closed-form reference: ELBO = L_1 < L_10 < L_100 < L_1000 <= log p(x), up to noise.

    A deliberately narrow, shifted encoder (std x 0.7, mean + 0.3) makes the gaps large (~2, 0.9,
    0.4, 0.2 nats) compared with their standard errors (< 0.13) over 200 examples.
    """
    model = true_model(dataset, encoder_std_factor=0.7, encoder_shift=0.3)
    x = dataset.evaluation_data("test")
    exact = model.exact_log_marginal(x)
    gaps, stderrs = [], []
    for k in (1, 10, 100, 1000):
        difference = estimate(model, x, num_samples=k, seed=k).log_likelihood - exact  # (N,)
        gaps.append(difference.mean().item())
        stderrs.append(difference.std().item() / math.sqrt(len(x)))
    assert gaps == sorted(gaps) and len(set(gaps)) == 4
    for low, high, s_low, s_high in zip(gaps, gaps[1:], stderrs, stderrs[1:], strict=False):
        assert high - low > 2 * math.hypot(s_low, s_high)
    assert gaps[-1] < 3 * stderrs[-1]


def test_elbo_below_iwae_below_exact_on_the_same_samples(dataset):
    """Closed-form reference: per example ELBO <= log p̂_K (Jensen, same draws), mean <= exact."""
    model = true_model(dataset)
    x = dataset.evaluation_data("test")
    result = estimate(model, x, num_samples=500)
    assert (result.elbo <= result.log_likelihood + 1e-9).all()
    exact = model.exact_log_marginal(x)
    difference = result.log_likelihood - exact
    assert difference.mean().item() < 3 * difference.std().item() / math.sqrt(len(x))


def test_heavy_tailed_weights_are_flagged_by_pareto_k(dataset):
    """Property: a too-narrow encoder leaves IS biased at K = 5000, and k̂ > 0.7 says so."""
    model = true_model(dataset, encoder_std_factor=0.7, encoder_shift=0.3)
    x = dataset.evaluation_data("test")[:50]
    result = estimate(model, x, num_samples=5000)
    assert result.pareto_k.mean().item() > 0.7
    assert result.ess.mean().item() < 0.05 * 5000
    estimates = negative_log_likelihood_estimates(result, num_dims=dataset.num_dims)
    share = estimates["nll"].diagnostics["pareto_k_fraction_unreliable"]
    assert share > MAX_UNRELIABLE_SHARE
    for name in ("nll", "nll_bits_per_dim", "iwae_bound"):
        assert f"{share:.0%} of examples have PSIS k-hat >= 0.7" in estimates[name].warning
    assert estimates["elbo"].warning is None and estimates["nll"].kind == "estimate"


def test_good_proposal_is_trusted_and_a_low_ess_is_flagged(dataset):
    """Property: the exact-posterior-like encoder at K = 1000 passes both checks; the same
    model with K = 30 and a narrow encoder falls below the ESS floor of 10."""
    x = dataset.evaluation_data("test")[:30]
    good = estimate(true_model(dataset), x, num_samples=1000)
    assert likelihood_warning(good) is None
    poor = estimate(true_model(dataset, encoder_std_factor=0.3), x, num_samples=30)
    assert poor.ess.mean().item() < MIN_MEAN_ESS
    assert "mean ESS" in likelihood_warning(poor)


def test_point_mass_posterior_gives_an_upper_bound_not_an_estimate():
    """Closed-form reference: with a point-mass q (VQ-VAE) every weight is equal, so log p̂_K is
    the ELBO for every K; the NLL is labelled an upper bound (-ELBO), with no warning."""
    torch.manual_seed(0)
    model = create_model("vq_vae", data_shape=(1, 8, 8)).eval()
    x = torch.bernoulli(torch.full((6, 1, 8, 8), 0.5))
    result = importance_sampled_log_likelihood(
        model, x, num_samples=25, chunk_size=10, batch_size=4, seed=0
    )
    assert result.point_mass_proposal
    torch.testing.assert_close(result.log_likelihood, result.elbo, rtol=0, atol=1e-9)
    estimates = negative_log_likelihood_estimates(result, num_dims=64)
    assert estimates["nll"].kind == "upper_bound" and estimates["nll"].warning is None
    assert estimates["nll_bits_per_dim"].kind == "upper_bound"
    assert estimates["elbo"].value == pytest.approx(-estimates["nll"].value)


def test_nll_settings_refuse_too_few_samples_for_k_hat_up_front():
    """Bad input: the settings check K before any work, in one line naming the fix."""
    with pytest.raises(ValueError, match=r"Expected `k` to be at least 21 .* but got 5"):
        NLLConfig(k=5)
    with pytest.raises(ValueError, match=r"Expected `chunk` to be a positive int"):
        NLLConfig(chunk=0)
    assert NLLConfig(k=5, pareto_k=False).k == 5


def test_streamed_summaries_equal_the_whole_k_computation(dataset):
    """Reference: streaming over chunks of 7 gives the log-mean-exp, ELBO, ESS and k̂ of all K
    weights at once (one chunk), to float64 rounding."""
    model, x = true_model(dataset), dataset.evaluation_data("test")[:9]
    streamed = estimate(model, x, num_samples=300, chunk_size=7, batch_size=9)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        log_w = log_importance_weights(model, x, num_samples=300, chunk_size=7)  # (K, B)
    torch.testing.assert_close(streamed.log_likelihood, log_mean_exp(log_w))
    torch.testing.assert_close(streamed.elbo, log_w.double().mean(0))
    torch.testing.assert_close(streamed.ess, effective_sample_size(log_w))
    torch.testing.assert_close(streamed.pareto_k, pareto_k_hat(log_w))


def reference_log_likelihood(model, x, num_samples: int, seed: int) -> np.ndarray:
    """A straightforward loop: scipy densities per example and sample, scipy logsumexp.

    Only the draws come from the model (``sample_posterior``, same seed and chunking as the
    estimator with one chunk per batch); every density and the reduction are recomputed here.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        z, _ = model.sample_posterior(x, num_samples)  # (K, B, D)
        q_z = model.encode(x)
        logits = model.decode(z).base_dist.logits.flatten(2).double().numpy()  # (K, B, P)
    loc, scale = q_z.base_dist.loc.double().numpy(), q_z.base_dist.scale.double().numpy()
    z, pixels = z.double().numpy(), x.flatten(1).double().numpy()
    estimates = []
    for b in range(len(pixels)):
        log_w = []
        for k in range(num_samples):
            log_lik = scipy.stats.bernoulli.logpmf(pixels[b], scipy.special.expit(logits[k, b]))
            log_prior = scipy.stats.multivariate_normal.logpdf(z[k, b], np.zeros(z.shape[-1]))
            log_q = scipy.stats.norm.logpdf(z[k, b], loc[b], scale[b]).sum()
            log_w.append(log_lik.sum() + log_prior - log_q)
        estimates.append(scipy.special.logsumexp(log_w) - math.log(num_samples))
    return np.array(estimates)


def test_matches_a_straightforward_loop_with_scipy_densities():
    """Scipy reference: a tiny Bernoulli VAE (3x3 pixels, d = 2), loop over examples and samples."""
    torch.manual_seed(0)
    model = create_model(
        "vae", data_shape=(1, 3, 3), latent_dim=2, architecture=Architecture(hidden=(5,))
    ).eval()
    x = torch.rand(4, 1, 3, 3).round()
    result = estimate(model, x, num_samples=30, seed=7, chunk_size=30, batch_size=4)
    expected = reference_log_likelihood(model, x, num_samples=30, seed=7)
    np.testing.assert_allclose(result.log_likelihood.numpy(), expected, rtol=0, atol=1e-4)


def test_same_seed_gives_identical_results(dataset):
    """Property: deterministic given the seed (bitwise), and a different seed changes the draws."""
    model = true_model(dataset)
    x = dataset.evaluation_data("test")[:20]
    first, second = (estimate(model, x, num_samples=100, seed=3) for _ in range(2))
    assert torch.equal(first.log_likelihood, second.log_likelihood)
    assert torch.equal(first.pareto_k, second.pareto_k)
    other = estimate(model, x, num_samples=100, seed=4)
    assert not torch.equal(first.log_likelihood, other.log_likelihood)


def test_non_finite_weights_name_the_example(dataset):
    """Bad input: an overflowing example 7 raises an error naming example 7, in batches of 4."""
    model = true_model(dataset)
    x = dataset.evaluation_data("test")[:10].clone()
    x[7, 2] = 1e30  # finite input whose Gaussian log-density overflows float32
    with pytest.raises(ValueError, match="example 7 has log w = -?(inf|nan)"):
        estimate(model, x, num_samples=30, batch_size=4)


def test_too_few_samples_for_pareto_k_fail_early(dataset):
    """Bad input: asking for k̂ with K < 21 raises before any sampling."""
    model = true_model(dataset)
    with pytest.raises(ValueError, match="Expected `num_samples` to be at least 21"):
        estimate(model, dataset.evaluation_data("test")[:3], num_samples=10, pareto_k=True)


def test_nats_bits_per_dim_and_discretization_offset():
    """Closed-form reference: NLL = -(log p̂ + offset), bits/dim = NLL / (D ln 2), stderr sd/sqrt(N).

    With the dequantization offset -D log 256 of 8-bit data (Theis et al. 2016).
    """
    num_dims = 12
    log_likelihood = torch.tensor([10.0, 12.0, 17.0], dtype=torch.float64)
    result = ImportanceSampledLikelihood(
        log_likelihood, log_likelihood - 1.0, torch.full((3,), 40.0), None, num_samples=50
    )
    offset = -num_dims * math.log(256)
    estimates = negative_log_likelihood_estimates(
        result, num_dims=num_dims, log_likelihood_offset=offset, params={"seed": 1}
    )
    nll = -(log_likelihood + offset)
    assert estimates["nll"].value == pytest.approx(nll.mean().item())
    assert estimates["nll"].stderr == pytest.approx(nll.std().item() / math.sqrt(3))
    assert estimates["nll"].higher_is_better is False and estimates["nll"].unit == "nats"
    bpd = estimates["nll_bits_per_dim"]
    assert bpd.value == pytest.approx(nll.mean().item() / (num_dims * math.log(2)))
    assert bpd.unit == "bits/dim"
    assert bits_per_dim(2.6364 * 3072, num_dims=3072) == pytest.approx(3.8035, abs=1e-4)
    assert estimates["iwae_bound"].value == pytest.approx(-estimates["nll"].value)
    assert estimates["elbo"].value == pytest.approx((log_likelihood - 1 + offset).mean().item())
    assert estimates["nll"].params == {"seed": 1, "k": 50, "log_likelihood_offset": offset}


def test_nll_evaluator_records_parameters_diagnostics_and_per_example(dataset):
    """Contract: the evaluator's numbers, parameters, diagnostics and per-example values."""
    model = true_model(dataset).train()
    config = NLLConfig(k=200, chunk=64, batch_size=16, num_examples=40)
    results = get_evaluator("nll").function(model=model, dataset=dataset, config=config, seed=5)
    assert model.training  # the previous mode is restored
    assert set(results) == {"nll", "nll_bits_per_dim", "iwae_bound", "elbo", "ess"}
    nll = results["nll"]
    assert nll.n == 40 and nll.higher_is_better is False
    for key, value in {
        "k": 200,
        "chunk": 64,
        "batch_size": 16,
        "seed": 5,
        "split": "test",
        "num_examples": 40,
        "preprocessing": "continuous",
        "unit": "nats",
        "log_likelihood_offset": 0.0,
        "estimator": "importance_sampling",
    }.items():
        assert nll.params[key] == value
    assert results["nll_bits_per_dim"].params["unit"] == "bits/dim"
    for key in ("ess_mean", "ess_min", "pareto_k_mean", "pareto_k_max"):
        assert math.isfinite(nll.diagnostics[key])
    direct = estimate(
        model,
        dataset.evaluation_data("test")[:40],
        num_samples=200,
        seed=5,
        chunk_size=64,
        batch_size=16,
    )
    assert nll.value == pytest.approx(-direct.log_likelihood.mean().item(), rel=1e-12)
    per_example = nll.diagnostics["per_example"]
    assert len(per_example) == 40
    assert per_example == [float(f"{-v:.6g}") for v in direct.log_likelihood.tolist()]


def test_nll_evaluator_omits_per_example_values_for_large_sets(dataset, monkeypatch):
    """Contract: per-example values are recorded only up to MAX_PER_EXAMPLE examples."""
    monkeypatch.setattr(likelihood, "MAX_PER_EXAMPLE", 10)
    model = true_model(dataset)
    config = NLLConfig(k=30, num_examples=11)
    results = get_evaluator("nll").function(model=model, dataset=dataset, config=config, seed=0)
    assert "per_example" not in results["nll"].diagnostics
    config = NLLConfig(k=30, num_examples=10)
    results = get_evaluator("nll").function(model=model, dataset=dataset, config=config, seed=0)
    assert len(results["nll"].diagnostics["per_example"]) == 10


def test_nll_evaluator_rejects_too_many_examples(dataset):
    """Bad input: more examples than the split holds raises, naming the split size."""
    with pytest.raises(ValueError, match="between 1 and the 200 examples"):
        get_evaluator("nll").function(
            model=true_model(dataset),
            dataset=dataset,
            config=NLLConfig(k=30, num_examples=201),
            seed=0,
        )
