"""Checkpoints hold no code, and a corrupt one costs a restart, never the run (issue 18, 2 & 13).

Property tests: a crafted pickle at a run's checkpoint path does not run (it does under
``weights_only=False``, which the first test shows, so the test could fail); a corrupt or
foreign checkpoint is named, moved aside, and the run restarts from scratch, giving the same
training curve as a run that never saw it.
"""

import logging
from pathlib import Path

import pytest
import torch

from benchmark.datasets import create_dataset
from benchmark.runner import RunOptions, run_spec
from benchmark.spec import TrainSpec, resolve_spec
from benchmark.trainer import CorruptCheckpoint, load_checkpoint, save_checkpoint, train
from registry import create_model

RAW = {
    "name": "ck",
    "model": {"name": "vae", "latent_dim": 2, "architecture": {"hidden": [8]}},
    "dataset": {"name": "digits"},
    "train": {"steps": 20, "log_every": 5, "checkpoint_every": 10},
    "eval": {"elbo": {"num_examples": 20}},
}


class Payload:
    """Unpickling this opens (creates) the file `marker`: code run by `torch.load`."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": Payload(marker)}, path)
    return path


def options(folder: Path) -> RunOptions:
    return RunOptions(folder / "results", folder / "checkpoints", progress=False)


@pytest.fixture(scope="module")
def clean_record(tmp_path_factory):
    return run_spec(resolve_spec(RAW), options(tmp_path_factory.mktemp("clean")))


def test_crafted_pickle_would_run_code_without_weights_only(tmp_path):
    """Property (the test's own check): the crafted file runs code under the old loader."""
    marker = tmp_path / "pwned"
    torch.load(crafted_checkpoint(tmp_path / "x.pt", marker), weights_only=False)
    assert marker.exists()


def test_crafted_checkpoint_runs_no_code_and_the_run_restarts(tmp_path, clean_record, caplog):
    """Property: the run is ok, the payload never ran, the file was moved aside and named, and
    the training curve equals that of a run that never had a checkpoint."""
    spec = resolve_spec(RAW)
    marker = tmp_path / "pwned"
    path = crafted_checkpoint(tmp_path / "checkpoints" / f"{spec.training_hash[:16]}.pt", marker)
    with caplog.at_level(logging.WARNING):
        record = run_spec(spec, options(tmp_path))
    assert not marker.exists()
    assert record.status == "ok"
    (moved,) = path.parent.glob(f"{path.name}.corrupt-*")
    assert str(path) in caplog.text and "from scratch" in caplog.text
    assert str(moved) in record.training["restarted_from_scratch"]
    assert record.training["curve"] == clean_record.training["curve"]
    assert record.metrics["elbo"]["elbo"].value == clean_record.metrics["elbo"]["elbo"].value


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_checkpoint_is_moved_aside_and_the_run_restarts(tmp_path, clean_record, damage):
    """Property: a damaged checkpoint gives an ok run equal to a clean one, not a failure."""
    spec = resolve_spec(RAW)
    path = tmp_path / "checkpoints" / f"{spec.training_hash[:16]}.pt"
    path.parent.mkdir(parents=True)
    model = create_model("vae", data_shape=(1, 8, 8), latent_dim=2, architecture={"hidden": (8,)})
    save_checkpoint(path, model, [torch.optim.Adam(model.parameters())], _state())
    blob = path.read_bytes()
    path.write_bytes(
        {"truncated": blob[: len(blob) // 2], "garbage": b"\x80\x02garbage", "empty": b""}[damage]
    )
    record = run_spec(spec, options(tmp_path))
    assert record.status == "ok"
    assert len(list(path.parent.glob(f"{path.name}.corrupt-*"))) == 1
    assert record.training["curve"] == clean_record.training["curve"]


def _state():
    from benchmark.trainer import TrainState

    return TrainState(step=3)


def test_foreign_checkpoint_is_refused_before_anything_changes(tmp_path):
    """Property: a checkpoint of another architecture raises CorruptCheckpoint naming the file,
    and leaves the model's parameters and the global RNG untouched."""
    digits = create_dataset("digits")
    other = create_model("vae", data_shape=digits.data_shape, latent_dim=3)
    path = tmp_path / "other.pt"
    save_checkpoint(path, other, [torch.optim.Adam(other.parameters())], _state())
    model = create_model("vae", data_shape=digits.data_shape, latent_dim=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.raises(CorruptCheckpoint, match=str(path)):
        load_checkpoint(path, model, [torch.optim.Adam(model.parameters())])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_checkpoint_holds_only_tensors_and_plain_types(tmp_path):
    """Contract: a checkpoint written mid-run loads with weights_only=True and resumes."""
    digits = create_dataset("digits")
    torch.manual_seed(0)
    model = create_model("vae", data_shape=digits.data_shape, latent_dim=2)
    spec = TrainSpec(steps=6, checkpoint_every=3, log_every=2)
    path = tmp_path / "run.pt"
    train(model, digits, spec, seed=0, checkpoint_path=path, stop_after=3, progress=False)
    payload = torch.load(path, weights_only=True)
    assert payload["state"]["step"] == 3 and isinstance(payload["state"]["curve"], list)
    state = train(model, digits, spec, seed=0, checkpoint_path=path, progress=False)
    assert state.resumed_from == 3 and state.step == 6
