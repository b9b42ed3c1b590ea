"""Tests of the training loop: determinism, resume after interruption, divergence handling."""

import math

import pytest
import torch

from benchmark.datasets import create_dataset
from benchmark.records import read_record, record_path
from benchmark.runner import RunOptions, run_spec
from benchmark.spec import TrainSpec, resolve_spec
from benchmark.trainer import Diverged, kl_weight, train
from registry import create_model
from registry.vae import VAE

SPEC = TrainSpec(steps=60, batch_size=32, checkpoint_every=20, log_every=10, kl_warmup_steps=30)


def fresh_model(dataset, name: str = "vae"):
    torch.manual_seed(0)
    return create_model(
        name, data_shape=dataset.data_shape, latent_dim=4, architecture={"hidden": [32]}
    )


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


def test_training_is_deterministic_given_seeds(digits):
    """Property: two runs with the same seeds end with identical parameters."""
    a = fresh_model(digits)  # seeds the global RNG, as the runner does, then trains
    train(a, digits, SPEC, seed=1, progress=False)
    b = fresh_model(digits)
    train(b, digits, SPEC, seed=1, progress=False)
    assert all(
        torch.equal(p, q)
        for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("name", ["vae", "cvae"])  # cvae: (x, y) batches resume aligned too
def test_resume_after_interruption_equals_uninterrupted_run(digits, tmp_path, name):
    """Property: stop at step 30 (mid-epoch), resume from the checkpoint: same final weights."""
    reference = fresh_model(digits, name)
    reference_state = train(reference, digits, SPEC, seed=1, progress=False)
    interrupted = fresh_model(digits, name)
    checkpoint = tmp_path / "run.pt"
    train(
        interrupted, digits, SPEC, seed=1, checkpoint_path=checkpoint, stop_after=30, progress=False
    )
    resumed = fresh_model(digits, name)  # a new process would rebuild the model from the seed
    state = train(resumed, digits, SPEC, seed=1, checkpoint_path=checkpoint, progress=False)
    assert state.resumed_from == 30 and state.step == 60
    for p, q in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert state.curve == reference_state.curve


def test_kl_warmup_schedule():
    """Property: linear warm-up from 0 to 1, and 1 without warm-up."""
    assert kl_weight(0, 10) == 0 and kl_weight(5, 10) == 0.5 and kl_weight(20, 10) == 1
    assert kl_weight(0, 0) == 1


def test_nan_loss_raises_diverged_with_step(digits, monkeypatch):
    """Property: a NaN loss stops training with the step and the reason."""
    original = VAE.loss

    def nan_after_five(self, x, step, *, kl_weight=1.0):
        output = original(self, x, step, kl_weight=kl_weight)
        output.loss = output.loss * (math.nan if step >= 5 else 1.0)
        return output

    monkeypatch.setattr(VAE, "loss", nan_after_five)
    with pytest.raises(Diverged, match="step 5"):
        train(fresh_model(digits), digits, SPEC, seed=0, progress=False)


def _raw_spec(name: str, latent_dim: int) -> dict:
    return {
        "name": name,
        "model": {"name": "vae", "latent_dim": latent_dim, "architecture": {"hidden": [16]}},
        "dataset": {"name": "digits"},
        "train": {"steps": 20, "batch_size": 32},
        "eval": {"elbo": {"num_examples": 50}},
    }


def test_diverged_run_is_recorded_and_the_next_run_carries_on(tmp_path, monkeypatch):
    """Property: a NaN run is written as status 'diverged' with null metrics; others are fine."""
    original = VAE.loss

    def nan_for_latent_three(self, x, step, *, kl_weight=1.0):
        output = original(self, x, step, kl_weight=kl_weight)
        if self.latent_dim == 3 and step == 7:
            output.loss = output.loss * math.nan
        return output

    monkeypatch.setattr(VAE, "loss", nan_for_latent_three)
    options = RunOptions(
        results_dir=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt", progress=False
    )
    bad = run_spec(resolve_spec(_raw_spec("bad", 3)), options)
    good = run_spec(resolve_spec(_raw_spec("good", 2)), options)
    assert bad.status == "diverged" and bad.metrics == {} and bad.failure["step"] == 7
    assert good.status == "ok" and math.isfinite(good.metric("elbo", "elbo").value)
    path = record_path(options.results_dir, "bad", "digits", bad.spec_hash)
    assert read_record(path).status == "diverged"
    assert (
        "NaN" not in path.read_text() and "nan" not in path.read_text().lower().split("reason")[0]
    )


def test_existing_ok_record_is_reused_and_force_reruns(tmp_path):
    """Property: re-running a spec reuses its ok record; --force runs it again."""
    options = RunOptions(
        results_dir=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt", progress=False
    )
    spec = resolve_spec(_raw_spec("again", 2))
    first = run_spec(spec, options)
    second = run_spec(spec, options)
    assert second == first
    forced = run_spec(spec, RunOptions(**{**options.__dict__, "force": True}))
    assert forced.timings != first.timings and forced.metrics == first.metrics


def test_the_logging_window_sums_in_float64_and_checks_only_the_losses():
    """Reference: the window's means are float64 sums of the steps' terms, in step order; a
    non-finite diagnostic term is logged, a non-finite loss or auxiliary loss is divergence."""
    from benchmark.trainer import _Window

    window = _Window(torch.device("cpu"))
    values = [0.1, 1e8, -1e8, 0.3]  # float64 sums keep the 0.1 and 0.3 beside +-1e8
    for step, value in enumerate(values):
        terms = {"loss": torch.tensor(value), "kl": torch.tensor(float("nan")), "n": 2.0}
        window.add(terms | {"auxiliary_loss": torch.tensor(1.0)}, step)
    means, first_bad = window.read()
    assert first_bad == -1 and window.count == 0
    expected = sum(float(torch.tensor(v)) for v in values) / len(values)
    assert means["loss"] == expected and means["n"] == 2.0 and math.isnan(means["kl"])
    for step in (7, 8, 9):
        aux = float("inf") if step >= 8 else 0.0
        window.add({"loss": torch.tensor(1.0), "auxiliary_loss": torch.tensor(aux)}, step)
    assert window.read()[1] == 8


_COUNT_COMPILED_FRAMES = """
import torch
from dataclasses import replace
from torch._dynamo.utils import counters
from benchmark.datasets import create_dataset
from benchmark.trainer import train
from tests.test_trainer import SPEC, fresh_model
torch._dynamo.config.recompile_limit = 1000
digits = create_dataset("digits")
train(fresh_model(digits), digits, replace(SPEC, steps=40, compile=True), seed=1, progress=False)
print(counters["frames"]["total"])
"""


def test_compiled_training_does_not_recompile_per_step():
    """Property: with ``train.compile`` dynamo compiles a few frames, not one per step (the step
    number and the warm-up's KL weight change every step and must not be specialised on). The
    recompile limit is lifted, so a per-step recompilation shows as about 40 frames instead of a
    silent fall-back to eager at the limit (8). A fresh interpreter, because dynamo keeps
    per-code state across `torch._dynamo.reset()` that changes how a second compile traces."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _COUNT_COMPILED_FRAMES], capture_output=True, text=True, check=True
    )
    frames = int(done.stdout.split()[-1])
    assert 1 <= frames <= 4, done.stdout
