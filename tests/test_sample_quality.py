"""Property and contract tests of FID, KID and precision/recall on real digits; the evaluator."""

import dataclasses
import math

import pytest
import torch

from benchmark.datasets import create_dataset
from benchmark.evaluators import get_evaluator
from benchmark.evaluators.sample_quality import SampleQualityConfig, sample_quality
from benchmark.feature_networks import FeatureNetworkSpec, load_or_train_feature_network
from metrics.estimate import NotDefined
from metrics.fid import extract_features, frechet_distance
from metrics.kid import kernel_distance
from metrics.precision_recall import precision, recall
from registry import create_model
from registry.trunks import Architecture

FEATURE_EPOCHS = 5  # enough for ~90% test accuracy on digits in a few seconds


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A fresh feature-network cache shared by this module (the evaluator reads $VAEBENCH_CACHE)."""
    path = tmp_path_factory.mktemp("vaebench_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAEBENCH_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


@pytest.fixture(scope="module")
def digit_features(digits, cache_dir):
    """Features of the train and test digits and of uniform-noise images, from the digits LeNet."""
    spec = FeatureNetworkSpec(dataset="digits", epochs=FEATURE_EPOCHS)
    network = load_or_train_feature_network(spec, digits)
    noise = torch.rand(360, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    features = {
        name: extract_features(network.module, x, batch_size=500)
        for name, x in [
            ("train", digits.splits["train"]),
            ("test", digits.splits["test"]),
            ("noise", noise),
        ]
    }
    return network, features


def test_feature_network_classifies_digits(digit_features):
    """Property: the cached digits LeNet records a test accuracy well above chance (10%)."""
    network, _ = digit_features
    assert network.info["test_accuracy"] > 0.8 and network.info["num_test"] == 360


def test_fid_of_real_splits_is_small_and_of_noise_is_large(digit_features):
    """Property: FID(train, test) of real digits is small; FID(train, noise) is large."""
    _, f = digit_features
    real = frechet_distance(f["train"], f["test"], num_bootstrap=10, seed=0)
    noise = frechet_distance(f["train"], f["noise"], num_bootstrap=10, seed=0)
    assert real.value < 0.1 * noise.value
    assert noise.value - real.value > 10 * (noise.stderr + real.stderr)


def test_kid_and_precision_recall_separate_real_digits_from_noise(digit_features):
    """Property: KID ~ 0 and P/R high for held-out digits; KID large and recall ~ 0 for noise."""
    _, f = digit_features
    kid_real = kernel_distance(f["train"], f["test"], subsets=20, subset_size=300, seed=0)
    kid_noise = kernel_distance(f["train"], f["noise"], subsets=20, subset_size=300, seed=0)
    assert abs(kid_real.value) < 3 * kid_real.diagnostics["subset_std"]
    assert kid_noise.value > 5 * kid_noise.diagnostics["subset_std"]
    assert kid_noise.value > 20 * abs(kid_real.value)
    assert (
        precision(f["train"], f["test"]).value > 0.8 and recall(f["train"], f["test"]).value > 0.8
    )
    assert recall(f["train"], f["noise"]).value < 0.2


@pytest.fixture(scope="module")
def untrained_vae():
    torch.manual_seed(0)
    return create_model(
        "vae", data_shape=(1, 8, 8), latent_dim=4, architecture=Architecture(hidden=(32,))
    )


@pytest.mark.parametrize("decoder_output", ["mean", "sample"])
def test_evaluator_reports_four_metrics_naming_the_feature_network(
    digits, digit_features, untrained_vae, decoder_output
):
    """Contract: fid, kid, precision, recall with their uncertainty, sample counts and the
    network's id; KID's subset spread is labelled, not passed off as a standard error."""
    network, f = digit_features
    config = SampleQualityConfig(
        num_samples=200,
        kid_subsets=5,
        kid_subset_size=150,
        fid_bootstrap=3,
        feature_epochs=FEATURE_EPOCHS,
        decoder_output=decoder_output,
    )
    named = sample_quality(model=untrained_vae, dataset=digits, config=config, seed=0)
    feature_id = network.describe()["id"]
    assert sorted(named) == [f"{m}[{feature_id}]" for m in ("fid", "kid", "precision", "recall")]
    results = {name.split("[")[0]: estimate for name, estimate in named.items()}
    for estimate in results.values():
        assert math.isfinite(estimate.value)
        assert (estimate.stderr is None) == (estimate is results["kid"])
        assert estimate.params["feature_network"] == network.describe()
        assert estimate.params["num_samples"] == 200 and estimate.params["seed"] == 0
        assert estimate.params["decoder_output"] == decoder_output
    assert results["fid"].params["num_real"] == 360 and results["kid"].params["subset_size"] == 150
    # An untrained decoder draws blobs, far from held-out digits.
    held_out = frechet_distance(f["train"], f["test"], num_bootstrap=2, seed=0)
    assert results["fid"].value > 5 * held_out.value


def test_evaluator_is_seeded(digits, digit_features, untrained_vae):
    """Contract: the same seed reproduces every number; another seed changes the samples."""
    config = SampleQualityConfig(
        num_samples=120,
        kid_subsets=3,
        kid_subset_size=100,
        fid_bootstrap=2,
        feature_epochs=FEATURE_EPOCHS,
    )
    a = sample_quality(model=untrained_vae, dataset=digits, config=config, seed=1)
    b = sample_quality(model=untrained_vae, dataset=digits, config=config, seed=1)
    c = sample_quality(model=untrained_vae, dataset=digits, config=config, seed=2)
    fid = next(name for name in a if name.startswith("fid["))
    assert a == b and a[fid].value != c[fid].value


def test_evaluator_is_registered_with_its_config_schema():
    """Contract: the spec key ``sample_quality`` maps to this evaluator and config dataclass."""
    evaluator = get_evaluator("sample_quality")
    assert evaluator.function is sample_quality and evaluator.config_type is SampleQualityConfig


def test_evaluator_is_not_defined_on_vectors_and_rejects_missing_inception_weights(
    digits, untrained_vae, monkeypatch
):
    """Contract: on vector data all four metrics are n/a with the reason (reports show it, the
    run goes on); an absent Inception weights file raises ValueError."""
    flat = dataclasses.replace(
        digits, data_shape=(64,), splits={k: v.flatten(1) for k, v in digits.splits.items()}
    )
    vector_vae = create_model("vae", data_shape=(64,), latent_dim=2)
    results = get_evaluator("sample_quality").function(
        model=vector_vae, dataset=flat, config=SampleQualityConfig(), seed=0
    )
    assert set(results) == {"fid", "kid", "precision", "recall"}
    assert all(isinstance(r, NotDefined) and "not images" in r.reason for r in results.values())
    monkeypatch.delenv("VAEBENCH_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(ValueError, match="VAEBENCH_INCEPTION_WEIGHTS"):
        sample_quality(
            model=untrained_vae,
            dataset=digits,
            config=SampleQualityConfig(feature_network="inception"),
            seed=0,
        )
