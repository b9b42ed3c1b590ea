"""The default executor: a stdlib process pool, one fresh spawned process per run.

Each run gets its own process (``max_tasks_per_child=1``), so a crash is contained and the
process's peak resident memory is the run's own. Workers are spawned by default, never forked
from the parent, which would hand them its torch thread pools and locks. A fresh spawned
process pays for importing torch and vaebench before each run (seconds; see
``python -m benchmark.perf executors``); ``start_method="forkserver"`` instead forks each run's
process from a clean server that imported those modules once, for sweeps of many short runs.

A worker that dies (killed for memory, a segfault, SIGKILL) breaks the whole pool, and Python
then fails every run that was still in it. No run is lost: the runs that had not started go
back into a fresh pool, and each run that was running when the pool broke is re-run *alone*, in
a pool of one, so that a death there is certainly its own. A run whose lone worker dies
``max_attempts`` times is recorded as ``failed``; the suite carries on.

With ``gpus`` (``--gpus 0,1``) the pool runs one worker per GPU, and each run takes a free GPU
when it starts and returns it when it ends (`benchmark.executors.devices`). A pool that broke
takes its GPUs with it: the next pool starts with all of them free.
"""

import os
import pkgutil
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from multiprocessing.queues import SimpleQueue
from typing import ClassVar

import torch

from benchmark.executors import Executor, OnEvent, RunEvent, error_details, record_crash
from benchmark.executors.devices import (
    VISIBLE_DEVICES_ENV,
    check_gpu_device,
    claim_gpu,
    parse_gpu_ids,
    physical_gpu_ids,
    run_on_device,
)
from benchmark.records import RunRecord
from benchmark.runner import RunOptions, machine_calibration, use_calibration
from benchmark.spec import RunSpec, load_plugins

POLL_SECONDS = 0.2  # how often the parent looks for runs that started


class LocalExecutor(Executor):
    """Run specs in a pool of spawned worker processes on this machine.

    Args:
        workers: Processes running at once; default: the CPU count.
        threads_per_worker: torch intra-op threads in each worker; default: ``OMP_NUM_THREADS``
            where it is set (workers call ``torch.set_num_threads``, which would override it),
            else the CPU count divided by ``workers``, so workers do not oversubscribe the cores.
        max_attempts: Deaths of a run's own worker tolerated before it is recorded ``failed``.
        plugins: Plugin modules or files to import in each worker (the CLI's ``--plugin``);
            a spec's own ``plugins:`` are imported by `run_spec` anyway.
        start_method: ``spawn`` (a new interpreter per run) or ``forkserver`` (a fork of a
            server process that preloaded torch, vaebench and the evaluators).
        gpus: GPU indices (``cuda:N`` of this process) to place runs on, one run per entry at
            a time; ``workers`` defaults to their number and may not exceed it. None: runs
            use the device of their options.
    """

    name = "local"
    # NOTE: what a worker calls with (spec, options, device); picklable by reference.
    task: ClassVar[Callable[[RunSpec, RunOptions, str | None], RunRecord]] = staticmethod(
        run_on_device
    )

    def __init__(
        self,
        *,
        workers: int | None = None,
        threads_per_worker: int | None = None,
        max_attempts: int = 2,
        plugins: tuple[str, ...] = (),
        start_method: str = "spawn",
        gpus: Sequence[str | int] | str | None = None,
    ) -> None:
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(
                f"Expected `start_method` to be 'spawn' or 'forkserver', but got {start_method!r}."
            )
        self.start_method = start_method
        self.gpus = parse_gpu_ids(gpus) if gpus is not None else None
        cpus = os.cpu_count() or 1
        default_workers = len(self.gpus) if self.gpus else cpus
        self.workers = _positive("workers", workers if workers is not None else default_workers)
        if self.gpus and self.workers > len(self.gpus):
            raise ValueError(
                f"Expected `workers` to be at most the {len(self.gpus)} GPU slot(s) of "
                f"`gpus` {list(self.gpus)}, but got {self.workers}. Hint: list a GPU twice "
                "(--gpus 0,0) to run two runs on it."
            )
        self.threads_per_worker = _positive(
            "threads_per_worker",
            threads_per_worker
            if threads_per_worker is not None  # NOTE: 0 is refused below, not read as unset
            else _omp_threads() or max(1, cpus // self.workers),
        )
        self.max_attempts = _positive("max_attempts", max_attempts)
        self.plugins = tuple(plugins)

    def run_pending(
        self, runs: Mapping[int, RunSpec], options: RunOptions, on_event: OnEvent
    ) -> Iterator[tuple[int, RunRecord]]:
        if self.gpus:
            check_gpu_device(options, "--gpus")
        # NOTE: measured once here, with the workers' thread count, before they compete for cores.
        calibration = machine_calibration(threads=self.threads_per_worker)
        pending, suspects, deaths = dict(runs), set(), Counter()
        while pending:
            batch = {i: s for i, s in pending.items() if i not in suspects}
            lone = [{i: s} for i, s in pending.items() if i in suspects]
            for group, workers in [(batch, self.workers)] + [(g, 1) for g in lone]:
                outcome = yield from self._run_group(group, workers, options, calibration, on_event)
                pending = {i: s for i, s in pending.items() if i not in outcome.finished}
                suspects |= outcome.suspects
                if min(workers, len(group)) == 1:  # one run at a time: the suspect is the culprit
                    deaths.update(outcome.suspects)
            yield from self._give_up(pending, deaths, options)
            pending = {i: s for i, s in pending.items() if deaths[i] < self.max_attempts}

    def _give_up(
        self, pending: dict[int, RunSpec], deaths: Counter, options: RunOptions
    ) -> Iterator[tuple[int, RunRecord]]:
        for index, spec in pending.items():
            if deaths[index] >= self.max_attempts:
                reason = f"worker process died; gave up after {deaths[index]} lone attempt(s)"
                yield index, record_crash(spec, options, reason, _DEATH_DETAILS)

    def _run_group(
        self,
        group: dict[int, RunSpec],
        workers: int,
        options: RunOptions,
        calibration: dict,
        on_event: OnEvent,
    ) -> Generator[tuple[int, RunRecord], None, "GroupOutcome"]:
        """Run `group` in one fresh pool; yield finished records and return a `GroupOutcome`."""
        outcome = GroupOutcome()
        if not group:
            return outcome
        context = self.mp_context()
        started: SimpleQueue = context.SimpleQueue()
        gpu_slots = self._gpu_slots(context)
        initargs = (started, calibration, self.threads_per_worker, self.plugins, gpu_slots)
        with ProcessPoolExecutor(
            max_workers=min(workers, len(group)),
            mp_context=context,
            max_tasks_per_child=1,
            initializer=_start_worker,
            initargs=initargs,
        ) as pool:
            futures = {
                pool.submit(_run_in_worker, i, s, options, self.task): i for i, s in group.items()
            }
            not_done: set[Future] = set(futures)
            while not_done:
                done, not_done = wait(not_done, POLL_SECONDS, return_when=FIRST_COMPLETED)
                outcome.started |= _report_started(started, group, on_event)
                for future in done:
                    yield from outcome.collect(futures[future], future, group, options)
        outcome.started |= _report_started(started, group, on_event)
        outcome.blame(group, on_event)
        return outcome

    def _gpu_slots(self, context: BaseContext) -> SimpleQueue | None:
        """Return a queue holding one (index, physical id) token per GPU slot, or None."""
        if not self.gpus:
            return None
        slots = context.SimpleQueue()
        visible = os.environ.get(VISIBLE_DEVICES_ENV)
        for index, physical in zip(self.gpus, physical_gpu_ids(self.gpus, visible), strict=True):
            slots.put((index, physical))
        return slots

    def mp_context(self) -> BaseContext:
        """Return the multiprocessing context of the workers (the forkserver's preload set)."""
        context = get_context(self.start_method)
        if self.start_method == "forkserver":
            # NOTE: the server imports the heavy modules once; each run still gets a new process
            import benchmark.evaluators as evaluators

            names = [m.name for m in pkgutil.iter_modules(evaluators.__path__)]
            context.set_forkserver_preload(
                ["benchmark.executors.local", "torch._dynamo"]
                + [f"benchmark.evaluators.{n}" for n in names if not n.startswith("_")]
            )
        return context


@dataclass
class GroupOutcome:
    """What happened to the runs of one pool: which finished, started, died, and are suspect."""

    finished: set[int] = field(default_factory=set)
    started: set[int] = field(default_factory=set)
    died: set[int] = field(default_factory=set)
    suspects: set[int] = field(default_factory=set)

    def collect(
        self, index: int, future: Future, group: dict[int, RunSpec], options: RunOptions
    ) -> Iterator[tuple[int, RunRecord]]:
        """Yield the record of a finished future; note the run if its worker's pool broke."""
        try:
            record = future.result()
        except BrokenProcessPool:
            self.died.add(index)
            return
        except Exception as error:  # noqa: BLE001  an error that escaped run_spec's own guard
            if not options.catch_failures:
                raise
            reason = f"{type(error).__name__}: {error}"
            record = record_crash(group[index], options, reason, error_details(error))
        self.finished.add(index)
        yield index, record

    def blame(self, group: dict[int, RunSpec], on_event: OnEvent) -> None:
        """Mark the runs that were running when the pool broke; one of them killed it."""
        # NOTE: if no start was seen (a crash while a worker started up), all are suspects,
        # so that each is tried alone and a run that always kills its worker ends as failed.
        self.suspects = (self.died & self.started) or set(self.died)
        for index in sorted(self.died):
            detail = "was running when a worker died" if index in self.suspects else "requeued"
            on_event(RunEvent(index, group[index], "retrying", detail=detail))


_DEATH_DETAILS = (
    "The process running this spec exited abruptly (e.g. killed by the out-of-memory killer or "
    "a signal, or a crash in native code), so no Python traceback exists. Run it alone with "
    "`vaebench run-job --suite S --index I` to see how it dies."
)


def _omp_threads() -> int | None:
    """Return ``$OMP_NUM_THREADS`` as a positive int, or None when unset or not one."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


_STARTED: SimpleQueue | None = None  # set in each worker by `_start_worker`
_GPU_SLOTS: SimpleQueue | None = None  # free GPUs of the pool, when it places runs on GPUs


def _start_worker(
    started: SimpleQueue,
    calibration: dict,
    threads: int,
    plugins: tuple[str, ...],
    gpu_slots: SimpleQueue | None = None,
) -> None:
    """Set up a fresh worker: where to announce starts, the parent's calibration, threads."""
    global _STARTED, _GPU_SLOTS
    _STARTED, _GPU_SLOTS = started, gpu_slots
    torch.set_num_threads(threads)
    use_calibration(calibration)
    load_plugins(plugins)


def _run_in_worker(index: int, spec: RunSpec, options: RunOptions, task: Callable) -> RunRecord:
    if _GPU_SLOTS is None:
        _STARTED.put((index, os.getpid()))  # NOTE: SimpleQueue.put writes before returning
        return task(spec, options, None)
    # NOTE: a worker holds its GPU for one run (max_tasks_per_child=1), then gives it back.
    gpu_index, physical_id = _GPU_SLOTS.get()
    try:
        _STARTED.put((index, os.getpid()))
        return task(spec, options, claim_gpu(physical_id, gpu_index))
    finally:
        _GPU_SLOTS.put((gpu_index, physical_id))


def _report_started(started: SimpleQueue, group: dict[int, RunSpec], on_event: OnEvent) -> set:
    indices = set()
    while not started.empty():
        index, pid = started.get()
        indices.add(index)
        on_event(RunEvent(index, group[index], "running", detail=f"pid {pid}"))
    return indices


def _positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Expected `{name}` to be a positive integer, but got {value!r}.")
    return value
