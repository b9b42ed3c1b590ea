"""One run as a pure job: resolved spec in, run record out (and written atomically).

`run_spec` is what every executor calls. It builds the dataset and model, trains with
checkpoints (so an interrupted run resumes), evaluates each metric of the spec, and writes the
record. A non-finite loss is recorded as ``diverged``; any other exception during a run is
recorded as ``failed`` with its traceback when ``catch_failures`` is set (suites set it), so a
suite carries on.
"""

import itertools
import logging
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.atomic import check_writable_folder, move_aside, run_lock, safe_file_stem
from benchmark.calibration import gemm_gflops, memory_bandwidth_gbs
from benchmark.datasets import create_dataset
from benchmark.datasets.base import Dataset
from benchmark.environment import cpu_model, describe_environment, git_state
from benchmark.evaluators import get_evaluator
from benchmark.evaluators._examples import bind_labels
from benchmark.evaluators.likelihood import certify_ais
from benchmark.records import SCHEMA_VERSION, RunRecord, read_record, record_path, write_record
from benchmark.spec import RunSpec, load_plugins
from benchmark.trainer import CorruptCheckpoint, Diverged, TrainState, resolve_device, train
from metrics.estimate import Estimate, NotDefined, mean_estimate
from metrics.nll import importance_sampled_log_likelihood
from registry import create_model
from registry.base import LatentVariableModel, MetricUndefined

log = logging.getLogger(__name__)

_CALIBRATION: dict[str, Any] = {}  # this process's calibration figures, measured once
_RUNS_STARTED = itertools.count(1)  # runs this process has started (is it fresh?)
CALIBRATION_SECONDS = 0.3  # timing window of each calibration figure: about 1 s in all


@dataclass(frozen=True)
class RunOptions:
    """How to run, as opposed to what to run: nothing here changes a run's results.

    Attributes:
        results_dir: Root of the records (``results/``).
        checkpoint_dir: Where resumable checkpoints and final weights live.
        data_root: Where IDX datasets are looked for first (``--data-root``).
        force: Re-run even when an ``ok`` record with the same spec hash exists.
        rerun_failed: Re-run a spec whose record is ``failed`` or ``diverged``.
        catch_failures: Record unexpected exceptions as ``failed`` instead of raising.
        progress: Show progress bars.
        device: Where the run trains and evaluates: ``auto`` (a GPU when there is one), ``cpu``,
            ``cuda``, ``cuda:N`` or ``mps``. Like Ray resources, it is not part of the spec hash;
            the record says where the run ran.
    """

    results_dir: Path = Path("results")
    checkpoint_dir: Path = Path("checkpoints")
    data_root: str | None = None
    force: bool = False
    rerun_failed: bool = False
    catch_failures: bool = True
    progress: bool = True
    device: str = "auto"


def existing_record(spec: RunSpec, options: RunOptions) -> RunRecord | None:
    """Return the record to reuse for `spec`, or None when the run must (re)run.

    A file at the record's path that is not a valid record (corrupt, incomplete, an old schema,
    a folder) is not trusted: a warning names it and the run is re-run.
    """
    path = record_path(options.results_dir, spec.name, spec.dataset["name"], spec.hash)
    if options.force or not path.exists():
        return None
    record = _readable_record(path)
    if record is None or record.spec_hash != spec.hash:
        return None
    if record.status != "ok" and options.rerun_failed:
        return None
    return record


def _readable_record(path: Path) -> RunRecord | None:
    try:
        return read_record(path)
    except Exception as error:  # noqa: BLE001  whatever is wrong with it, it is re-run
        reason = (str(error).splitlines() or [""])[0][:200]
        log.warning(
            "re-running %s: not a valid record (%s: %s)", path, type(error).__name__, reason
        )
        return None


def check_output_folders(options: RunOptions) -> None:
    """Check, before any training, that the results and checkpoint folders can be written."""
    check_writable_folder(Path(options.results_dir), "--results")
    check_writable_folder(Path(options.checkpoint_dir), "--checkpoints")


def run_spec(spec: RunSpec, options: RunOptions = RunOptions()) -> RunRecord:
    """Run `spec` (or reuse its record) and return the record, which is also written to disk.

    The run holds a lock file next to its record while it runs (`benchmark.atomic.run_lock`),
    so a second process given the same spec waits, then reuses the record the first wrote.
    """
    cached = existing_record(spec, options)
    if cached is not None:
        return cached
    check_output_folders(options)
    path = record_path(options.results_dir, spec.name, spec.dataset["name"], spec.hash)
    waiting_since = time.time()
    with run_lock(path.with_suffix(".lock"), describe=f"{spec.name} {spec.hash[:12]}") as free:
        fresh = None if free else _record_written_since(path, waiting_since)
        if fresh is not None:
            log.warning("reusing %s, written by the process this one waited for", path)
            return fresh
        return _run_locked(spec, options, path)


def _record_written_since(path: Path, since: float) -> RunRecord | None:
    """Return the record at `path` if another process wrote it after `since`, else None."""
    try:
        written = path.stat().st_mtime >= since - 1.0  # NOTE: filesystems round mtimes
    except OSError:
        return None
    return _readable_record(path) if written else None


def _run_locked(spec: RunSpec, options: RunOptions, path: Path) -> RunRecord:
    load_plugins(spec.plugins)
    calibration = machine_calibration()  # NOTE: before training, so the run cannot disturb it
    fresh_process = next(_RUNS_STARTED) == 1
    peak_is_per_run = reset_peak_memory()
    started = time.perf_counter()
    torch.manual_seed(spec.seed)
    context: dict[str, Any] = {"timings": {}, "training": {}, "model_info": {}, "dataset_info": {}}
    try:
        status, metrics, failure = _train_and_evaluate(spec, options, context)
    except Exception as error:  # noqa: BLE001  a suite must survive any single broken run
        if not options.catch_failures:
            raise
        status, metrics = "failed", {}
        failure = {
            "reason": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
        }
    context["timings"]["total"] = time.perf_counter() - started
    context["resources"] = {
        **peak_memory(),
        "fresh_process": fresh_process,
        "peak_rss_scope": "run" if peak_is_per_run else "process",
    }
    context["calibration"] = calibration
    record = build_record(spec, status, metrics, failure, context)
    if path.is_dir():  # NOTE: a folder at the record's path would make the rename fail
        log.warning("moved the folder at %s aside to %s", path, move_aside(path))
    write_record(record, path)
    return record


def machine_calibration(*, threads: int | None = None) -> dict[str, Any]:
    """Return this machine's speed figures, measured on first use in this process (~1 s).

    fp32 GEMM throughput and memory bandwidth (`benchmark.calibration`) let reports turn a
    run's seconds into machine-independent cost. They are measured once per process, before
    the first run, with `threads` torch threads (default: the current setting).
    """
    if not _CALIBRATION:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads or previous)
        try:
            _CALIBRATION.update(
                gemm_gflops=gemm_gflops(seconds=CALIBRATION_SECONDS),
                memory_bandwidth_gbs=memory_bandwidth_gbs(seconds=CALIBRATION_SECONDS),
                threads=torch.get_num_threads(),
            )
        finally:
            torch.set_num_threads(previous)
    return dict(_CALIBRATION)


def use_calibration(figures: dict[str, Any]) -> None:
    """Adopt figures measured by another process on this machine (a pool's parent process)."""
    _CALIBRATION.clear()
    _CALIBRATION.update(figures)


def reset_peak_memory() -> bool:
    """Restart the peak-memory marks, so that `peak_memory` reads the coming run's own peak.

    CUDA's peak is always reset. The resident-set peak can be reset on Linux only, by writing
    5 to ``/proc/self/clear_refs`` (proc(5)); returns whether that worked. Where it does not,
    the peak is the process's high-water mark since it started, a run's own only when the
    run is the process's first (the local executor gives each run a fresh process).
    """
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory() -> dict[str, float]:
    """Return the peak resident memory of this process (and CUDA's, if used) in MiB.

    Reads ``VmHWM`` from ``/proc/self/status`` on Linux, else ``ru_maxrss`` (KiB on Linux,
    bytes on macOS).
    """
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.is_file() else []
    hwm_kib = [int(line.split()[1]) for line in lines if line.startswith("VmHWM:")]
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss_bytes = maxrss if sys.platform == "darwin" else maxrss * 1024
    rss_bytes = hwm_kib[0] * 1024 if hwm_kib else maxrss_bytes
    peak = {"peak_rss_mb": round(rss_bytes / 2**20, 1)}
    if torch.cuda.is_available():
        peak["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def _train_and_evaluate(spec: RunSpec, options: RunOptions, context: dict[str, Any]):
    """Train and evaluate; a corrupt checkpoint is moved aside and the run starts afresh."""
    try:
        return _train_and_evaluate_once(spec, options, context)
    except CorruptCheckpoint as corrupt:
        moved = move_aside(corrupt.path)
        log.warning(
            "%s; moved it to %s and restarting run %s from scratch", corrupt, moved, spec.name
        )
        torch.manual_seed(spec.seed)  # NOTE: as run_spec did, so the restart is a fresh run
        outcome = _train_and_evaluate_once(spec, options, context)
        context["training"]["restarted_from_scratch"] = f"{corrupt.reason}; moved to {moved}"
        return outcome


# Bytes of training memory per parameter: fp32 weights, gradients and Adam's two moments.
TRAINING_BYTES_PER_PARAMETER = 16


def build_model(spec: RunSpec, data_shape: tuple[int, ...]) -> LatentVariableModel:
    """Build the spec's model, first checking on the meta device that it fits in memory.

    Raises:
        ValueError: the parameters would not fit in available memory, or the factory fails;
            one line naming the model settings to change.
    """
    settings = _settings(spec.model)
    parameters = _count_parameters(spec.model["name"], data_shape, settings)
    available = available_memory_bytes()
    if (
        parameters is not None
        and available
        and parameters * TRAINING_BYTES_PER_PARAMETER > available
    ):
        raise ValueError(
            f"Expected model {spec.model['name']!r} to fit in memory, but it has "
            f"{parameters:,} parameters ({parameters * TRAINING_BYTES_PER_PARAMETER / 1e9:,.1f} GB "
            f"to train with Adam) and {available / 1e9:,.1f} GB are available; reduce its sizes "
            f"(`model.latent_dim`, `model.architecture.hidden`, ...)."
        )
    try:
        return create_model(spec.model["name"], data_shape=data_shape, **settings)
    except (ValueError, TypeError):
        raise
    except Exception as error:  # noqa: BLE001  torch's own error, e.g. an impossible shape
        first = (str(error).splitlines() or [""])[0][:200]
        raise ValueError(
            f"Expected the `model:` settings of {spec.model['name']!r} to build a model for data "
            f"of shape {tuple(data_shape)}, but it failed ({type(error).__name__}: {first}); "
            f"check the sizes."
        ) from None


def _count_parameters(name: str, data_shape: tuple[int, ...], settings: dict) -> int | None:
    """Count the model's parameters without allocating them (None if it cannot be built so)."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = create_model(name, data_shape=data_shape, **settings)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001  a model the meta device cannot build is built for real
        return None


def available_memory_bytes() -> int | None:
    """Return the memory available to a new allocation (Linux ``MemAvailable``), or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _train_and_evaluate_once(spec: RunSpec, options: RunOptions, context: dict[str, Any]):
    dataset = create_dataset(
        spec.dataset["name"], data_root=options.data_root, **_settings(spec.dataset)
    )
    context["dataset_info"] = describe_dataset(dataset)
    model = build_model(spec, dataset.data_shape)
    model.initialize_from_data(dataset.splits["train"])
    context["model_info"] = describe_model(model)
    device = resolve_device(options.device)
    context["device"] = describe_device(device)
    checkpoint = Path(options.checkpoint_dir) / f"{spec.training_hash[:16]}.pt"
    if options.force:  # NOTE: a forced re-run trains from scratch, not from old weights
        checkpoint.unlink(missing_ok=True)
    try:
        state = train(
            model,
            dataset,
            spec.train,
            seed=spec.seed,
            device=device,
            checkpoint_path=checkpoint,
            progress=options.progress,
            probe=learning_curve_probe(dataset, spec),
        )
    except Diverged as diverged:
        context["timings"]["train"] = None
        return "diverged", {}, {"reason": diverged.reason, "step": diverged.step}
    context["timings"]["train"] = state.seconds
    context["training"] = describe_training(state, spec)
    context["undefined"] = {}
    # NOTE: metrics run where the model trained, on the same deterministic evaluation data.
    on_device = dataset.on(device)
    metrics = evaluate(model, on_device, spec, context["timings"], context["undefined"])
    # Constants the model estimated for its densities (NCP-VAE's log normaliser, with stderr).
    if hasattr(model, "estimated_constants"):
        context["model_info"]["estimated_constants"] = model.estimated_constants()
    context["images"] = save_images(model, on_device, spec, options.results_dir)
    return "ok", metrics, None


def save_images(
    model: LatentVariableModel, dataset: Dataset, spec: RunSpec, results_dir: Path
) -> dict[str, str]:
    """Save prior samples, reconstructions and traversals of an image model; return their paths.

    Paths are relative to `results_dir` (``images/<dataset>/<run>-<hash12>/*.png``), so the
    records and the leaderboard can link them. Vector datasets get no images.
    """
    if len(dataset.data_shape) != 3:
        return {}
    from benchmark.images import save_run_images  # NOTE: on use; tables alone need no Pillow

    stem = f"{safe_file_stem(spec.name)}-{spec.hash[:12]}"
    folder = Path(results_dir) / "images" / spec.dataset["name"] / stem
    x = dataset.evaluation_data("test")[:16]  # (16, C, H, W)
    # The 64 sample tiles of a label-conditional model take the labels of the first 64 test
    # images (repeated if the split is smaller); the first 16 are x's own.
    model = bind_labels(model, dataset, "test", 64)
    with torch.random.fork_rng(), torch.no_grad():
        paths = save_run_images(model, x, folder, seed=spec.seed)
    return {kind: str(Path(path).relative_to(results_dir)) for kind, path in paths.items()}


def _settings(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "name"}


def evaluate(
    model: LatentVariableModel,
    dataset: Dataset,
    spec: RunSpec,
    timings: dict[str, Any],
    undefined: dict[str, str] | None = None,
) -> dict[str, dict[str, Estimate]]:
    """Run every evaluator of the spec on the trained model, timing each.

    An evaluator whose quantity is not defined for this model (it raises `MetricUndefined`,
    e.g. AIS on discrete codes) is skipped, and its reason is put into
    `undefined` under the evaluator's name, so reports show "n/a (reason)" instead of a number
    that means nothing. One metric of an evaluator that is not defined (a `NotDefined` in its
    results) goes into `undefined` as ``"evaluator/metric"``. When both ran, the BDMC gap
    certifies (or flags) the AIS estimates (`certify_ais`).
    """
    model.eval()
    metrics, eval_started = {}, time.perf_counter()
    for name, config in spec.eval.items():
        started = time.perf_counter()
        try:
            results = get_evaluator(name).function(
                model=model, dataset=dataset, config=config, seed=spec.seed
            )
            metrics[name] = {k: v for k, v in results.items() if not isinstance(v, NotDefined)}
            for metric, value in results.items():
                if isinstance(value, NotDefined) and undefined is not None:
                    undefined[f"{name}/{metric}"] = value.reason
        except MetricUndefined as error:
            if undefined is None:
                raise
            undefined[name] = error.reason
        timings[f"eval_{name}"] = time.perf_counter() - started
    timings["eval"] = time.perf_counter() - eval_started
    if "ais" in metrics and "bdmc" in metrics:
        metrics["ais"] = certify_ais(metrics["ais"], metrics["bdmc"])
    return metrics


def describe_model(model: LatentVariableModel) -> dict[str, Any]:
    return {
        "class": type(model).__name__,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "latent_dim": model.latent_dim,
        "trains_on_likelihood_bound": model.trains_on_likelihood_bound,
        "conditions_on_labels": model.conditions_on_labels,  # scored on log p(x|y)
        "beta": getattr(model, "beta", None),  # KL weight, for reports that plot against it
    }


def describe_dataset(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "checksum": dataset.checksum,
        "source": dataset.source,
        "preprocessing": dataset.preprocessing,
        "data_shape": list(dataset.data_shape),
        "sizes": {split: int(len(x)) for split, x in dataset.splits.items()},
    }


def describe_training(state: TrainState, spec: RunSpec) -> dict[str, Any]:
    paper_steps = spec.train.paper_steps
    return {
        "steps_completed": state.step,
        "resumed_from_step": state.resumed_from,
        "curve": state.curve,
        "learning_curve": state.learning_curve,
        "final": state.curve[-1] if state.curve else {},
        # The share of the protocol's budget this run trained for (None: no protocol budget).
        "budget_fraction": state.step / paper_steps if paper_steps else None,
    }


def learning_curve_probe(dataset: Dataset, spec: RunSpec):
    """Return the trainer's probe: IS-NLL of a fixed test subset, or None when not asked for.

    Scores the first ``curve_nll_examples`` test images (the evaluation binarization) with
    ``curve_nll_k`` importance samples, seeded by the run's seed, at the end of each pass.
    """
    count, k = spec.train.curve_nll_examples, spec.train.curve_nll_k
    if count <= 0:
        return None
    x = dataset.evaluation_data("test")[:count]

    def probe(model: LatentVariableModel) -> dict[str, float]:
        result = importance_sampled_log_likelihood(
            model,
            x.to(next(model.parameters()).device),
            num_samples=k,
            chunk_size=min(k, 500),
            batch_size=100,
            seed=spec.seed,
            pareto_k=False,
        )
        nll = mean_estimate(-result.log_likelihood, unit="nats", higher_is_better=False)
        return {"nll": nll.value, "nll_stderr": nll.stderr, "k": k, "examples": len(x)}

    return probe


def describe_device(device: torch.device) -> dict[str, Any]:
    """Return where a run ran: device type, and for a GPU its name, capability, versions, memory."""
    described: dict[str, Any] = {"type": device.type, "name": cpu_model()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        described.update(
            name=props.name,
            compute_capability=f"{props.major}.{props.minor}",
            memory_gb=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            driver=_nvidia_driver_version(),
        )
    return described


def _nvidia_driver_version() -> str | None:
    version = Path("/proc/driver/nvidia/version")
    return version.read_text().split("Kernel Module")[1].split()[0] if version.is_file() else None


def build_record(
    spec: RunSpec, status: str, metrics: dict, failure: dict | None, context: dict[str, Any]
) -> RunRecord:
    model_info = {"name": spec.model["name"], **context["model_info"]}
    return RunRecord(
        schema_version=SCHEMA_VERSION,
        status=status,
        spec=spec.to_dict(),
        spec_hash=spec.hash,
        config_hash=spec.config_hash,
        model=model_info,
        dataset={"name": spec.dataset["name"], **context["dataset_info"]},
        metrics=metrics,
        seeds={"run": spec.seed, "data_order": spec.seed, "evaluation": spec.seed},
        environment={**describe_environment(), "calibration": context.get("calibration")},
        git=git_state(),
        timings=context["timings"],
        training=context["training"],
        failure=failure,
        images=context.get("images", {}),
        undefined_metrics=context.get("undefined", {}),
        resources={**context.get("resources", {}), "device": context.get("device")},
    )
