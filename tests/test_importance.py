"""Tests of `metrics.importance`: log weights of any model, log-mean-exp, ESS, Bernoulli kernel."""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from torch.distributions import Bernoulli, Independent

import metrics.importance as importance
from metrics.importance import (
    bernoulli_log_prob,
    check_finite_log_weights,
    effective_sample_size,
    log_importance_weights,
    log_mean_exp,
    log_prob,
    uses_base_densities,
)
from registry import create_model, list_models
from registry.trunks import Architecture
from registry.vae import VAE


def build(name: str):
    """Build `name` on 4x4 images, or on 6-d vectors for vector-only models."""
    try:
        return create_model(name, data_shape=(1, 4, 4)), (1, 4, 4)
    except ValueError:
        return create_model(name, data_shape=(6,)), (6,)


def generic_log_weights(model, x, num_samples: int, chunk_size: int) -> torch.Tensor:
    """The model's own ``log_importance_weights``, chunk by chunk: the path every model has."""
    with torch.no_grad():
        sizes = [min(chunk_size, num_samples - s) for s in range(0, num_samples, chunk_size)]
        return torch.cat([model.log_importance_weights(x, num_samples=k) for k in sizes])


@pytest.mark.parametrize("name", list_models())
def test_log_weights_equal_the_models_own_for_every_model(name, monkeypatch):
    """Contract: for every registered model, the estimator's weights equal the model's own.

    Same seed, same draws: the blockwise/fused assembly must be the same estimator. Small
    decode blocks (5 rows) exercise the blocking.
    """
    monkeypatch.setattr(importance, "DECODE_ROWS", 5)
    torch.manual_seed(0)
    model, shape = build(name)
    model.eval()
    x = torch.rand(3, *shape).round()
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


def test_base_density_detection():
    """Contract: only models keeping the base densities take the blockwise path."""

    class OwnWeights(VAE):
        def log_importance_weights(self, x, *, num_samples):
            return torch.zeros(num_samples, len(x))

    arch = Architecture(hidden=(8,))
    plain = VAE((1, 4, 4), 2, arch, "bernoulli")
    own = OwnWeights((1, 4, 4), 2, arch, "bernoulli")
    assert uses_base_densities(plain) and not uses_base_densities(own)
    log_w = log_importance_weights(own, torch.zeros(3, 1, 4, 4), num_samples=5, chunk_size=2)
    assert torch.equal(log_w, torch.zeros(5, 3))


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
