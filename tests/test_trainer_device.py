"""Tests of the trainer's device path: device names, no per-step host sync, checkpoints that
load onto another device, divergence without a sync, and records that say where a run ran."""

import pytest
import torch

from benchmark.datasets import create_dataset
from benchmark.datasets.stream import TrainingStream
from benchmark.runner import RunOptions, run_spec
from benchmark.spec import TrainSpec, resolve_spec
from benchmark.trainer import Diverged, load_checkpoint, resolve_device, train
from registry import create_model, list_models

SYNC_POINTS = ("item", "tolist", "cpu", "__int__", "__float__", "__bool__")


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


def test_auto_picks_the_cpu_here_and_cuda_is_one_clear_error():
    """Contract: `auto` is the CPU without a GPU; asking for one says what was found."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the no-GPU error cannot be observed")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=r"found 0 .*--device cpu"):
            resolve_device(name)
    with pytest.raises(ValueError, match="Expected `device`"):
        resolve_device("tpu")


def _sync_steps(monkeypatch, model, dataset, spec) -> list[int]:
    """Train, recording the step at which each host-sync method of a tensor is called."""
    current, synced = {"step": -1}, []
    batch = TrainingStream.batch

    def tracked_batch(self, step):
        current["step"] = step
        return batch(self, step)

    monkeypatch.setattr(TrainingStream, "batch", tracked_batch)
    for name in SYNC_POINTS:
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, **kwargs):
            synced.append(current["step"])
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    train(model, dataset, spec, seed=0, progress=False)
    monkeypatch.undo()
    return synced


ZOO = [
    name
    for name in list_models()
    if not name.endswith("_paper") and name not in ("linear_vae",)  # vector-data oracle model
]


@pytest.mark.parametrize("name", ZOO)
def test_training_steps_do_not_wait_for_the_host(monkeypatch, digits, name):
    """Contract: over 25 steps logged every 10, tensors reach the host only at steps 9, 19, 24
    (the last step of each logging window), for every registered model."""
    torch.manual_seed(0)
    model = create_model(name, data_shape=digits.data_shape)
    spec = TrainSpec(steps=25, batch_size=16, log_every=10, checkpoint_every=0)
    synced = _sync_steps(monkeypatch, model, digits, spec)
    assert synced, "the loss is never read"
    # Step 0 runs with argument validation on (it reads tensors by design); others must not.
    assert set(synced) - {0} <= {9, 19, 24}, sorted(set(synced))


def test_a_checkpoint_loads_onto_the_model_device(digits, tmp_path, monkeypatch):
    """Contract: checkpoints are read with weights_only and mapped onto the model's device."""
    torch.manual_seed(0)
    model = create_model("vae", data_shape=digits.data_shape, latent_dim=4)
    spec = TrainSpec(steps=5, batch_size=16, log_every=5, checkpoint_every=5)
    path = tmp_path / "run.pt"
    train(model, digits, spec, seed=0, checkpoint_path=path, progress=False)
    seen = {}
    load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    fresh = create_model("vae", data_shape=digits.data_shape, latent_dim=4)
    optimizers = [torch.optim.Adam(fresh.parameters())]
    state = load_checkpoint(path, fresh, optimizers)
    assert seen["weights_only"] is True and seen["map_location"] == torch.device("cpu")
    assert state.step == 5
    for p, q in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_a_finite_blow_up_is_divergence(digits):
    """Contract: lr 1e6 blows the loss up without a NaN; the trainer stops and says so."""
    torch.manual_seed(0)
    model = create_model("vae", data_shape=digits.data_shape, latent_dim=4)
    spec = TrainSpec(steps=400, batch_size=16, lr=1e6, log_every=10, checkpoint_every=0)
    with pytest.raises(Diverged) as raised:
        train(model, digits, spec, seed=0, progress=False)
    assert 0 < raised.value.step <= 400


def test_a_non_finite_loss_names_its_first_step(digits):
    """Contract: a NaN from step 3 on is reported at step 3, read at the window's end."""
    torch.manual_seed(0)
    model = create_model("vae", data_shape=digits.data_shape, latent_dim=4)
    loss = type(model).loss

    def poisoned(self, x, step, **kwargs):
        output = loss(self, x, step, **kwargs)
        output.loss = output.loss * (float("nan") if step >= 3 else 1.0)
        return output

    model.loss = poisoned.__get__(model)
    spec = TrainSpec(steps=20, batch_size=16, log_every=10, checkpoint_every=0)
    with pytest.raises(Diverged) as raised:
        train(model, digits, spec, seed=0, progress=False)
    assert raised.value.step == 3


def test_the_record_says_where_the_run_ran(tmp_path):
    """Contract: `--device cpu` trains there, and the record's resources name the device;
    the device is not part of the spec hash."""
    raw = {
        "name": "tiny",
        "model": {"name": "vae", "latent_dim": 2},
        "dataset": {"name": "digits"},
        "train": {"steps": 5, "batch_size": 16, "log_every": 5},
        "eval": {"elbo": {}},
    }
    spec = resolve_spec(raw)
    options = RunOptions(results_dir=tmp_path / "r", checkpoint_dir=tmp_path / "c", device="cpu")
    record = run_spec(spec, options)
    assert record.status == "ok", record.failure
    assert record.resources["device"]["type"] == "cpu"
    assert record.resources["device"]["name"]
    assert resolve_spec(raw).hash == spec.hash


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_stream_is_the_same_bits_on_a_gpu(digits):
    """Property: batch order and binarization for a seed are identical on the CPU and a GPU."""
    cpu = TrainingStream(digits, batch_size=32, seed=5)
    gpu = TrainingStream(digits, batch_size=32, seed=5, device="cuda")
    for step in (0, 1, cpu.batches_per_epoch + 3):
        assert torch.equal(cpu.batch(step), gpu.batch(step).cpu())
