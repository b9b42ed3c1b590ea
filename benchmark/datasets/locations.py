"""Where dataset files are looked for: ``--data-root``, ``$VAEBENCH_DATA``, then standard places.

For a dataset ``NAME`` (e.g. ``fashion_mnist``) the directories are searched in this order, and
the first one holding every file wins:

1. ``DATA_ROOT/NAME``, ``DATA_ROOT/NAME-WITH-DASHES``, ``DATA_ROOT`` for the explicit data root
   (the CLI's ``--data-root``);
2. the same three under ``$VAEBENCH_DATA``;
3. ``/usr/share/datasets/NAME-WITH-DASHES`` (where Debian's ``dataset-fashion-mnist`` installs);
4. ``~/.cache/vaebench/NAME`` (where ``vaebench data download NAME`` writes by default).

A file ``STEM`` may be stored raw or gzipped (``STEM.gz``). Nothing is ever downloaded here.
"""

import os
from pathlib import Path

DATA_ROOT_ENV = "VAEBENCH_DATA"
# Module attributes, read at call time, so tests can point them at empty directories.
SYSTEM_DATA_DIR = Path("/usr/share/datasets")
CACHE_DIR = Path.home() / ".cache" / "vaebench"


def candidate_directories(name: str, data_root: str | Path | None) -> list[Path]:
    """Return the directories searched for dataset `name`, highest priority first, no repeats."""
    dashed = name.replace("_", "-")
    roots = [Path(data_root)] if data_root is not None else []
    if os.environ.get(DATA_ROOT_ENV):
        roots.append(Path(os.environ[DATA_ROOT_ENV]))
    directories = [d for root in roots for d in (root / name, root / dashed, root)]
    directories += [SYSTEM_DATA_DIR / dashed, CACHE_DIR / name]
    return list(dict.fromkeys(directories))


def find_file(directory: Path, stem: str) -> Path | None:
    """Return ``directory/stem`` or else ``directory/stem.gz`` if either exists, else None."""
    for path in (directory / stem, directory / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def locate_files(
    name: str, stems: tuple[str, ...], *, data_root: str | Path | None, fixes: tuple[str, ...]
) -> dict[str, Path]:
    """Return the path of every file in `stems` from the first directory that holds them all.

    Args:
        name: Dataset name, used for sub-directories and in the error message.
        stems: File names without ``.gz``.
        data_root: The explicit data root, searched first; None to skip it.
        fixes: Lines telling the user how to obtain the files, shown if they are missing.

    Raises:
        FileNotFoundError: listing every directory searched, what each lacked, and the fixes.
    """
    searched = []
    for directory in candidate_directories(name, data_root):
        found = {stem: find_file(directory, stem) for stem in stems}
        missing = [stem for stem, path in found.items() if path is None]
        if not missing:
            return found  # type: ignore[return-value]
        searched.append((directory, missing))
    raise FileNotFoundError(_missing_files_message(name, stems, searched, fixes))


def _missing_files_message(
    name: str,
    stems: tuple[str, ...],
    searched: list[tuple[Path, list[str]]],
    fixes: tuple[str, ...],
) -> str:
    def describe(directory: Path, missing: list[str]) -> str:
        if not directory.is_dir():
            return f"  {directory}  (no such directory)"
        return f"  {directory}  (missing {', '.join(missing)})"

    return "\n".join(
        [
            f"Could not find the {name} data files {', '.join(stems)} (raw or .gz).",
            "Looked in, in this order:",
            *(describe(directory, missing) for directory, missing in searched),
            "To fix, do one of:",
            *(f"  - {fix}" for fix in fixes),
        ]
    )
