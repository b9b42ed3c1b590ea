"""Scipy reference and property tests of improved precision/recall (Kynkäänniemi et al. 2019)."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from metrics.precision_recall import manifold_radii, precision, recall


def brute_force_coverage(query: np.ndarray, support: np.ndarray, k: int) -> float:
    """Fraction of `query` inside a ball of `support` of radius its k-th neighbour distance."""
    radii = np.sort(cdist(support, support), axis=1)[:, k]  # column 0 is the point itself
    return float(np.mean((cdist(query, support) <= radii[None, :]).any(axis=1)))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_and_recall_match_a_scipy_brute_force(k):
    """Scipy reference: blocked torch.cdist values equal the full scipy distance computation."""
    rng = np.random.RandomState(k)
    real, fake = rng.randn(300, 5), rng.randn(250, 5) * 1.3 + 0.4
    p = precision(torch.from_numpy(real), torch.from_numpy(fake), k=k, batch_size=64)
    r = recall(torch.from_numpy(real), torch.from_numpy(fake), k=k, batch_size=64)
    assert p.value == brute_force_coverage(fake, real, k)
    assert r.value == brute_force_coverage(real, fake, k)
    assert 0.05 < p.value < 0.99 and 0.05 < r.value < 0.99  # neither trivially 0 nor 1


def test_manifold_radii_are_kth_neighbour_distances_excluding_self():
    """Scipy reference: the radius is the k-th smallest distance to another point."""
    features = np.random.RandomState(0).randn(50, 3)
    expected = np.sort(cdist(features, features), axis=1)[:, 3]
    got = manifold_radii(torch.from_numpy(features), k=3, batch_size=7)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_mode_collapse_keeps_precision_and_loses_recall():
    """Property: identical sets score 1/1; one-mode samples get high precision, low recall."""
    rng = np.random.RandomState(4)
    centres = rng.randn(5, 4) * 10
    real = torch.from_numpy(np.concatenate([c + rng.randn(100, 4) for c in centres]))
    collapsed = torch.from_numpy(centres[0] + rng.randn(500, 4))
    assert precision(real, real).value == 1.0 and recall(real, real).value == 1.0
    assert precision(real, collapsed).value > 0.9
    assert recall(real, collapsed).value < 0.3


def test_estimates_carry_a_stderr_over_the_scored_set():
    """Contract: precision averages over generated points, recall over real points (sd/sqrt(n))."""
    rng = np.random.RandomState(5)
    real, fake = torch.from_numpy(rng.randn(80, 2)), torch.from_numpy(rng.randn(60, 2) + 1)
    p, r = precision(real, fake), recall(real, fake)
    assert p.n == 60 and r.n == 80 and p.params["k"] == 3 and p.unit == "fraction"
    assert p.stderr == pytest.approx(np.sqrt(p.value * (1 - p.value) / 59), rel=1e-9)


def test_k_must_leave_a_neighbour():
    """Contract: k must be smaller than the manifold's point count."""
    with pytest.raises(ValueError, match="Expected `k`"):
        precision(torch.randn(3, 2), torch.randn(10, 2), k=3)
