"""WAE-MMD (Tolstikhin et al. 2018): the MMD estimator, the flag, and aggregate matching."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from benchmark.datasets import create_dataset
from benchmark.spec import TrainSpec
from benchmark.trainer import train
from registry import create_model
from registry.estimators import log_importance_weights
from registry.trunks import Architecture
from registry.wae import maximum_mean_discrepancy


def reference_mmd(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """Algorithm 2 of Tolstikhin et al. (2018), written with explicit pair loops over cdist."""
    n = len(a)
    k_aa, k_bb, k_ab = (
        scale / (scale + cdist(u, v, "sqeuclidean")) for u, v in ((a, a), (b, b), (a, b))
    )
    within = sum(k_aa[i, j] + k_bb[i, j] for i in range(n) for j in range(n) if i != j)
    return within / (n * (n - 1)) - 2 * k_ab.sum() / n**2


def test_mmd_matches_the_u_statistic_computed_with_scipy():
    """Scipy reference: the unbiased IMQ-kernel MMD^2, summed over two kernel scales."""
    generator = np.random.default_rng(0)
    a, b = generator.normal(size=(9, 3)), generator.normal(0.5, 1.2, size=(9, 3))
    expected = reference_mmd(a, b, 6.0) + reference_mmd(a, b, 0.6)
    actual = maximum_mean_discrepancy(torch.from_numpy(a), torch.from_numpy(b), scales=(6.0, 0.6))
    assert actual.item() == pytest.approx(expected, rel=1e-10)


def test_mmd_is_unbiased_at_zero_and_positive_under_a_shift():
    """Property: over 300 draws, MMD^2 between two N(0, I) samples averages 0 within 4 stderr,
    while a mean shift of 1 gives a clearly positive value."""
    torch.manual_seed(0)
    same = torch.stack(
        [
            maximum_mean_discrepancy(torch.randn(20, 4), torch.randn(20, 4), scales=(8.0,))
            for _ in range(300)
        ]
    )
    shifted = maximum_mean_discrepancy(torch.randn(200, 4), torch.randn(200, 4) + 1, scales=(8.0,))
    assert same.mean().abs() < 4 * same.std() / 300**0.5
    assert shifted > 20 * same.std() / 300**0.5


def test_wae_is_flagged_as_not_trained_on_a_likelihood_bound():
    """Contract: WAE sets trains_on_likelihood_bound = False; its densities stay usable."""
    wae = create_model("wae_mmd", data_shape=(1, 8, 8))
    assert wae.trains_on_likelihood_bound is False
    assert create_model("vae", data_shape=(1, 8, 8)).trains_on_likelihood_bound is True
    x = (torch.rand(4, 1, 8, 8) > 0.5).float()
    assert torch.isfinite(log_importance_weights(wae, x, num_samples=3, chunk_size=3)).all()
    with pytest.raises(ValueError, match="mmd_weight"):
        create_model("wae_mmd", data_shape=(1, 8, 8), mmd_weight=-1.0)


def test_mmd_penalty_matches_the_aggregate_posterior_to_the_prior():
    """Property (Tolstikhin et al. 2018, Sec. 1-2: WAE matches Q_Z, not each q(z|x), to P_Z):
    after 300 steps the test codes' MMD to N(0, I) is far lower with lambda = 10 than with
    lambda = 0 (measured 0.03-0.05 against 0.54-0.64, seeds 0-2), while each q(z|x) stays far
    from the prior (per-example KL of several nats)."""
    dataset = create_dataset("digits")
    x = dataset.evaluation_data("test")
    distances, kl = {}, {}
    for weight in (0.0, 10.0):
        torch.manual_seed(0)
        model = create_model(
            "wae_mmd",
            data_shape=dataset.data_shape,
            latent_dim=4,
            architecture=Architecture(hidden=(64,)),
            mmd_weight=weight,
        )
        train(model, dataset, TrainSpec(steps=300, checkpoint_every=0), seed=0, progress=False)
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            q_z = model.encode(x)
            z_q = q_z.sample()
            distances[weight] = maximum_mean_discrepancy(
                z_q, torch.randn_like(z_q), scales=model.kernel_scales
            ).item()
            kl[weight] = model.loss(x, 0).terms["kl"]
    assert distances[10.0] < 0.3 * distances[0.0], distances
    assert distances[10.0] < 0.15
    assert kl[10.0] > 3.0, kl
