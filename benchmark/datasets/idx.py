"""The IDX file format (MNIST, Fashion-MNIST) and the shared loader of IDX image datasets.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of dimensions),
then one big-endian uint32 per dimension, then the values in C order, big-endian (LeCun et al.,
"THE MNIST DATABASE", file-format section). Files may be gzipped; gzip is recognised by its magic
bytes, not by the file name.

The dataset checksum is the sha256 of the *decompressed* files concatenated in the order of
`IDX_FILES`, so a raw and a gzipped copy of the same data (or one re-compressed by a packager, as
Debian's ``dataset-fashion-mnist`` is) record the same checksum.
"""

import functools
import gzip
import hashlib
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.datasets.base import Dataset
from benchmark.datasets.download import IDX_FILES, IDX_SOURCES, download_command
from benchmark.datasets.locations import DATA_ROOT_ENV, locate_files
from benchmark.datasets.preprocessing import Preprocessing

# IDX dtype codes and their big-endian numpy types.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx_bytes(path: str | Path) -> bytes:
    """Return the decompressed content of an IDX file, raw or gzipped.

    Raises:
        ValueError: if a gzipped file is truncated or corrupt, naming the file.
    """
    data = Path(path).read_bytes()
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(
            f"Expected {path} to be a valid gzip stream, but decompressing failed ({error}); "
            "the file is truncated or corrupt, so fetch it again."
        ) from error


def parse_idx(data: bytes, *, source: str) -> np.ndarray:
    """Decode the bytes of an IDX file into a read-only array of its declared shape and dtype.

    Args:
        data: Decompressed file content.
        source: Name of the file, for error messages.

    Raises:
        ValueError: on a bad magic number, an unknown dtype code, or a length that does not
            match the header (a truncated or corrupt file), naming `source` and what was expected.
    """
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise ValueError(
            f"Expected {source} to start with the IDX magic number 00 00 <dtype> <ndim>, "
            f"but got {data[:4].hex(' ') or 'an empty file'}."
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES or ndim == 0:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(
            f"Expected {source} to declare a dtype code in ({known}) and at least one dimension, "
            f"but got code 0x{code:02X} with {ndim} dimensions."
        )
    return _parse_body(data, IDX_DTYPES[code], ndim, source=source)


def _parse_body(data: bytes, dtype: np.dtype, ndim: int, *, source: str) -> np.ndarray:
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"Expected {source} to hold a {header_size}-byte header for {ndim} dimensions, "
            f"but got {len(data)} bytes (truncated file)."
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header_size != expected:
        raise ValueError(
            f"Expected {source} to hold {expected} data bytes for shape {shape} of {dtype.name}, "
            f"but got {len(data) - header_size} (truncated or corrupt file)."
        )
    values = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header_size)
    return values.reshape(shape)  # (d_1, ..., d_ndim), C order as stored


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a read-only numpy array."""
    return parse_idx(read_idx_bytes(path), source=str(path))


@dataclass(frozen=True)
class IdxImages:
    """The decoded files of an MNIST-format dataset (read-only arrays) and their checksums."""

    train_images: np.ndarray  # (N_train, H, W) uint8
    train_labels: np.ndarray  # (N_train,) uint8
    test_images: np.ndarray  # (N_test, H, W) uint8
    test_labels: np.ndarray  # (N_test,) uint8
    file_sha256: dict[str, str]
    checksum: str


def load_idx_images(paths: dict[str, Path]) -> IdxImages:
    """Decode the four `IDX_FILES`, cached per process by resolved path, size and mtime."""
    resolved = tuple(paths[stem].resolve() for stem in IDX_FILES)
    stamps = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in resolved)
    return _load_idx_images(resolved, stamps)


@functools.lru_cache(maxsize=4)
def _load_idx_images(paths: tuple[Path, ...], stamps: tuple[tuple[int, int], ...]) -> IdxImages:
    # NOTE: `stamps` is only part of the cache key, so that a replaced file is read again.
    contents = [read_idx_bytes(path) for path in paths]
    combined = hashlib.sha256()
    for content in contents:
        combined.update(content)
    arrays = [parse_idx(c, source=str(p)) for c, p in zip(contents, paths, strict=True)]
    _check_idx_images(arrays, paths)
    return IdxImages(
        *arrays,
        file_sha256={
            s: hashlib.sha256(c).hexdigest() for s, c in zip(IDX_FILES, contents, strict=True)
        },
        checksum=combined.hexdigest(),
    )


def _check_idx_images(arrays: list[np.ndarray], paths: tuple[Path, ...]) -> None:
    for images, labels, image_path in ((*arrays[:2], paths[0]), (*arrays[2:], paths[2])):
        if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(
                f"Expected {image_path} to hold uint8 images (N, H, W) with 1-d labels, but got "
                f"{images.dtype} images of shape {images.shape} and labels of shape {labels.shape}."
            )
        if len(images) != len(labels):
            raise ValueError(
                f"Expected {image_path} and its labels file to hold as many entries, "
                f"but got {len(images)} images and {len(labels)} labels."
            )


def idx_image_dataset(
    name: str,
    *,
    data_root: str | Path | None,
    preprocessing: Preprocessing,
    valid_size: int,
    train_size: int | None,
    binarization_seed: int,
    extra_fixes: tuple[str, ...] = (),
) -> Dataset:
    """Build an MNIST-format dataset: validation = the last `valid_size` official training images.

    Pixel values k in 0..255 become k/255; images get one channel, ``(1, H, W)``.

    Args:
        name: Dataset name (registry name and data sub-directory).
        data_root: Explicit data root, searched before ``$VAEBENCH_DATA`` and standard places.
        preprocessing: Recorded preprocessing (every `Preprocessing` applies to 8-bit images).
        valid_size: How many of the *last* official training images form the validation split.
        train_size: Keep only the first `train_size` remaining training images (None: all).
        binarization_seed: Seed of static binarization.
        extra_fixes: Dataset-specific ways to obtain the files, listed first if they are missing.
    """
    fixes = (*extra_fixes, *_generic_fixes(name))
    paths = locate_files(name, IDX_FILES, data_root=data_root, fixes=fixes)
    images = load_idx_images(paths)
    ranges = _split_ranges(
        len(images.train_images), len(images.test_images), valid_size, train_size
    )
    splits, labels = _slice_splits(images, ranges)
    info = _idx_info(name, paths, images, ranges, valid_size, train_size, binarization_seed)
    return Dataset(
        name=name,
        data_shape=tuple(splits["test"].shape[1:]),
        splits=splits,
        labels=labels,
        preprocessing=preprocessing,
        checksum=images.checksum,
        source=str(paths[IDX_FILES[0]].parent),
        info=info,
        binarization_seed=binarization_seed,
    )


def _slice_splits(
    images: IdxImages, ranges: dict[str, tuple[int, int]]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Cut each split's index range out of its official file: images as k/255, labels int64."""
    train = (images.train_images, images.train_labels)
    files = {"train": train, "valid": train, "test": (images.test_images, images.test_labels)}
    splits, labels = {}, {}
    for split, (start, stop) in ranges.items():
        pixels, targets = files[split]
        splits[split] = _to_intensities(pixels[start:stop])
        labels[split] = torch.from_numpy(targets[start:stop].astype(np.int64))
    return splits, labels


def _generic_fixes(name: str) -> tuple[str, ...]:
    return (
        f"on a machine with internet: `{download_command(name)}`, then pass `--data-root DIR` "
        "(or `data_root=DIR`)",
        f"copy the four files (raw or .gz) into a directory DIR and set {DATA_ROOT_ENV}=DIR "
        f"(or put them in DIR/{name} and set {DATA_ROOT_ENV} to DIR)",
    )


def _split_ranges(
    num_train_file: int, num_test_file: int, valid_size: int, train_size: int | None
) -> dict[str, tuple[int, int]]:
    """Return half-open index ranges of each split into its official file."""
    if isinstance(valid_size, bool) or not 1 <= valid_size < num_train_file:
        raise ValueError(
            f"Expected `valid_size` to be in [1, {num_train_file - 1}], but got {valid_size!r}."
        )
    remaining = num_train_file - valid_size
    if train_size is not None and not 1 <= train_size <= remaining:
        raise ValueError(
            f"Expected `train_size` to be None or in [1, {remaining}] (the training images left "
            f"after holding out {valid_size} for validation), but got {train_size!r}."
        )
    train_end = remaining if train_size is None else train_size
    return {
        "train": (0, train_end),
        "valid": (remaining, num_train_file),
        "test": (0, num_test_file),
    }


def _to_intensities(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32)) / 255
    return x.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W): one channel


def _idx_info(
    name: str,
    paths: dict[str, Path],
    images: IdxImages,
    ranges: dict[str, tuple[int, int]],
    valid_size: int,
    train_size: int | None,
    binarization_seed: int,
) -> dict[str, object]:
    published = IDX_SOURCES[name].sha256 if name in IDX_SOURCES else {}
    return {
        "files": {stem: str(path) for stem, path in paths.items()},
        "file_sha256": images.file_sha256,
        "matches_published_sha256": images.file_sha256 == published,
        "checksum_definition": "sha256 of the decompressed IDX files concatenated in the order "
        + ", ".join(IDX_FILES),
        "split_rule": f"valid = the last {valid_size} images of {IDX_FILES[0]}; train = the "
        + ("images before them" if train_size is None else f"first {train_size} images")
        + f"; test = all of {IDX_FILES[2]}",
        "split_ranges": {split: list(bounds) for split, bounds in ranges.items()},
        "sizes": {split: stop - start for split, (start, stop) in ranges.items()},
        "scaling": "x = k / 255 for pixel values k in 0..255",
        "binarization_seed": binarization_seed,
    }
