"""Run records: one versioned JSON file per run, written atomically, never containing NaN.

The schema is declared once, here (`RunRecord` and `SCHEMA_VERSION`). A record holds the resolved
spec and its hash, model and dataset identity, every metric as an `Estimate`, the seeds, the
environment, the git commit and timings. The path follows from the spec, so running the same
spec again targets the same file.
"""

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from benchmark.atomic import atomic_write_text, safe_file_stem
from metrics.estimate import Estimate

SCHEMA_VERSION = 1
Status = Literal["ok", "diverged", "failed"]


@dataclass(frozen=True)
class RunRecord:
    """Everything a run produced, and everything needed to reproduce it.

    Attributes:
        schema_version: Version of this layout; bumped on any incompatible change.
        status: ``ok``, ``diverged`` (non-finite loss; metrics are empty) or ``failed``.
        spec: The fully resolved spec (`RunSpec.to_dict`).
        spec_hash: sha256 of ``spec``; names the file.
        config_hash: sha256 of ``spec`` without the seed; groups seeds in reports.
        model: Name, hyperparameters, parameter count, whether it trains on a likelihood bound.
        dataset: Name, checksum, source, preprocessing, split sizes.
        metrics: Evaluator name -> metric name -> `Estimate`.
        seeds: Every seed used (run, data order, evaluation).
        environment: Versions, CPU/GPU, threads, calibration figures.
        git: ``{"commit": ..., "dirty": ...}``.
        timings: Seconds: ``train``, ``eval`` (and per evaluator), ``total``.
        training: Steps completed, the training curve, the final loss terms.
        failure: ``{"reason": ..., "step": ..., "traceback": ...}`` when not ok.
        images: Relative paths of per-run image grids, if any were made.
        resources: Peak memory in MiB: ``peak_rss_mb`` (the run's own when ``peak_rss_scope``
            is ``run``, else the process's high-water mark, which is the run's own only when
            ``fresh_process``) and ``peak_gpu_memory_mb`` (CUDA only).
    """

    schema_version: int
    status: Status
    spec: dict[str, Any]
    spec_hash: str
    config_hash: str
    model: dict[str, Any]
    dataset: dict[str, Any]
    metrics: dict[str, dict[str, Estimate]]
    seeds: dict[str, int]
    environment: dict[str, Any]
    git: dict[str, Any]
    timings: dict[str, float]
    training: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] | None = None
    images: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    # Why a metric family ("ais") or one metric of it ("posterior_collapse/kl_per_dim") is n/a.
    undefined_metrics: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunRecord":
        """Build a record from parsed JSON, checking the schema version and keys."""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"Expected record schema_version {SCHEMA_VERSION}, but got {version!r}; "
                f"re-run the spec to regenerate it."
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"Expected record keys among {sorted(names)}, but got unknown {unknown}."
            )
        metrics = {
            family: {name: Estimate.from_dict(est) for name, est in values.items()}
            for family, values in data.get("metrics", {}).items()
        }
        return cls(**{**data, "metrics": metrics})

    def metric(self, family: str, name: str) -> Estimate | None:
        return self.metrics.get(family, {}).get(name)


def record_path(results_dir: Path, spec_name: str, dataset: str, spec_hash: str) -> Path:
    """Return where the record of a spec lives: ``results/runs/<dataset>/<name>-<hash12>.json``.

    The name goes through `safe_file_stem`: one path component, long names shortened.
    """
    stem = f"{safe_file_stem(spec_name)}-{spec_hash[:12]}"
    return Path(results_dir) / "runs" / safe_file_stem(dataset) / f"{stem}.json"


def _check_finite(value: Any, where: str = "record") -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"Expected every number in a record to be finite, but {where} is {value}; "
            f"a diverged run must be recorded with status 'diverged' and null values."
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}[{i}]")


def record_json(record: RunRecord) -> str:
    """Serialise a record: sorted keys, indented, NaN/Inf rejected with the offending path."""
    data = record.to_dict()
    _check_finite(data)
    return json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_record(record: RunRecord, path: Path) -> Path:
    """Write a record atomically: a temporary file in the same folder, fsync, then rename."""
    text = record_json(record)
    path = Path(path)
    atomic_write_text(path, text)
    return path


def read_record(path: Path) -> RunRecord:
    """Read and validate one record file."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"Expected {path} to be a JSON run record, but it is not: {error}"
        ) from None
    return RunRecord.from_dict(data)


def load_records(results_dir: Path) -> list[RunRecord]:
    """Load every run record under ``results_dir/runs``, sorted by path."""
    return [read_record(p) for p in sorted((Path(results_dir) / "runs").rglob("*.json"))]
