"""Tests of the MNIST loader on the canonical IDX files in ``../shared/data/mnist``.

The files sit beside the repository (``<repo>/../shared/data/mnist``), on developer machines and
in CI alike; they are never committed. As with the Fashion-MNIST files in ``test_idx.py``, the
tests skip on a machine without them, but never in CI (``CI=true``), where a missing file must
fail rather than hide the real-data test.
"""

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.datasets import create_dataset, locations
from benchmark.datasets.download import IDX_FILES, IDX_SOURCES

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MNIST_DIR = DATA_ROOT / "mnist"
needs_mnist = pytest.mark.skipif(
    not all((MNIST_DIR / f"{stem}.gz").is_file() for stem in IDX_FILES)
    and os.environ.get("CI") != "true",
    reason=f"MNIST IDX files not found in {MNIST_DIR}: `vaebench data download mnist`",
)
pytestmark = needs_mnist

# Digit counts of the official MNIST files (LeCun et al. 1998), as tabulated by every MNIST
# loader (e.g. torchvision's test suite): training set of 60,000, test set of 10,000.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist_raw() -> dict[str, bytes]:
    """The decompressed MNIST files, read with gzip alone (no vaebench code)."""
    return {s: gzip.decompress((MNIST_DIR / f"{s}.gz").read_bytes()) for s in IDX_FILES}


@pytest.fixture
def isolated_locations(tmp_path, monkeypatch):
    """Empty ``$VAEBENCH_DATA`` and standard locations, so only the given root is searched."""
    for sub in ("env", "system", "cache"):
        (tmp_path / sub).mkdir()
    monkeypatch.setenv(locations.DATA_ROOT_ENV, str(tmp_path / "env"))
    monkeypatch.setattr(locations, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setattr(locations, "CACHE_DIR", tmp_path / "cache")


@pytest.fixture(scope="module")
def mnist():
    return create_dataset("mnist", data_root=str(DATA_ROOT))


def test_mnist_sha256_matches_pinned_values(mnist_raw, mnist):
    """Closed-form reference: each decompressed file hashes to the value pinned for download."""
    hashes = {s: hashlib.sha256(content).hexdigest() for s, content in mnist_raw.items()}
    assert hashes == IDX_SOURCES["mnist"].sha256
    assert mnist.info["file_sha256"] == IDX_SOURCES["mnist"].sha256
    assert mnist.info["matches_published_sha256"] is True
    joined = b"".join(mnist_raw[s] for s in IDX_FILES)
    assert mnist.checksum == hashlib.sha256(joined).hexdigest()


def test_mnist_split_sizes_follow_burda(mnist):
    """Closed-form reference (Burda et al. 2016, Sec. 5): 59,600 / 400 / 10,000, 28x28."""
    assert {s: len(x) for s, x in mnist.splits.items()} == {
        "train": 59_600,
        "valid": 400,
        "test": 10_000,
    }
    assert mnist.data_shape == (1, 28, 28)
    assert mnist.preprocessing == "dynamic_binarization"


def test_mnist_pixels_and_labels_match_the_files(mnist_raw, mnist):
    """Reference decoder (uint8 after a 16/8-byte header): pixels, the held-out tail, labels."""
    train = np.frombuffer(mnist_raw[IDX_FILES[0]], np.uint8, offset=16).reshape(-1, 28, 28)
    test = np.frombuffer(mnist_raw[IDX_FILES[2]], np.uint8, offset=16).reshape(-1, 28, 28)
    for split, pixels in {"train": train[:59_600], "valid": train[59_600:], "test": test}.items():
        expected = torch.from_numpy(pixels.astype(np.float32) / 255)  # (N, 28, 28)
        assert torch.equal(mnist.splits[split][:, 0], expected)
    labels = np.frombuffer(mnist_raw[IDX_FILES[1]], np.uint8, offset=8)
    assert mnist.labels["valid"].tolist() == labels[-400:].tolist()
    assert mnist.labels["train"].tolist() == labels[:-400].tolist()


def test_mnist_label_counts(mnist):
    """Closed-form reference: the official per-digit counts of both files."""
    all_train = torch.cat([mnist.labels["train"], mnist.labels["valid"]])
    assert torch.bincount(all_train, minlength=10).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.labels["test"], minlength=10).tolist() == TEST_COUNTS
    assert sum(TRAIN_COUNTS) == 60_000 and sum(TEST_COUNTS) == 10_000


def test_mnist_found_through_vaebench_data(isolated_locations, monkeypatch):
    """Property: ``VAEBENCH_DATA=../shared/data`` finds the same files as ``--data-root``."""
    monkeypatch.setenv(locations.DATA_ROOT_ENV, str(DATA_ROOT))
    dataset = create_dataset("mnist", train_size=100)
    assert Path(dataset.source).resolve() == MNIST_DIR.resolve()
    assert len(dataset.splits["train"]) == 100
    assert dataset.info["matches_published_sha256"] is True
