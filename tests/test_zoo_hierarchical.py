"""Multi-group latents behind one z: ancestral densities, fused weights, the analytic-KL loss."""

import math

import pytest
import torch

from registry import create_model
from registry.estimators import elbo_terms, log_importance_weights

HIERARCHIES = {
    "ladder": dict(name="ladder_vae", latent_dims=(4, 2), hidden=(16, 8)),
    "bottom_up": dict(name="ladder_vae", latent_dims=(4, 2), hidden=(16, 8), inference="bottom_up"),
    "nvae": dict(name="nvae", channels=8, latent_channels=2, groups_per_scale=(1, 2)),
}


def build(key: str):
    settings = dict(HIERARCHIES[key])
    torch.manual_seed(0)
    return create_model(settings.pop("name"), data_shape=(1, 8, 8), **settings)


@pytest.mark.parametrize("key", HIERARCHIES)
def test_fused_importance_weights_equal_the_three_densities(key):
    """Contract: the fused top-down log w equals log_prior + log_likelihood - encode(x).log_prob,
    and the shared chunked estimator returns exactly K weights per example."""
    model = build(key)
    x = (torch.rand(3, 1, 8, 8) > 0.5).float()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(1)
        fused = log_importance_weights(model, x, num_samples=4, chunk_size=4)
        torch.manual_seed(1)
        z, log_q = model.sample_posterior(x, 4)
        composed = model.log_prior(z) + model.log_likelihood(x, z) - model.encode(x).log_prob(z)
        chunked = log_importance_weights(model, x, num_samples=5, chunk_size=2)
    torch.testing.assert_close(fused, composed, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(log_q, model.encode(x).log_prob(z), rtol=1e-5, atol=1e-4)
    assert z.shape == (4, 3, model.latent_dim) and chunked.shape == (5, 3)
    assert torch.isfinite(chunked).all()


@pytest.mark.parametrize("key", ["ladder", "bottom_up"])
def test_ancestral_prior_and_posterior_integrate_to_one(key):
    """Closed form: with two 1-d groups, exp(log p(z)) and exp(log q(z|x)) integrate to 1
    on a grid (trapezoid rule over [-7, 7]^2, 281^2 points)."""
    torch.manual_seed(0)
    name, inference = "ladder_vae", "bottom_up" if key == "bottom_up" else "ladder"
    model = create_model(
        name, data_shape=(1, 8, 8), latent_dims=(1, 1), hidden=(8, 8), inference=inference
    )
    x = (torch.rand(1, 1, 8, 8) > 0.5).float()
    axis = torch.linspace(-7, 7, 281)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1)  # (281, 281, 2)
    with torch.no_grad():
        densities = {
            "prior": model.prior().log_prob(grid.reshape(-1, 2)).exp(),  # (281 * 281,)
            "posterior": model.encode(x).log_prob(grid.reshape(-1, 1, 2)).exp()[:, 0],
        }
    for label, density in densities.items():
        mass = torch.trapezoid(torch.trapezoid(density.reshape(281, 281), axis), axis)
        assert mass.item() == pytest.approx(1.0, abs=5e-3), label


@pytest.mark.parametrize("key", ["ladder", "nvae"])
def test_analytic_kl_loss_is_an_unbiased_elbo(key):
    """Property: the loss's ELBO (analytic per-group KLs at sampled upper groups, Vahdat & Kautz
    2020 Eq. 2) has the same mean as the Monte Carlo ELBO mean(log w), within 4 stderr."""
    model = build(key)
    x = (torch.rand(2, 1, 8, 8) > 0.5).float()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(2)
        reconstruction, kl = elbo_terms(
            model, x.repeat(400, 1, 1, 1), num_samples=1
        )  # 400 copies of each x
        analytic = (reconstruction - kl).reshape(400, len(x))
        monte_carlo = log_importance_weights(
            model, x, num_samples=2000, chunk_size=2000
        )  # (2000, B)
    difference = analytic.mean(0) - monte_carlo.mean(0)
    stderr = (analytic.var(0) / 400 + monte_carlo.var(0) / 2000).sqrt()
    assert (difference.abs() < 4 * stderr + 1e-3).all(), (difference, stderr)
    assert (analytic.var(0) < monte_carlo.var(0)).all()


def test_plug_in_mean_is_exact_for_the_first_group():
    """Property: encode(x).mean of the top group equals the mean of its samples (within 4 se);
    the mean has shape (B, D) and is deterministic."""
    model = build("ladder")
    x = (torch.rand(3, 1, 8, 8) > 0.5).float()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(3)
        q = model.encode(x)
        samples = q.sample((4000,))[..., : model.group_sizes[0]]  # (4000, B, d_top)
        mean = q.mean
    assert mean.shape == (3, model.latent_dim)
    torch.testing.assert_close(mean, q.mean)
    stderr = samples.std(0) / math.sqrt(4000)
    assert ((samples.mean(0) - mean[:, : model.group_sizes[0]]).abs() < 4 * stderr).all()
