"""Tests of the IDX reader, the data-root search, the MNIST-format datasets and their download."""

import gzip
import hashlib
import io
import os
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.datasets import create_dataset, download, idx, locations
from benchmark.datasets.download import IDX_FILES, IDX_SOURCES, IdxSource, download_dataset

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# NOTE: skipped on a developer machine without the package, never in CI (CI=true), where
# `.ci/setup --test` installs it: there a missing file must fail, not hide the real-data test.
needs_fashion = pytest.mark.skipif(
    not all((FASHION_DIR / f"{stem}.gz").is_file() for stem in IDX_FILES)
    and os.environ.get("CI") != "true",
    reason="Fashion-MNIST not installed: `apt-get install dataset-fashion-mnist`",
)


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """Encode `array` as IDX by hand (magic, big-endian uint32 dims, big-endian values)."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist_format(
    directory: Path, *, num_train: int = 12, num_test: int = 5, seed: int = 0, compress: bool = True
) -> dict[str, bytes]:
    """Write four tiny MNIST-format files (4x4 images) to `directory`; return their raw bytes."""
    rng = np.random.RandomState(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.randint(0, 256, (num_train, 4, 4)).astype(np.uint8),
        "train-labels-idx1-ubyte": rng.randint(0, 10, num_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.randint(0, 256, (num_test, 4, 4)).astype(np.uint8),
        "t10k-labels-idx1-ubyte": rng.randint(0, 10, num_test).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    contents = {stem: idx_bytes(array, 0x08) for stem, array in arrays.items()}
    for stem, content in contents.items():
        if compress:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(content))
        else:
            (directory / stem).write_bytes(content)
    return contents


@pytest.fixture
def no_standard_locations(tmp_path, monkeypatch):
    """Point ``$VAEBENCH_DATA`` and both standard locations at empty directories."""
    for sub in ("env", "system", "cache"):
        (tmp_path / sub).mkdir()
    monkeypatch.setenv(locations.DATA_ROOT_ENV, str(tmp_path / "env"))
    monkeypatch.setattr(locations, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setattr(locations, "CACHE_DIR", tmp_path / "cache")
    return tmp_path


# --- the IDX reader -------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("dtype", "code", "shape"),
    [
        (np.uint8, 0x08, (3, 4, 5)),
        (np.int16, 0x0B, (7,)),
        (np.int32, 0x0C, (2, 3)),
        (np.float32, 0x0D, (4, 2)),
        (np.float64, 0x0E, (2, 2, 2, 2)),
    ],
)
def test_read_idx_decodes_hand_encoded_files(tmp_path, compress, dtype, code, shape):
    """Closed-form reference: a hand-encoded big-endian IDX file decodes to the source array."""
    array = (np.arange(np.prod(shape)).reshape(shape) * 7 - 3).astype(dtype)
    content = idx_bytes(array, code)
    path = tmp_path / ("file.gz" if compress else "file")
    path.write_bytes(gzip.compress(content) if compress else content)
    decoded = idx.read_idx(path)
    assert decoded.shape == shape
    np.testing.assert_array_equal(decoded, array)


def test_read_idx_rejects_truncated_file_naming_it(tmp_path):
    """Contract: a truncated file raises ValueError naming the file and the expected length."""
    content = idx_bytes(np.zeros((3, 4, 4), np.uint8), 0x08)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content[:-5])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*48 data bytes.*got 43"):
        idx.read_idx(path)


def test_read_idx_rejects_trailing_bytes(tmp_path):
    """Contract: extra bytes after the declared data are a corrupt file, not silently ignored."""
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(5, np.uint8), 0x08) + b"\x00")
    with pytest.raises(ValueError, match=r"5 data bytes.*got 6"):
        idx.read_idx(path)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    """Contract: a truncated gzip stream raises ValueError naming the file."""
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((4, 4, 4), np.uint8), 0x08))[:-12])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz.*gzip"):
        idx.read_idx(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x00", "magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x00", "dtype code"),
        (b"\x00\x00\x08\x00", "dimension"),
        (b"\x00\x00", "magic number"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "header"),
    ],
)
def test_parse_idx_rejects_bad_headers(data, message):
    """Contract: bad magic bytes, unknown dtype codes, no dimensions or a cut header raise."""
    with pytest.raises(ValueError, match=rf"bad-file.*{message}"):
        idx.parse_idx(data, source="bad-file")


# --- the MNIST-format datasets on tiny generated files --------------------------------------


def test_mnist_on_tiny_files_follows_the_documented_split(tmp_path, no_standard_locations):
    """Closed-form reference: valid = last `valid_size` training images, test = t10k, k/255."""
    contents = write_mnist_format(tmp_path / "root" / "mnist", num_train=12, num_test=5)
    train = np.frombuffer(contents["train-images-idx3-ubyte"], np.uint8, offset=16).reshape(
        12, 4, 4
    )
    labels = np.frombuffer(contents["train-labels-idx1-ubyte"], np.uint8, offset=8)
    dataset = create_dataset("mnist", data_root=tmp_path / "root", valid_size=3, train_size=7)
    assert {s: len(x) for s, x in dataset.splits.items()} == {"train": 7, "valid": 3, "test": 5}
    assert dataset.data_shape == (1, 4, 4)
    expected_valid = torch.from_numpy(train[9:].astype(np.float32) / 255).unsqueeze(1)
    torch.testing.assert_close(dataset.splits["valid"], expected_valid, rtol=0, atol=0)
    torch.testing.assert_close(
        dataset.splits["train"][:, 0] * 255, torch.tensor(train[:7], dtype=torch.float32)
    )
    assert dataset.labels["valid"].tolist() == labels[9:].tolist()
    assert dataset.info["split_ranges"] == {"train": [0, 7], "valid": [9, 12], "test": [0, 5]}


def test_idx_checksum_is_sha256_of_decompressed_files_in_order(tmp_path, no_standard_locations):
    """Closed-form reference: checksum = sha256(concatenated raw files); gz and raw agree."""
    contents = write_mnist_format(tmp_path / "gz", compress=True)
    write_mnist_format(tmp_path / "raw", compress=False)
    expected = hashlib.sha256(b"".join(contents[stem] for stem in IDX_FILES)).hexdigest()
    from_gz = create_dataset("mnist", data_root=tmp_path / "gz", valid_size=2)
    from_raw = create_dataset("mnist", data_root=tmp_path / "raw", valid_size=2)
    assert from_gz.checksum == from_raw.checksum == expected
    assert from_gz.info["file_sha256"] == {
        s: hashlib.sha256(c).hexdigest() for s, c in contents.items()
    }
    assert from_gz.info["matches_published_sha256"] is False


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"valid_size": 12}, "valid_size"),
        ({"valid_size": 0}, "valid_size"),
        ({"valid_size": 2, "train_size": 11}, "train_size"),
    ],
)
def test_idx_split_settings_out_of_range_raise(tmp_path, no_standard_locations, settings, message):
    """Contract: split sizes the files cannot provide raise ValueError naming the setting."""
    write_mnist_format(tmp_path / "mnist", num_train=12)
    with pytest.raises(ValueError, match=message):
        create_dataset("mnist", data_root=tmp_path, **settings)


def test_data_root_precedence(tmp_path, no_standard_locations, monkeypatch):
    """Contract: --data-root beats $VAEBENCH_DATA/<name>, which beats $VAEBENCH_DATA itself."""
    env = no_standard_locations / "env"
    write_mnist_format(env, seed=1)
    assert create_dataset("mnist", valid_size=2).source == str(env)
    write_mnist_format(env / "mnist", seed=2)
    assert create_dataset("mnist", valid_size=2).source == str(env / "mnist")
    write_mnist_format(tmp_path / "explicit", seed=3)
    explicit = create_dataset("mnist", data_root=tmp_path / "explicit", valid_size=2)
    assert explicit.source == str(tmp_path / "explicit")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert create_dataset("mnist", data_root=empty, valid_size=2).source == str(env / "mnist")


def test_missing_files_error_names_every_place_and_the_fixes(tmp_path, no_standard_locations):
    """Contract: missing files raise FileNotFoundError listing where it looked and how to fix."""
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(FileNotFoundError) as error:
        create_dataset("fashion_mnist", data_root=root)
    message = str(error.value)
    for directory in (
        root / "fashion_mnist",
        root,
        tmp_path / "env" / "fashion_mnist",
        tmp_path / "env",
        tmp_path / "system" / "fashion-mnist",
        tmp_path / "cache" / "fashion_mnist",
    ):
        assert f"  {directory}  (" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "vaebench data download fashion_mnist --data-root DIR" in message
    assert "VAEBENCH_DATA" in message


def test_missing_files_error_lists_what_a_partial_directory_lacks(tmp_path, no_standard_locations):
    """Contract: a directory holding some of the files is reported with the missing ones."""
    write_mnist_format(tmp_path / "partial")
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"partial  \(missing t10k-labels-idx1-ubyte\)"
    ) as error:
        create_dataset("mnist", data_root=tmp_path / "partial")
    assert "apt-get" not in str(error.value)  # there is no Debian package for MNIST


# --- the real Fashion-MNIST -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_raw() -> dict[str, bytes]:
    """The decompressed installed Fashion-MNIST files, read with gzip alone."""
    return {s: gzip.decompress((FASHION_DIR / f"{s}.gz").read_bytes()) for s in IDX_FILES}


@needs_fashion
def test_fashion_mnist_real_files(no_standard_locations, fashion_raw):
    """Closed-form reference (mnist_reader: uint8 after a 16/8-byte header): sizes, split, range."""
    dataset = create_dataset("fashion_mnist", data_root=FASHION_DIR)
    sizes = {s: len(x) for s, x in dataset.splits.items()}
    assert sizes == {"train": 55000, "valid": 5000, "test": 10000}
    assert sizes["train"] + sizes["valid"] == 60000
    assert dataset.data_shape == (1, 28, 28)
    train = np.frombuffer(fashion_raw[IDX_FILES[0]], np.uint8, offset=16).reshape(-1, 28, 28)
    test = np.frombuffer(fashion_raw[IDX_FILES[2]], np.uint8, offset=16).reshape(-1, 28, 28)
    for split, pixels in {"train": train[:55000], "valid": train[55000:], "test": test}.items():
        expected = torch.from_numpy(pixels.astype(np.float32) / 255)  # (N, 28, 28)
        assert torch.equal(dataset.splits[split][:, 0], expected)
        assert dataset.splits[split].min() == 0 and dataset.splits[split].max() == 1
    labels = np.frombuffer(fashion_raw[IDX_FILES[1]], np.uint8, offset=8)
    assert dataset.labels["valid"].tolist() == labels[-5000:].tolist()
    all_train = torch.cat([dataset.labels["train"], dataset.labels["valid"]])
    assert torch.bincount(all_train).tolist() == [6000] * 10  # Fashion-MNIST is class-balanced
    assert torch.bincount(dataset.labels["test"]).tolist() == [1000] * 10


@needs_fashion
def test_fashion_mnist_checksum_recorded_and_stable(no_standard_locations, fashion_raw):
    """Closed-form reference: per-file sha256 match the published ones; checksum is stable."""
    raw = [fashion_raw[s] for s in IDX_FILES]
    first = create_dataset("fashion_mnist", data_root=FASHION_DIR, train_size=100)
    second = create_dataset("fashion_mnist", data_root=FASHION_DIR, preprocessing="threshold")
    assert first.checksum == second.checksum == hashlib.sha256(b"".join(raw)).hexdigest()
    expected_files = {s: hashlib.sha256(c).hexdigest() for s, c in zip(IDX_FILES, raw, strict=True)}
    assert first.info["file_sha256"] == expected_files == IDX_SOURCES["fashion_mnist"].sha256
    assert first.info["matches_published_sha256"] is True


# --- the explicit download (never the network) ----------------------------------------------


def test_download_url_table():
    """Contract: each source lists the four files, publisher's host first, with sha256 digests."""
    assert set(IDX_SOURCES) == {"mnist", "fashion_mnist"}
    assert IDX_SOURCES["mnist"].base_urls[0].startswith("http://yann.lecun.com/exdb/mnist/")
    assert (
        IDX_SOURCES["fashion_mnist"]
        .base_urls[0]
        .startswith("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
    )
    for source in IDX_SOURCES.values():
        assert tuple(source.sha256) == IDX_FILES
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in source.sha256.values())
        assert all(url.endswith("/") for url in source.base_urls) and len(source.base_urls) >= 2


class FakeOpener:
    """Serve bytes per URL (or raise) instead of the network, recording the URLs asked for."""

    def __init__(self, responses: dict[str, bytes | Exception]) -> None:
        self.responses = responses
        self.requested: list[str] = []

    def __call__(self, url: str, timeout: float) -> io.BytesIO:
        self.requested.append(url)
        response = self.responses.get(url, urllib.error.URLError("unreachable"))
        if isinstance(response, Exception):
            raise response
        return io.BytesIO(response)


def _fake_mnist_source(tmp_path, monkeypatch) -> dict[str, bytes]:
    contents = write_mnist_format(tmp_path / "served")
    sha256 = {s: hashlib.sha256(c).hexdigest() for s, c in contents.items()}
    monkeypatch.setitem(IDX_SOURCES, "mnist", IdxSource(("http://a/", "https://b/"), sha256))
    return contents


def test_download_writes_verified_files_and_falls_back_to_mirror(
    tmp_path, monkeypatch, no_standard_locations
):
    """Contract: a failing host is skipped; verified .gz files land in DIR/NAME and load."""
    contents = _fake_mnist_source(tmp_path, monkeypatch)
    opener = FakeOpener({f"https://b/{s}.gz": gzip.compress(c) for s, c in contents.items()})
    directory = download_dataset("mnist", data_root=tmp_path / "root", urlopen=opener)
    assert directory == tmp_path / "root" / "mnist"
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{s}.gz" for s in IDX_FILES)
    assert opener.requested[:2] == [
        "http://a/train-images-idx3-ubyte.gz",
        "https://b/train-images-idx3-ubyte.gz",
    ]
    dataset = create_dataset("mnist", data_root=tmp_path / "root", valid_size=2)
    assert dataset.source == str(directory)
    again = FakeOpener({})
    download_dataset("mnist", data_root=tmp_path / "root", urlopen=again)
    assert again.requested == []  # verified files are kept, nothing is fetched


def test_download_rejects_wrong_content_and_leaves_no_file(tmp_path, monkeypatch):
    """Contract: content failing sha256 on every host raises OSError listing each attempt."""
    contents = _fake_mnist_source(tmp_path, monkeypatch)
    wrong = gzip.compress(contents["train-images-idx3-ubyte"] + b"x")
    opener = FakeOpener(
        {
            "http://a/train-images-idx3-ubyte.gz": wrong,
            "https://b/train-images-idx3-ubyte.gz": b"<html>not gzip</html>",
        }
    )
    with pytest.raises(OSError, match=r"(?s)http://a/train-images.*sha256.*https://b/train-images"):
        download_dataset("mnist", data_root=tmp_path / "root", urlopen=opener)
    assert list((tmp_path / "root" / "mnist").iterdir()) == []


def test_download_refuses_to_overwrite_a_corrupt_existing_file(tmp_path, monkeypatch):
    """Contract: a present file with the wrong content raises instead of being replaced."""
    _fake_mnist_source(tmp_path, monkeypatch)
    target = tmp_path / "root" / "mnist"
    target.mkdir(parents=True)
    (target / "train-images-idx3-ubyte").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="remove the file"):
        download_dataset("mnist", data_root=tmp_path / "root", urlopen=FakeOpener({}))


def test_download_unknown_name_suggests():
    """Contract: an unknown dataset name raises ValueError with a close match."""
    with pytest.raises(ValueError, match="Did you mean 'fashion_mnist'"):
        download_dataset("fashion-mnist", urlopen=FakeOpener({}))


def test_download_default_root_is_a_searched_location(tmp_path, monkeypatch):
    """Contract: without --data-root, files go to the cache directory that the loaders search."""
    contents = _fake_mnist_source(tmp_path, monkeypatch)
    monkeypatch.setattr(locations, "CACHE_DIR", tmp_path / "cache")
    opener = FakeOpener({f"http://a/{s}.gz": gzip.compress(c) for s, c in contents.items()})
    directory = download_dataset("mnist", urlopen=opener)
    assert directory in locations.candidate_directories("mnist", None)
    assert download.locations.find_file(directory, IDX_FILES[0]) is not None
