"""Tests of suite execution at scale: executors, crash recovery, resume, concurrent record writes.

The reference for every executor is the SLURM path, ``vaebench run-job --suite S --index I``,
run here in-process for each job: an executor must produce the same records, apart from how and
where they ran. Runs that use the test plugin model (which SIGKILLs or slows its own process)
go through subprocesses, so the plugin never enters this process's model registry.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import pytest
import torch
import yaml

from benchmark import cli, runner
from benchmark.executors import RunEvent, SerialExecutor, create_executor, record_crash
from benchmark.executors.local import LocalExecutor
from benchmark.executors.progress import SuiteProgress, status_line
from benchmark.records import RunRecord, read_record, record_path, write_record
from benchmark.runner import RunOptions, run_spec
from benchmark.spec import load_spec
from benchmark.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
MLP = {"hidden": [16]}
TINY_DEFAULTS = {
    "dataset": {"name": "digits"},
    "train": {"steps": 30, "batch_size": 32, "checkpoint_every": 0, "log_every": 10},
    "eval": {"elbo": {"num_examples": 50}},
}
FOUR_RUNS = [  # x seeds 0 and 1
    {"name": "vae", "model": {"name": "vae", "latent_dim": 2, "architecture": MLP}},
    {
        "name": "iwae",
        "model": {"name": "iwae", "latent_dim": 2, "num_samples": 2, "architecture": MLP},
    },
]
RAY_ENV = {  # a private, loopback-only Ray with no telemetry and no token file in $HOME
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}

# NOTE: a plugin that patches the plain VAE, so specs resolve here without it; only the worker
# processes that import it (an executor's `plugins`, or `--plugin`) are sabotaged.
SABOTAGE_PLUGIN = textwrap.dedent("""
    \"\"\"Sabotage the VAE by latent size: 3 SIGKILLs its process once, 4 always, 5 is slow.\"\"\"
    import os
    import signal
    import time
    from pathlib import Path

    from registry.vae import VAE

    MARKERS = Path(__file__).parent
    original_loss = VAE.loss


    def sabotaged_loss(self, x, step, *, kl_weight=1.0):
        marker = MARKERS / f"killed-latent-{self.latent_dim}"
        if step == 3 and (self.latent_dim == 4 or self.latent_dim == 3 and not marker.exists()):
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if self.latent_dim == 5:
            time.sleep(0.01)
        return original_loss(self, x, step, kl_weight=kl_weight)


    VAE.loss = sabotaged_loss
""")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # as in this process (conftest): bitwise-equal results


def vae_run(name: str, latent_dim: int) -> dict:
    return {"name": name, "model": {"name": "vae", "latent_dim": latent_dim, "architecture": MLP}}


def sabotage_plugin(folder: Path) -> str:
    (folder / "sabotage.py").write_text(SABOTAGE_PLUGIN)
    return str(folder / "sabotage.py")


SABOTAGE_RUNS = [vae_run("plain", 2), vae_run("dies-once", 3), vae_run("always-dies", 4)]


def write_suite(
    path: Path, runs: list[dict], seeds: tuple[int, ...] = (0,), defaults: dict = TINY_DEFAULTS
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {"name": path.stem, "seeds": list(seeds), "defaults": defaults, "runs": runs}
        )
    )
    return path


def options_in(folder: Path) -> RunOptions:
    return RunOptions(
        results_dir=folder / "results", checkpoint_dir=folder / "checkpoints", progress=False
    )


def comparable(record: RunRecord) -> dict:
    """Return the record without how and where it ran: timings, machine, memory, resume step."""
    data = record.to_dict()
    for key in ("timings", "environment", "resources", "git"):
        data.pop(key)
    data["training"].pop("resumed_from_step", None)
    return data


def statuses_by_run(events: list[RunEvent]) -> dict[int, list[str]]:
    by_run: dict[int, list[str]] = {}
    for event in events:
        by_run.setdefault(event.index, []).append(event.status)
    return by_run


def run_python(
    args: list[str], cwd: Path, env: dict | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def four_run_suite(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("suite")
    return write_suite(folder / "tiny.yaml", FOUR_RUNS, seeds=(0, 1))


@pytest.fixture(scope="module")
def slurm_records(four_run_suite, tmp_path_factory) -> list[RunRecord]:
    """Records of the 4 runs made one job at a time, as a SLURM array would, in this process."""
    folder = tmp_path_factory.mktemp("slurm")
    for index in range(4):
        code = cli.main(
            [
                "run-job",
                "--suite",
                str(four_run_suite),
                "--index",
                str(index),
                "--results",
                str(folder / "results"),
                "--checkpoints",
                str(folder / "checkpoints"),
                "--no-progress",
            ]
        )
        assert code == 0
    options = options_in(folder)
    return [
        read_record(record_path(options.results_dir, s.name, "digits", s.hash))
        for s in load_suite(str(four_run_suite)).runs
    ]


def test_local_pool_runs_a_four_run_suite_like_slurm_jobs(four_run_suite, slurm_records, tmp_path):
    """Property: `vaebench suite --executor local --workers 2` writes all 4 records, ok and
    equal to the one-job-at-a-time records apart from timings and machine facts, with a status
    line per start and end and a summary; each run had a fresh process (so its peak memory is
    its own) and calibration figures; running the suite again submits nothing."""
    done = run_python(
        [
            "-m",
            "benchmark",
            "suite",
            str(four_run_suite),
            "--executor",
            "local",
            "--workers",
            "2",
            "--results",
            "results",
            "--checkpoints",
            "ck",
            "--no-leaderboard",
            "--no-progress",
        ],
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert done.returncode == 0, done.stderr
    specs, options = load_suite(str(four_run_suite)).runs, options_in(tmp_path)
    options = replace(options, results_dir=tmp_path / "results")
    records = [
        read_record(record_path(options.results_dir, s.name, "digits", s.hash)) for s in specs
    ]
    assert [comparable(r) for r in records] == [comparable(r) for r in slurm_records]
    for record in records:
        assert record.resources["fresh_process"] and record.resources["peak_rss_mb"] > 50
        calibration = record.environment["calibration"]
        assert calibration["gemm_gflops"] > 0 and calibration["memory_bandwidth_gbs"] > 0
    lines = done.stderr.splitlines()
    for status in ("running", "done"):
        assert sorted(line[:5] for line in lines if f"] {status} " in line) == [
            f"[{i}/4]" for i in range(1, 5)
        ]
    assert "4 runs in " in done.stderr and ": 4 done" in done.stderr
    events: list[RunEvent] = []
    assert LocalExecutor(workers=2).map_runs(specs, options, on_event=events.append) == records
    assert [e.status for e in events] == ["cached"] * 4


def test_identical_specs_run_once_and_failed_runs_rerun_only_when_asked(tmp_path):
    """Contract: a spec listed twice runs once (the repeat is reported cached); a failed record
    is kept, and reported, until `rerun_failed` is set, which runs it again."""
    suite = write_suite(tmp_path / "dup.yaml", [FOUR_RUNS[0], FOUR_RUNS[0], FOUR_RUNS[1]])
    first, repeat, other = load_suite(str(suite)).runs
    options = options_in(tmp_path)
    record_crash(other, options, "worker process died", "details")
    events: list[RunEvent] = []
    records = SerialExecutor().map_runs([first, repeat, other], options, on_event=events.append)
    assert records[0] is records[1] and records[0].status == "ok"
    assert records[2].status == "failed" and "--rerun-failed" in events[0].detail
    assert statuses_by_run(events) == {2: ["cached"], 0: ["running", "done"], 1: ["cached"]}
    rerun = SerialExecutor().map_runs([other], replace(options, rerun_failed=True))
    assert rerun[0].status == "ok"


def test_local_pool_survives_killed_workers(tmp_path):
    """Property: on a 2-worker local pool (forkserver), a run whose worker is SIGKILLed
    mid-training is re-run and ends ok, a run that kills its worker every time is recorded
    failed, the other run is unharmed, and every record is on disk with no temporary file left.
    """
    suite = write_suite(tmp_path / "sabotage.yaml", SABOTAGE_RUNS)
    specs, options, events = load_suite(str(suite)).runs, options_in(tmp_path), []
    executor = LocalExecutor(
        workers=2, max_attempts=1, plugins=(sabotage_plugin(tmp_path),), start_method="forkserver"
    )
    records = executor.map_runs(specs, options, on_event=events.append)
    assert [r.status for r in records] == ["ok", "ok", "failed"]
    assert records[1].training["steps_completed"] == 30
    assert records[2].failure["reason"] == "worker process died; gave up after 1 lone attempt(s)"
    by_run = statuses_by_run(events)
    assert "retrying" in by_run[1] and by_run[1][-1] == "done" and by_run[2][-1] == "failed"
    on_disk = [
        read_record(record_path(options.results_dir, s.name, "digits", s.hash)) for s in specs
    ]
    assert on_disk == records
    assert not list(options.results_dir.rglob("*.tmp"))


RAY_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import ray
    from benchmark.executors import create_executor
    from benchmark.runner import RunOptions
    from benchmark.suite import load_suite

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2,
             _node_ip_address="127.0.0.1", log_to_driver=False)
    out = {}
    jobs = ((sys.argv[1], "plain", ()), (sys.argv[2], "sabotage", (sys.argv[3],)))
    for suite, folder, plugins in jobs:
        events = []
        options = RunOptions(results_dir=Path(folder) / "results",
                             checkpoint_dir=Path(folder) / "ck", progress=False)
        executor = create_executor("ray", num_cpus=1, max_retries=1, plugins=plugins)
        records = executor.map_runs(load_suite(suite).runs, options,
                                    on_event=lambda e: events.append((e.index, e.status)))
        out[folder] = {"events": events, "status": [r.status for r in records],
                       "reasons": [(r.failure or {}).get("reason") for r in records]}
    ray.shutdown()
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def ray_suites(four_run_suite, tmp_path_factory) -> tuple[Path, dict]:
    """Run the 4-run suite, then the sabotage suite, on one private local Ray instance."""
    folder = tmp_path_factory.mktemp("ray")
    sabotage = write_suite(folder / "sabotage.yaml", SABOTAGE_RUNS)
    done = run_python(
        ["-c", RAY_SCRIPT, str(four_run_suite), str(sabotage), sabotage_plugin(folder)],
        cwd=folder,
        env={**RAY_ENV, **ONE_THREAD},
        # NOTE: the limit guards against a hang only: with both cores of the 2-core machine
        # busy with other runs, Ray's start and the two suites took over 240 s.
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, json.loads(done.stdout.strip().splitlines()[-1])


def test_ray_runs_the_four_run_suite_like_slurm_jobs(ray_suites, four_run_suite, slurm_records):
    """Property: one Ray task per run on a 2-CPU local instance writes all 4 records, equal to
    the one-job-at-a-time records apart from timings and machine facts."""
    folder, out = ray_suites
    options = options_in(folder / "plain")
    specs = load_suite(str(four_run_suite)).runs
    records = [
        read_record(record_path(options.results_dir, s.name, "digits", s.hash)) for s in specs
    ]
    assert [comparable(r) for r in records] == [comparable(r) for r in slurm_records]
    assert out["plain"]["status"] == ["ok"] * 4
    assert statuses_by_run([RunEvent(i, specs[i], s) for i, s in out["plain"]["events"]]) == {
        i: ["running", "done"] for i in range(4)
    }


def test_ray_retries_a_killed_worker_and_records_a_run_that_always_dies(ray_suites):
    """Property: on Ray, a task whose worker process is SIGKILLed mid-training is retried and
    ends ok; one that kills every worker is recorded failed once its retry is spent; the other
    run is unharmed and all 3 records exist."""
    folder, out = ray_suites
    assert out["sabotage"]["status"] == ["ok", "ok", "failed"]
    assert out["sabotage"]["reasons"][2].startswith("Ray task failed")
    assert len(list((folder / "sabotage" / "results").rglob("*.json"))) == 3


def test_resume_after_sigkill_gives_the_uninterrupted_record(tmp_path):
    """Property: `vaebench run` SIGKILLed after its first checkpoint, then run again, resumes
    from that checkpoint and writes the same record as an uninterrupted run (in this process),
    apart from timings, machine facts and the resume step."""
    spec = {
        "name": "slow",
        **TINY_DEFAULTS,
        "model": vae_run("slow", 5)["model"],
        "train": {**TINY_DEFAULTS["train"], "steps": 300, "checkpoint_every": 20},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    # NOTE: the plugin sleeps 10 ms per step (latent size 5), so the kill lands mid-training.
    command = [
        sys.executable,
        "-m",
        "benchmark",
        "--plugin",
        sabotage_plugin(tmp_path),
        "run",
        "spec.yaml",
        "--results",
        "a",
        "--checkpoints",
        "ck",
        "--no-progress",
    ]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **ONE_THREAD}
    killed = subprocess.Popen(
        command, cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "ck").glob("*.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not list((tmp_path / "a").rglob("*.json")), "the run finished before it was killed"
    resumed = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=240
    )
    assert resumed.returncode == 0, resumed.stderr
    (path,) = (tmp_path / "a").rglob("*.json")
    record = read_record(path)
    whole = run_spec(load_spec(tmp_path / "spec.yaml"), options_in(tmp_path / "whole"))
    assert 0 < record.training["resumed_from_step"] < 300
    assert whole.training["resumed_from_step"] is None
    assert comparable(record) == comparable(whole)


def _write_many(folder: str, writer: int, rounds: int) -> None:
    """Write `rounds` records to a path shared by all writers and one path of our own each."""
    template = read_record(Path(folder) / "template.json")
    for i in range(rounds):
        record = RunRecord(**{**vars(template), "timings": {"writer": writer, "round": i}})
        write_record(record, Path(folder) / "runs" / "shared.json")
        write_record(record, Path(folder) / "runs" / f"own-{writer}-{i}.json")


def test_concurrent_writers_leave_no_corrupt_or_lost_record(slurm_records, tmp_path):
    """Property: 4 processes writing records at once, to one shared path and to paths of their
    own, while this process keeps reading: every read parses, no file is lost, the shared file
    holds one writer's last record whole, and no temporary file is left."""
    writers, rounds = 4, 30
    write_record(slurm_records[0], tmp_path / "template.json")
    with get_context("spawn").Pool(writers) as pool:
        pending = pool.starmap_async(
            _write_many, [(str(tmp_path), w, rounds) for w in range(writers)]
        )
        reads = 0
        while not pending.ready():
            for path in (tmp_path / "runs").glob("*.json") if (tmp_path / "runs").is_dir() else ():
                read_record(path)  # raises on a torn or partial file
                reads += 1
        pending.get(timeout=120)
    runs = tmp_path / "runs"
    assert {p.name for p in runs.iterdir()} == {"shared.json"} | {
        f"own-{w}-{i}.json" for w in range(writers) for i in range(rounds)
    }
    shared = read_record(runs / "shared.json")
    assert shared.timings["round"] == rounds - 1 and shared.metrics == slurm_records[0].metrics
    assert all(
        read_record(runs / f"own-{w}-{i}.json").timings == {"writer": w, "round": i}
        for w in range(writers)
        for i in range(rounds)
    )
    assert reads > 0


def test_record_paths_are_unique_per_spec_hash(four_run_suite):
    """Contract: the 4 runs of the suite (2 models x 2 seeds) map to 4 distinct record paths,
    and resolving the suite again maps each run to the same path."""
    paths = [
        record_path(Path("r"), s.name, "digits", s.hash)
        for s in load_suite(str(four_run_suite)).runs
    ]
    again = [
        record_path(Path("r"), s.name, "digits", s.hash)
        for s in load_suite(str(four_run_suite)).runs
    ]
    assert len(set(paths)) == 4 and paths == again


def test_unknown_executor_and_settings_raise_with_hints(four_run_suite, capsys):
    """Contract: an unknown executor name suggests the close one, through the CLI too; a setting
    the executor does not take is named; a bad worker count is rejected."""
    with pytest.raises(ValueError, match="Did you mean 'local'"):
        create_executor("locl")
    with pytest.raises(ValueError, match=r"among \[.*'workers'.*\], but got \['address'\]"):
        create_executor("local", address="auto")
    with pytest.raises(ValueError, match="Expected `workers` to be a positive integer"):
        create_executor("local", workers=0)
    assert cli.main(["suite", str(four_run_suite), "--executor", "rey"]) == 1
    assert "Did you mean 'ray'" in capsys.readouterr().err


def test_ray_missing_names_the_extra(monkeypatch):
    """Contract: without Ray installed, asking for the ray executor says how to install it."""
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'vaebench\[ray\]'"):
        create_executor("ray")


def test_progress_lines_and_summary(slurm_records, four_run_suite):
    """Contract: each event prints one status line naming the run, a done line its duration, a
    failure its reason; the summary counts each final status and lists the problem runs."""
    specs = load_suite(str(four_run_suite)).runs
    lines: list[str] = []

    class Stream:
        def write(self, text: str) -> None:
            lines.extend(t for t in text.splitlines() if t.strip())

        def flush(self) -> None:
            pass

    progress = SuiteProgress(4, bar=False, stream=Stream())
    progress(RunEvent(0, specs[0], "running", detail="pid 7"))
    progress(RunEvent(0, specs[0], "done", slurm_records[0]))
    progress(RunEvent(1, specs[1], "cached", slurm_records[1]))
    progress(RunEvent(2, specs[2], "failed", slurm_records[2], "ValueError: boom"))
    progress(RunEvent(3, specs[3], "diverged", slurm_records[3], "loss is nan at step 4"))
    text = progress.close()
    seconds = slurm_records[0].timings["total"]
    assert lines[0] == f"[1/4] running   vae seed=0 {specs[0].hash[:12]} (pid 7)"
    assert lines[1] == f"[1/4] done      vae seed=0 {specs[0].hash[:12]} ({seconds:.1f} s)"
    assert lines[3].endswith("(ValueError: boom)")
    assert text.splitlines()[0].endswith("1 done, 1 cached, 1 failed, 1 diverged")
    assert text.splitlines()[1:] == [
        f"  failed: vae seed=1 {specs[2].hash[:12]} (ValueError: boom)",
        f"  diverged: iwae seed=1 {specs[3].hash[:12]} (loss is nan at step 4)",
    ]
    assert status_line(RunEvent(1, specs[1], "cached"), 12).startswith("[ 2/12] cached ")


def test_peak_memory_is_reset_per_run_and_sees_an_allocation():
    """Property: after `reset_peak_memory`, the peak rises by at least a 200 MiB allocation
    made while it is watched, and a second reset, after freeing it, drops the peak again."""
    assert runner.reset_peak_memory()  # Linux: /proc/self/clear_refs is writable
    before = runner.peak_memory()["peak_rss_mb"]
    block = torch.ones(200 * 2**20 // 4)  # 200 MiB of float32, touched by the fill
    during = runner.peak_memory()["peak_rss_mb"]
    del block
    runner.reset_peak_memory()
    after = runner.peak_memory()["peak_rss_mb"]
    assert during - before >= 190 and during - after >= 190


def test_calibration_is_measured_once_per_process(monkeypatch):
    """Contract: calibration figures adopted from a parent (or measured once) are returned as
    they are, without measuring again; they carry the thread count they were measured with."""
    previous = runner.machine_calibration()
    assert previous["gemm_gflops"] > 0 and previous["threads"] >= 1

    def no_measuring(**settings):
        raise AssertionError("measured twice")

    monkeypatch.setattr(runner, "gemm_gflops", no_measuring)
    figures = {"gemm_gflops": 12.5, "memory_bandwidth_gbs": 3.0, "threads": 1}
    runner.use_calibration(figures)
    try:
        assert runner.machine_calibration() == figures
        assert runner.machine_calibration() is not runner.machine_calibration()  # copies
    finally:
        runner.use_calibration(previous)


def test_threads_per_worker_follow_the_flag_then_omp_num_threads(monkeypatch):
    """Contract: workers call torch.set_num_threads, so OMP_NUM_THREADS must set their count
    (two jobs on two cores, one thread each); an explicit count wins, and without either the
    cores are split between the workers."""
    from benchmark.executors.local import LocalExecutor

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert LocalExecutor(workers=1).threads_per_worker == 3
    assert LocalExecutor(workers=1, threads_per_worker=2).threads_per_worker == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    cpus = os.cpu_count() or 1
    assert LocalExecutor(workers=1).threads_per_worker == cpus
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert LocalExecutor(workers=1).threads_per_worker == cpus
    with pytest.raises(ValueError, match="threads_per_worker"):
        LocalExecutor(workers=1, threads_per_worker=0)  # refused, not taken as "unset"


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_cli_threads_must_be_a_positive_integer(tmp_path, capsys, value):
    """Contract: `--threads 0` once ran the suite at the default count; now any non-positive
    value is one line naming the flag and the value, before any folder is created."""
    from benchmark.cli import main

    argv = ["suite", "quick", f"--threads={value}", "--results", str(tmp_path / "r")]
    assert main([*argv, "--checkpoints", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--threads" in err and repr(value) in err
    assert list(tmp_path.iterdir()) == []
