"""Overhead per run of each executor, against the same runs made serially in one process.

``python -m benchmark.perf executors [--runs 6] [--steps 30] [--workers 1] [--no-ray]``

The runs are tiny on purpose, so that what is measured is the executor: digits, an MLP VAE
with 2 latent units and 16 hidden units, ``--steps`` Adam steps of 32 examples, the ELBO on 50
test points, each run with its own seed. The baseline makes them one after the other in this
process, after one warm-up run (imports and first-use costs are paid once, as a long-lived
process would). Each executor then makes the same runs into a fresh results folder, so nothing
is cached:

- ``serial``: the executor interface in this process (bookkeeping only);
- ``local``: the spawned process pool with ``--workers`` workers, one fresh process per run;
- ``local-fs``: the same pool with ``start_method="forkserver"``; the server's imports (and
  one 1-step warm-up run that waits for them) are timed apart as start-up;
- ``ray``: one task per run on a private local Ray instance with ``--workers`` CPUs (if Ray is
  installed); ``ray.init`` is timed apart as start-up and not charged to the runs.

Overhead per run = (executor wall time - baseline wall time) / runs. With ``--workers 1`` the
executors have the baseline's compute, so this is their pure cost; with more workers it is
negative once parallelism pays for the overhead. Thread counts are pinned to 1 per run.
"""

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmark.executors import Executor, create_executor
from benchmark.executors.local import LocalExecutor
from benchmark.executors.ray_executor import RayExecutor
from benchmark.runner import RunOptions, machine_calibration, run_spec
from benchmark.spec import RunSpec, resolve_spec


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.perf executors",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=6, help="tiny runs per executor")
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument("--workers", type=int, default=1, help="local workers / Ray CPUs")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor")
    return parser.parse_args(argv)


def tiny_specs(runs: int, steps: int, first_seed: int = 0) -> list[RunSpec]:
    """Return `runs` tiny digits specs differing only by seed."""
    return [
        resolve_spec(
            {
                "name": "perf-tiny",
                "seed": first_seed + seed,
                "model": {"name": "vae", "latent_dim": 2, "architecture": {"hidden": [16]}},
                "dataset": {"name": "digits"},
                "train": {"steps": steps, "batch_size": 32, "checkpoint_every": 0, "log_every": 10},
                "eval": {"elbo": {"num_examples": 50}},
            }
        )
        for seed in range(runs)
    ]


def fresh_options(root: Path, name: str) -> RunOptions:
    folder = root / name
    return RunOptions(
        results_dir=folder / "results", checkpoint_dir=folder / "checkpoints", progress=False
    )


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def baseline_seconds(specs: list[RunSpec], root: Path) -> float:
    """Time the runs made one after the other by `run_spec` in this (warmed-up) process."""
    run_spec(
        tiny_specs(1, specs[0].train.steps, first_seed=10_000)[0], fresh_options(root, "warm-up")
    )
    options = fresh_options(root, "baseline")
    return timed(lambda: [run_spec(spec, options) for spec in specs])


def executor_seconds(
    label: str, name: str, settings: dict, specs: list[RunSpec], root: Path, cpus: int
) -> tuple[float, float]:
    """Return (start-up seconds, seconds to make every run) for executor `name`."""
    executor = create_executor(name, **settings)
    startup = timed(lambda: start_up(executor, cpus, root / f"{label}-warm-up"))
    try:
        seconds = timed(lambda: executor.map_runs(specs, fresh_options(root, label)))
    finally:
        if name == "ray":
            import ray

            ray.shutdown()
    return startup, seconds


def start_up(executor: Executor, cpus: int, folder: Path) -> None:
    """Pay an executor's one-off costs: a Ray instance, or the forkserver's imports."""
    if isinstance(executor, RayExecutor):
        import ray

        ray.init(
            num_cpus=cpus,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
        )
    elif isinstance(executor, LocalExecutor) and executor.start_method == "forkserver":
        # NOTE: the server imports in the background; one run waits for it to be ready
        warm_up = tiny_specs(1, 1, first_seed=20_000)
        executor.map_runs(warm_up, fresh_options(folder, "warm-up"))


def executors_to_time(workers: int, with_ray: bool) -> list[tuple[str, str, dict]]:
    """Return (label, executor name, settings) for each executor to time."""
    local = {"workers": workers, "threads_per_worker": 1}
    rows = [
        ("serial", "serial", {}),
        ("local", "local", local),
        ("local-fs", "local", {**local, "start_method": "forkserver"}),
    ]
    if with_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray is not installed: `pip install 'vaebench[ray]'` to time it")
        else:
            rows.append(("ray", "ray", {"num_cpus": 1}))
    return rows


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    machine_calibration()  # NOTE: measured once here, so no timed section pays for it
    specs = tiny_specs(args.runs, args.steps)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        base = baseline_seconds(specs, root)
        print(
            f"{args.runs} runs of {args.steps} steps, workers={args.workers}, "
            f"torch threads 1, {os.cpu_count()} CPUs"
        )
        print(
            f"{'executor':<10} {'start-up s':>10} {'wall s':>8} {'per run s':>9} "
            f"{'overhead/run s':>14}"
        )
        print(f"{'in-process':<10} {0.0:>10.2f} {base:>8.2f} {base / args.runs:>9.2f} {0.0:>14.2f}")
        for label, name, settings in executors_to_time(args.workers, not args.no_ray):
            startup, seconds = executor_seconds(label, name, settings, specs, root, args.workers)
            print(
                f"{label:<10} {startup:>10.2f} {seconds:>8.2f} {seconds / args.runs:>9.2f} "
                f"{(seconds - base) / args.runs:>14.2f}"
            )
