"""Progress of unfinished runs: a snapshot of a run's checkpoint, kept until its record exists.

A protocol run (``iwae_table1``: 9,774,400 steps, about 12 h on one CPU thread) trains across
sessions, resuming from its checkpoint, and has no record until it ends. `vaebench progress
SUITE` reads the checkpoint of each unfinished job and writes a `ProgressSnapshot`, one JSON file
per run at ``results/progress/<dataset>/<name>-<hash12>.json``: the step reached, the share of the
protocol's budget done (``step / train.paper_steps``), the pass-end learning-curve probes and the
last point of the training curve. The leaderboard's "Paper vs reproduced" shows such a run as
``in progress``.

The record wins: a snapshot whose spec has an ``ok`` record is ignored, and the next `vaebench
progress` of its suite deletes it. Checkpoints are only read (``torch.load(weights_only=True)``).
"""

import difflib
import fnmatch
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from benchmark.atomic import atomic_write_text, safe_file_stem
from benchmark.records import RunRecord, read_record, record_path
from benchmark.spec import RunSpec, training_hash_of
from registry._typecheck import check_value

PROGRESS_SCHEMA_VERSION = 1
Number = int | float | None  # JSON numbers of probes and curve points (ints stay ints)
PROBE_KEYS = ("step", "epoch", "nll", "k", "examples")  # every pass-end probe has these
PROGRESS_DIR = "progress"  # under the results folder, beside runs/
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressSnapshot:
    """Where an unfinished run stands, read from its checkpoint (written as one JSON file)."""

    name: str  # the spec's run name
    seed: int
    dataset: str  # dataset registry name
    spec_hash: str  # sha256 of the resolved spec: the record this run will write
    config_hash: str  # sha256 without the seed: groups seeds, as records do
    step: int  # optimisation steps done
    steps: int  # steps the spec trains for (``train.steps``)
    paper_steps: int | None  # the protocol's full budget (``train.paper_steps``); None: none
    # Pass-end probes: {step, epoch, nll, nll_stderr, k, examples} (`runner.learning_curve_probe`)
    learning_curve: tuple[dict[str, Number], ...] = ()
    last_curve_point: dict[str, Number] | None = None  # the training curve's last point
    checkpoint_mtime: str = ""  # when the checkpoint was last written, UTC ISO 8601
    git_commit: str | None = None  # the checkout that wrote this snapshot
    spec: dict[str, Any] = field(default_factory=dict)  # the resolved spec, for matching
    schema_version: int = PROGRESS_SCHEMA_VERSION

    def __post_init__(self) -> None:
        for index, probe in enumerate(self.learning_curve):
            missing = [k for k in PROBE_KEYS if not isinstance(probe.get(k), int | float)]
            if missing:
                raise ValueError(
                    f"Expected `learning_curve[{index}]` to hold numbers {list(PROBE_KEYS)}, "
                    f"but {missing} are missing or null."
                )

    @property
    def budget_fraction(self) -> float | None:
        """Return the share of the protocol's budget done, or None without a protocol budget."""
        return self.step / self.paper_steps if self.paper_steps else None

    @property
    def last_probe(self) -> dict[str, Number] | None:
        """Return the latest pass-end probe, or None before the first pass ends."""
        return self.learning_curve[-1] if self.learning_curve else None

    @property
    def suite(self) -> str | None:
        """Return the suite the run was expanded from, if any."""
        return self.spec.get("suite")

    def to_json(self) -> str:
        """Serialise like a record: sorted keys, indented, no NaN."""
        return json.dumps(asdict(self), sort_keys=True, indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> "ProgressSnapshot":
        """Build a snapshot from parsed JSON, checking its version, keys and types.

        Raises:
            ValueError, TypeError: naming what is wrong (the caller adds the file).
        """
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != PROGRESS_SCHEMA_VERSION:
            raise ValueError(
                f"Expected progress schema_version {PROGRESS_SCHEMA_VERSION}, but got "
                f"{version!r}; run `vaebench progress SUITE` to rewrite it."
            )
        return check_value("progress", data, cls)


def progress_snapshot(
    spec: RunSpec, state: dict[str, Any], *, checkpoint_mtime: float, git_commit: str | None
) -> ProgressSnapshot:
    """Return the snapshot of `spec`'s run from its checkpoint's training state.

    Args:
        spec: The suite job whose checkpoint this is.
        state: The checkpoint's ``state`` (`benchmark.trainer.TrainState` as a dict).
        checkpoint_mtime: The checkpoint file's modification time, seconds since the epoch.
        git_commit: The commit of the checkout writing the snapshot.
    """
    curve = state.get("curve") or []
    return check_value(
        "checkpoint state",
        {
            "name": spec.name,
            "seed": spec.seed,
            "dataset": spec.dataset["name"],
            "spec_hash": spec.hash,
            "config_hash": spec.config_hash,
            "step": state.get("step"),
            "steps": spec.train.steps,
            "paper_steps": spec.train.paper_steps,
            "learning_curve": state.get("learning_curve") or [],
            "last_curve_point": curve[-1] if curve else None,
            "checkpoint_mtime": datetime.fromtimestamp(checkpoint_mtime, UTC).isoformat(
                timespec="seconds"
            ),
            "git_commit": git_commit,
            "spec": spec.to_dict(),
        },
        ProgressSnapshot,
    )


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """Return the training state of a checkpoint, read-only and without unpickling code.

    Raises:
        ValueError: the file is unreadable or holds no training state.
    """
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  any unreadable file is one line
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(f"Expected {path} to be a vaebench checkpoint, but: {reason}") from None
    state = payload.get("state") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"Expected {path} to be a vaebench checkpoint with a training state.")
    return state


def snapshot_path(results_dir: Path, snapshot: ProgressSnapshot) -> Path:
    """Return ``results/progress/<dataset>/<name>-<hash12>.json``, as records are named."""
    stem = f"{safe_file_stem(snapshot.name)}-{snapshot.spec_hash[:12]}"
    return Path(results_dir) / PROGRESS_DIR / safe_file_stem(snapshot.dataset) / f"{stem}.json"


def write_snapshot(snapshot: ProgressSnapshot, results_dir: Path) -> Path:
    """Write the snapshot atomically under ``results_dir/progress`` and return its path."""
    path = snapshot_path(results_dir, snapshot)
    atomic_write_text(path, snapshot.to_json())
    return path


def read_snapshot(path: Path) -> ProgressSnapshot:
    """Read and validate one snapshot file.

    Raises:
        ValueError: naming the file and what is wrong with it.
    """
    try:
        return ProgressSnapshot.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, RecursionError) as error:
        reason = " ".join(str(error).split())[:300]
        raise ValueError(f"Expected {path} to be a progress snapshot, but: {reason}") from None


def load_progress(results_dir: Path, *, strict: bool = False) -> list[ProgressSnapshot]:
    """Load every snapshot under ``results_dir/progress``, sorted by path.

    A bad file is skipped with one warning line naming it (with `strict`: raised), as records.
    """
    snapshots = []
    for path in sorted((Path(results_dir) / PROGRESS_DIR).rglob("*.json")):
        try:
            snapshots.append(read_snapshot(path))
        except ValueError as error:
            if strict:
                raise
            log.warning("skipped %s (use --strict to fail instead)", error)
    return snapshots


def unfinished(
    snapshots: list[ProgressSnapshot], records: list[RunRecord]
) -> list[ProgressSnapshot]:
    """Drop the snapshots whose spec has an ``ok`` record: the record wins."""
    finished = {r.spec_hash for r in records if r.status == "ok"}
    return [s for s in snapshots if s.spec_hash not in finished]


def filter_snapshots(
    snapshots: list[ProgressSnapshot],
    *,
    datasets: list[str] | None = None,
    models: list[str] | None = None,
) -> list[ProgressSnapshot]:
    """Keep snapshots as `benchmark.leaderboard.filter_records` keeps records (shell patterns)."""

    def hit(name: str, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    return [
        s
        for s in snapshots
        if (datasets is None or hit(s.dataset, datasets))
        and (models is None or hit(s.name, models) or hit(_model_name(s), models))
    ]


def _model_name(snapshot: ProgressSnapshot) -> str:
    return str(snapshot.spec.get("model", {}).get("name", ""))


def ok_record(spec: RunSpec, results_dir: Path) -> bool:
    """Return whether `spec` has a readable record with status ``ok``."""
    path = record_path(results_dir, spec.name, spec.dataset["name"], spec.hash)
    return _is_ok_record(path, spec.hash)


def check_checkpoint_folder(folder: Path) -> None:
    """Raise one line, suggesting close folder names, unless `folder` is a folder.

    Raises:
        ValueError: `folder` does not exist or is not a folder.
    """
    folder = Path(folder)
    if folder.is_dir():
        return
    parent = folder.parent if folder.parent.is_dir() else None
    siblings = [str(p) for p in parent.iterdir() if p.is_dir()] if parent else []
    close = difflib.get_close_matches(str(folder), siblings, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Expected `--checkpoints` to be the folder the suite's runs checkpoint to, but "
        f"{str(folder)[:200]!r} is not a folder.{hint} Pass the `--checkpoints` the suite ran with."
    )


JobState = Literal["done", "in progress", "not started", "unreadable"]


@dataclass(frozen=True)
class JobProgress:
    """What `vaebench progress` found for one suite job."""

    spec: RunSpec
    state: JobState
    snapshot: ProgressSnapshot | None = None
    reason: str = ""  # why a checkpoint could not be read


def refresh_progress(
    runs: tuple[RunSpec, ...], *, checkpoint_dir: Path, results_dir: Path
) -> list[JobProgress]:
    """Write or refresh the snapshot of every job without an ok record whose checkpoint exists.

    Args:
        runs: The suite's resolved jobs.
        checkpoint_dir: Where the runs' checkpoints are (``<training_hash[:16]>.pt``).
        results_dir: The snapshots go to ``results_dir/progress`` and nowhere else.
    """
    from benchmark.environment import git_state

    commit = git_state().get("commit")
    jobs = []
    for spec in runs:
        checkpoint = Path(checkpoint_dir) / f"{spec.training_hash[:16]}.pt"
        if ok_record(spec, results_dir):
            jobs.append(JobProgress(spec, "done"))
        elif not checkpoint.is_file():
            jobs.append(JobProgress(spec, "not started"))
        else:
            try:
                state = read_checkpoint_state(checkpoint)
                mtime = checkpoint.stat().st_mtime
                snapshot = progress_snapshot(spec, state, checkpoint_mtime=mtime, git_commit=commit)
            except (ValueError, TypeError) as error:
                jobs.append(JobProgress(spec, "unreadable", reason=" ".join(str(error).split())))
                continue
            write_snapshot(snapshot, results_dir)
            remove_superseded_snapshots(spec, results_dir)
            jobs.append(JobProgress(spec, "in progress", snapshot))
    return jobs


def remove_superseded_snapshots(spec: RunSpec, results_dir: Path) -> list[Path]:
    """Delete the snapshots of `spec`'s job (suite, name, seed) written under an older spec of
    the same training (e.g. before an evaluator was added): they read the same checkpoint, and
    their spec is no longer what the suite runs, so the leaderboard would show the run twice.

    A snapshot of another training (another checkpoint) is kept: it may still be running.
    """
    removed = []
    folder = Path(results_dir) / PROGRESS_DIR / safe_file_stem(spec.dataset["name"])
    for path in sorted(folder.glob(f"{safe_file_stem(spec.name)}-*.json")):
        try:
            other = read_snapshot(path)
        except ValueError:
            continue  # NOTE: not ours to judge here; the leaderboard warns about it
        if (
            other.spec_hash != spec.hash
            and (other.suite, other.name, other.seed) == (spec.suite, spec.name, spec.seed)
            and _training_hash(other) == spec.training_hash
        ):
            path.unlink()
            log.info("removed %s: the same training under an older spec", path)
            removed.append(path)
    return removed


def _training_hash(snapshot: ProgressSnapshot) -> str | None:
    try:
        return training_hash_of(snapshot.spec)
    except (KeyError, TypeError, ValueError):
        return None  # a spec without the training keys: not comparable, so kept


def remove_finished_snapshots(suite: str, results_dir: Path) -> list[Path]:
    """Delete the snapshots of `suite` whose run now has an ok record; return their paths."""
    removed = []
    for path in sorted((Path(results_dir) / PROGRESS_DIR).rglob("*.json")):
        try:
            snapshot = read_snapshot(path)
        except ValueError:
            continue  # NOTE: not ours to judge here; the leaderboard warns about it
        record = record_path(results_dir, snapshot.name, snapshot.dataset, snapshot.spec_hash)
        if snapshot.suite == suite and _is_ok_record(record, snapshot.spec_hash):
            path.unlink()
            removed.append(path)
    return removed


def _is_ok_record(path: Path, spec_hash: str) -> bool:
    try:
        record = read_record(path) if path.is_file() else None
    except ValueError:
        return False
    return record is not None and record.spec_hash == spec_hash and record.status == "ok"


def format_percent(fraction: float) -> str:
    """Format a budget fraction as a percentage: 0.0945 -> ``9.5 %``, 0.0002 -> ``0.02 %``."""
    percent = 100 * fraction
    return f"{percent:.1f} %" if percent >= 0.1 or percent == 0 else f"{percent:.2g} %"


def progress_line(job: JobProgress) -> str:
    """Return the line `vaebench progress` prints for one job."""
    spec = job.spec
    head = f"{spec.name}\tseed={spec.seed}\t"
    if job.snapshot is None:
        detail = {"done": "done (record written)", "not started": "no checkpoint yet"}
        return head + detail.get(job.state, f"checkpoint unreadable: {job.reason}")
    s = job.snapshot
    budget = f"{format_percent(s.budget_fraction)} of the paper's budget" if s.paper_steps else ""
    probe = s.last_probe
    last = (
        f"last probe: {probe['nll']:.2f} nats at epoch {probe['epoch']:g} (k = {probe['k']:g})"
        if probe
        else "no pass-end probe yet"
    )
    return head + "\t".join(
        part for part in (f"step {s.step:,} / {s.steps:,}", budget, last) if part
    )
