"""NVAE-style hierarchy (Vahdat & Kautz 2020): residual normals, spectral regularisation."""

import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

from benchmark.datasets import create_dataset
from benchmark.spec import TrainSpec
from benchmark.trainer import train
from registry import create_model

SMALL = dict(channels=8, latent_channels=2, groups_per_scale=(1, 2))


def test_group_kl_is_the_residual_normal_kl_of_eq_2():
    """Closed form (Eq. 2): KL(q || p) = 1/2 sum (dmu^2 / sigma^2 + dsigma^2 - log dsigma^2 - 1),
    with dmu = mu_q - mu_p and dsigma = sigma_q / sigma_p read off the model's conditionals."""
    torch.manual_seed(0)
    model = create_model("nvae", data_shape=(1, 8, 8), **SMALL)
    x = (torch.rand(3, 1, 8, 8) > 0.5).float()
    with torch.no_grad():
        features, lead = model.bottom_up(x), torch.Size([3])
        state = model.update_state(
            0, model.initial_state(lead), torch.randn(3, model.group_sizes[0])
        )
        prior = model.group_prior(1, state)
        posterior = model.group_posterior(1, state, features[1], prior)
    p, q = prior.base_dist, posterior.base_dist
    delta_loc, delta_scale = q.loc - p.loc, q.scale / p.scale
    eq_2 = 0.5 * (delta_loc**2 / p.scale**2 + delta_scale**2 - torch.log(delta_scale**2) - 1)
    torch.testing.assert_close(kl_divergence(posterior, prior), eq_2.sum(-1), rtol=1e-5, atol=1e-5)
    assert (delta_loc.abs() > 0).any() and not torch.allclose(delta_scale, torch.ones(1))


def test_power_iteration_finds_the_largest_singular_value():
    """Numpy reference: after enough power iterations each estimate equals the top singular
    value of the convolution's (out, in * k * k) weight matrix."""
    torch.manual_seed(0)
    model = create_model("nvae", data_shape=(1, 8, 8), power_iterations=200, **SMALL)
    with torch.no_grad():
        estimates = model.spectral_norms().numpy()
    expected = [
        np.linalg.svd(conv.weight.detach().flatten(1).numpy(), compute_uv=False)[0]
        for conv in model.convolutions
    ]
    np.testing.assert_allclose(estimates, expected, rtol=1e-3)
    assert len(estimates) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def test_spectral_regularization_shrinks_the_largest_singular_values():
    """Property (Sec. 3.2: spectral regularisation keeps the networks' Lipschitz constants
    small): after 50 steps on digits with lambda = 0.1 the sum of the convolutions' spectral
    norms is lower than without it (measured 16.6 against 21.7-22.3, seeds 0-2), and the loss
    terms report that sum."""
    dataset = create_dataset("digits")
    sums = {}
    for weight in (0.0, 0.1):
        torch.manual_seed(0)
        model = create_model(
            "nvae", data_shape=dataset.data_shape, spectral_regularization=weight, **SMALL
        )
        state = train(
            model,
            dataset,
            TrainSpec(steps=50, log_every=50, checkpoint_every=0),
            seed=0,
            progress=False,
        )
        with torch.no_grad():
            model.power_iterations = 50
            sums[weight] = model.spectral_norms().sum().item()
        assert ("spectral_norm_sum" in state.curve[-1]) == (weight > 0)
    assert sums[0.1] < sums[0.0] - 2.0, sums


def test_vector_data_and_bad_settings_are_rejected():
    """Contract: NVAE needs images; sizes are validated with the setting named."""
    with pytest.raises(ValueError, match="image dataset"):
        create_model("nvae", data_shape=(16,))
    with pytest.raises(ValueError, match="groups_per_scale"):
        create_model("nvae", data_shape=(1, 8, 8), groups_per_scale=())
