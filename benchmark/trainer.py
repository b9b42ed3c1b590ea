"""The training loop: Adam over in-memory tensors, KL warm-up, resumable checkpoints.

Determinism: the caller seeds the global torch RNG before building the model (initialisation
and reparameterised samples use it); the data order and any dynamic binarization use a
separate `torch.Generator`. A checkpoint stores the global RNG state, the generator state at the
start of the current epoch and how many batches of that epoch were consumed, so a resumed run
replays exactly the same batches and noise as an uninterrupted one.
"""

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from benchmark.datasets.base import Dataset
from benchmark.spec import TrainSpec
from registry.base import LatentVariableModel


class Diverged(RuntimeError):
    """Raised when the training loss stops being finite."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"diverged at step {step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass
class TrainState:
    """Where training stands; everything in it goes into a checkpoint."""

    step: int = 0
    epoch_generator_state: torch.Tensor | None = None  # data generator at the start of the epoch
    batches_into_epoch: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)
    window: list[dict[str, float]] = field(default_factory=list)  # terms since the last curve point
    resumed_from: int | None = None
    seconds: float = 0.0


def kl_weight(step: int, warmup_steps: int) -> float:
    """Return the KL warm-up factor: linear from 0 to 1 over `warmup_steps` (1 if no warm-up)."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


def build_optimizers(model: LatentVariableModel, spec: TrainSpec) -> list[torch.optim.Optimizer]:
    """Return Adam over the main parameters, plus one over `auxiliary_parameters()` if any."""
    auxiliary = model.auxiliary_parameters()
    auxiliary_ids = {id(p) for p in auxiliary}
    main = [p for p in model.parameters() if id(p) not in auxiliary_ids]
    optimizers = [torch.optim.Adam(main, lr=spec.lr, betas=spec.adam_betas, eps=spec.adam_eps)]
    if auxiliary:
        optimizers.append(torch.optim.Adam(auxiliary, **model.auxiliary_optimizer))
    return optimizers


def train(
    model: LatentVariableModel,
    dataset: Dataset,
    spec: TrainSpec,
    *,
    seed: int,
    checkpoint_path: Path | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainState:
    """Train `model` for ``spec.steps`` steps, resuming from `checkpoint_path` if it exists.

    Args:
        model: A freshly initialised model (its init drew from the seeded global RNG).
        dataset: Training data; ``train_batches`` is drawn epoch by epoch.
        spec: Optimiser and budget.
        seed: Seeds the data generator (order and dynamic binarization).
        checkpoint_path: Where to save and resume; None disables checkpoints.
        stop_after: Stop (after checkpointing) once this step is reached: simulates an
            interruption in tests.
        progress: Show a tqdm bar.

    Raises:
        Diverged: when a loss becomes NaN or infinite.
    """
    optimizers = build_optimizers(model, spec)
    generator = torch.Generator().manual_seed(seed)
    state = TrainState(epoch_generator_state=generator.get_state())
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        state = load_checkpoint(checkpoint_path, model, optimizers)
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
    with_labels = model.conditions_on_labels
    batches = _resume_epoch(dataset, spec.batch_size, generator, state, with_labels)
    while state.step < spec.steps:
        batch = next(batches, None)
        if batch is None:  # epoch finished: remember where the next one starts
            state.epoch_generator_state, state.batches_into_epoch = generator.get_state(), 0
            batches = dataset.train_batches(spec.batch_size, generator, with_labels=with_labels)
            continue
        state.batches_into_epoch += 1
        # A label-conditional model trains its view bound to the batch's labels: p(x|y).
        target, x = (model.conditioned_on(batch[1]), batch[0]) if with_labels else (model, batch)
        state.window.append(_optimisation_step(target, optimizers, x, state.step, spec))
        state.step += 1
        bar.update(1)
        if state.step % spec.log_every == 0 or state.step == spec.steps:
            state.curve.append({"step": state.step, **_mean_terms(state.window)})
            bar.set_postfix(loss=f"{state.curve[-1]['loss']:.3f}")
            state.window = []
        state.seconds = time.perf_counter() - started
        if checkpoint_path is not None and _checkpoint_due(state.step, spec, stop_after):
            save_checkpoint(checkpoint_path, model, optimizers, state)
        if stop_after is not None and state.step >= stop_after:
            break
    bar.close()
    model.eval()
    return state


def _optimisation_step(
    model: LatentVariableModel,
    optimizers: list[torch.optim.Optimizer],
    x: torch.Tensor,
    step: int,
    spec: TrainSpec,
) -> dict[str, float]:
    output = model.loss(x, step, kl_weight=kl_weight(step, spec.kl_warmup_steps))
    losses = [output.loss] + ([output.auxiliary_loss] if output.auxiliary_loss is not None else [])
    for name, loss in zip(("loss", "auxiliary_loss"), losses, strict=False):
        if not torch.isfinite(loss):
            raise Diverged(step, f"{name} is {loss.item()} at step {step}")
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    # NOTE: each loss reaches only its own optimizer's parameters (FactorVAE's discriminator).
    for optimizer, loss in zip(optimizers, losses, strict=False):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        loss.backward(inputs=params, retain_graph=loss is not losses[-1])
    if spec.grad_clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(optimizers[0].param_groups[0]["params"], spec.grad_clip_norm)
    for optimizer in optimizers:
        optimizer.step()
    return {"loss": output.loss.item(), **output.terms}


def _mean_terms(window: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(w[key] for w in window) / len(window) for key in window[0]}


def _checkpoint_due(step: int, spec: TrainSpec, stop_after: int | None) -> bool:
    every = spec.checkpoint_every
    return (every > 0 and step % every == 0) or step == spec.steps or step == stop_after


def _resume_epoch(
    dataset: Dataset,
    batch_size: int,
    generator: torch.Generator,
    state: TrainState,
    with_labels: bool,
):
    """Restart the current epoch from its saved generator state and skip consumed batches."""
    generator.set_state(state.epoch_generator_state)
    batches = dataset.train_batches(batch_size, generator, with_labels=with_labels)
    for _ in range(state.batches_into_epoch):
        next(batches)
    return batches


def save_checkpoint(
    path: Path, model: LatentVariableModel, optimizers: list, state: TrainState
) -> None:
    """Save everything needed to resume, atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "model": model.state_dict(),
        "optimizers": [o.state_dict() for o in optimizers],
        "torch_rng": torch.get_rng_state(),
        "state": state,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: LatentVariableModel, optimizers: list) -> TrainState:
    """Restore model, optimizers and the global RNG from `path`; return the saved `TrainState`.

    The data generator is restored by `_resume_epoch`, which replays the current epoch.
    """
    payload = torch.load(path, weights_only=False)
    model.load_state_dict(payload["model"])
    for optimizer, saved in zip(optimizers, payload["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    torch.set_rng_state(payload["torch_rng"])
    state: TrainState = payload["state"]
    state.resumed_from = state.step
    return state
