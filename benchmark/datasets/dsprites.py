"""dSprites (Matthey et al. 2017) as a factor-exact procedural re-render, or the official file.

The factor grid, class order and index bases are exactly those of
``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (disentanglement_lib's ``dsprites_full``:
shape 3, scale 6, orientation 40, posX 32, posY 32; colour, which has one value, is left out).
The pixels are re-drawn from the geometry measured on the public GIF (see
``reference/dsprites.md`` Sections 5-6), so they match the original only approximately: results
on the re-render are labelled as such (``Dataset.source``) and compare with published dSprites
numbers statistically, not exactly. When the official file is in the data root it is used
instead.

Rendering rule: a pixel is on when its centre lies strictly inside the rotated, scaled sprite (no
anti-aliasing, like the LÖVE original). Coordinates are continuous with the image's top-left
corner at (0, 0), x to the right, y down; posX moves the sprite along columns, posY along rows.
"""

import math
import os
import zipfile
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np

from benchmark.datasets import locations, register_dataset
from benchmark.datasets.ground_truth import FactorDataset, GroundTruthDataset, build_factor_dataset

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
NUM_IMAGES = 737_280
SIDE = 64
NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
CACHE_NAME = "dsprites_rerender_v1_packed.npy"
RENDERER_VERSION = "vaebench dSprites re-render v1"

# Sprite geometry at scale 1, in pixels (reference/dsprites.md Section 5).
SQUARE_HALF_SIDE = 10.0  # side 20 * scale
ELLIPSE_SEMI_AXES = (13.0, 7.0)  # bounding box 26 x 14 and area ~286 px, as measured
HEART_EXTENT = (20.0, 18.0)  # continuous box; rasterises to ~20 x 17 px and ~220 px, as measured
HEART_LOOKUP_STEP = 0.01  # px; resolution of the precomputed heart mask
CHUNK = 512  # images rendered at once: (512, 64, 64) float64 temporaries, ~17 MB each


def scale_value(scale_class: np.ndarray) -> np.ndarray:
    """Return the scale of a class, ``linspace(0.5, 1, 6)[c]``, computed exactly as (5 + c) / 10."""
    return (5.0 + scale_class) / 10.0


def orientation_angle(orientation_class: np.ndarray) -> np.ndarray:
    """Return the angle in radians, ``2 pi c / 39``.

    NOTE: the original grid is ``linspace(0, 2 pi, 40)``: classes 0 and 39 are the same angle. The
    class is reduced modulo 39 so the two render bit-identically (cos(2 pi) is not exactly 1).
    """
    return 2.0 * math.pi * (np.asarray(orientation_class) % 39) / 39.0


def sprite_centre(position_class: np.ndarray) -> np.ndarray:
    """Return the centre coordinate in pixels, ``16 + 32 * c / 31`` (0.25 W to 0.75 W)."""
    return 16.0 + 32.0 * np.asarray(position_class) / 31.0


def render_sprites(factors: np.ndarray) -> np.ndarray:
    """Render dSprites images from factor classes, vectorised over images and pixels.

    Args:
        factors: Classes ``(N, 5)`` in the order shape, scale, orientation, posX, posY.

    Returns:
        uint8 images ``(N, 64, 64)`` with values in {0, 1}, indexed ``[row (y), column (x)]``.
    """
    images = np.zeros((len(factors), SIDE, SIDE), dtype=np.uint8)
    for shape, inside in enumerate((_inside_square, _inside_ellipse, _inside_heart)):
        rows = np.flatnonzero(factors[:, 0] == shape)
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            images[chunk] = inside(*_local_coordinates(factors[chunk]))
    return images


def _local_coordinates(factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return pixel centres in each sprite's frame at scale 1: u right, v up, ``(N, 64, 64)`` each.

    Un-rotating by the sprite's angle and converting screen-down y to maths-up v makes the sprite
    turn counter-clockwise on screen as the orientation class grows. float32 is ample: positions
    stay below 128 px, so rounding moves a pixel centre by about 1e-5 px at most.
    """
    angle = orientation_angle(factors[:, 2])
    scale = scale_value(factors[:, 1])
    cos = (np.cos(angle) / scale).astype(np.float32)[:, None, None]  # (N, 1, 1)
    sin = (np.sin(angle) / scale).astype(np.float32)[:, None, None]
    pixel = np.arange(SIDE, dtype=np.float32) + np.float32(0.5)
    centre_x = sprite_centre(factors[:, 3]).astype(np.float32)[:, None, None]  # (N, 1, 1)
    centre_y = sprite_centre(factors[:, 4]).astype(np.float32)[:, None, None]
    dx = pixel[None, None, :] - centre_x  # (N, 1, 64)
    dy = pixel[None, :, None] - centre_y  # (N, 64, 1)
    # Only the final sums are full-size, (N, 1, 64) and (N, 64, 1) broadcast to (N, 64, 64).
    return cos * dx - sin * dy, -(sin * dx) - cos * dy


def _inside_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) < SQUARE_HALF_SIDE) & (np.abs(v) < SQUARE_HALF_SIDE)


def _inside_ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    a, b = ELLIPSE_SEMI_AXES  # major axis horizontal at orientation 0
    return u * u * np.float32(1 / a**2) + v * v * np.float32(1 / b**2) < 1.0


def _inside_heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Look up only the few pixels inside the heart's box: per-pixel work stays arithmetic.
    mask = heart_mask()
    half_width, half_height = HEART_EXTENT[0] / 2, HEART_EXTENT[1] / 2
    inside = (np.abs(u) < half_width) & (np.abs(v) < half_height)
    candidates = np.flatnonzero(inside)
    col = ((u.ravel()[candidates] + half_width) / HEART_LOOKUP_STEP).astype(np.int64)
    row = ((half_height - v.ravel()[candidates]) / HEART_LOOKUP_STEP).astype(np.int64)
    rows, cols = mask.shape
    inside.ravel()[candidates] = mask[row.clip(0, rows - 1), col.clip(0, cols - 1)]
    return inside


@cache
def heart_mask() -> np.ndarray:
    """Return the upright heart on a fine grid, ``(rows (v down), cols (u right))`` bool.

    The outline is the classic parametric heart ``x = 16 sin^3 t``,
    ``y = 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t`` (the only candidate in the dSprites notes,
    unverified), stretched to the continuous box `HEART_EXTENT` around the sprite centre: 20 x 18
    px rasterise to about 20 x 17 px and 220 px at scale 1 (measured: 20 x 17, ~222). The curve
    is star-shaped about its origin, so a cell is inside when its radius is below the outline's
    radius at the same polar angle.
    """
    t = np.linspace(0.0, 2.0 * math.pi, 20_001)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    order = np.argsort(np.arctan2(y, x))
    outline_angle, outline_radius = np.arctan2(y, x)[order], np.hypot(x, y)[order]
    width, height = HEART_EXTENT
    cols = (np.arange(round(width / HEART_LOOKUP_STEP)) + 0.5) * HEART_LOOKUP_STEP - width / 2
    rows = height / 2 - (np.arange(round(height / HEART_LOOKUP_STEP)) + 0.5) * HEART_LOOKUP_STEP
    # Cell centres in curve units: stretch to the curve's box, then shift to its vertical middle.
    cell_x = cols[None, :] * (32.0 / width)  # (1, W)
    cell_y = rows[:, None] * ((y.max() - y.min()) / height) + (y.max() + y.min()) / 2  # (H, 1)
    limit = np.interp(
        np.arctan2(cell_y, cell_x), outline_angle, outline_radius, period=2 * math.pi
    )  # (H, W)
    return np.hypot(cell_x, cell_y) < limit


class DSprites(GroundTruthDataset):
    """dSprites with disentanglement_lib's ``dsprites_full`` factors, rendered or loaded.

    Observations are float32 ``(N, 1, 64, 64)`` in {0, 1}. Rendering is deterministic, so `rng`
    is never consumed (as in the reference, where colour has one value).

    Args:
        packed_images: None to render on demand; else all 737,280 images in index order, bit-packed
            to ``(737280, 512)`` uint8 (a cache file or the official npz).
        source: What the pixels are, recorded with every result.
    """

    def __init__(
        self,
        packed_images: np.ndarray | None = None,
        source: str = f"{RENDERER_VERSION} (procedural, on demand)",
    ) -> None:
        super().__init__(FACTOR_NAMES, FACTOR_SIZES, (1, SIDE, SIDE))
        if packed_images is not None and packed_images.shape != (NUM_IMAGES, SIDE * SIDE // 8):
            raise ValueError(
                f"Expected `packed_images` to have shape ({NUM_IMAGES}, {SIDE * SIDE // 8}), "
                f"but got {packed_images.shape}."
            )
        self.packed_images = packed_images
        self.source = source

    def render(self, factors: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        if self.packed_images is None:
            images = render_sprites(factors)  # (N, 64, 64)
        else:
            packed = self.packed_images[self.factors_to_index(factors)]  # (N, 512)
            images = np.unpackbits(packed, axis=1).reshape(-1, SIDE, SIDE)  # (N, 64, 64)
        return images[:, None].astype(np.float32)  # (N, 1, 64, 64)

    @classmethod
    def from_npz(cls, path: str | Path) -> "DSprites":
        """Load the official file; its class table must follow the documented index order."""
        packed, classes = read_npz_packed(path)
        if packed.shape[0] != NUM_IMAGES:
            raise ValueError(
                f"Expected {path} to hold {NUM_IMAGES} images, but got {packed.shape[0]}. Is it "
                f"the official {NPZ_NAME}?"
            )
        dataset = cls(packed, source=f"official {NPZ_NAME} ({path})")
        expected = dataset.index_to_factors(np.arange(NUM_IMAGES))  # (N, 5)
        if not np.array_equal(classes[:, 1:], expected) or (classes[:, 0] != 0).any():
            raise ValueError(f"Expected `latents_classes` in {path} to follow the dSprites order.")
        return dataset

    @classmethod
    def from_cache(cls, path: str | Path) -> "DSprites":
        """Memory-map a cache written by `write_packed_cache`, building it first if missing."""
        path = Path(path)
        if not path.is_file():
            write_packed_cache(path)
        return cls(np.load(path, mmap_mode="r"), source=f"{RENDERER_VERSION} (cached at {path})")


def read_npz_packed(path: str | Path, chunk: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Stream ``imgs`` out of a dSprites npz into packed bits, never holding the 3 GB array.

    Returns:
        ``(packed (N, 512) uint8, latents_classes (N, 6) int64)``.
    """
    with zipfile.ZipFile(path) as archive, archive.open("imgs.npy") as stream:
        major, _ = np.lib.format.read_magic(stream)
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran_order, dtype = read_header(stream)
        if shape[1:] != (SIDE, SIDE) or dtype != np.uint8 or fortran_order:
            raise ValueError(
                f"Expected `imgs` in {path} to be C-ordered uint8 (N, 64, 64), but got {dtype} "
                f"{shape}."
            )
        packed = np.empty((shape[0], SIDE * SIDE // 8), dtype=np.uint8)
        for start in range(0, shape[0], chunk):
            rows = min(chunk, shape[0] - start)
            block = np.frombuffer(stream.read(rows * SIDE * SIDE), dtype=np.uint8)
            packed[start : start + rows] = np.packbits(block.reshape(rows, -1) > 0, axis=1)
    classes = np.load(path, allow_pickle=False)["latents_classes"].astype(np.int64)
    return packed, classes


def write_packed_cache(
    path: str | Path, *, num_images: int = NUM_IMAGES, chunk: int = 16384
) -> None:
    """Render images ``0 .. num_images - 1`` to a bit-packed ``.npy``, atomically.

    The file (377 MB for the full dataset) is written under a temporary name and renamed, so an
    interrupted build never leaves a truncated cache behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    grid = DSprites()
    out = np.lib.format.open_memmap(
        tmp, mode="w+", dtype=np.uint8, shape=(num_images, SIDE * SIDE // 8)
    )
    for start in range(0, num_images, chunk):
        index = np.arange(start, min(start + chunk, num_images))
        images = render_sprites(grid.index_to_factors(index))  # (n, 64, 64)
        out[start : start + len(index)] = np.packbits(images.reshape(len(index), -1), axis=1)
    out.flush()
    del out
    os.replace(tmp, path)


def load_dsprites(data_root: str | Path | None, renderer: str, cache: bool) -> DSprites:
    """Return the official data if requested or found, else the re-render (cached or on demand).

    The npz is looked for where every dataset is (`locations.candidate_directories`); the cache
    goes to ``DATA_ROOT/dsprites`` or, without a data root, ``~/.cache/vaebench/dsprites``.
    """
    directories = locations.candidate_directories("dsprites", data_root)
    official = next((d / NPZ_NAME for d in directories if (d / NPZ_NAME).is_file()), None)
    if renderer != "procedural" and official is not None:
        return DSprites.from_npz(official)
    if renderer == "official":
        raise ValueError(
            f"Expected the official {NPZ_NAME} in one of {[str(d) for d in directories]}, but it "
            "is in none. Get it from github.com/deepmind/dsprites-dataset, or use `renderer: auto`."
        )
    if cache:
        root = Path(data_root) if data_root is not None else locations.CACHE_DIR
        return DSprites.from_cache(root / "dsprites" / CACHE_NAME)
    return DSprites()


@register_dataset("dsprites")
def dsprites(
    *,
    data_root: str | None = None,
    num_train: int = 20000,
    num_valid: int = 2000,
    num_test: int = 5000,
    seed: int = 0,
    renderer: Literal["auto", "procedural", "official"] = "auto",
    cache: bool = False,
) -> FactorDataset:
    """Build dSprites splits drawn without replacement from the 737,280 factor combinations.

    Args:
        data_root: Folder searched for the official npz (and holding the cache).
        num_train: Training images (disentanglement_lib trains on all 737,280, sampled with
            replacement; a fixed subset keeps the splits in memory: 20,000 x 16 KiB float32).
        num_valid: Validation images.
        num_test: Test images, for the likelihood metrics.
        seed: Seed of the split draw.
        renderer: ``auto`` uses the official file when present in the data root, else the
            re-render; ``official`` requires the file; ``procedural`` always re-renders.
        cache: Render all 737,280 images once to a bit-packed file in the data root (377 MB)
            and memory-map it, instead of rendering on demand.
    """
    ground_truth = load_dsprites(data_root, renderer, cache)
    sizes = {"train": num_train, "valid": num_valid, "test": num_test}
    return build_factor_dataset(
        "dsprites",
        ground_truth,
        sizes,
        seed=seed,
        source=ground_truth.source,
        info={"renderer": ground_truth.source},
    )
