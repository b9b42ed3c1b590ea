"""Contract and property tests of the PNG grids of samples, reconstructions and traversals."""

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.images import (
    latent_traversal_grid,
    prior_samples,
    prior_samples_grid,
    reconstructions_grid,
    save_run_images,
    tile_images,
)
from registry import create_model
from registry.trunks import Architecture


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(
        "vae", data_shape=(1, 8, 8), latent_dim=3, architecture=Architecture(hidden=(16,))
    )


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_tile_images_places_each_image_on_a_white_background():
    """Contract: image i sits at row i // nrow, column i % nrow, with 1-pixel white padding."""
    images = torch.stack([torch.full((1, 2, 3), v) for v in (0.0, 0.5, 1.0)])  # (3, 1, 2, 3)
    grid = tile_images(images, nrow=2, padding=1)
    assert grid.shape == (2 * 3 + 1, 2 * 4 + 1) and grid.dtype == np.uint8
    assert (grid[1:3, 1:4] == 0).all() and (grid[1:3, 5:8] == 128).all()
    assert (grid[4:6, 1:4] == 255).all()
    assert (grid[0] == 255).all() and (grid[4:6, 5:8] == 255).all()  # padding, empty slot
    rgb = tile_images(torch.rand(4, 3, 5, 5), nrow=4, upscale=2)
    assert rgb.shape == (2 * (5 + 2), 2 * (4 * 6 + 1), 3)


def test_tile_images_upscales_by_pixel_repetition():
    """Contract: upscale k repeats every pixel into a k×k block."""
    image = torch.tensor([[[[0.0, 1.0]]]])  # (1, 1, 1, 2)
    grid = tile_images(image, nrow=1, padding=0, upscale=3)
    assert grid.shape == (3, 6)
    assert (grid[:, :3] == 0).all() and (grid[:, 3:] == 255).all()


def test_prior_samples_grid_has_the_expected_pixel_size(model, tmp_path):
    """Contract: 10 samples in a 4-wide grid of 8×8 images, upscaled 2×, as a PNG."""
    path = prior_samples_grid(model, tmp_path / "samples.png", n=10, seed=0, upscale=2)
    assert path.exists() and Image.open(path).format == "PNG"
    assert png(path).shape == (2 * (3 * 9 + 1), 2 * (4 * 9 + 1))


def test_prior_samples_grid_is_seeded(model, tmp_path):
    """Contract: the same seed writes identical pixels; another seed does not."""
    a = png(prior_samples_grid(model, tmp_path / "a.png", n=4, seed=1))
    b = png(prior_samples_grid(model, tmp_path / "b.png", n=4, seed=1))
    c = png(prior_samples_grid(model, tmp_path / "c.png", n=4, seed=2))
    assert (a == b).all() and (a != c).any()


def test_reconstructions_grid_pairs_inputs_with_reconstructions(model, tmp_path):
    """Contract: a row of inputs, then a row of their reconstructions, per group of nrow."""
    x = torch.rand(5, 1, 8, 8)
    path = reconstructions_grid(model, x, tmp_path / "rec.png", nrow=4, upscale=1)
    grid = png(path)
    assert grid.shape == (4 * 9 + 1, 4 * 9 + 1)
    expected_input = (x[1, 0] * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(grid[1:9, 10:18], expected_input)
    reconstruction = model.decode(model.encode(x).mean).mean.detach()
    expected_rec = (reconstruction[1, 0] * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(grid[10:18, 10:18], expected_rec)


def test_latent_traversal_grid_sets_one_latent_per_row(model, tmp_path):
    """Contract: row d, column j decodes the posterior mean with latent d set to values[j]."""
    x = torch.rand(1, 1, 8, 8)
    values = (-2.0, 0.0, 2.0)
    path = latent_traversal_grid(
        model, x, tmp_path / "trav.png", dims=[0, 2], values=values, upscale=1
    )
    grid = png(path)
    assert grid.shape == (2 * 9 + 1, 3 * 9 + 1)
    z = model.encode(x).mean.detach().clone()
    z[0, 2] = 2.0
    expected = (model.decode(z).mean.detach()[0, 0] * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(grid[10:18, 19:27], expected)


def test_temperature_shrinks_samples_towards_the_prior_mean(model):
    """Property: at temperature -> 0 every sample decodes the prior mean z = 0."""
    torch.manual_seed(0)
    cold = prior_samples(model, 3, temperature=1e-6)
    at_mean = model.decode(torch.zeros(1, 3)).mean.detach()
    torch.testing.assert_close(cold, at_mean.expand(3, -1, -1, -1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="temperature"):
        prior_samples(model, 3, temperature=0.0)


def test_save_run_images_writes_three_linked_pngs(model, tmp_path):
    """Contract: the per-run folder holds samples, reconstructions and traversals PNGs."""
    paths = save_run_images(model, torch.rand(20, 1, 8, 8), tmp_path / "run", seed=0)
    assert sorted(paths) == ["reconstructions", "samples", "traversals"]
    assert all(p.exists() and p.parent == tmp_path / "run" for p in paths.values())
    assert png(paths["traversals"]).shape == (2 * (3 * 9 + 1), 2 * (7 * 9 + 1))


def test_vector_data_is_rejected(tmp_path):
    """Contract: grids need image data (C, H, W)."""
    vector_model = create_model(
        "vae", data_shape=(16,), latent_dim=2, architecture=Architecture(hidden=(8,))
    )
    with pytest.raises(ValueError, match="image data"):
        prior_samples_grid(vector_model, tmp_path / "x.png")
