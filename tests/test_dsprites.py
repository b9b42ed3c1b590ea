"""Tests of the procedural dSprites: factor layout, index order, sprite geometry, cache and npz."""

import itertools
import math

import numpy as np
import pytest

from benchmark.datasets import create_dataset
from benchmark.datasets import dsprites as ds
from benchmark.datasets.ground_truth import FactorDataset
from metrics.disentanglement.ground_truth import GroundTruthData, check_ground_truth

SQUARE, ELLIPSE, HEART = 0, 1, 2


@pytest.fixture(scope="module")
def grid():
    return ds.DSprites()


def render_one(shape: int, scale: int, orientation: int, pos_x: int, pos_y: int) -> np.ndarray:
    image = ds.render_sprites(np.array([[shape, scale, orientation, pos_x, pos_y]]))[0]
    return image.astype(np.int64)  # (64, 64); int64 so that area differences may go negative


def bounding_box(image: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
    return rows.min(), rows.max(), cols.min(), cols.max()


def test_factor_names_sizes_and_bases(grid):
    """Contract: dsprites_full factors, sizes and the documented mixed-radix bases."""
    assert grid.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert grid.factor_sizes == (3, 6, 40, 32, 32)
    assert grid.num_combinations == 737_280
    # The documented bases are [737280, 245760, 40960, 1024, 32, 1] with colour first.
    assert grid.factor_bases.tolist() == [245_760, 40_960, 1024, 32, 1]
    assert grid.observation_shape == (1, 64, 64)


def test_index_order_matches_numpy_ravel(grid):
    """Reference (numpy): index <-> factors agrees with np.ravel/unravel_index, posY fastest."""
    assert grid.index_to_factors(np.array([0, 1, 32, 1024])).tolist() == [
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 1, 0],
        [0, 0, 1, 0, 0],
    ]
    index = np.random.RandomState(0).randint(737_280, size=500)
    factors = grid.index_to_factors(index)
    np.testing.assert_array_equal(factors, np.stack(np.unravel_index(index, grid.factor_sizes), 1))
    np.testing.assert_array_equal(grid.factors_to_index(factors), index)
    last = np.array([737_279])
    assert grid.index_to_factors(last).tolist() == [[2, 5, 39, 31, 31]]


def test_sample_factors_follows_disentanglement_lib_call_sequence(grid):
    """Reference: one RandomState.randint(size, size=n) per factor, in factor order."""
    factors = grid.sample_factors(100, np.random.RandomState(3))
    rng = np.random.RandomState(3)
    expected = np.stack([rng.randint(size, size=100) for size in (3, 6, 40, 32, 32)], axis=1)
    np.testing.assert_array_equal(factors, expected)
    assert factors.dtype == np.int64 and factors.shape == (100, 5)


def test_invalid_inputs_are_rejected(grid):
    """Contract: out-of-range or fractional factors and a non-RandomState rng raise clearly."""
    rng = np.random.RandomState(0)
    with pytest.raises(ValueError, match="Expected factor classes"):
        grid.sample_observations_from_factors(np.array([[0, 6, 0, 0, 0]]), rng)
    with pytest.raises(TypeError, match="integer classes"):
        grid.sample_observations_from_factors(np.zeros((1, 5)), rng)
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        grid.factors_to_index(np.zeros((2, 6), dtype=int))
    with pytest.raises(TypeError, match="RandomState"):
        grid.sample_factors(3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="lie in"):
        grid.index_to_factors(np.array([737_280]))


def test_observations_are_binary_float32_images(grid):
    """Contract: (N, 1, 64, 64) float32 in {0, 1}, every sprite visible, rng untouched."""
    rng = np.random.RandomState(0)
    factors = grid.sample_factors(200, rng)
    state = rng.get_state()[1].copy()
    x = grid.sample_observations_from_factors(factors, rng)
    assert x.shape == (200, 1, 64, 64) and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0} and (x.sum((1, 2, 3)) >= 40).all()
    np.testing.assert_array_equal(rng.get_state()[1], state)  # deterministic: no draws


def test_square_side_and_centre_follow_the_measured_geometry():
    """Closed form: square side 20 * scale px; centre 16 + 32 * pos / 31 px, x = column."""
    for scale in range(6):
        image = render_one(SQUARE, scale, 0, 0, 0)
        side = 10 + 2 * scale
        top, bottom, left, right = bounding_box(image)
        assert (bottom - top + 1, right - left + 1, image.sum()) == (side, side, side**2)
    assert bounding_box(render_one(SQUARE, 5, 0, 0, 0)) == (6, 25, 6, 25)  # the notes' pixels 6-25
    for pos in range(32):
        top, bottom, left, right = bounding_box(render_one(SQUARE, 2, 0, pos, 31 - pos))
        assert abs((left + right) / 2 + 0.5 - (16 + 32 * pos / 31)) <= 0.5
        assert abs((top + bottom) / 2 + 0.5 - (16 + 32 * (31 - pos) / 31)) <= 0.5


def test_ellipse_and_heart_extents_and_areas_match_the_notes():
    """Reference values (dsprites.md Sec. 5): ellipse 26 x 14 px, ~288 px; heart 20 x 17, ~222."""
    top, bottom, left, right = bounding_box(ellipse := render_one(ELLIPSE, 5, 0, 10, 10))
    assert abs(right - left + 1 - 26) <= 1 and abs(bottom - top + 1 - 14) <= 1
    assert abs(ellipse.sum() - 288) <= 0.05 * 288
    top, bottom, left, right = bounding_box(heart := render_one(HEART, 5, 0, 10, 10))
    assert abs(right - left + 1 - 20) <= 1 and abs(bottom - top + 1 - 17) <= 1
    assert abs(heart.sum() - 222) <= 0.1 * 222
    small = render_one(HEART, 0, 0, 10, 10)
    top, bottom, left, right = bounding_box(small)
    assert abs(right - left + 1 - 10) <= 1 and abs(bottom - top + 1 - 9) <= 1


def test_areas_grow_with_scale():
    """Property: every shape's area increases strictly with the scale class."""
    for shape in (SQUARE, ELLIPSE, HEART):
        areas = [render_one(shape, scale, 7, 12, 20).sum() for scale in range(6)]
        assert all(a < b for a, b in itertools.pairwise(areas)), (shape, areas)


def test_heart_is_upright_with_its_point_down():
    """Property: at orientation 0 the lobes (more mass) are on top and the point at the bottom."""
    heart = render_one(HEART, 5, 0, 16, 16)
    top, bottom, _, _ = bounding_box(heart)
    middle = (top + bottom + 1) // 2
    assert heart[top:middle].sum() > 1.5 * heart[middle : bottom + 1].sum()
    assert heart[bottom].sum() < heart[top + 2].sum()


def test_rotation_is_counter_clockwise_on_screen():
    """Closed form: the ellipse's major axis turns to 2 pi k / 39, counter-clockwise on screen."""
    for k in (1, 3, 6, 9):
        image = render_one(ELLIPSE, 5, k, 16, 16)
        rows, cols = np.nonzero(image)
        # Screen y points down, so the maths angle uses -row.
        covariance = np.cov(np.stack([cols, -rows]))
        major = np.linalg.eigh(covariance)[1][:, -1]
        angle = math.atan2(major[1], major[0]) % math.pi
        assert abs(angle - 2 * math.pi * k / 39) < math.radians(3), k
    # A quarter turn moves the heart's point from the bottom to the right: lobes on the left.
    heart = render_one(HEART, 5, 10, 16, 16)
    _, _, left, right = bounding_box(heart)
    assert np.nonzero(heart)[1].mean() < (left + right) / 2


def test_orientations_0_and_39_coincide():
    """Property: classes 0 and 39 are both 0 = 2 pi rad, so they render bit-identically."""
    factors = np.array(
        [
            [s, c, 0, x, y]
            for s in range(3)
            for c in range(6)
            for x, y in [(0, 0), (13, 27), (31, 31)]
        ]
    )
    last = factors.copy()
    last[:, 2] = 39
    np.testing.assert_array_equal(ds.render_sprites(factors), ds.render_sprites(last))
    turned = factors.copy()
    turned[:, 2] = 1
    changed = (ds.render_sprites(turned) != ds.render_sprites(factors)).any((1, 2))
    assert changed[factors[:, 0] != SQUARE].all()  # the test can fail: one step is visible


def test_batch_rendering_equals_one_by_one(grid):
    """Property: an image does not depend on the batch it is rendered in (cache == on demand)."""
    factors = grid.sample_factors(40, np.random.RandomState(1))
    batch = ds.render_sprites(factors)
    singles = np.stack([ds.render_sprites(f[None])[0] for f in factors])
    np.testing.assert_array_equal(batch, singles)


def test_packed_cache_rows_equal_on_demand_render(tmp_path, grid):
    """Property: the bit-packed cache holds exactly the on-demand images, in index order."""
    path = tmp_path / "cache.npy"
    ds.write_packed_cache(path, num_images=2500, chunk=1024)
    packed = np.load(path, mmap_mode="r")
    images = np.unpackbits(packed, axis=1).reshape(-1, 64, 64)
    np.testing.assert_array_equal(images, ds.render_sprites(grid.index_to_factors(np.arange(2500))))
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left behind
    with pytest.raises(ValueError, match="packed_images"):
        ds.DSprites.from_cache(path)  # a partial cache is refused


def test_packed_source_is_indexed_by_factors(grid):
    """Property: a DSprites backed by packed images serves each factor row its own image."""
    rng = np.random.RandomState(2)
    factors = grid.sample_factors(30, rng)
    rendered = grid.sample_observations_from_factors(factors, rng)
    packed = np.zeros((737_280, 512), dtype=np.uint8)  # lazily zeroed: only rows written cost
    packed[grid.factors_to_index(factors)] = np.packbits(rendered.reshape(30, -1) > 0, axis=1)
    loaded = ds.DSprites(packed, source="test")
    np.testing.assert_array_equal(loaded.sample_observations_from_factors(factors, rng), rendered)


def write_fake_npz(path, num: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    imgs = (rng.rand(num, 64, 64) > 0.7).astype(np.uint8)
    classes = np.concatenate(
        [np.zeros((num, 1), int), ds.DSprites().index_to_factors(np.arange(num))], axis=1
    )
    metadata = {"latents_sizes": np.array([1, 3, 6, 40, 32, 32]), "version": 1}
    np.savez_compressed(
        path,
        imgs=imgs,
        latents_classes=classes,
        latents_values=classes.astype(float),
        metadata=metadata,
    )
    return imgs, classes


def test_npz_reader_streams_the_official_keys(tmp_path):
    """Contract: a (tiny, fake) official npz is read into packed bits and its class table."""
    path = tmp_path / ds.NPZ_NAME
    imgs, classes = write_fake_npz(path)
    packed, read_classes = ds.read_npz_packed(path, chunk=16)
    np.testing.assert_array_equal(np.unpackbits(packed, axis=1).reshape(-1, 64, 64), imgs)
    np.testing.assert_array_equal(read_classes, classes)
    with pytest.raises(ValueError, match="737280 images"):
        ds.DSprites.from_npz(path)


def test_official_file_in_data_root_is_preferred(tmp_path):
    """Contract: `auto` loads the npz when present; `procedural` ignores it; `official` needs it."""
    write_fake_npz(tmp_path / ds.NPZ_NAME)
    with pytest.raises(ValueError, match="737280 images"):  # found and loaded (then refused)
        ds.load_dsprites(tmp_path, "auto", cache=False)
    assert ds.load_dsprites(tmp_path, "procedural", cache=False).packed_images is None
    with pytest.raises(ValueError, match="Expected the official"):
        ds.load_dsprites(tmp_path / "empty", "official", cache=False)


def test_registered_dataset_has_disjoint_seeded_splits_and_ground_truth():
    """Contract: `dsprites` is a FactorDataset whose labels index the rendered split images."""
    settings = dict(num_train=48, num_valid=8, num_test=16, renderer="procedural")
    data = create_dataset("dsprites", **settings)
    assert isinstance(data, FactorDataset) and data.preprocessing == "threshold"
    assert isinstance(data.ground_truth, GroundTruthData)
    check_ground_truth(data.ground_truth)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 48, "valid": 8, "test": 16}
    labels = np.concatenate([data.labels[s].numpy() for s in ("train", "valid", "test")])
    assert len(np.unique(labels)) == len(labels)
    truth = data.ground_truth.sample_observations_from_factors(
        data.ground_truth.index_to_factors(data.labels["test"].numpy()), np.random.RandomState(0)
    )
    np.testing.assert_array_equal(data.splits["test"].numpy(), truth)
    assert create_dataset("dsprites", **settings).checksum == data.checksum
    assert create_dataset("dsprites", seed=1, **settings).checksum != data.checksum
    assert "re-render" in data.source
