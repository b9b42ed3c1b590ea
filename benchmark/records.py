"""Run records: one versioned JSON file per run, written atomically, never containing NaN.

The schema is declared once, here (`RunRecord` and `SCHEMA_VERSION`). A record holds the resolved
spec and its hash, model and dataset identity, every metric as an `Estimate`, the seeds, the
environment, the git commit and timings. The path follows from the spec, so running the same
spec again targets the same file.

Each section of a record (model, dataset, training, timings, environment, resources, git) is a
small frozen dataclass whose fields reports read directly. Keys a section does not declare (a
newer writer's, or a per-evaluator timing) are kept in its ``extra`` and written back flat, so
the JSON layout is that of schema 1 and older records load unchanged. A section also reads as a
mapping of its JSON keys (``record.model["name"]``) for code that treats it as one.
"""

import json
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from benchmark.atomic import atomic_write_text, safe_file_stem
from metrics.estimate import Estimate

SCHEMA_VERSION = 1
Status = Literal["ok", "diverged", "failed"]
STATUSES: tuple[str, ...] = ("ok", "diverged", "failed")
log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Section(Mapping):
    """A record section: declared fields plus ``extra`` (undeclared keys), one flat JSON object.

    Subclasses declare their fields and end with ``extra``; ``JSON_KEYS`` maps a field to its
    JSON key where the two differ (``class_name`` is written ``class``).
    """

    JSON_KEYS: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_dict(cls, data: "Mapping[str, Any] | Section | None") -> Self:
        """Build the section from its JSON object; undeclared keys go to ``extra``."""
        if isinstance(data, cls):
            return data
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise TypeError(
                f"Expected record section `{cls.__name__}` to be a mapping, but got "
                f"{type(data).__name__}."
            )
        data = dict(data)
        declared = {}
        for f in fields(cls):
            key = cls.JSON_KEYS.get(f.name, f.name)
            if f.name != "extra" and key in data:
                declared[f.name] = data.pop(key)
        return cls(**declared, extra=data)

    def to_dict(self) -> dict[str, Any]:
        """Return the flat JSON object: declared fields by their JSON keys (those that are None
        left out, as absent keys read back as None), then ``extra``."""
        data = {
            self.JSON_KEYS.get(f.name, f.name): _plain(getattr(self, f.name))
            for f in fields(self)
            if f.name != "extra" and getattr(self, f.name) is not None
        }
        return {**data, **self.extra}

    def __getitem__(self, key: str) -> Any:
        names = {self.JSON_KEYS.get(f.name, f.name): f.name for f in fields(self)}
        if key in names and key != "extra":
            return getattr(self, names[key])
        return self.extra[key]

    def __eq__(self, other: object) -> bool:
        """Equal to a section of the same type, or to a mapping, with the same JSON object."""
        if isinstance(other, Section):
            return type(self) is type(other) and self.to_dict() == other.to_dict()
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # NOTE: holds dicts, so never hashable

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True, eq=False)
class ModelInfo(Section):
    """The model a run trained: registry name, class, size, and what its likelihoods mean."""

    name: str = ""
    class_name: str | None = None
    num_parameters: int | None = None
    latent_dim: int | None = None
    trains_on_likelihood_bound: bool = True  # False: marked ‡ (e.g. WAE)
    conditions_on_labels: bool = False  # True: scored on log p(x|y), marked §
    beta: float | None = None  # KL weight, for figures that plot against it
    extra: dict[str, Any] = field(default_factory=dict)

    JSON_KEYS: ClassVar[dict[str, str]] = {"class_name": "class"}


@dataclass(frozen=True, eq=False)
class DatasetInfo(Section):
    """The data a run saw: name, checksum, source, preprocessing, shape and split sizes."""

    name: str = ""
    checksum: str | None = None
    source: str | None = None
    preprocessing: str | None = None
    data_shape: tuple[int, ...] | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data_shape is not None:
            object.__setattr__(self, "data_shape", tuple(self.data_shape))


@dataclass(frozen=True, eq=False)
class TrainingInfo(Section):
    """How training went: steps completed, where it resumed, the curve and final loss terms."""

    steps_completed: int | None = None
    resumed_from_step: int | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)  # [{"step", "loss", ...}]
    final: dict[str, Any] = field(default_factory=dict)
    # Test NLL of a fixed subset at the end of each pass of a protocol schedule, if asked for.
    learning_curve: list[dict[str, Any]] = field(default_factory=list)
    budget_fraction: float | None = None  # share of the protocol's budget trained; None: none
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Timings(Section):
    """Wall seconds: training, evaluation (``eval_<family>`` per evaluator in ``extra``), total."""

    train: float | None = None
    eval: float | None = None
    total: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_evaluator(self) -> dict[str, float]:
        """Return evaluator family -> seconds."""
        return {k.removeprefix("eval_"): v for k, v in self.extra.items() if k.startswith("eval_")}


@dataclass(frozen=True, eq=False)
class Environment(Section):
    """Software versions, hardware, and the start-up calibration of the process."""

    python: str | None = None
    torch: str | None = None
    numpy: str | None = None
    platform: str | None = None
    machine: str | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None
    torch_threads: int | None = None
    gpu: str | None = None
    hardware_fingerprint: str | None = None
    calibration: dict[str, Any] | None = None  # {"gemm_gflops", "memory_gbps", ...}
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gemm_gflops(self) -> float | None:
        """Return the calibrated fp32 GEMM rate of the process, if measured."""
        return (self.calibration or {}).get("gemm_gflops") or None


@dataclass(frozen=True, eq=False)
class Resources(Section):
    """Peak memory in MiB (see `RunRecord`) and whether the run had its process to itself."""

    peak_rss_mb: float | None = None
    peak_rss_scope: str | None = None  # "run" or "process"
    fresh_process: bool | None = None
    peak_gpu_memory_mb: float | None = None
    device: str | None = None  # where the run ran: cpu, cuda:N, mps (not part of the spec hash)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class GitState(Section):
    """The commit a run came from, and whether tracked files differed from it."""

    commit: str | None = None
    dirty: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> str:
        """Return the 7-digit commit, marked ``(dirty)`` when the tree was."""
        commit = (self.commit or "")[:7]
        return f"{commit} (dirty)" if self.dirty else commit


@dataclass(frozen=True, order=True)
class ConfigKey:
    """A configuration of the leaderboard: a run name and the first 8 digits of its config hash.

    Runs that differ only by seed share one. Shown as ``name@hash``.
    """

    run: str
    config_hash: str

    def __str__(self) -> str:
        return f"{self.run}@{self.config_hash}"


SECTIONS: dict[str, type[Section]] = {
    "model": ModelInfo,
    "dataset": DatasetInfo,
    "training": TrainingInfo,
    "timings": Timings,
    "environment": Environment,
    "resources": Resources,
    "git": GitState,
}


@dataclass(frozen=True)
class RunRecord:
    """Everything a run produced, and everything needed to reproduce it.

    Attributes:
        schema_version: Version of this layout; bumped on any incompatible change.
        status: ``ok``, ``diverged`` (non-finite loss; metrics are empty) or ``failed``.
        spec: The fully resolved spec (`RunSpec.to_dict`).
        spec_hash: sha256 of ``spec``; names the file.
        config_hash: sha256 of ``spec`` without the seed; groups seeds in reports.
        model: Name, class, parameter count, whether it trains on a likelihood bound.
        dataset: Name, checksum, source, preprocessing, split sizes.
        metrics: Evaluator name -> metric name -> `Estimate`.
        seeds: Every seed used (run, data order, evaluation).
        environment: Versions, CPU/GPU, threads, calibration figures.
        git: Commit and dirty flag.
        timings: Seconds: ``train``, ``eval`` (and per evaluator), ``total``.
        training: Steps completed, the training curve, the final loss terms.
        failure: ``{"reason": ..., "step": ..., "traceback": ...}`` when not ok.
        images: Relative paths of per-run image grids, if any were made.
        resources: Peak memory in MiB: ``peak_rss_mb`` (the run's own when ``peak_rss_scope``
            is ``run``, else the process's high-water mark, which is the run's own only when
            ``fresh_process``) and ``peak_gpu_memory_mb`` (CUDA only).

    Sections may be given as mappings (as `build_record` does); they are converted to their
    dataclasses on construction.
    """

    schema_version: int
    status: Status
    spec: dict[str, Any]
    spec_hash: str
    config_hash: str
    model: ModelInfo
    dataset: DatasetInfo
    metrics: dict[str, dict[str, Estimate]]
    seeds: dict[str, int]
    environment: Environment
    git: GitState
    timings: Timings
    training: TrainingInfo = field(default_factory=TrainingInfo)
    failure: dict[str, Any] | None = None
    images: dict[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    # Why a metric family ("ais") or one metric of it ("posterior_collapse/kl_per_dim") is n/a.
    undefined_metrics: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, section in SECTIONS.items():
            object.__setattr__(self, name, section.from_dict(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update({name: getattr(self, name).to_dict() for name in SECTIONS})
        data["metrics"] = {
            family: {name: asdict(e) for name, e in values.items()}
            for family, values in self.metrics.items()
        }
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "RunRecord":
        """Build a record from parsed JSON, checking its version, keys, status and shape.

        Raises:
            ValueError: naming what is wrong (the caller adds the file).
        """
        if not isinstance(data, dict):
            raise ValueError(f"Expected a JSON object, but got a JSON {type(data).__name__}.")
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
        _check_shape(data)
        _check_finite(data)
        try:
            metrics = {
                family: {name: Estimate.from_dict(est) for name, est in values.items()}
                for family, values in data.get("metrics", {}).items()
            }
            return cls(**{**data, "metrics": metrics})
        except TypeError as error:
            raise ValueError(f"Expected a complete run record, but {error}.") from None

    def metric(self, family: str, name: str) -> Estimate | None:
        return self.metrics.get(family, {}).get(name)

    @property
    def name(self) -> str:
        """Return the run name of the spec."""
        return self.spec["name"]

    @property
    def seed(self) -> int:
        """Return the run's seed."""
        return self.spec["seed"]

    @property
    def config_key(self) -> ConfigKey:
        """Return the configuration this run is a seed of."""
        return ConfigKey(self.spec["name"], self.config_hash[:8])


def _check_shape(data: dict[str, Any]) -> None:
    """Raise ValueError when the parts every report reads are missing or of the wrong type."""
    spec = data.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise ValueError("Expected `spec` to be a mapping with a non-empty string `name`.")
    if data.get("status") not in STATUSES:
        raise ValueError(f"Expected `status` among {STATUSES}, but got {data.get('status')!r}.")
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict) or not all(
        isinstance(v, dict) and all(isinstance(e, dict) for e in v.values())
        for v in metrics.values()
    ):
        raise ValueError("Expected `metrics` to map family -> metric -> estimate object.")
    for name in SECTIONS:
        if not isinstance(data.get(name, {}), dict):
            raise ValueError(f"Expected `{name}` to be a JSON object.")
    dataset = data.get("dataset", {})
    if not isinstance(dataset.get("name"), str):
        raise ValueError("Expected `dataset.name` to be a string.")


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
    """Read and validate one record file.

    Raises:
        ValueError: naming the file and what is wrong with it (not JSON, not UTF-8, a folder,
            another schema, a missing or mistyped part).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return RunRecord.from_dict(data)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"Expected {path} to be a JSON run record, but it is not: {error}"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ValueError(f"Expected {path} to be a run record, but: {reason}") from None


def load_records(results_dir: Path, *, strict: bool = False) -> list[RunRecord]:
    """Load every run record under ``results_dir/runs``, sorted by path.

    Args:
        results_dir: Holds ``runs/<dataset>/*.json``.
        strict: Raise on the first bad file instead of skipping it.

    Returns:
        The records that read; each bad file is skipped with one warning line naming it.

    Raises:
        ValueError: with `strict`, for the first file that is not a valid record.
    """
    records = []
    for path in sorted((Path(results_dir) / "runs").rglob("*.json")):
        try:
            records.append(read_record(path))
        except ValueError as error:
            if strict:
                raise
            log.warning("skipped %s (use --strict to fail instead)", error)
    return records
