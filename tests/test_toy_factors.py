"""Tests of the toy ground-truth dataset: factor layout, exact glyph geometry, registry splits."""

import numpy as np
import pytest

from benchmark.datasets import create_dataset
from benchmark.datasets.ground_truth import FactorDataset, sample_split_indices
from benchmark.datasets.toy_factors import ToyFactors, render_glyphs
from metrics.disentanglement.ground_truth import GroundTruthData, check_ground_truth


@pytest.fixture(scope="module")
def toy():
    return ToyFactors()


def test_factor_layout_and_index_round_trip(toy):
    """Reference (numpy): sizes, bases and index <-> factors agree with np.ravel_multi_index."""
    assert toy.factor_names == ("shape", "size", "posX", "posY")
    assert toy.factor_sizes == (3, 3, 10, 10) and toy.num_combinations == 900
    assert toy.factor_bases.tolist() == [300, 100, 10, 1]
    index = np.arange(900)
    factors = toy.index_to_factors(index)
    np.testing.assert_array_equal(factors, np.stack(np.unravel_index(index, (3, 3, 10, 10)), 1))
    np.testing.assert_array_equal(toy.factors_to_index(factors), index)


def test_glyph_geometry_is_exact(toy):
    """Closed form: square (2h+1)^2 px, frame 8h px, plus 4h+1 px, centred on pixel 3 + pos."""
    factors = toy.index_to_factors(np.arange(900))
    images = render_glyphs(factors).astype(np.int64)  # (900, 16, 16)
    half = 1 + factors[:, 1]
    expected_area = np.select(
        [factors[:, 0] == 0, factors[:, 0] == 1], [(2 * half + 1) ** 2, 8 * half], 4 * half + 1
    )
    np.testing.assert_array_equal(images.sum((1, 2)), expected_area)
    rows, cols = np.arange(16)[None, :], np.arange(16)[None, :]
    mass = images.sum((1, 2))
    np.testing.assert_allclose((images.sum(1) * cols).sum(1) / mass, 3 + factors[:, 2])
    np.testing.assert_allclose((images.sum(2) * rows).sum(1) / mass, 3 + factors[:, 3])
    assert len(np.unique(images.reshape(900, -1), axis=0)) == 900  # every combination differs


def test_observations_follow_the_protocol(toy):
    """Contract: float32 (N, 1, 16, 16) binary observations; the metrics' Protocol accepts it."""
    rng = np.random.RandomState(0)
    factors, x = toy.sample(64, rng)
    assert x.shape == (64, 1, 16, 16) and x.dtype == np.float32
    assert set(np.unique(x)) <= {0.0, 1.0}
    np.testing.assert_array_equal(x[:, 0], render_glyphs(factors))
    assert isinstance(toy, GroundTruthData)
    check_ground_truth(toy)


def test_split_indices_are_disjoint_seeded_and_bounded():
    """Property: splits never share an image, repeat with the seed, and cannot exceed the space."""
    a = sample_split_indices(900, {"train": 600, "valid": 100, "test": 200}, seed=4)
    b = sample_split_indices(900, {"train": 600, "valid": 100, "test": 200}, seed=4)
    assert all(np.array_equal(a[s], b[s]) for s in a)
    assert len(np.unique(np.concatenate(list(a.values())))) == 900
    with pytest.raises(ValueError, match="at most 900 distinct images"):
        sample_split_indices(900, {"train": 800, "valid": 100, "test": 1}, seed=0)


def test_registered_dataset(toy):
    """Contract: `toy_factors` builds a FactorDataset whose labels index its images."""
    data = create_dataset("toy_factors", num_train=100, num_valid=20, num_test=30, seed=2)
    assert isinstance(data, FactorDataset) and data.data_shape == (1, 16, 16)
    assert isinstance(data.ground_truth, ToyFactors)
    factors = toy.index_to_factors(data.labels["train"].numpy())
    np.testing.assert_array_equal(data.splits["train"].numpy()[:, 0], render_glyphs(factors))
    assert data.checksum != create_dataset("toy_factors", seed=3).checksum
