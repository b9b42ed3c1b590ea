"""Preprocessing: how raw dataset values become model inputs, as pure functions of explicit seeds.

Raw image data are intensities k/255 in [0, 1]. The binarization protocols follow Burda et al.
(2016, Sec. 5): *dynamic* binarization draws Bernoulli(pixel) afresh for every training batch and
binarizes evaluation data once with a fixed seed (123 in their code), while *static* binarization
draws the Bernoulli samples once per split, so every epoch sees the same binary images.
Dequantization adds uniform noise to the 8-bit value, so that a density on [0, 1) lower-bounds the
8-bit log-probability (Theis et al. 2016, Sec. 3.1).

Every stochastic function takes a `torch.Generator` (or a seed): nothing here touches the global
random state.
"""

import hashlib
import typing
from typing import Literal

import torch
from torch import Tensor

Preprocessing = Literal[
    "dynamic_binarization",  # Bernoulli(pixel) resampled for every training batch
    "static_binarization",  # Bernoulli(pixel) drawn once per split with a fixed seed
    "threshold",  # pixel > 0.5 (Cremer et al. 2018 for Fashion-MNIST)
    "continuous",  # raw floats, for Gaussian likelihoods
    "8bit",  # exact k/255 values, for the discretized logistic likelihood
    "dequantized",  # (k + u) / 256 with u ~ U[0, 1); densities need the -D log 256 offset
]
PREPROCESSINGS: tuple[str, ...] = typing.get_args(Preprocessing)
# Resampled for every training batch; every other preprocessing is a fixed function of the split.
RESAMPLED_PER_BATCH = ("dynamic_binarization", "dequantized")
# Preprocessings that read the raw values as pixel intensities in [0, 1].
INTENSITY_PREPROCESSINGS = ("dynamic_binarization", "static_binarization", "threshold")
# Preprocessings that read the raw values as 8-bit levels k/255.
EIGHT_BIT_PREPROCESSINGS = ("8bit", "dequantized")
# NOTE: float32(k/255) * 255 is within ~1e-5 of k; anything further off is not 8-bit data.
_GRID_TOLERANCE = 1e-3


def dynamic_binarization(x: Tensor, generator: torch.Generator) -> Tensor:
    """Sample binary images x_bin ~ Bernoulli(x), elementwise (Burda et al. 2016, Sec. 5).

    Args:
        x: Pixel intensities in [0, 1], any shape.
        generator: Source of randomness; a fresh draw per call is what makes it *dynamic*.
    """
    return torch.bernoulli(x, generator=generator)


def static_binarization(x: Tensor, *, seed: int) -> Tensor:
    """Sample binary images once from Bernoulli(x) with a fixed seed, so every call agrees.

    Args:
        x: Pixel intensities in [0, 1], any shape.
        seed: Seed of the one draw; derive one per split with `derived_seed`.
    """
    return dynamic_binarization(x, torch.Generator().manual_seed(seed))


def threshold_binarization(x: Tensor) -> Tensor:
    """Binarize deterministically with x > 0.5, as Cremer et al. (2018) do for Fashion-MNIST."""
    return (x > 0.5).to(x.dtype)


def dequantize(x: Tensor, generator: torch.Generator) -> Tensor:
    """Return (k + u) / 256 with u ~ U[0, 1) for 8-bit data x = k / 255 (Theis et al. 2016, Eq. 4).

    Args:
        x: 8-bit values k/255, any shape.
        generator: Source of the uniform noise u.
    """
    k = torch.round(x * 255)
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
    return (k + u) / 256


def check_8bit_grid(x: Tensor, *, name: str) -> None:
    """Raise ValueError unless every value of `x` is k/255 for an integer k in 0..255."""
    scaled = x * 255
    off_grid = (scaled - scaled.round()).abs().amax().item() if x.numel() else 0.0
    if off_grid > _GRID_TOLERANCE or (x.numel() and (x.amin() < 0 or x.amax() > 1)):
        raise ValueError(
            f"Expected `{name}` to hold 8-bit values k/255 in [0, 1], but got values off that "
            f"grid (by up to {off_grid:.3g} levels) or outside [0, 1]. "
            "Use `continuous` for real-valued data."
        )


def check_intensities(x: Tensor, *, name: str) -> None:
    """Raise ValueError unless every value of `x` is a probability in [0, 1]."""
    if x.numel() and (x.amin() < 0 or x.amax() > 1):
        raise ValueError(
            f"Expected `{name}` to hold pixel intensities in [0, 1] for binarization, but got "
            f"values in [{x.amin().item():.3g}, {x.amax().item():.3g}]."
        )


def derived_seed(seed: int, key: str) -> int:
    """Return a 63-bit seed derived from `seed` and `key` (e.g. a split name), stable everywhere."""
    digest = hashlib.sha256(f"{seed}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def preprocess_batch(x: Tensor, preprocessing: Preprocessing, noise: Tensor) -> Tensor:
    """Apply a per-batch resampled preprocessing (one of `RESAMPLED_PER_BATCH`) to a raw batch.

    Args:
        x: Raw batch ``(B, *data_shape)``.
        preprocessing: ``dynamic_binarization`` or ``dequantized``.
        noise: Uniforms in [0, 1) of x's shape, the batch's only randomness (see
            `benchmark.datasets.stream`): Bernoulli(x) is ``noise < x``; dequantization adds it.
    """
    if preprocessing == "dynamic_binarization":
        return (noise < x).to(x.dtype)
    if preprocessing == "dequantized":
        return (torch.round(x * 255) + noise) / 256
    allowed = list(RESAMPLED_PER_BATCH)
    raise ValueError(f"Expected `preprocessing` to be one of {allowed}, but got {preprocessing!r}.")


def preprocess_deterministically(x: Tensor, preprocessing: Preprocessing, *, seed: int) -> Tensor:
    """Apply `preprocessing` to a whole split, drawing any randomness from `seed`.

    For dynamic binarization and dequantization this is the evaluation protocol: one fixed draw,
    the same for every model (Burda et al. 2016 binarize the test set with seed 123). For static
    binarization it *is* the dataset.

    Args:
        x: Raw split ``(N, *data_shape)``.
        preprocessing: One of `PREPROCESSINGS`.
        seed: Seed of the draw (ignored by deterministic preprocessings).
    """
    if preprocessing in ("dynamic_binarization", "static_binarization"):
        return static_binarization(x, seed=seed)
    if preprocessing == "dequantized":
        return dequantize(x, torch.Generator().manual_seed(seed))
    if preprocessing == "threshold":
        return threshold_binarization(x)
    if preprocessing in ("continuous", "8bit"):
        return x
    raise ValueError(
        f"Expected `preprocessing` to be one of {list(PREPROCESSINGS)}, but got {preprocessing!r}."
    )


def check_preprocessing_allowed(
    dataset: str, preprocessing: str, *, allowed: tuple[str, ...], reason: str
) -> None:
    """Raise ValueError if dataset `dataset` does not support `preprocessing`, saying why."""
    if preprocessing not in allowed:
        raise ValueError(
            f"Expected `preprocessing` of dataset {dataset!r} to be one of {list(allowed)}, "
            f"but got {preprocessing!r}: {reason}"
        )
