"""Tests of `registry.estimators`: log weights and ELBO terms of any model, log-mean-exp, ESS,
the fused Bernoulli kernel."""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from torch.distributions import Bernoulli, Independent

import registry.estimators as estimators
from registry import create_model, list_models
from registry.base import LikelihoodUndefined
from registry.estimators import (
    bernoulli_log_prob,
    check_finite_log_weights,
    effective_sample_size,
    elbo_terms,
    iter_log_importance_weights,
    log_importance_weights,
    log_mean_exp,
    log_prob,
    normal_kl_to_standard_normal,
    normal_log_prob,
    standard_normal_log_prob,
    uses_base_likelihood,
)
from registry.trunks import Architecture
from registry.vae import VAE


def build(name: str):
    """Build `name` on 4x4 images, or on 6-d vectors for vector-only models."""
    try:
        return create_model(name, data_shape=(1, 4, 4)), (1, 4, 4)
    except ValueError:
        return create_model(name, data_shape=(6,)), (6,)


def generic_log_weights(model, x, num_samples: int, chunk_size: int) -> torch.Tensor:
    """log p(z) + log p(x|z) - log q from the model's three densities, chunk by chunk, unfused."""
    with torch.no_grad():
        sizes = [min(chunk_size, num_samples - s) for s in range(0, num_samples, chunk_size)]
        chunks = []
        for k in sizes:
            z, log_q = model.sample_posterior(x, k)  # (k, B, D), (k, B)
            chunks.append(model.log_prior(z) + model.log_likelihood(x, z) - log_q)
        return torch.cat(chunks)


@pytest.mark.parametrize("name", list_models())
def test_log_weights_equal_the_densities_composition_for_every_model(name, monkeypatch):
    """Contract: for every registered model, the estimator's weights equal log p(z) + log p(x|z)
    - log q composed from its densities.

    Same seed, same draws: a hierarchy's fused pass and the blockwise/fused Bernoulli assembly
    must be the same estimator. Small decode blocks (5 rows) exercise the blocking.
    """
    monkeypatch.setattr(estimators, "DECODE_ROWS", 5)
    torch.manual_seed(0)
    model, shape = build(name)
    model.eval()
    x = torch.rand(3, *shape).round()
    if not model.has_prior:  # no p(z): no weights, the same refusal on both paths
        for weights in (generic_log_weights, log_importance_weights):
            with pytest.raises(LikelihoodUndefined):
                weights(model, x, num_samples=7, chunk_size=3)
        return
    torch.manual_seed(1)
    expected = generic_log_weights(model, x, num_samples=7, chunk_size=3)
    torch.manual_seed(1)
    actual = log_importance_weights(model, x, num_samples=7, chunk_size=3)
    assert actual.shape == (7, 3)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("num_samples, chunk_size", [(1, 100), (100, 100), (150, 100), (250, 7)])
def test_exactly_k_samples_whatever_the_chunk(num_samples, chunk_size):
    """Property: K is used exactly (pythae used batch_size * floor(K / batch_size) samples)."""
    model = create_model("linear_vae", data_shape=(3,), latent_dim=2)
    log_w = log_importance_weights(
        model, torch.randn(4, 3), num_samples=num_samples, chunk_size=chunk_size
    )
    assert log_w.shape == (num_samples, 4)
    assert len(torch.unique(log_w[:, 0])) == num_samples  # every draw is a fresh sample


def test_base_likelihood_detection():
    """Contract: a model with its own log p(x|z) is asked for it, not decoded blockwise."""

    class OwnLikelihood(VAE):
        def log_likelihood(self, x, z):
            return torch.zeros(z.shape[:-1])

    arch = Architecture(hidden=(8,))
    plain = VAE((1, 4, 4), 2, arch, "bernoulli")
    own = OwnLikelihood((1, 4, 4), 2, arch, "bernoulli")
    assert uses_base_likelihood(plain) and not uses_base_likelihood(own)
    torch.manual_seed(0)
    log_w = log_importance_weights(own, torch.zeros(3, 1, 4, 4), num_samples=5, chunk_size=2)
    torch.manual_seed(0)
    z, log_q = own.sample_posterior(torch.zeros(3, 1, 4, 4), 2)
    torch.testing.assert_close(log_w[:2], own.log_prior(z) - log_q)


def test_streamed_chunks_are_the_same_draws():
    """Property: the chunk iterator yields exactly the weights of the whole-K call, in order."""
    model = create_model("linear_vae", data_shape=(3,), latent_dim=2)
    x = torch.randn(4, 3)
    torch.manual_seed(5)
    whole = log_importance_weights(model, x, num_samples=10, chunk_size=4)
    torch.manual_seed(5)
    chunks = list(iter_log_importance_weights(model, x, num_samples=10, chunk_size=4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert torch.equal(torch.cat(chunks), whole)


def test_elbo_terms_match_the_linear_gaussian_closed_form():
    """Closed-form reference: rate is the Gaussian KL to N(0, I); reconstruction + KL average
    to the ELBO, whose Monte Carlo mean matches the mean log weight on the same model."""
    torch.manual_seed(0)
    model = create_model("linear_vae", data_shape=(4,), latent_dim=2).eval()
    x = torch.randn(3, 4)
    with torch.no_grad():
        reconstruction, kl = elbo_terms(model, x, num_samples=20_000)
        q = model.encode(x)
        loc, var = q.mean.double(), q.variance.double()
        expected_kl = 0.5 * (var + loc**2 - 1 - var.log()).sum(-1)
        elbo_mc = log_importance_weights(model, x, num_samples=20_000, chunk_size=5000).mean(0)
    torch.testing.assert_close(kl.double(), expected_kl, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close((reconstruction - kl).double(), elbo_mc.double(), rtol=0, atol=0.05)


def test_log_mean_exp_matches_scipy_in_float64():
    """Scipy reference: log-mean-exp is scipy's logsumexp - log K, even where exp underflows."""
    rng = np.random.RandomState(0)
    log_w = rng.normal(-2000.0, 30.0, size=(500, 4)).astype(np.float32)  # exp underflows in fp32
    expected = scipy.special.logsumexp(log_w.astype(np.float64), axis=0) - math.log(500)
    actual = log_mean_exp(torch.from_numpy(log_w), dim=0)
    assert actual.dtype == torch.float64
    np.testing.assert_allclose(actual.numpy(), expected, rtol=0, atol=1e-9)


def test_effective_sample_size_matches_direct_formula():
    """Closed-form reference: Kish's (sum w)^2 / sum w^2, and its limits K and 1."""
    rng = np.random.RandomState(1)
    log_w = rng.normal(0.0, 2.0, size=(300, 5))
    w = np.exp(log_w)
    expected = w.sum(0) ** 2 / (w**2).sum(0)
    np.testing.assert_allclose(effective_sample_size(torch.from_numpy(log_w)).numpy(), expected)
    assert effective_sample_size(torch.zeros(300, 1)).item() == pytest.approx(300)
    dominated = torch.tensor([[0.0], [-1000.0], [-1000.0]])
    assert effective_sample_size(dominated).item() == pytest.approx(1.0)


def test_bernoulli_log_prob_matches_scipy_and_torch():
    """Scipy reference: the fused kernel equals bernoulli.logpmf(x, sigmoid(logits)), summed."""
    torch.manual_seed(2)
    logits = torch.randn(5, 3, 2, 4, dtype=torch.float64) * 4  # (K, B, *event)
    x = torch.rand(3, 2, 4).round().double()
    expected = scipy.stats.bernoulli.logpmf(x.numpy(), scipy.special.expit(logits.numpy()))
    actual = bernoulli_log_prob(logits, x, event_dims=2)
    np.testing.assert_allclose(actual.numpy(), expected.sum(axis=(-1, -2)), rtol=1e-12)
    p = Independent(Bernoulli(logits=logits), 2)
    torch.testing.assert_close(log_prob(p, x), p.log_prob(x))


def test_bernoulli_log_prob_gradient_is_the_autograd_one_bit_for_bit():
    """Reference: the custom backward is autograd's through softplus(l) - l x, bit for bit, and
    the closed form g (x - sigmoid(l))."""
    torch.manual_seed(3)
    logits = (torch.randn(4, 3, 1, 5, 5) * 6).requires_grad_()  # (K, B, *event), some saturated
    x = torch.rand(3, 1, 5, 5).round()
    upstream = torch.randn(4, 3)
    (grad,) = torch.autograd.grad(bernoulli_log_prob(logits, x, event_dims=3), logits, upstream)
    reference = -(torch.nn.functional.softplus(logits) - logits * x).sum(dim=(-3, -2, -1))
    (expected,) = torch.autograd.grad(reference, logits, upstream)
    assert torch.equal(grad, expected)
    closed_form = upstream[..., None, None, None] * (x - torch.sigmoid(logits.detach()))
    torch.testing.assert_close(grad, closed_form)
    x.requires_grad_()  # a gradient in x too takes the plain autograd path
    (grad_x,) = torch.autograd.grad(bernoulli_log_prob(logits, x, event_dims=3).sum(), x)
    torch.testing.assert_close(grad_x, logits.detach().sum(0))


def test_gaussian_densities_match_scipy_and_are_the_distributions_bits():
    """Scipy reference: N(z; loc, scale) log-densities and the KL to N(0, I) (Kingma & Welling
    2014, App. B); and the same bits, values and gradients, as through torch.distributions."""
    torch.manual_seed(4)
    loc = torch.randn(3, 5, requires_grad=True)  # (B, D)
    scale = (torch.rand(3, 5) + 0.2).requires_grad_()
    z = loc + scale * torch.randn(7, 3, 5)  # (K, B, D)
    q = torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)
    p = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(5), torch.ones(5)), 1
    )
    ours = (normal_log_prob(z, loc, scale), standard_normal_log_prob(z))
    theirs = (q.log_prob(z), p.log_prob(z))
    kl = (normal_kl_to_standard_normal(loc, scale), torch.distributions.kl_divergence(q, p))
    for a, b in (*zip(ours, theirs, strict=True), kl):
        assert torch.equal(a, b)
        grads = [torch.autograd.grad(t.sum(), (loc, scale), retain_graph=True) for t in (a, b)]
        assert all(torch.equal(g, h) for g, h in zip(*grads, strict=True))
    zd, locd, scaled = (t.detach().double().numpy() for t in (z, loc, scale))
    expected = scipy.stats.norm.logpdf(zd, locd, scaled).sum(-1)
    np.testing.assert_allclose(ours[0].detach().numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(
        ours[1].detach().numpy(), scipy.stats.norm.logpdf(zd).sum(-1), rtol=1e-5
    )
    closed = 0.5 * (scaled**2 + locd**2 - 1 - np.log(scaled**2)).sum(-1)
    np.testing.assert_allclose(kl[0].detach().numpy(), closed, rtol=1e-5)


def test_the_vae_fast_draws_are_the_distributions_draws():
    """Contract: without argument validation, VAE.draw_latents skips the distribution objects
    and gives the same z, log q, KL and log p(z) bits as the base class's sampler."""
    from torch.distributions import Distribution

    from registry.base import LatentVariableModel

    model = create_model("iwae", data_shape=(1, 4, 4), latent_dim=3, num_samples=4)
    x = torch.rand(5, 1, 4, 4).round()
    previous = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        torch.manual_seed(5)
        fast = model.draw_latents(x, 4)
        torch.manual_seed(5)
        base = LatentVariableModel.draw_latents(model, x, 4)
        assert callable(fast.kl) and not callable(base.kl)
        assert torch.equal(fast.z, base.z) and torch.equal(fast.log_q, base.log_q)
        assert torch.equal(fast.kl(), base.kl)
        assert torch.equal(model.log_prior(fast.z), model.prior().log_prob(fast.z))
    finally:
        Distribution.set_default_validate_args(previous)


def test_bernoulli_log_prob_is_exact_for_extreme_logits():
    """Closed-form reference: x l - log(1 + e^l) stays finite and exact for |l| <= 80 in fp32."""
    logits = torch.tensor([[-80.0, -30.0, 0.0, 30.0, 80.0]])
    for pixel in (0.0, 1.0):
        x = torch.full((1, 5), pixel)
        expected = pixel * logits.double().numpy() - np.logaddexp(0.0, logits.double().numpy())
        actual = bernoulli_log_prob(logits[None], x, event_dims=1)
        assert torch.isfinite(actual).all()
        assert actual.item() == pytest.approx(expected.sum(), abs=1e-4)


def test_fused_log_prob_keeps_the_support_check():
    """Contract: the fused path rejects non-binary x exactly as the generic Bernoulli does."""
    p = Independent(Bernoulli(logits=torch.zeros(2, 3, 4), validate_args=True), 1)
    with pytest.raises(ValueError):
        log_prob(p, torch.full((3, 4), 0.5))


def test_non_finite_weights_name_the_example():
    """Bad input: a non-finite log weight raises an error naming the example index."""
    log_w = torch.zeros(4, 6)
    log_w[2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"example 13 has log w = nan at sample 2"):
        check_finite_log_weights(log_w, first_example=10)
    check_finite_log_weights(torch.zeros(4, 6))  # finite weights pass


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_counts_must_be_positive_ints(bad):
    """Bad input: K and the chunk size are positive ints."""
    model = create_model("linear_vae", data_shape=(3,), latent_dim=2)
    with pytest.raises(ValueError, match="Expected `num_samples`"):
        log_importance_weights(model, torch.randn(2, 3), num_samples=bad, chunk_size=1)
    with pytest.raises(ValueError, match="Expected `chunk_size`"):
        log_importance_weights(model, torch.randn(2, 3), num_samples=1, chunk_size=bad)
