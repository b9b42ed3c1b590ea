"""Tests of the dataset registry, the contract of every registered dataset, and the generators."""

import dataclasses
import math
import re

import numpy as np
import pytest
import scipy.stats
import torch

from benchmark.datasets import (
    DATASETS,
    create_dataset,
    list_datasets,
    register_dataset,
    resolve_dataset_settings,
)
from benchmark.datasets.base import SPLITS, Dataset
from benchmark.datasets.digits import split_indices
from benchmark.datasets.linear_gaussian import true_marginal
from benchmark.datasets.preprocessing import INTENSITY_PREPROCESSINGS
from benchmark.datasets.stream import TrainingStream
from tests.test_idx import write_mnist_format

# Settings that keep the contract tests fast; a dataset without an entry uses its defaults.
CONTRACT_SETTINGS = {
    "dsprites": {"num_train": 300, "num_valid": 50, "num_test": 50},
    "fashion_mnist": {"train_size": 2000},
    "linear_gaussian": {"num_train": 300, "num_valid": 50, "num_test": 80},
}
IDX_DATASETS = ("mnist", "fashion_mnist")


@pytest.fixture(scope="module", params=list_datasets())
def dataset(request, tmp_path_factory) -> Dataset:
    """Each registered dataset; MNIST-format ones fall back to tiny generated files if absent."""
    name = request.param
    try:
        return create_dataset(name, **CONTRACT_SETTINGS.get(name, {}))
    except FileNotFoundError:
        if name not in IDX_DATASETS:
            raise
    root = tmp_path_factory.mktemp(name)
    write_mnist_format(root / name, num_train=40, num_test=12)
    return create_dataset(name, data_root=root, valid_size=8)


# --- the registry ---------------------------------------------------------------------------


def test_builtin_datasets_are_registered():
    """Contract: the built-in datasets are listed, wildcards filter them."""
    assert {"digits", "fashion_mnist", "linear_gaussian", "mnist"} <= set(list_datasets())
    assert list_datasets("*mnist") == ["fashion_mnist", "mnist"]


def test_unknown_dataset_name_suggests_close_matches():
    """Contract: an unknown name raises ValueError with did-you-mean suggestions."""
    with pytest.raises(
        ValueError, match=r"'digit'.*Did you mean 'digits'\?.*vaebench list datasets"
    ):
        create_dataset("digit")
    with pytest.raises(ValueError, match="Did you mean 'fashion_mnist'"):
        create_dataset("fashion_mnst")


def test_unknown_setting_lists_the_allowed_keys():
    """Contract: an unknown setting raises ValueError listing every allowed key."""
    expected = re.escape("['binarization_seed', 'preprocessing']")
    with pytest.raises(ValueError, match=rf"among {expected}.*unknown \['valid_size'\]"):
        create_dataset("digits", valid_size=10)


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"num_train": "100"}, TypeError),
        ({"noise_std": True}, TypeError),
        ({"preprocessing": "binary"}, ValueError),
    ],
)
def test_settings_of_the_wrong_type_raise(settings, error):
    """Contract: settings are type-checked against the factory signature."""
    with pytest.raises(error, match="Expected `dataset"):
        create_dataset("linear_gaussian", **settings)


def test_resolve_fills_every_default_and_keeps_overrides():
    """Contract: the resolved settings (hashed into the spec) list every setting."""
    assert resolve_dataset_settings("digits", {}) == {
        "preprocessing": "dynamic_binarization",
        "binarization_seed": 0,
    }
    resolved = resolve_dataset_settings("fashion_mnist", {"train_size": 100})
    assert resolved == {
        "preprocessing": "dynamic_binarization",
        "valid_size": 5000,
        "train_size": 100,
        "binarization_seed": 0,
    }
    assert "data_root" not in resolve_dataset_settings("mnist", {})  # injected, not a setting


def test_duplicate_registration_raises():
    """Contract: registering a taken name raises instead of replacing the dataset."""
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits")(lambda *, preprocessing="continuous": None)
    assert DATASETS.get("digits").__module__ == "benchmark.datasets.digits"


def test_data_root_is_ignored_by_datasets_without_files(tmp_path):
    """Contract: the harness may always pass --data-root; generated datasets ignore it."""
    dataset = create_dataset("linear_gaussian", data_root=tmp_path / "nowhere", num_train=5)
    assert dataset.source == "generated"


# --- the contract, for every registered dataset ---------------------------------------------


def test_splits_follow_the_contract(dataset):
    """Contract: three float32, finite splits of shape (N, *data_shape), sizes as documented."""
    assert set(dataset.splits) == set(SPLITS)
    for split, x in dataset.splits.items():
        assert x.dtype == torch.float32 and x.shape[1:] == dataset.data_shape
        assert torch.isfinite(x).all()
        assert len(x) == dataset.info["sizes"][split] > 0
        if split in dataset.labels:
            assert dataset.labels[split].shape == (len(x),)
    assert dataset.num_dims == math.prod(dataset.data_shape)
    assert re.fullmatch(r"[0-9a-f]{64}", dataset.checksum)


def test_training_stream_covers_the_training_split_once(dataset):
    """Contract: an epoch yields each training example once; same seed, same batches."""
    raw = dataclasses.replace(dataset, preprocessing="continuous")
    stream = TrainingStream(raw, batch_size=128, seed=0)
    batches = [stream.batch(step) for step in range(stream.batches_per_epoch)]
    assert [len(b) for b in batches[:-1]] == [128] * (len(batches) - 1)
    x = torch.cat(batches)
    assert _sorted_rows(x) == _sorted_rows(dataset.splits["train"])
    first = TrainingStream(dataset, batch_size=64, seed=1).batch(0)
    assert torch.equal(first, TrainingStream(dataset, batch_size=64, seed=1).batch(0))
    assert not torch.equal(first, TrainingStream(dataset, batch_size=64, seed=2).batch(0))


def test_evaluation_data_is_deterministic(dataset):
    """Contract: evaluation data is identical across calls and across rebuilt datasets."""
    rebuilt = dataclasses.replace(dataset)  # a fresh object with an empty cache
    for split in ("valid", "test"):
        x = dataset.evaluation_data(split)
        assert x.shape == dataset.splits[split].shape and x.dtype == torch.float32
        assert torch.equal(x, rebuilt.evaluation_data(split))
        if dataset.preprocessing in INTENSITY_PREPROCESSINGS:
            assert set(x.unique().tolist()) <= {0.0, 1.0}


def test_checksum_is_stable(dataset):
    """Contract: rebuilding a dataset from the same source records the same checksum."""
    name = dataset.name
    if name in IDX_DATASETS:
        again = create_dataset(
            name, data_root=dataset.source, valid_size=dataset.info["sizes"]["valid"]
        )
    else:
        again = create_dataset(name, **CONTRACT_SETTINGS.get(name, {}))
    assert again.checksum == dataset.checksum


def _sorted_rows(x: torch.Tensor) -> list[bytes]:
    return sorted(row.numpy().tobytes() for row in x.flatten(1))


# --- digits ---------------------------------------------------------------------------------


def test_digits_split_is_fixed_disjoint_and_complete():
    """Contract: 1,257 / 180 / 360 disjoint indices covering all 1,797 images, as documented."""
    indices = split_indices()
    assert {s: len(i) for s, i in indices.items()} == {"train": 1257, "valid": 180, "test": 360}
    assert np.array_equal(np.sort(np.concatenate(list(indices.values()))), np.arange(1797))
    expected = np.random.RandomState(0).permutation(1797)
    assert np.array_equal(indices["valid"], expected[1257:1437])
    dataset = create_dataset("digits")
    assert dataset.info["valid_indices"] == indices["valid"].tolist()


def test_digits_match_scikit_learn():
    """Scipy-sklearn reference: splits are load_digits().images[indices] / 16 and its targets."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    dataset = create_dataset("digits", preprocessing="continuous")
    for split, index in split_indices().items():
        expected = torch.from_numpy(bunch.images[index] / 16).float().unsqueeze(1)  # (N, 1, 8, 8)
        assert torch.equal(dataset.splits[split], expected)
        assert dataset.labels[split].tolist() == bunch.target[index].tolist()
    assert dataset.data_shape == (1, 8, 8)
    assert dataset.splits["train"].max() == 1 and dataset.splits["train"].min() == 0


@pytest.mark.parametrize("preprocessing", ["8bit", "dequantized"])
def test_digits_reject_8bit_preprocessing(preprocessing):
    """Contract: digits have 17 grey levels, so 8-bit preprocessings raise with the reason."""
    with pytest.raises(ValueError, match="17 grey levels"):
        create_dataset("digits", preprocessing=preprocessing)


# --- linear_gaussian ------------------------------------------------------------------------


def test_linear_gaussian_moments_match_the_true_model():
    """Closed-form reference: empirical mean and covariance match b and W W^T + sigma^2 I."""
    dataset = create_dataset(
        "linear_gaussian",
        data_dim=5,
        latent_dim=2,
        noise_std=0.3,
        num_train=20000,
        num_valid=10,
        num_test=10,
    )
    x = dataset.splits["train"].double().numpy()
    W, b = np.array(dataset.info["W"]), np.array(dataset.info["b"])
    covariance = W @ W.T + 0.09 * np.eye(5)  # (5, 5)
    n = len(x)
    mean_stderr = np.sqrt(np.diag(covariance) / n)
    assert np.all(np.abs(x.mean(0) - b) < 5 * mean_stderr)
    # Var of a sample covariance entry under a Gaussian: (S_ii S_jj + S_ij^2) / n.
    cov_stderr = np.sqrt((np.outer(np.diag(covariance), np.diag(covariance)) + covariance**2) / n)
    assert np.all(np.abs(np.cov(x, rowvar=False) - covariance) < 5 * cov_stderr)
    assert W.shape == (5, 2) and dataset.data_shape == (5,)


def test_linear_gaussian_true_marginal_matches_scipy():
    """Scipy-sklearn reference: true_marginal.log_prob equals multivariate_normal.logpdf."""
    dataset = create_dataset("linear_gaussian", num_train=10, num_valid=10, num_test=50)
    x = dataset.splits["test"].double()
    W, b = np.array(dataset.info["W"]), np.array(dataset.info["b"])
    reference = scipy.stats.multivariate_normal(b, W @ W.T + 0.25 * np.eye(16)).logpdf(x.numpy())
    np.testing.assert_allclose(true_marginal(dataset).log_prob(x).numpy(), reference, rtol=1e-10)


def test_linear_gaussian_splits_are_independent_streams():
    """Property: resizing one split leaves the others; another seed changes the model."""
    base = create_dataset("linear_gaussian", num_train=100, num_valid=20, num_test=30)
    resized = create_dataset("linear_gaussian", num_train=100, num_valid=20, num_test=60)
    assert torch.equal(base.splits["train"], resized.splits["train"])
    assert torch.equal(base.splits["valid"], resized.splits["valid"])
    assert base.info["W"] == resized.info["W"] and base.checksum != resized.checksum
    other = create_dataset("linear_gaussian", num_train=100, num_valid=20, num_test=30, seed=1)
    assert other.info["W"] != base.info["W"] and other.checksum != base.checksum


@pytest.mark.parametrize("preprocessing", ["dynamic_binarization", "threshold", "8bit"])
def test_linear_gaussian_rejects_image_preprocessing(preprocessing):
    """Contract: real-valued vectors cannot be binarized or quantized; the error says so."""
    with pytest.raises(ValueError, match=r"one of \['continuous'\].*real-valued vectors"):
        create_dataset("linear_gaussian", preprocessing=preprocessing)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"noise_std": 0.0}, "noise_std"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"num_valid": 0}, "num_valid"),
        ({"seed": -1}, "seed"),
    ],
)
def test_linear_gaussian_rejects_invalid_settings(settings, message):
    """Contract: non-positive sizes, noise or negative seeds raise ValueError naming the key."""
    with pytest.raises(ValueError, match=rf"Expected `(dataset\.)?{message}`"):
        create_dataset("linear_gaussian", **settings)
