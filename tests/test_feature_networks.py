"""Contract and property tests of the dataset feature network, its cache and the Inception guard."""

import dataclasses
import json

import pytest
import torch

import benchmark.feature_networks as feature_networks
from benchmark.datasets.base import Dataset
from benchmark.feature_networks import (
    FeatureNetworkSpec,
    LeNet,
    default_cache_dir,
    inception_feature_network,
    load_or_train_feature_network,
    spec_key,
    train_feature_network,
)

SPEC = FeatureNetworkSpec(
    dataset="bars", epochs=2, batch_size=32, lr=1e-2, channels=(4, 8), num_features=16
)


def bars_dataset(checksum: str = "bars-v1") -> Dataset:
    """Two separable classes of noisy 8×8 images: a bright top half, or a bright bottom half."""
    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % 2
        x = 0.3 * torch.rand(n, 1, 8, 8, generator=generator)
        x[labels == 0, :, :4] += 0.7
        x[labels == 1, :, 4:] += 0.7
        return x, labels

    (x_train, y_train), (x_test, y_test) = split(256), split(64)
    return Dataset(
        "bars",
        (1, 8, 8),
        {"train": x_train, "valid": x_test, "test": x_test},
        {"train": y_train, "valid": y_test, "test": y_test},
        "continuous",
        checksum,
        "generated",
    )


@pytest.fixture
def count_training(monkeypatch):
    """Count calls of `train_feature_network` made through the cache."""
    calls = []

    def counted(spec, dataset):
        calls.append(spec)
        return train_feature_network(spec, dataset)

    monkeypatch.setattr(feature_networks, "train_feature_network", counted)
    return calls


def test_training_is_seeded_and_records_test_accuracy():
    """Property: separable classes are learnt; the same seed gives the same weights."""
    dataset = bars_dataset()
    model_a, info = train_feature_network(SPEC, dataset)
    model_b, _ = train_feature_network(SPEC, dataset)
    assert info["test_accuracy"] > 0.9 and info["num_test"] == 64 and info["num_classes"] == 2
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cache_is_reused_and_returns_the_same_features(tmp_path, count_training):
    """Contract: the second call loads the cached network instead of training it again."""
    dataset = bars_dataset()
    first = load_or_train_feature_network(SPEC, dataset, tmp_path)
    second = load_or_train_feature_network(SPEC, dataset, tmp_path)
    assert len(count_training) == 1 and first.key == second.key
    x = dataset.splits["test"]
    torch.testing.assert_close(first.module(x), second.module(x), rtol=0, atol=0)
    assert first.module(x).shape == (64, 16) and first.num_features == 16
    assert second.describe()["test_accuracy"] == first.info["test_accuracy"]


def test_changed_spec_or_data_invalidates_the_cache(tmp_path, count_training):
    """Contract: a different spec or data checksum trains a new network under a new key."""
    base = load_or_train_feature_network(SPEC, bars_dataset(), tmp_path)
    reseeded = load_or_train_feature_network(
        dataclasses.replace(SPEC, seed=1), bars_dataset(), tmp_path
    )
    new_data = load_or_train_feature_network(SPEC, bars_dataset("bars-v2"), tmp_path)
    assert len(count_training) == 3
    assert len({base.key, reseeded.key, new_data.key}) == 3
    assert base.key == spec_key(SPEC, "bars-v1")


@pytest.mark.parametrize("damage", ["weights", "info"])
def test_corrupt_cache_is_detected_and_retrained(tmp_path, count_training, damage):
    """Contract: a flipped weights byte or a truncated info file warns and retrains."""
    dataset = bars_dataset()
    first = load_or_train_feature_network(SPEC, dataset, tmp_path)
    entry = tmp_path / "feature_networks" / first.key
    if damage == "weights":
        data = bytearray((entry / "weights.pt").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (entry / "weights.pt").write_bytes(bytes(data))
    else:
        (entry / "info.json").write_text((entry / "info.json").read_text()[:20])
    with pytest.warns(RuntimeWarning, match="Corrupt feature-network cache"):
        again = load_or_train_feature_network(SPEC, dataset, tmp_path)
    assert len(count_training) == 2 and again.key == first.key
    info = json.loads((entry / "info.json").read_text())
    assert info["test_accuracy"] == again.info["test_accuracy"]
    load_or_train_feature_network(SPEC, dataset, tmp_path)  # repaired: loads without training
    assert len(count_training) == 2


def test_cache_dir_defaults_to_the_environment(monkeypatch, tmp_path):
    """Contract: $VAEBENCH_CACHE sets the cache root."""
    monkeypatch.setenv("VAEBENCH_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path


def test_unlabelled_data_and_mismatched_names_raise():
    """Contract: training needs labels and the spec's dataset name."""
    dataset = bars_dataset()
    with pytest.raises(ValueError, match="labels"):
        train_feature_network(SPEC, dataclasses.replace(dataset, labels={}))
    with pytest.raises(ValueError, match="dataset"):
        train_feature_network(dataclasses.replace(SPEC, dataset="digits"), dataset)
    with pytest.raises(ValueError, match="epochs"):
        FeatureNetworkSpec(dataset="bars", epochs=0)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (1, 64, 64), (3, 32, 32)])
def test_lenet_embeds_every_supported_image_size(shape):
    """Contract: the architecture maps 8×8 to 64×64 images to (N, num_features) and logits."""
    model = LeNet(shape, num_classes=3, channels=(4, 8), num_features=12)
    x = torch.rand(2, *shape)
    assert model.features(x).shape == (2, 12) and model(x).shape == (2, 3)


def test_inception_needs_local_weights_and_never_downloads(monkeypatch, tmp_path):
    """Contract: without a weights file the error names the env var and the download command."""
    monkeypatch.delenv("VAEBENCH_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(ValueError, match="VAEBENCH_INCEPTION_WEIGHTS") as error:
        inception_feature_network()
    assert "curl" in str(error.value) and "never" in str(error.value)
    monkeypatch.setenv("VAEBENCH_INCEPTION_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="missing.pth"):
        inception_feature_network()
