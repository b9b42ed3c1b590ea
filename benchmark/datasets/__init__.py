"""The dataset registry: `register_dataset`, `create_dataset`, `list_datasets`, and the datasets.

A dataset factory takes keyword-only, typed settings (its signature is the schema of the spec's
``dataset:`` block) and returns a `Dataset` with fixed splits, a checksum and its preprocessing.
``data_root`` is injected by the harness (the CLI's ``--data-root``), not read from the spec, and
only passed to factories that read files. Nothing is downloaded implicitly: a missing file is a
`FileNotFoundError` naming every directory searched and ``vaebench data download NAME``.
"""

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.datasets.base import Dataset
from registry._registry import Registry

DATASETS = Registry("dataset", injected=("data_root",))


def register_dataset(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a dataset factory under `name`; a duplicate name raises ValueError."""
    return DATASETS.register(name)


def create_dataset(name: str, *, data_root: str | Path | None = None, **settings: Any) -> Dataset:
    """Build dataset `name` from validated `settings`; `data_root` goes to file-based datasets.

    Raises:
        ValueError: for an unknown name (with suggestions) or unknown setting (listing the keys).
        TypeError: for a setting of the wrong type.
        FileNotFoundError: when a file-based dataset's files are missing (with the fix).
    """
    factory = DATASETS.get(name)
    resolved = DATASETS.resolve(name, settings)
    if "data_root" in inspect.signature(factory).parameters and data_root is not None:
        resolved["data_root"] = str(data_root)
    return factory(**resolved)


def list_datasets(pattern: str = "*") -> list[str]:
    """List registered dataset names matching a wildcard, e.g. ``list_datasets("*mnist")``."""
    return DATASETS.names(pattern)


def resolve_dataset_settings(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Return the full settings of dataset `name`: validated overrides plus every default."""
    return DATASETS.resolve(name, settings)


# Built-in datasets, one file each; importing a module registers it. A new dataset file adds one
# import line below (e.g. the ground-truth datasets: dsprites).
from benchmark.datasets import digits, fashion_mnist, linear_gaussian, mnist  # noqa: E402, F401  isort: skip
from benchmark.datasets import dsprites, toy_factors  # noqa: E402, F401  isort: skip
from benchmark.datasets import low_dim  # noqa: E402, F401  isort: skip

__all__ = [
    "DATASETS",
    "create_dataset",
    "list_datasets",
    "register_dataset",
    "resolve_dataset_settings",
]
