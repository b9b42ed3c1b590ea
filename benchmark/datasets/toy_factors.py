"""A tiny ground-truth dataset for fast tests and the quick suite: one glyph on a 16 x 16 grid.

Four independent factors (900 combinations) drawn into binary 16 x 16 images with integer pixel
geometry, so every image is exact and cheap:

- ``shape`` (3): filled square, hollow square (frame), plus sign;
- ``size`` (3): side 3, 5 or 7 pixels;
- ``posX``, ``posY`` (10 each): the glyph's centre pixel, columns/rows 3 .. 12, so the largest
  glyph (half-side 3) stays inside the image.

It mimics dSprites' structure (shape, scale, position; last factor fastest) at 1/16 the pixels,
and is registered as ``toy_factors``.
"""

import numpy as np

from benchmark.datasets import register_dataset
from benchmark.datasets.ground_truth import FactorDataset, GroundTruthDataset, build_factor_dataset

FACTOR_NAMES = ("shape", "size", "posX", "posY")
FACTOR_SIZES = (3, 3, 10, 10)
SIDE = 16
FIRST_CENTRE = 3  # position class 0 puts the centre on pixel 3


def render_glyphs(factors: np.ndarray) -> np.ndarray:
    """Render glyphs from factor classes, vectorised over images and pixels.

    Args:
        factors: Classes ``(N, 4)`` in the order shape, size, posX, posY.

    Returns:
        uint8 images ``(N, 16, 16)`` with values in {0, 1}, indexed ``[row (y), column (x)]``.
    """
    half = (1 + factors[:, 1])[:, None, None]  # (N, 1, 1): half-side 1, 2, 3
    pixel = np.arange(SIDE)
    dx = np.abs(pixel[None, None, :] - (FIRST_CENTRE + factors[:, 2])[:, None, None])  # (N, 1, 16)
    dy = np.abs(pixel[None, :, None] - (FIRST_CENTRE + factors[:, 3])[:, None, None])  # (N, 16, 1)
    square = (dx <= half) & (dy <= half)  # (N, 16, 16)
    frame = square & ((dx == half) | (dy == half))
    plus = ((dx == 0) & (dy <= half)) | ((dy == 0) & (dx <= half))
    shape = factors[:, 0][:, None, None]  # (N, 1, 1)
    return np.where(shape == 0, square, np.where(shape == 1, frame, plus)).astype(np.uint8)


class ToyFactors(GroundTruthDataset):
    """The 900 glyph images as a ground-truth dataset; observations are ``(N, 1, 16, 16)`` float32.

    Rendering is deterministic, so `rng` is never consumed.
    """

    def __init__(self) -> None:
        super().__init__(FACTOR_NAMES, FACTOR_SIZES, (1, SIDE, SIDE))
        self.source = "generated (vaebench toy_factors v1)"

    def render(self, factors: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        return render_glyphs(factors)[:, None].astype(np.float32)  # (N, 1, 16, 16)


@register_dataset("toy_factors")
def toy_factors(
    *,
    num_train: int = 600,
    num_valid: int = 100,
    num_test: int = 200,
    seed: int = 0,
) -> FactorDataset:
    """Build disjoint toy_factors splits drawn without replacement from its 900 images.

    Args:
        num_train: Training images.
        num_valid: Validation images.
        num_test: Test images.
        seed: Seed of the split draw.
    """
    ground_truth = ToyFactors()
    sizes = {"train": num_train, "valid": num_valid, "test": num_test}
    return build_factor_dataset(
        "toy_factors", ground_truth, sizes, seed=seed, source=ground_truth.source, info={}
    )
