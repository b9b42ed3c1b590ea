"""Closed-form and contract tests of FID computed through torchmetrics on injected features."""

import numpy as np
import pytest
import torch
from scipy import linalg

from metrics.fid import (
    PrecomputedFeatures,
    extract_features,
    frechet_distance,
    torchmetrics_frechet_distance,
)


def gaussian_features(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> torch.Tensor:
    rng = np.random.RandomState(seed)
    return torch.from_numpy(rng.multivariate_normal(mean, cov, size=n))  # (n, F) float64


def closed_form_frechet(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)) with scipy's matrix square root."""
    root = linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root))


def random_covariance(dim: int, seed: int) -> np.ndarray:
    a = np.random.RandomState(seed).randn(dim, dim)
    return a @ a.T / dim + 0.1 * np.eye(dim)


def test_fid_matches_scipy_sqrtm_on_gaussian_features():
    """Closed-form reference: FID of sample moments equals the scipy.linalg.sqrtm formula."""
    dim = 6
    real = gaussian_features(3000, np.zeros(dim), random_covariance(dim, 1), seed=2)
    fake = gaussian_features(2500, np.linspace(-1, 1, dim), random_covariance(dim, 3), seed=4)
    r, f = real.numpy(), fake.numpy()
    expected = closed_form_frechet(
        r.mean(0), np.cov(r, rowvar=False), f.mean(0), np.cov(f, rowvar=False)
    )
    assert torchmetrics_frechet_distance(real, fake) == pytest.approx(expected, rel=1e-4)
    estimate = frechet_distance(real, fake, num_bootstrap=5, seed=0)
    assert estimate.value == pytest.approx(expected, rel=1e-4)
    assert estimate.value > 1.0  # the sets differ, so a vacuous match at 0 is excluded


def test_fid_is_within_bootstrap_error_of_the_population_distance():
    """Closed-form reference: with many samples, FID is close to the population Fréchet distance."""
    dim = 4
    mu1, mu2 = np.zeros(dim), np.full(dim, 0.5)
    s1, s2 = random_covariance(dim, 5), random_covariance(dim, 6)
    real = gaussian_features(20000, mu1, s1, seed=7)
    fake = gaussian_features(20000, mu2, s2, seed=8)
    estimate = frechet_distance(real, fake, num_bootstrap=20, seed=0)
    population = closed_form_frechet(mu1, s1, mu2, s2)
    assert estimate.stderr is not None and 0 < estimate.stderr < 0.1 * population
    assert abs(estimate.value - population) < 4 * estimate.stderr


def test_fid_of_a_set_with_itself_is_zero_and_shift_adds_squared_norm():
    """Closed-form reference: FID(X, X) = 0 and FID(X, X + c) = ||c||^2."""
    features = gaussian_features(500, np.zeros(5), random_covariance(5, 9), seed=10)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    assert abs(torchmetrics_frechet_distance(features, features)) < 1e-8
    shifted = torchmetrics_frechet_distance(features, features + shift)
    assert shifted == pytest.approx(shift.square().sum().item(), rel=1e-6)


def test_frechet_distance_records_its_parameters_and_is_seeded():
    """Contract: the estimate names sample counts and bootstrap settings; the seed fixes it."""
    real = gaussian_features(300, np.zeros(3), np.eye(3), seed=0)
    fake = gaussian_features(200, np.ones(3), np.eye(3), seed=1)
    a = frechet_distance(real, fake, num_bootstrap=4, seed=3)
    b = frechet_distance(real, fake, num_bootstrap=4, seed=3)
    c = frechet_distance(real, fake, num_bootstrap=4, seed=4)
    assert a == b and a.stderr != c.stderr and a.value == c.value
    assert a.params["num_real"] == 300 and a.params["num_generated"] == 200
    assert a.params["num_bootstrap"] == 4 and a.higher_is_better is False


def test_extract_features_is_batched_float64_and_restores_the_mode():
    """Contract: features do not depend on the batch size; the network's mode is restored."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3), torch.nn.Dropout(0.5))
    images = torch.rand(10, 1, 4, 4)
    a = extract_features(network, images, batch_size=3)
    b = extract_features(network, images, batch_size=10)
    assert a.shape == (10, 3) and a.dtype == torch.float64
    torch.testing.assert_close(a, b)
    assert network.training
    assert PrecomputedFeatures(3)(a) is a


@pytest.mark.parametrize(
    ("real_shape", "fake_shape"), [((10, 3), (10, 4)), ((1, 3), (10, 3)), ((10,), (10, 3))]
)
def test_frechet_distance_rejects_bad_feature_shapes(real_shape, fake_shape):
    """Contract: mismatched widths, single rows and non-matrices raise ValueError."""
    with pytest.raises(ValueError, match="Expected"):
        frechet_distance(torch.zeros(real_shape), torch.zeros(fake_shape))


def test_frechet_distance_rejects_too_few_bootstrap_replicates():
    """Contract: a stderr needs at least two bootstrap replicates."""
    features = torch.randn(20, 2)
    with pytest.raises(ValueError, match="num_bootstrap"):
        frechet_distance(features, features, num_bootstrap=1)
