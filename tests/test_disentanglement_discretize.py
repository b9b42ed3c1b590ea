"""Tests of the histogram discretizer and the plug-in information quantities."""

import math

import numpy as np
import pytest
from scipy.stats import entropy
from sklearn.metrics import mutual_info_score

from metrics.disentanglement import (
    discrete_entropy,
    discrete_mutual_information,
    histogram_discretize,
)


def test_histogram_discretize_equal_width_bins():
    """Closed-form reference: labels are floor((z - min) / width) + 1, the maximum in bin 20."""
    z = np.random.RandomState(0).uniform(-2.0, 3.0, size=(500, 3))
    labels = histogram_discretize(z, num_bins=20)
    low, high = z.min(axis=0), z.max(axis=0)
    expected = np.minimum(np.floor((z - low) / (high - low) * 20), 19).astype(int) + 1
    # NOTE: points within rounding of an edge may fall either side; nothing else may differ.
    near_edge = np.abs((z - low) / (high - low) * 20 - np.round((z - low) / (high - low) * 20))
    mismatch = (labels != expected) & (near_edge > 1e-9)
    assert not mismatch.any()
    assert labels.min() == 1 and labels.max() == 20
    assert (labels[z.argmax(axis=0), range(3)] == 20).all()


def test_histogram_discretize_constant_code_is_one_bin():
    """Property: a constant code falls wholly into one bin instead of failing."""
    labels = histogram_discretize(np.full((50, 2), 0.7), num_bins=20)
    assert len(np.unique(labels)) == 1


def test_discrete_mutual_information_matches_entropy_identity():
    """Scipy reference: I(z; y) = H(z) + H(y) - H(z, y) from scipy.stats.entropy, layout (D, K)."""
    rng = np.random.RandomState(1)
    factors = rng.randint(4, size=(2000, 3))
    labels = np.stack(
        [factors[:, 0], (factors[:, 1] + rng.randint(2, size=2000)) % 4, rng.randint(5, size=2000)],
        axis=1,
    )  # (N, D): a copy of factor 0, a noisy factor 1, and noise

    def h(*columns):
        _, counts = np.unique(np.stack(columns, axis=1), axis=0, return_counts=True)
        return entropy(counts)

    mi = discrete_mutual_information(labels, factors)
    assert mi.shape == (3, 3)
    for i in range(3):
        for j in range(3):
            reference = h(labels[:, i]) + h(factors[:, j]) - h(labels[:, i], factors[:, j])
            assert mi[i, j] == pytest.approx(reference, abs=1e-12)
            assert mi[i, j] == pytest.approx(mutual_info_score(factors[:, j], labels[:, i]))
    assert mi[0, 0] == pytest.approx(h(factors[:, 0]))  # a copy carries all of H(y)
    assert mi[2].max() < 0.01  # noise carries almost nothing


def test_discrete_entropy_is_log_of_uniform_size():
    """Closed-form reference: a balanced factor with k classes has entropy log k nats."""
    factors = np.stack([np.arange(600) % 3, np.arange(600) % 6, np.arange(600) % 10], axis=1)
    np.testing.assert_allclose(discrete_entropy(factors), np.log([3, 6, 10]), rtol=1e-12)
    assert discrete_entropy(factors[:, :1])[0] == pytest.approx(math.log(3))
