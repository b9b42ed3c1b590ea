"""scikit-learn's bundled 8x8 handwritten digits (UCI optdigits test set): a tiny offline dataset.

The 1,797 images ship inside scikit-learn (`sklearn.datasets.load_digits`), so nothing is ever
downloaded. Pixel values are counts 0..16 (each pixel sums a 4x4 block of a 32x32 bitmap), so the
raw intensities are x = count / 16, and 8-bit preprocessings do not apply.
"""

import hashlib

import numpy as np
import torch

from benchmark.datasets import register_dataset
from benchmark.datasets.base import Dataset
from benchmark.datasets.preprocessing import Preprocessing, check_preprocessing_allowed

NUM_IMAGES = 1797
SPLIT_SEED = 0  # seed of the fixed permutation; part of the dataset definition, not a setting
SPLIT_SIZES = {"train": 1257, "valid": 180, "test": 360}
ALLOWED_PREPROCESSINGS = ("dynamic_binarization", "static_binarization", "threshold", "continuous")


@register_dataset("digits")
def digits(
    *,
    preprocessing: Preprocessing = "dynamic_binarization",
    binarization_seed: int = 0,
) -> Dataset:
    """Build the 8x8 digits dataset with its fixed 1,257 / 180 / 360 split.

    Split: ``np.random.RandomState(0).permutation(1797)``; its first 1,257 entries are the
    indices (into `load_digits` order) of the training images, the next 180 the validation
    images and the last 360 the test images. Images are ``(1, 8, 8)``, x = count / 16.

    Args:
        preprocessing: One of the binarizations or ``continuous``; ``8bit`` and ``dequantized``
            are rejected because the pixels have 17 levels, not 256.
        binarization_seed: Seed of static binarization.
    """
    reason = (
        "the digits have 17 grey levels (0..16), not 256, so 8-bit preprocessings do not apply."
    )
    check_preprocessing_allowed(
        "digits", preprocessing, allowed=ALLOWED_PREPROCESSINGS, reason=reason
    )
    counts, targets = _load_counts()
    indices = split_indices()
    return Dataset(
        name="digits",
        data_shape=(1, 8, 8),
        splits={s: _to_intensities(counts[i]) for s, i in indices.items()},
        labels={s: torch.from_numpy(targets[i].astype(np.int64)) for s, i in indices.items()},
        preprocessing=preprocessing,
        checksum=_checksum(counts, targets),
        source=f"scikit-learn {_sklearn_version()} sklearn.datasets.load_digits",
        info=_info(indices, binarization_seed),
        binarization_seed=binarization_seed,
    )


def split_indices() -> dict[str, np.ndarray]:
    """Return the fixed indices (into `load_digits` order) of each split; disjoint, covering all."""
    order = np.random.RandomState(SPLIT_SEED).permutation(NUM_IMAGES)
    ends = np.cumsum(list(SPLIT_SIZES.values()))  # [1257, 1437, 1797]
    parts = np.split(order, ends[:-1])
    return dict(zip(SPLIT_SIZES, parts, strict=True))


def _to_intensities(counts: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(counts.astype(np.float32) / 16)
    return x.unsqueeze(1)  # (N, 8, 8) -> (N, 1, 8, 8): one channel


def _load_counts() -> tuple[np.ndarray, np.ndarray]:
    # NOTE: imported here, so that `import benchmark.datasets` does not pay for scikit-learn.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    counts = bunch.images  # (1797, 8, 8) float64 holding integers 0..16
    if counts.shape != (NUM_IMAGES, 8, 8) or not np.array_equal(counts, np.round(counts)):
        raise ValueError(
            f"Expected scikit-learn's digits to be {NUM_IMAGES} integer 8x8 images, but got "
            f"shape {counts.shape}; this scikit-learn version ships different data."
        )
    return counts.astype(np.uint8), bunch.target


def _checksum(counts: np.ndarray, targets: np.ndarray) -> str:
    """sha256 of the pixel counts then the targets, as uint8 bytes (platform-independent dtypes)."""
    digest = hashlib.sha256(np.ascontiguousarray(counts, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(targets, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def _info(indices: dict[str, np.ndarray], binarization_seed: int) -> dict[str, object]:
    return {
        "split_rule": f"np.random.RandomState({SPLIT_SEED}).permutation({NUM_IMAGES}): first "
        "1257 = train, next 180 = valid, last 360 = test (indices into load_digits order)",
        "valid_indices": indices["valid"].tolist(),
        "test_indices": indices["test"].tolist(),
        "sizes": {split: len(index) for split, index in indices.items()},
        "scaling": "x = count / 16 for pixel counts 0..16",
        "checksum_definition": "sha256 of load_digits().images then .target, both as uint8 bytes",
        "binarization_seed": binarization_seed,
    }
