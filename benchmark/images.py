"""Images a model produces (prior samples, reconstructions, latent traversals) and their PNG grids.

Grids are tiled with numpy and written with Pillow (a dependency of matplotlib), so torchvision is
not needed. Shown images are decoder means, clipped to [0, 1]: for a Bernoulli decoder the mean is
the pixel probability, the usual way VAE papers display samples.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.distributions import Independent, Normal

from metrics.batching import row_blocks
from registry.base import LatentVariableModel

DecoderOutput = Literal["mean", "sample"]  # E[x|z], or x ~ p(x|z)


def check_image_shape(data_shape: tuple[int, ...]) -> None:
    """Raise unless `data_shape` is (C, H, W) with 1 or 3 channels."""
    if len(data_shape) != 3 or data_shape[0] not in (1, 3):
        raise ValueError(
            f"Expected image data of shape (1 or 3, H, W), but got {tuple(data_shape)}; "
            f"image grids and sample-quality metrics need image datasets."
        )


def tile_images(images: Tensor, *, nrow: int, padding: int = 1, upscale: int = 1) -> np.ndarray:
    """Tile images into one uint8 array, ``nrow`` images per row, on a white background.

    Args:
        images: ``(N, C, H, W)`` with C in {1, 3}, values clipped to [0, 1].
        nrow: Images per grid row.
        padding: Background pixels between and around images (before upscaling).
        upscale: Integer nearest-neighbour magnification, so 8×8 digits stay visible.

    Returns:
        ``(rows * (H + p) + p, nrow * (W + p) + p)`` for grey images, with a trailing 3 for RGB;
        both sizes are then multiplied by `upscale`.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3) or nrow < 1 or upscale < 1:
        raise ValueError(
            f"Expected `images` (N, 1 or 3, H, W) and `nrow`, `upscale` >= 1, but got "
            f"{tuple(images.shape)}, {nrow}, {upscale}."
        )
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    grid = np.full(
        (c, rows * (h + padding) + padding, nrow * (w + padding) + padding), 255, np.uint8
    )
    for i, image in enumerate(pixels):
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        grid[:, top : top + h, left : left + w] = image
    grid = grid.repeat(upscale, axis=1).repeat(upscale, axis=2)
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)  # (H', W') or (H', W', 3)


def save_grid(images: Tensor, path: str | Path, *, nrow: int, upscale: int = 1) -> Path:
    """Write `images` as one PNG grid (see `tile_images`) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tile_images(images, nrow=nrow, upscale=upscale)).save(path, format="PNG")
    return path


def _scaled_prior_sample(
    model: LatentVariableModel, num_samples: int, temperature: float
) -> Tensor:
    """Draw z ~ p(z) with the prior's spread scaled by `temperature` around its mean."""
    prior = model.prior()
    z = model.sample_prior(num_samples)  # (N, D)
    if temperature == 1.0:
        return z
    base = prior.base_dist if isinstance(prior, Independent) else prior
    if not isinstance(base, Normal):
        raise ValueError(
            f"Expected a Gaussian prior for `temperature` != 1, but the model's prior "
            f"is {type(prior).__name__}; use temperature 1."
        )
    return prior.mean + temperature * (z - prior.mean)


@torch.no_grad()
def prior_samples(
    model: LatentVariableModel,
    num_samples: int,
    *,
    temperature: float = 1.0,
    decoder_output: DecoderOutput = "mean",
    batch_size: int = 500,
) -> Tensor:
    """Return images decoded from z ~ p(z) (with the prior's std scaled by `temperature`).

    Args:
        model: Any registered model; draws use the global generator (seed it around the call).
        num_samples: Number of images N.
        temperature: Multiplies the Gaussian prior's standard deviation; 1 is the model's prior.
        decoder_output: ``mean`` for E[x|z] or ``sample`` for x ~ p(x|z).
        batch_size: Latents decoded per pass.

    Returns:
        ``(N, *data_shape)``.
    """
    if temperature <= 0 or decoder_output not in ("mean", "sample"):
        raise ValueError(
            f"Expected `temperature` > 0 and `decoder_output` in ('mean', 'sample'), "
            f"but got {temperature} and {decoder_output!r}."
        )
    model.eval()
    images = []
    for rows in row_blocks(num_samples, batch_size):
        block = model.select(rows)  # a label-conditional model: the labels of these samples
        z = _scaled_prior_sample(block, rows.stop - rows.start, temperature)
        p_x_given_z = block.decode(z)
        images.append(p_x_given_z.mean if decoder_output == "mean" else p_x_given_z.sample())
    return torch.cat(images)


def prior_samples_grid(
    model: LatentVariableModel,
    path: str | Path,
    n: int = 64,
    seed: int = 0,
    *,
    temperature: float = 1.0,
    upscale: int = 2,
) -> Path:
    """Save a square-ish grid of `n` decoder means for z ~ p(z), drawn under `seed`."""
    check_image_shape(model.data_shape)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        images = prior_samples(model, n, temperature=temperature)
    return save_grid(images, path, nrow=int(np.ceil(np.sqrt(n))), upscale=upscale)


@torch.no_grad()
def reconstructions_grid(
    model: LatentVariableModel, x: Tensor, path: str | Path, *, nrow: int = 8, upscale: int = 2
) -> Path:
    """Save inputs and their reconstructions E[x|z = E_q[z|x]]: a row of inputs, then theirs.

    Args:
        model: Any registered model with image data.
        x: Inputs ``(B, *data_shape)``; rows of `nrow` inputs alternate with reconstructions.
        path: PNG to write.
    """
    check_image_shape(model.data_shape)
    model.eval()
    reconstructions = model.decode(model.encode(x).mean).mean  # (B, C, H, W)
    pad = -len(x) % nrow  # blank tiles so every input row has a full row of partners
    blank = torch.ones(pad, *x.shape[1:])
    originals = torch.cat([x.cpu(), blank]).unflatten(0, (-1, nrow))  # (R, nrow, C, H, W)
    recons = torch.cat([reconstructions.cpu(), blank]).unflatten(0, (-1, nrow))
    pairs = torch.stack([originals, recons], dim=1).flatten(0, 2)  # (2 * R * nrow, C, H, W)
    return save_grid(pairs, path, nrow=nrow, upscale=upscale)


@torch.no_grad()
def latent_traversal_grid(
    model: LatentVariableModel,
    x: Tensor,
    path: str | Path,
    dims: Sequence[int] | None = None,
    values: Sequence[float] = (-3, -2, -1, 0, 1, 2, 3),
    *,
    upscale: int = 2,
) -> Path:
    """Save latent traversals: each row sets one latent of E_q[z|x] to each of `values`.

    Rows are (example, dim) pairs, examples outermost; columns follow `values`.

    Args:
        model: Any registered model with image data.
        x: Inputs ``(B, *data_shape)`` whose posterior means are the starting codes.
        path: PNG to write.
        dims: Latent dimensions to traverse; default the first min(D, 10).
        values: Values assigned to the traversed latent.
    """
    check_image_shape(model.data_shape)
    dims = list(range(min(model.latent_dim, 10))) if dims is None else list(dims)
    if not dims or not all(0 <= d < model.latent_dim for d in dims) or not values:
        raise ValueError(
            f"Expected `dims` in [0, {model.latent_dim}) and non-empty `values`, "
            f"but got {dims} and {list(values)}."
        )
    model.eval()
    z = model.encode(x).mean  # (B, D)
    codes = z[:, None, None, :].repeat(1, len(dims), len(values), 1)  # (B, dims, values, D)
    for row, d in enumerate(dims):
        codes[:, row, :, d] = torch.as_tensor(values, dtype=z.dtype)
    images = model.decode(codes.flatten(0, 2)).mean  # (B * dims * values, C, H, W)
    return save_grid(images, path, nrow=len(values), upscale=upscale)


def save_run_images(
    model: LatentVariableModel, x: Tensor, directory: str | Path, *, seed: int
) -> dict[str, Path]:
    """Save the three per-run grids (prior samples, reconstructions, traversals) into `directory`.

    Args:
        model: A trained model with image data.
        x: A few evaluation inputs ``(B, *data_shape)``: 16 are reconstructed, the first traversed.
            A label-conditional model comes bound to the labels of 64 rows, x's first; the
            samples use all 64, the reconstructions and traversals the rows of their inputs.
        directory: Where ``samples.png``, ``reconstructions.png`` and ``traversals.png`` go.
        seed: Seed of the prior draws.
    """
    directory = Path(directory)
    grids = {
        "reconstructions": reconstructions_grid(
            model.select(slice(0, 16)), x[:16], directory / "reconstructions.png"
        ),
        "traversals": latent_traversal_grid(
            model.select(slice(0, 1)), x[:1], directory / "traversals.png"
        ),
    }
    if model.has_prior:  # a model without p(z) (concrete autoencoder) has no samples
        grids["samples"] = prior_samples_grid(model, directory / "samples.png", 64, seed)
    return grids
