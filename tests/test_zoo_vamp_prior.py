"""VampPrior (Tomczak & Welling 2018): a proper mixture of posteriors that follows the data."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from benchmark.datasets import create_dataset
from benchmark.spec import TrainSpec
from benchmark.trainer import train
from registry import create_model
from registry.trunks import Architecture
from registry.wae import maximum_mean_discrepancy


def test_prior_log_density_is_the_uniform_mixture_of_pseudo_input_posteriors():
    """Scipy reference: log p(z) = logsumexp_k log N(z; mu_k, sigma_k) - log K (Eq. 9), with the
    components computed from the encoder at the pseudo-inputs."""
    torch.manual_seed(0)
    model = create_model("vamp_prior", data_shape=(1, 8, 8), latent_dim=3, num_pseudo_inputs=7)
    z = torch.randn(4, 5, 3)
    with torch.no_grad():
        components = model.encode(model.pseudo_inputs())
        loc, scale = components.base_dist.loc.numpy(), components.base_dist.scale.numpy()
        log_p = model.prior().log_prob(z)
    # (4, 5, 1, 3) against (7, 3) -> per-component log-densities (4, 5, 7)
    per_component = stats.norm.logpdf(z.numpy()[..., None, :], loc, scale).sum(-1)
    expected = special.logsumexp(per_component, axis=-1) - math.log(7)
    np.testing.assert_allclose(log_p.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_prior_integrates_to_one():
    """Closed form: with one latent dimension, the mixture density integrates to 1 (scipy quad)."""
    torch.manual_seed(0)
    model = create_model("vamp_prior", data_shape=(1, 8, 8), latent_dim=1, num_pseudo_inputs=5)
    with torch.no_grad():
        prior = model.prior()

        def density(z: float) -> float:
            return prior.log_prob(torch.tensor([[z]], dtype=torch.float32)).exp().item()

        mass, _ = integrate.quad(density, -30, 30, limit=200)
    assert mass == pytest.approx(1.0, abs=1e-4)


def test_pseudo_inputs_are_learned_and_stay_in_the_unit_interval():
    """Contract: the loss reaches the pseudo-inputs, which stay in [0, 1] for binary data."""
    torch.manual_seed(0)
    model = create_model("vamp_prior", data_shape=(1, 8, 8), num_pseudo_inputs=4)
    x = (torch.rand(6, 1, 8, 8) > 0.5).float()
    model.loss(x, 0).loss.backward()
    assert model.raw_pseudo_inputs.grad.abs().sum() > 0
    with torch.no_grad():
        model.raw_pseudo_inputs.add_(3.0)
    assert model.pseudo_inputs().max() <= 1.0 and model.pseudo_inputs().min() >= 0.0


def test_prior_follows_the_aggregate_posterior():
    """Property (Tomczak & Welling 2018, Sec. 3: the optimal prior is the aggregate posterior,
    which the VampPrior approximates): after 300 steps on digits, test codes are as close to the
    learned prior as two prior samples are to each other (MMD at noise level, measured 0.002),
    while they are far from N(0, I) (measured 0.27)."""
    dataset = create_dataset("digits")
    torch.manual_seed(0)
    model = create_model(
        "vamp_prior",
        data_shape=dataset.data_shape,
        latent_dim=8,
        architecture=Architecture(hidden=(64,)),
    )
    train(model, dataset, TrainSpec(steps=300, lr=2e-3, checkpoint_every=0), seed=0, progress=False)
    x = dataset.evaluation_data("test")
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        z_q = model.encode(x).sample()  # one code per test image: the aggregate posterior
        z_p = model.prior().sample((len(x),))
    scales = (2.0 * model.latent_dim,)
    to_prior = maximum_mean_discrepancy(z_q, z_p, scales=scales).item()
    to_standard_normal = maximum_mean_discrepancy(z_q, torch.randn_like(z_q), scales=scales).item()
    assert to_prior < 0.02
    assert to_standard_normal > 10 * max(to_prior, 0.002)
