"""The Ray executor: one Ray core task per run, on a local Ray instance or an existing cluster.

Install with ``pip install 'vaebench[ray]'``; Ray is imported only when this executor runs.
Each task calls `run_spec`, which writes the run's record atomically where the task runs; the
driver also writes the returned record when it cannot see that file, so a cluster without a
shared filesystem still ends with every record on the driver. Checkpoints stay on the node
that trained (with a shared ``--checkpoints`` folder, a retried run resumes from them).

Resources are *how* to run, not *what*: ``num_cpus``/``num_gpus`` come from the command line,
never from the spec, so they do not change spec hashes. A task whose worker or node is lost is
retried by Ray up to ``max_retries`` times; an exception inside a run is not retried (`run_spec`
records it as ``failed``).

With ``num_gpus > 0`` each run uses the GPU Ray assigned to its task (``ray.get_gpu_ids()``),
in a fresh worker process; a task that reserved no GPU runs on the CPU when the device is
``auto``, so unreserved runs never crowd a GPU.
"""

import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from benchmark.executors import Executor, OnEvent, RunEvent, error_details, record_crash
from benchmark.executors.devices import (
    VISIBLE_DEVICES_ENV,
    check_gpu_device,
    ray_task_device,
    run_on_device,
)
from benchmark.records import RunRecord, record_path, write_record
from benchmark.runner import RunOptions
from benchmark.spec import RunSpec, load_plugins

INSTALL_HINT = "pip install 'vaebench[ray]'"


class RayExecutor(Executor):
    """Run each spec as a Ray task with the given resources.

    Args:
        address: Ray cluster to join (``ray start --head`` prints it; ``auto`` finds a local
            one); None starts a private local instance for the suite and stops it afterwards.
        num_cpus: CPUs reserved per run; also the run's torch thread count (at least 1).
        num_gpus: GPUs reserved per run (fractions share a GPU).
        max_retries: Times Ray re-runs a task whose worker process or node was lost.
        plugins: Plugin modules or files each task imports (the CLI's ``--plugin``); use
            importable module names or paths valid on every node.
        init_options: Extra keyword arguments for ``ray.init`` (e.g. ``num_cpus`` of a local
            instance, ``runtime_env``).
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_retries: int = 3,
        plugins: tuple[str, ...] = (),
        init_options: dict[str, Any] | None = None,
    ) -> None:
        for name, value in (
            ("num_cpus", num_cpus),
            ("num_gpus", num_gpus),
            ("max_retries", max_retries),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"Expected `{name}` to be a number >= 0, but got {value!r}.")
        import_ray()  # NOTE: fail before anything runs, not after the cached runs are listed
        self.address = address
        self.num_cpus, self.num_gpus, self.max_retries = num_cpus, num_gpus, int(max_retries)
        self.plugins = tuple(plugins)
        self.init_options = dict(init_options or {})

    def run_pending(
        self, runs: Mapping[int, RunSpec], options: RunOptions, on_event: OnEvent
    ) -> Iterator[tuple[int, RunRecord]]:
        if self.num_gpus > 0:
            check_gpu_device(options, "--num-gpus")
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, **self.init_options)
        try:
            yield from self._submit_and_collect(ray, runs, absolute_paths(options), on_event)
        finally:
            if started_here:
                ray.shutdown()

    def _submit_and_collect(
        self, ray: ModuleType, runs: Mapping[int, RunSpec], options: RunOptions, on_event: OnEvent
    ) -> Iterator[tuple[int, RunRecord]]:
        # NOTE: a GPU task gets a fresh worker process (max_calls=1), so CUDA starts after Ray
        # set its CUDA_VISIBLE_DEVICES and its memory is freed; Ray does this by default only
        # for functions declared with num_gpus, and `.options` cannot set it.
        remote = ray.remote(max_calls=1)(_run_task) if self.num_gpus > 0 else ray.remote(_run_task)
        task = remote.options(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_retries=self.max_retries,
            retry_exceptions=False,
        )
        threads = max(1, int(self.num_cpus))
        refs = {}
        for index, spec in runs.items():
            refs[task.remote(spec, options, self.plugins, threads, self.num_gpus)] = index
            # NOTE: Ray does not tell the driver when a task starts; "running" means submitted.
            on_event(RunEvent(index, spec, "running", detail="submitted to Ray"))
        while refs:
            (ready,), _ = ray.wait(list(refs), num_returns=1)
            index = refs.pop(ready)
            yield index, _collect(ray, ready, runs[index], options)


def _collect(ray: ModuleType, ref: Any, spec: RunSpec, options: RunOptions) -> RunRecord:
    """Return a task's record, writing it here if the worker's copy is not visible."""
    try:
        record = ray.get(ref)
    except ray.exceptions.RayError as error:  # retries exhausted, or an error escaped run_spec
        if not options.catch_failures:
            raise
        reason = f"Ray task failed: {type(error).__name__}"
        return record_crash(spec, options, reason, error_details(error))
    path = record_path(options.results_dir, spec.name, spec.dataset["name"], spec.hash)
    if not path.is_file():
        write_record(record, path)
    return record


def _run_task(
    spec: RunSpec,
    options: RunOptions,
    plugins: tuple[str, ...],
    threads: int,
    num_gpus: float = 0.0,
) -> RunRecord:
    """The body of one Ray task: one run, in a worker process Ray may reuse."""
    torch.set_num_threads(threads)
    load_plugins(plugins)
    return run_on_device(spec, options, task_device(options, num_gpus))


def task_device(options: RunOptions, num_gpus: float) -> str | None:
    """Return the device of a run in this Ray task, or None to keep the one in `options`."""
    if num_gpus > 0:
        gpu_ids = import_ray().get_gpu_ids()
        return ray_task_device(gpu_ids, os.environ.get(VISIBLE_DEVICES_ENV))
    return "cpu" if options.device == "auto" else None


def absolute_paths(options: RunOptions) -> RunOptions:
    """Return `options` with absolute folders: Ray workers do not share the driver's cwd."""
    data_root = os.path.abspath(options.data_root) if options.data_root else None
    return replace(
        options,
        results_dir=Path(options.results_dir).resolve(),
        checkpoint_dir=Path(options.checkpoint_dir).resolve(),
        data_root=data_root,
    )


def import_ray() -> ModuleType:
    """Import Ray, or raise naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ImportError(
            f"The `ray` executor needs Ray, which is not installed: run `{INSTALL_HINT}`, "
            f"or use `--executor local`."
        ) from None
    return ray
