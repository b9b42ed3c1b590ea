"""Executors: where the runs of a suite are carried out, behind one interface.

Every run is the pure job `run_spec`: resolved spec in, record out, the record written atomically
to a path that follows from the spec hash. Executors differ only in where that job runs:

- ``local`` (default): a stdlib process pool, one fresh process per run, spawned (or forked
  from a preloaded forkserver) (`local.py`). Nothing to install.
- ``ray``: one Ray task per run, on a local or remote Ray cluster (`ray_executor.py`), with the
  optional extra ``pip install 'vaebench[ray]'``.
- ``serial``: in this process, one run after the other (debugging, and the overhead baseline).

`Executor.map_runs` does the bookkeeping shared by all three: a run whose record can be reused
(`existing_record`: same spec hash and status ok, or failed/diverged unless ``rerun_failed``;
nothing with ``force``) is reported ``cached`` and never submitted, and identical specs run
once. Each executor then only implements `Executor.run_pending`. Progress reaches an
``on_event`` callback as `RunEvent`s (`progress.SuiteProgress` draws them).
"""

import difflib
import inspect
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from benchmark.records import RunRecord, record_path, write_record
from benchmark.runner import RunOptions, build_record, existing_record, run_spec
from benchmark.spec import RunSpec

EventStatus = Literal["running", "retrying", "done", "cached", "failed", "diverged"]


@dataclass(frozen=True)
class RunEvent:
    """One step in the life of one run of a suite.

    Attributes:
        index: Position of the run in the expanded suite (as in ``vaebench suite S --list``).
        spec: The run's resolved spec.
        status: ``running`` when it starts, ``retrying`` when its worker died and it will run
            again, then one final status: ``done`` (record ok), ``cached`` (an ok record existed,
            or an identical spec of the suite produced it), ``failed`` or ``diverged``.
        record: The run's record, with every final status.
        detail: A short human-readable note (a worker pid, the reason of a failure).
    """

    index: int
    spec: RunSpec
    status: EventStatus
    record: RunRecord | None = None
    detail: str = ""


OnEvent = Callable[[RunEvent], None]


def ignore_event(event: RunEvent) -> None:
    """Drop an event: the default `on_event`."""


def final_status(record: RunRecord) -> EventStatus:
    """Return the event status that reports a finished run's record."""
    return "done" if record.status == "ok" else record.status


class Executor(ABC):
    """Runs resolved specs somewhere and returns their records, in the order of the specs."""

    name: ClassVar[str]

    def map_runs(
        self, specs: Sequence[RunSpec], options: RunOptions, *, on_event: OnEvent = ignore_event
    ) -> list[RunRecord]:
        """Run every spec not already recorded ok, and return one record per spec, in order.

        Args:
            specs: Resolved specs, e.g. ``load_suite(...).runs``.
            options: How to run them; ``force``/``rerun_failed`` decide what counts as cached.
            on_event: Called in this process for every `RunEvent`, as runs start and finish.
        """
        records: dict[int, RunRecord] = {}
        first_of_hash: dict[str, int] = {}
        pending: dict[int, RunSpec] = {}
        for index, spec in enumerate(specs):
            cached = existing_record(spec, options)
            if cached is not None:
                records[index] = cached
                note = (
                    "" if cached.status == "ok" else f"{cached.status}; --rerun-failed re-runs it"
                )
                on_event(RunEvent(index, spec, "cached", cached, note))
            elif first_of_hash.setdefault(spec.hash, index) == index:
                pending[index] = spec
        for index, record in self.run_pending(pending, options, on_event):
            records[index] = record
            on_event(RunEvent(index, specs[index], final_status(record), record, _reason(record)))
        for index, spec in enumerate(specs):
            if index not in records:  # NOTE: a repeat of a spec the suite already ran
                records[index] = records[first_of_hash[spec.hash]]
                on_event(RunEvent(index, spec, "cached", records[index], "identical spec"))
        return [records[index] for index in range(len(specs))]

    @abstractmethod
    def run_pending(
        self, runs: Mapping[int, RunSpec], options: RunOptions, on_event: OnEvent
    ) -> Iterator[tuple[int, RunRecord]]:
        """Run each spec (none is cached, no two are identical) and yield ``(index, record)``.

        Yields records as runs finish, in any order, and reports ``running`` (and ``retrying``)
        events itself; `map_runs` reports the final status.
        """


class SerialExecutor(Executor):
    """Run every spec in this process, one after the other."""

    name = "serial"

    def run_pending(
        self, runs: Mapping[int, RunSpec], options: RunOptions, on_event: OnEvent
    ) -> Iterator[tuple[int, RunRecord]]:
        for index, spec in runs.items():
            on_event(RunEvent(index, spec, "running"))
            yield index, run_spec(spec, options)


def record_crash(spec: RunSpec, options: RunOptions, reason: str, details: str) -> RunRecord:
    """Write and return a ``failed`` record for a run that died outside `run_spec`'s own guard.

    Used when the process running it was killed (out of memory, a segfault, a lost node) or
    an error escaped `run_spec`, so that the suite carries on and the failure is on disk.

    Args:
        spec: The run that died.
        options: Where its record goes.
        reason: One line, e.g. ``"Ray task failed: WorkerCrashedError"``.
        details: The traceback or error text, stored as the record's ``failure.traceback``.
    """
    context = {"timings": {}, "training": {}, "model_info": {}, "dataset_info": {}}
    failure = {"reason": reason, "traceback": details}
    record = build_record(spec, "failed", {}, failure, context)
    write_record(
        record, record_path(options.results_dir, spec.name, spec.dataset["name"], spec.hash)
    )
    return record


def error_details(error: BaseException) -> str:
    """Return the full traceback of `error`, including a worker's remote traceback if chained."""
    return "".join(traceback.format_exception(error))


def _reason(record: RunRecord) -> str:
    return (record.failure or {}).get("reason", "") if record.status != "ok" else ""


# NOTE: imported last, because both modules subclass `Executor` from this one.
from benchmark.executors.local import LocalExecutor  # noqa: E402
from benchmark.executors.ray_executor import RayExecutor  # noqa: E402

EXECUTORS: dict[str, type[Executor]] = {
    "local": LocalExecutor,
    "ray": RayExecutor,
    "serial": SerialExecutor,
}


def list_executors() -> list[str]:
    """Return the executor names accepted by ``vaebench suite --executor``."""
    return sorted(EXECUTORS)


def create_executor(name: str, **settings: Any) -> Executor:
    """Build the executor `name` with its keyword settings (e.g. ``workers=4`` for ``local``).

    Raises:
        ValueError: for an unknown name (with close matches) or a setting it does not take.
    """
    if name not in EXECUTORS:
        close = difflib.get_close_matches(name, list_executors(), n=2, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Expected `executor` to be one of {list_executors()}, but got {name!r}.{hint}"
        )
    allowed = executor_settings(name)
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(
            f"Expected settings of executor {name!r} among {allowed}, but got {unknown}."
        )
    return EXECUTORS[name](**settings)


def executor_settings(name: str) -> list[str]:
    """Return the keyword settings that executor `name` takes: its constructor's parameters."""
    parameters = inspect.signature(EXECUTORS[name]).parameters
    return [p for p, param in parameters.items() if param.kind is inspect.Parameter.KEYWORD_ONLY]
