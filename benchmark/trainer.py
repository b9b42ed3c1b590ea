"""The training loop: Adam over device-resident data, KL warm-up, resumable checkpoints.

Determinism: the caller seeds the global torch RNG before building the model (initialisation
and reparameterised samples use it); the batch order and any dynamic binarization are a pure
function of (seed, step) (`benchmark.datasets.stream`). A checkpoint stores the model, the
optimizers, the global RNG state and the step, so a resumed run replays exactly the batches and
noise of an uninterrupted one, and it loads onto any device.

Speed: the step never waits for the host. Loss terms stay on the device and are read every
``log_every`` steps, in one transfer; the divergence check runs on them then. torch.distributions'
argument validation checks the first step (bad data or parameters raise there, as anywhere) and is
off after it: it scans every parameter tensor, and a non-finite loss is caught as divergence.
"""

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution
from tqdm.auto import tqdm

from benchmark.datasets.base import Dataset
from benchmark.datasets.stream import TrainingStream
from benchmark.optimizers import create_optimizer, learning_rate, schedule_boundaries
from benchmark.spec import TrainSpec
from registry.base import LatentVariableModel
from registry.estimators import argument_validation

# A finite loss whose logging-window mean exceeds this many times the first window's (or 1,
# whichever is larger) in magnitude has blown up: recorded as diverged, not trained on.
BLOW_UP_FACTOR = 1e6

CurveProbe = Callable[[LatentVariableModel], dict[str, float]]


class Diverged(RuntimeError):
    """Raised when the training loss stops being finite or blows up."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"diverged at step {step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass
class TrainState:
    """Where training stands; everything in it goes into a checkpoint as plain data."""

    step: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)
    learning_curve: list[dict[str, float]] = field(default_factory=list)  # probes at pass ends
    reference_loss: float | None = None  # mean loss of the first logging window (blow-up rule)
    resumed_from: int | None = None
    seconds: float = 0.0


def kl_weight(step: int, warmup_steps: int) -> float:
    """Return the KL warm-up factor: linear from 0 to 1 over `warmup_steps` (1 if no warm-up)."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


def build_optimizers(model: LatentVariableModel, spec: TrainSpec) -> list[torch.optim.Optimizer]:
    """Return the spec's optimizer over the main parameters, plus Adam over the auxiliary ones."""
    auxiliary = model.auxiliary_parameters()
    auxiliary_ids = {id(p) for p in auxiliary}
    main = [p for p in model.parameters() if id(p) not in auxiliary_ids]
    settings = {"lr": spec.lr, "betas": spec.adam_betas, "eps": spec.adam_eps}
    optimizers = [create_optimizer(spec.optimizer, main, **settings)]
    if auxiliary:
        # NOTE: fused, like the main one: the per-tensor Adam reads its step count on the host.
        optimizers.append(torch.optim.Adam(auxiliary, **model.auxiliary_optimizer, fused=True))
    return optimizers


def resolve_device(device: str | torch.device) -> torch.device:
    """Return the torch device for ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Raises:
        ValueError: a GPU is asked for where there is none, saying what was found.
    """
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name and name.split(":")[1].isdigit() else 0
        if index >= count:
            raise ValueError(
                f"Expected `device` {name!r} to name one of this machine's CUDA devices, but "
                f"found {count} (torch {torch.__version__}, CUDA build "
                f"{torch.version.cuda or 'none'}). Use `--device cpu` or `--device auto`."
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("Expected `device` 'mps', but MPS is not available here; use `cpu`.")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise ValueError(
            f"Expected `device` to be auto, cpu, cuda, cuda:N or mps, but got {name!r}."
        ) from error


def train(
    model: LatentVariableModel,
    dataset: Dataset,
    spec: TrainSpec,
    *,
    seed: int,
    device: str | torch.device = "cpu",
    checkpoint_path: Path | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    probe: CurveProbe | None = None,
) -> TrainState:
    """Train `model` for ``spec.steps`` steps on `device`, resuming from `checkpoint_path`.

    Args:
        model: A freshly initialised model (its init drew from the seeded global RNG); it is
            moved to `device` and stays there.
        dataset: Training data; its training split is copied to `device` once.
        spec: Optimiser, schedule and budget.
        seed: Seeds the data stream (order and dynamic binarization).
        device: Where the model, optimizer state and data live (`resolve_device` names).
        checkpoint_path: Where to save and resume; None disables checkpoints.
        stop_after: Stop (after checkpointing) once this step is reached: simulates an
            interruption in tests.
        progress: Show a tqdm bar.
        probe: Called on the model (in eval mode) at the end of each pass of the schedule;
            its figures form ``TrainState.learning_curve``.

    Raises:
        Diverged: when a loss becomes NaN or infinite, or blows up (`BLOW_UP_FACTOR`).
    """
    with argument_validation(Distribution._validate_args):  # NOTE: restored however train ends
        return _train(model, dataset, spec, seed, resolve_device(device), checkpoint_path,
                      stop_after, progress, probe)  # fmt: skip


def _train(model, dataset, spec, seed, device, checkpoint_path, stop_after, progress, probe):
    model.to(device)
    optimizers = build_optimizers(model, spec)
    state = TrainState()
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        state = load_checkpoint(checkpoint_path, model, optimizers)
    stream = TrainingStream(
        dataset,
        batch_size=spec.batch_size,
        seed=seed,
        device=device,
        with_labels=model.conditions_on_labels,
    )
    probe_steps = set(schedule_boundaries(spec.lr_schedule, stream.batches_per_epoch, spec.steps))
    step_function = _compiled_step(model, spec)
    window = _Window(device)
    model.train()
    started = time.perf_counter() - state.seconds
    bar = tqdm(
        total=spec.steps,
        initial=state.step,
        desc="train",
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    )
    while state.step < spec.steps:
        lr = learning_rate(spec.lr_schedule, spec.lr, state.step, stream.batches_per_epoch)
        for group in optimizers[0].param_groups:
            group["lr"] = lr
        with argument_validation(state.step == 0 and Distribution._validate_args):
            window.add(step_function(stream.batch(state.step), state.step, optimizers), state.step)
        state.step += 1
        bar.update(1)
        if state.step % spec.log_every == 0 or state.step == spec.steps:
            _log_window(state, window, lr)
            bar.set_postfix(loss=f"{state.curve[-1]['loss']:.3f}")
        if probe is not None and state.step in probe_steps:
            state.learning_curve.append(_probe(model, probe, state.step, stream))
        state.seconds = time.perf_counter() - started
        if checkpoint_path is not None and _checkpoint_due(state.step, spec, stop_after):
            _log_window(state, window, lr)  # NOTE: a checkpoint never holds a half window
            save_checkpoint(checkpoint_path, model, optimizers, state)
        if stop_after is not None and state.step >= stop_after:
            break
    bar.close()
    model.eval()
    return state


def _compiled_step(model: LatentVariableModel, spec: TrainSpec):
    """Return the step function, wrapped by torch.compile when ``spec.compile`` is set."""

    def step(
        batch: Tensor | tuple[Tensor, Tensor], step: int, optimizers: list
    ) -> dict[str, Tensor]:
        # A label-conditional model trains its view bound to the batch's labels: p(x|y).
        target, x = (
            (model.conditioned_on(batch[1]), batch[0])
            if isinstance(batch, tuple)
            else (model, batch)
        )
        return _optimisation_step(target, optimizers, x, step, spec, loss_function)

    loss_function = lambda target, x, step, weight: target.loss(x, step, kl_weight=weight)  # noqa: E731
    if spec.compile:
        # NOTE: dynamic=None lets dynamo make the step and the KL weight symbolic after their
        # first change; dynamic=False specialised on every step value, hit the recompile limit
        # (8) in the first steps and then ran eagerly.
        loss_function = torch.compile(loss_function, dynamic=None)
    return step


def _optimisation_step(
    model: LatentVariableModel,
    optimizers: list[torch.optim.Optimizer],
    x: Tensor,
    step: int,
    spec: TrainSpec,
    loss_function,
) -> dict[str, Tensor]:
    output = loss_function(model, x, step, kl_weight(step, spec.kl_warmup_steps))
    losses = [output.loss] + ([output.auxiliary_loss] if output.auxiliary_loss is not None else [])
    parameters = [[p for group in o.param_groups for p in group["params"]] for o in optimizers]
    for params in parameters:
        for p in params:
            p.grad = None  # NOTE: `zero_grad(set_to_none=True)` without its profiler overhead
    if len(optimizers) == 1:
        output.loss.backward()  # every parameter the loss reaches is the optimizer's
    else:
        # NOTE: each loss reaches only its own optimizer's parameters (FactorVAE's discriminator).
        for params, loss in zip(parameters, losses, strict=False):
            loss.backward(inputs=params, retain_graph=loss is not losses[-1])
    if spec.grad_clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(optimizers[0].param_groups[0]["params"], spec.grad_clip_norm)
    for optimizer in optimizers:
        optimizer.step()
    named = {"loss": output.loss, **output.terms}
    if output.auxiliary_loss is not None:
        named["auxiliary_loss"] = output.auxiliary_loss
    return named


class _Window:
    """The loss terms of each step since the last read, held on the device until read.

    NOTE: a step only keeps references to its detached 0-dim terms (it launches no kernel);
    `read` copies them to the host in one transfer and sums them there in float64, in step order,
    which is the same arithmetic as a float64 running sum on the device.
    """

    def __init__(self, device: torch.device) -> None:
        self.device, self.keys = device, None
        self.steps: list[int] = []
        self.rows: list[list[Tensor | float]] = []

    @property
    def count(self) -> int:
        return len(self.rows)

    def add(self, terms: dict[str, Tensor | float], step: int) -> None:
        if self.keys is None:
            self.keys = list(terms)
        self.rows.append([_kept(v) for v in terms.values()])
        self.steps.append(step)

    def read(self) -> tuple[dict[str, float], int]:
        """Return the window's mean terms and first non-finite step (-1: none), then reset."""
        rows = self._host_rows()  # NOTE: the one host sync
        losses = [i for i, key in enumerate(self.keys) if key in ("loss", "auxiliary_loss")]
        bad = (s for s, row in zip(self.steps, rows, strict=True) if not _finite(row, losses))
        first_bad = next(bad, -1)
        sums = [0.0] * len(self.keys)
        for row in rows:
            sums = [total + value for total, value in zip(sums, row, strict=True)]
        means = {key: total / len(rows) for key, total in zip(self.keys, sums, strict=True)}
        self.keys, self.rows, self.steps = None, [], []
        return means, first_bad

    def _host_rows(self) -> list[list[float]]:
        """Return the rows as Python floats (float32 terms widen exactly), in one transfer."""
        flat = [torch.as_tensor(v, device=self.device).reshape(()) for r in self.rows for v in r]
        if len({v.dtype for v in flat}) > 1:  # NOTE: stacking would round to a common dtype
            flat = [v.to(torch.float64) for v in flat]
        values = torch.stack(flat).to(torch.float64).tolist()  # (count x T,)
        width = len(self.keys)
        return [values[i : i + width] for i in range(0, len(values), width)]


def _kept(value: Tensor | float) -> Tensor | float:
    """Return a term to hold until the window is read: detached, and not a view of more memory."""
    if not isinstance(value, Tensor):
        return value
    value = value.detach()
    return value.clone() if value.untyped_storage().nbytes() > value.element_size() else value


def _finite(row: list[float], indices: list[int]) -> bool:
    return all(math.isfinite(row[i]) for i in indices)


def _log_window(state: TrainState, window: _Window, lr: float) -> None:
    """Append the window's means to the curve, raising `Diverged` if the loss went bad."""
    if window.count == 0:
        return
    means, first_bad = window.read()
    if first_bad >= 0:
        raise Diverged(first_bad, f"the loss is not finite at step {first_bad}")
    loss = means["loss"]
    if state.reference_loss is None:
        state.reference_loss = loss
    limit = BLOW_UP_FACTOR * max(abs(state.reference_loss), 1.0)
    if abs(loss) > limit:
        raise Diverged(
            state.step,
            f"the mean loss {loss:.3g} over the steps before {state.step} exceeds "
            f"{BLOW_UP_FACTOR:.0e} x the first window's ({state.reference_loss:.3g})",
        )
    state.curve.append({"step": state.step, "lr": lr, **means})


def _probe(model: LatentVariableModel, probe: CurveProbe, step: int, stream: TrainingStream):
    model.eval()
    with torch.random.fork_rng(devices=[]):
        figures = probe(model)
    model.train()
    return {"step": step, "epoch": step / stream.batches_per_epoch, **figures}


def _checkpoint_due(step: int, spec: TrainSpec, stop_after: int | None) -> bool:
    every = spec.checkpoint_every
    return (every > 0 and step % every == 0) or step == spec.steps or step == stop_after


class CorruptCheckpoint(ValueError):
    """A checkpoint that cannot be trusted: unreadable, not vaebench's, or for another model.

    Raised by `load_checkpoint` before it changes anything, so the caller can move the file
    aside and train the same model from scratch.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"checkpoint {path} cannot be used: {reason}")
        self.path = Path(path)
        self.reason = reason


CHECKPOINT_FORMAT = 2  # 2: plain types and tensors only, read with torch.load(weights_only=True)


def save_checkpoint(
    path: Path, model: LatentVariableModel, optimizers: list, state: TrainState
) -> None:
    """Save everything needed to resume, atomically (temporary file, then rename).

    Only tensors and plain types are saved (the `TrainState` as a dict), so that loading needs
    no pickled code: `load_checkpoint` reads with ``weights_only=True``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizers": [o.state_dict() for o in optimizers],
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "state": asdict(state),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: LatentVariableModel, optimizers: list) -> TrainState:
    """Restore model, optimizers and the global RNG from `path` onto the model's device.

    The file is read with ``torch.load(weights_only=True)``, which unpickles tensors and plain
    types only, so a crafted checkpoint cannot run code. Everything is checked against `model`
    and `optimizers` before anything is changed.

    Raises:
        CorruptCheckpoint: the file is unreadable, of another format, or does not fit `model`
            and `optimizers`; nothing has been changed.
    """
    device = next(model.parameters()).device
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # noqa: BLE001  any unreadable file is a corrupt checkpoint
        raise CorruptCheckpoint(path, _first_line(error)) from None
    state = _checked_payload(path, payload, model, optimizers)
    try:
        model.load_state_dict(payload["model"])
        for optimizer, saved in zip(optimizers, payload["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
    except Exception as error:  # noqa: BLE001  e.g. optimizer state of another layout
        raise CorruptCheckpoint(path, _first_line(error)) from None
    torch.set_rng_state(payload["torch_rng"].cpu())
    if payload.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in payload["cuda_rng"]])
    state.resumed_from = state.step
    return state


def _checked_payload(
    path: Path, payload: Any, model: LatentVariableModel, optimizers: list
) -> TrainState:
    """Return the payload's `TrainState` if the payload fits `model` and `optimizers`."""
    # NOTE: a checkpoint without a format key is of the same layout, written before it existed
    if not isinstance(payload, dict) or payload.get("format", 2) != CHECKPOINT_FORMAT:
        raise CorruptCheckpoint(path, f"not a vaebench checkpoint of format {CHECKPOINT_FORMAT}")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = payload.get("model")
    if (
        not isinstance(saved, dict)
        or {k: tuple(getattr(v, "shape", ())) for k, v in saved.items()} != expected
    ):
        raise CorruptCheckpoint(path, "its parameters do not match the model's names and shapes")
    if not isinstance(payload.get("optimizers"), list) or len(payload["optimizers"]) != len(
        optimizers
    ):
        raise CorruptCheckpoint(path, f"it does not hold {len(optimizers)} optimizer state(s)")
    rng = payload.get("torch_rng")
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8:
        raise CorruptCheckpoint(path, "it holds no torch RNG state")
    try:
        return TrainState(**payload["state"])
    except Exception as error:  # noqa: BLE001  missing or unknown fields
        raise CorruptCheckpoint(path, f"its training state is incomplete ({error})") from None


def _first_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0][:300]
    return f"{type(error).__name__}: {text}"
