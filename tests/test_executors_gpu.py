"""Tests of GPU placement by the executors, with a fake device list (no GPU is needed).

The local pool's workers run a recording task instead of `run_spec`: it writes down the device
and ``CUDA_VISIBLE_DEVICES`` it was given and when it ran, so the tests can check that each run
got one GPU of the list and that no two runs shared one at the same time. Ray's placement is
checked on `task_device` with a stand-in for ``ray.get_gpu_ids()``.
"""

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmark import cli
from benchmark.executors import create_executor, devices, ray_executor
from benchmark.executors.devices import (
    parse_gpu_ids,
    physical_gpu_ids,
    ray_task_device,
    run_on_device,
)
from benchmark.executors.local import LocalExecutor
from benchmark.records import RunRecord
from benchmark.runner import RunOptions, build_record
from benchmark.spec import RunSpec, resolve_spec


def record_placement(spec: RunSpec, options: RunOptions, device: str | None) -> RunRecord:
    """A worker's task: log the device and visible GPUs this run got, hold them 0.3 s."""
    started = time.time()
    time.sleep(0.3)
    entry = {
        "seed": spec.seed,
        "device": device,
        "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
        "started": started,
        "ended": time.time(),
    }
    (Path(options.results_dir) / f"seed-{spec.seed}.json").write_text(json.dumps(entry))
    context = {"timings": {}, "training": {}, "model_info": {}, "dataset_info": {}}
    return build_record(spec, "ok", {}, None, context)


class RecordingExecutor(LocalExecutor):
    """The local pool with the recording task in place of `run_spec`."""

    task = staticmethod(record_placement)


def tiny_specs(count: int) -> list[RunSpec]:
    raw = {
        "name": "placement",
        "model": {"name": "vae", "latent_dim": 2, "architecture": {"hidden": [4]}},
        "dataset": {"name": "digits"},
        "train": {"steps": 1},
    }
    return [resolve_spec({**raw, "seed": seed}) for seed in range(count)]


def placements(tmp_path: Path, gpus: str, runs: int) -> list[dict]:
    executor = RecordingExecutor(gpus=gpus, threads_per_worker=1, start_method="forkserver")
    records = executor.map_runs(tiny_specs(runs), RunOptions(results_dir=tmp_path, force=True))
    assert [r.status for r in records] == ["ok"] * runs
    return [json.loads((tmp_path / f"seed-{s}.json").read_text()) for s in range(runs)]


def overlapping(entries: list[dict]) -> bool:
    spans = sorted((e["started"], e["ended"]) for e in entries)
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


def test_local_pool_places_one_run_per_gpu_at_a_time(tmp_path, monkeypatch):
    """Property: with ``--gpus 0,1`` and the parent seeing GPUs 4 and 7, 4 runs on 2 workers
    each see exactly one of those GPUs as ``cuda:0``, both GPUs are used, and the runs on one
    GPU never overlap in time."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")
    entries = placements(tmp_path, "0,1", runs=4)
    assert {e["device"] for e in entries} == {"cuda:0"}
    assert {e["visible"] for e in entries} == {"4", "7"}
    for gpu in ("4", "7"):
        assert not overlapping([e for e in entries if e["visible"] == gpu])
    assert overlapping(entries)  # the two GPUs did run at once


def test_local_pool_with_one_gpu_runs_one_at_a_time(tmp_path, monkeypatch):
    """Property: ``--gpus 1`` with no CUDA_VISIBLE_DEVICES puts every run on GPU 1, serially."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    entries = placements(tmp_path, "1", runs=2)
    assert [e["visible"] for e in entries] == ["1", "1"]
    assert not overlapping(entries)


def test_gpu_ids_parse_and_map_through_visible_devices():
    """Reference: index i of ``--gpus`` is the i-th entry of CUDA_VISIBLE_DEVICES, as cuda:i."""
    assert parse_gpu_ids("0, 1") == ("0", "1") == parse_gpu_ids([0, 1])
    assert physical_gpu_ids(("1", "0"), "GPU-aa,GPU-bb") == ("GPU-bb", "GPU-aa")
    assert physical_gpu_ids(("2",), None) == ("2",)
    with pytest.raises(ValueError, match="index the 2 GPU"):
        physical_gpu_ids(("2",), "3,5")
    for bad in ("", "cuda:0", "0,-1", []):
        with pytest.raises(ValueError, match="Expected `gpus`"):
            parse_gpu_ids(bad)


def test_local_pool_workers_follow_the_gpu_slots():
    """Property: one worker per GPU slot by default; more workers than slots is an error."""
    assert LocalExecutor(gpus="0,1").workers == 2
    assert LocalExecutor(gpus="0,0,1,1").workers == 4
    assert LocalExecutor(gpus="0,1", workers=1).workers == 1
    with pytest.raises(ValueError, match="at most the 2 GPU"):
        LocalExecutor(gpus="0,1", workers=3)


def test_gpus_with_a_cpu_device_is_an_error(tmp_path, monkeypatch):
    """Property: ``--gpus`` with ``--device cpu`` contradicts itself and says so before running;
    the device a worker is given reaches `run_spec` in the run's options."""
    options = RunOptions(results_dir=tmp_path, device="cpu")
    with pytest.raises(ValueError, match="'auto' or 'cuda' with --gpus"):
        RecordingExecutor(gpus="0").map_runs(tiny_specs(1), options)
    given = []
    monkeypatch.setattr(devices, "run_spec", lambda spec, opts: given.append(opts.device))
    run_on_device(tiny_specs(1)[0], RunOptions(), "cuda:1")
    run_on_device(tiny_specs(1)[0], RunOptions(device="cpu"), None)
    assert given == ["cuda:1", "cpu"]


def test_cli_gpus_flag_builds_a_pool_on_those_gpus():
    """Property: ``vaebench suite S --gpus 0,1`` gives the local pool those GPUs, 2 workers."""
    args = cli.build_parser().parse_args(["suite", "quick", "--gpus", "0,1"])
    executor = cli._executor(args)
    assert isinstance(executor, LocalExecutor)
    assert (executor.gpus, executor.workers) == (("0", "1"), 2)
    with pytest.raises(ValueError, match="Expected settings of executor 'serial'"):
        create_executor("serial", gpus="0")


@pytest.mark.parametrize(
    ("gpu_ids", "visible", "device"),
    [
        ([3], "3", "cuda:0"),
        ([3], None, "cuda:3"),
        (["1"], "0,1", "cuda:1"),
        ([2, 5], "2,5", "cuda:0"),
    ],
)
def test_ray_task_uses_the_gpu_ray_assigned(monkeypatch, gpu_ids, visible, device):
    """Reference (Ray's contract: a GPU task sees its ids in CUDA_VISIBLE_DEVICES): the run's
    device is the first assigned GPU, indexed within what the task sees."""
    monkeypatch.setattr(
        ray_executor, "import_ray", lambda: SimpleNamespace(get_gpu_ids=lambda: gpu_ids)
    )
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    given = {}
    monkeypatch.setattr(ray_executor, "run_on_device", lambda s, o, d: given.setdefault("d", d))
    ray_executor._run_task(tiny_specs(1)[0], RunOptions(), (), 1, num_gpus=1.0)
    assert given["d"] == device


def test_ray_task_without_a_gpu_runs_on_the_cpu(monkeypatch):
    """Property: a task that reserved no GPU runs on the CPU unless a device was named; a GPU
    task that Ray gave no GPU is an error."""
    monkeypatch.setattr(ray_executor, "import_ray", lambda: SimpleNamespace(get_gpu_ids=lambda: []))
    assert ray_executor.task_device(RunOptions(), 0.0) == "cpu"
    assert ray_executor.task_device(RunOptions(device="cuda:1"), 0.0) is None  # kept as given
    with pytest.raises(ValueError, match="assign this task a GPU"):
        ray_executor.task_device(RunOptions(), 1.0)
    assert ray_task_device([0], "") == "cuda:0"


RECORDING_PLUGIN = '''
"""Replace the Ray task's run by the recording task of test_executors_gpu (in Ray workers)."""
import benchmark.executors.ray_executor as ray_executor
from tests.test_executors_gpu import record_placement

ray_executor.run_on_device = record_placement
'''
RAY_GPU_SCRIPT = """
import json, sys
from pathlib import Path
import ray
from benchmark.executors import create_executor
from benchmark.runner import RunOptions
from tests.test_executors_gpu import tiny_specs

ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, object_store_memory=80 * 1024**2,
         _node_ip_address="127.0.0.1", log_to_driver=False)
folder = Path(sys.argv[1])
executor = create_executor("ray", num_cpus=1, num_gpus=1, plugins=(sys.argv[2],))
records = executor.map_runs(tiny_specs(4), RunOptions(results_dir=folder, force=True))
ray.shutdown()
print(json.dumps([r.status for r in records]))
"""


@pytest.mark.slow
def test_ray_places_each_run_on_its_own_fake_gpu(tmp_path):
    """Property: on a local Ray instance declaring 2 (fake) GPUs, ``--num-gpus 1`` runs each of
    4 runs as ``cuda:0`` of a process that sees one GPU, both GPUs are used, runs on one GPU
    never overlap, and each run gets a fresh worker process."""
    from tests.test_executors import ONE_THREAD, RAY_ENV, run_python

    plugin = tmp_path / "recording_plugin.py"
    plugin.write_text(RECORDING_PLUGIN)
    done = run_python(
        ["-c", RAY_GPU_SCRIPT, str(tmp_path), str(plugin)],
        cwd=tmp_path,
        env={**RAY_ENV, **ONE_THREAD},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["ok"] * 4
    entries = [json.loads((tmp_path / f"seed-{s}.json").read_text()) for s in range(4)]
    assert {e["device"] for e in entries} == {"cuda:0"}
    assert {e["visible"] for e in entries} == {"0", "1"}
    for gpu in ("0", "1"):
        assert not overlapping([e for e in entries if e["visible"] == gpu])
    assert len({e["pid"] for e in entries}) == 4
