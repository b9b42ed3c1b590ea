"""The explicit download of MNIST-format datasets: ``vaebench data download NAME --data-root DIR``.

Nothing in vaebench calls this implicitly: a missing file is an error that names this command.
Each file is fetched from its publisher's host (then a well-known mirror), decompressed in memory
and checked against the sha256 of its *decompressed* content, then written atomically as
``DIR/NAME/<file>.gz``. Checking the decompressed bytes (rather than the .gz) makes the check hold
for every mirror and for re-compressed copies; the values below are those of the published files
(the Fashion-MNIST ones equal Debian's ``dataset-fashion-mnist``, whose .gz files are re-packed).
"""

import gzip
import hashlib
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.atomic import atomic_write_bytes
from benchmark.datasets import locations
from registry._registry import unknown_name_error


@dataclass(frozen=True)
class IdxSource:
    """Where the four IDX files of a dataset are published, and what they must hash to.

    Attributes:
        base_urls: Base URLs tried in order, the publisher's host first; a file is
            ``base_url + stem + ".gz"``.
        sha256: sha256 of each *decompressed* file, keyed by file stem.
    """

    base_urls: tuple[str, ...]
    sha256: dict[str, str]


# The four files of an MNIST-format dataset, in the order of the dataset checksum.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IDX_SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        base_urls=(
            "http://yann.lecun.com/exdb/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        sha256=dict(
            zip(
                IDX_FILES,
                (
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                ),
                strict=True,
            )
        ),
    ),
    "fashion_mnist": IdxSource(
        base_urls=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        sha256=dict(
            zip(
                IDX_FILES,
                (
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
                strict=True,
            )
        ),
    ),
}
TIMEOUT_S = 60


def download_command(name: str) -> str:
    """Return the shell command that downloads dataset `name`, for error messages."""
    return f"vaebench data download {name} --data-root DIR"


def download_dataset(
    name: str,
    *,
    data_root: str | Path | None = None,
    urlopen: Callable[..., Any] = urllib.request.urlopen,
) -> Path:
    """Download and verify the files of dataset `name` into ``data_root/name``; return that folder.

    Files already present and verified are kept; a present file that fails verification raises
    rather than being overwritten.

    Args:
        name: A key of `IDX_SOURCES`.
        data_root: Root directory (the CLI's ``--data-root``); default ``~/.cache/vaebench``,
            which the loaders search.
        urlopen: Opener with `urllib.request.urlopen`'s interface (replaceable in tests).

    Raises:
        ValueError: for an unknown name, or a present file with the wrong content.
        OSError: if no host delivered a file with the expected sha256 (each attempt is listed).
    """
    if name not in IDX_SOURCES:
        raise unknown_name_error("dataset", name, sorted(IDX_SOURCES))
    source = IDX_SOURCES[name]
    directory = Path(data_root if data_root is not None else locations.CACHE_DIR) / name
    directory.mkdir(parents=True, exist_ok=True)
    for stem, sha256 in source.sha256.items():
        if _verified_copy_exists(directory, stem, sha256):
            continue
        payload = _fetch_verified(source.base_urls, stem, sha256, urlopen)
        atomic_write_bytes(directory / f"{stem}.gz", payload)
    return directory


def _decompressed_sha256(payload: bytes) -> str:
    content = gzip.decompress(payload) if payload.startswith(b"\x1f\x8b") else payload
    return hashlib.sha256(content).hexdigest()


def _verified_copy_exists(directory: Path, stem: str, sha256: str) -> bool:
    path = locations.find_file(directory, stem)
    if path is None:
        return False
    actual = _decompressed_sha256(path.read_bytes())
    if actual != sha256:
        raise ValueError(
            f"Expected {path} to have decompressed sha256 {sha256}, but got {actual}; "
            "remove the file and run the download again."
        )
    return True


def _fetch_verified(
    base_urls: tuple[str, ...], stem: str, sha256: str, urlopen: Callable[..., Any]
) -> bytes:
    failures = []
    for base_url in base_urls:
        url = f"{base_url}{stem}.gz"
        try:
            with urlopen(url, timeout=TIMEOUT_S) as response:
                payload = response.read()
            actual = _decompressed_sha256(payload)
        except (OSError, EOFError, zlib.error) as error:  # URLError and BadGzipFile are OSErrors
            failures.append(f"  {url}: {error}")
            continue
        if actual == sha256:
            return payload
        failures.append(f"  {url}: sha256 of the decompressed file is {actual}, expected {sha256}")
    raise OSError(f"Could not download a verified {stem}.gz; tried:\n" + "\n".join(failures))
