"""Scikit-learn reference and property tests of KID computed through torchmetrics."""

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import polynomial_kernel

from metrics.kid import kernel_distance


def unbiased_mmd2(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, Eq. 3) with sklearn's (a.b / F + 1)^3 kernel."""
    kernel = dict(degree=3, gamma=1.0 / a.shape[1], coef0=1.0)
    k_aa, k_bb, k_ab = (
        polynomial_kernel(a, a, **kernel),
        polynomial_kernel(b, b, **kernel),
        polynomial_kernel(a, b, **kernel),
    )
    m, n = len(a), len(b)
    within_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
    within_b = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
    return float(within_a + within_b - 2 * k_ab.mean())


def test_kid_with_one_full_subset_matches_sklearn_unbiased_mmd():
    """Scikit-learn reference: a subset holding every row gives the full-sample unbiased MMD^2."""
    rng = np.random.RandomState(0)
    real, fake = rng.randn(120, 5), rng.randn(120, 5) * 1.5 + 0.3
    estimate = kernel_distance(
        torch.from_numpy(real), torch.from_numpy(fake), subsets=3, subset_size=120, seed=0
    )
    expected = unbiased_mmd2(real, fake)
    assert expected > 0.1
    assert estimate.value == pytest.approx(expected, rel=1e-8)
    # MMD^2 is invariant to the order of rows, so subsets that are permutations agree.
    assert estimate.diagnostics["subset_std"] == pytest.approx(0.0, abs=1e-8)
    assert estimate.stderr is None  # the spread of overlapping subsets is not a standard error


def test_kid_is_near_zero_for_one_distribution_and_large_for_two():
    """Property: KID is unbiased, ~0 within its spread for equal laws; far from 0 for a shift."""
    rng = np.random.RandomState(1)
    real = torch.from_numpy(rng.randn(600, 8))
    same = torch.from_numpy(rng.randn(600, 8))
    shifted = torch.from_numpy(rng.randn(600, 8) + 1.0)
    null = kernel_distance(real, same, subsets=20, subset_size=300, seed=0)
    different = kernel_distance(real, shifted, subsets=20, subset_size=300, seed=0)
    spread = null.diagnostics["subset_std"]
    assert abs(null.value) < 3 * spread
    assert different.value > 10 * different.diagnostics["subset_std"]
    assert different.value > 20 * abs(null.value)


def test_kid_is_seeded_and_records_its_parameters():
    """Contract: the seed fixes the subsets; params record the kernel and the subset sizes."""
    rng = np.random.RandomState(2)
    real, fake = torch.from_numpy(rng.randn(200, 4)), torch.from_numpy(rng.randn(150, 4) + 0.2)
    a = kernel_distance(real, fake, subsets=5, subset_size=100, seed=1)
    b = kernel_distance(real, fake, subsets=5, subset_size=100, seed=1)
    c = kernel_distance(real, fake, subsets=5, subset_size=100, seed=2)
    assert a == b and a.value != c.value
    assert a.params["gamma"] == 0.25 and a.params["subset_size"] == 100 and a.n == 5
    assert "not a standard error" in a.params["spread"]


def test_kid_rejects_a_subset_larger_than_a_set():
    """Contract: a subset cannot hold more rows than the smaller feature set."""
    with pytest.raises(ValueError, match="at least 100 rows"):
        kernel_distance(torch.randn(200, 3), torch.randn(50, 3), subset_size=100)
