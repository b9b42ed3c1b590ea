"""Evaluator ``sample_quality``: FID, KID and improved precision/recall of prior samples.

Generated images are decoded from z ~ p(z); by default the decoder *mean* (for a Bernoulli decoder,
the pixel probabilities), compared with the raw grey-level reference images, as VAE papers show and
score samples. With ``decoder_output: sample`` the generated images are draws x ~ p(x|z) and the
reference is the split as the model sees it (e.g. binarized), so like is compared with like.

All four numbers use the same features of the same images, and each names its feature network
(name, key, test accuracy): numbers from different feature networks are not comparable. On data
that are not images (vectors such as the low-dimensional datasets) all four are `NotDefined`.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from benchmark.datasets.base import Dataset
from benchmark.evaluators import Output, Results, register_evaluator
from benchmark.evaluators._examples import bind_labels
from benchmark.feature_networks import (
    FeatureNetwork,
    FeatureNetworkSpec,
    inception_feature_network,
    load_or_train_feature_network,
)
from benchmark.images import check_image_shape, prior_samples
from metrics.estimate import NotDefined
from metrics.fid import extract_features, frechet_distance
from metrics.kid import kernel_distance
from metrics.precision_recall import precision, recall
from registry.base import LatentVariableModel


@dataclass(frozen=True)
class SampleQualityConfig:
    """Settings of the ``sample_quality`` evaluator."""

    feature_network: Literal["dataset", "inception"] = "dataset"  # cached LeNet, or Inception-v3
    num_samples: int = 10_000  # generated images; FID is biased by the count, so it is recorded
    reference_split: Literal["train", "valid", "test"] = "test"
    num_reference: int | None = None  # first N images of the split; None = all
    decoder_output: Literal["mean", "sample"] = "mean"  # E[x|z], or x ~ p(x|z)
    temperature: float = 1.0  # scales the Gaussian prior's std; 1 = the model's prior
    fid_bootstrap: int = 20  # resamples for FID's stderr
    kid_subsets: int = 100
    kid_subset_size: int = 1000  # clipped to the smaller image set (recorded in params)
    pr_k: int = 3  # neighbourhood size of precision/recall (Kynkäänniemi et al. 2019)
    feature_epochs: int = 10  # training epochs of the dataset feature network
    feature_seed: int = 0  # seed of the dataset feature network
    batch_size: int = 500  # images per decoder / feature-network pass


def _feature_network(dataset: Dataset, config: SampleQualityConfig) -> FeatureNetwork:
    if config.feature_network == "inception":
        return inception_feature_network()
    spec = FeatureNetworkSpec(
        dataset=dataset.name, epochs=config.feature_epochs, seed=config.feature_seed
    )
    return load_or_train_feature_network(spec, dataset)


def _reference_images(dataset: Dataset, config: SampleQualityConfig) -> Tensor:
    split = config.reference_split
    images = (
        dataset.splits[split] if config.decoder_output == "mean" else dataset.evaluation_data(split)
    )
    return images[: config.num_reference]


@register_evaluator(
    "sample_quality",
    outputs=(
        Output("fid", "squared feature distance", False, keyed=True),
        Output("kid", "kernel units", False, keyed=True),
        Output("precision", "fraction", True, keyed=True),
        Output("recall", "fraction", True, keyed=True),
    ),
    version=2,  # 2: KID's stderr is None; its overlapping-subset spread is in diagnostics
)
def sample_quality(
    *, model: LatentVariableModel, dataset: Dataset, config: SampleQualityConfig, seed: int
) -> Results:
    """Return FID, KID, precision and recall of prior samples against a split.

    Each metric is named after the feature network that produced it, e.g.
    ``fid[lenet-b66b65983b62]``: numbers from different feature networks are not comparable, so
    the leaderboard must never put them in one column.
    """
    undefined = _undefined_reason(dataset)
    if undefined is not None:
        return {name: NotDefined(undefined) for name in ("fid", "kid", "precision", "recall")}
    # A dataset feature network not cached yet is trained here, with its own seed: forked, so
    # the samples below are the same whether or not it was cached.
    with torch.random.fork_rng(), torch.enable_grad():
        network = _feature_network(dataset, config)
    network.module.to(next(model.parameters()).device)
    # A label-conditional model generates for the labels of the reference images, in order.
    generator = bind_labels(model, dataset, config.reference_split, config.num_samples)
    generated = prior_samples(
        generator,
        config.num_samples,
        temperature=config.temperature,
        decoder_output=config.decoder_output,
        batch_size=config.batch_size,
    )
    # Pixels outside [0, 1] (e.g. Gaussian decoder means) are not images; clip like the grids do.
    generated_features = extract_features(
        network.module, generated.clamp(0, 1), batch_size=config.batch_size
    )
    real_features = extract_features(
        network.module, _reference_images(dataset, config), batch_size=config.batch_size
    )
    subset_size = min(config.kid_subset_size, len(real_features), len(generated_features))
    results = {
        "fid": frechet_distance(
            real_features, generated_features, num_bootstrap=config.fid_bootstrap, seed=seed
        ),
        "kid": kernel_distance(
            real_features,
            generated_features,
            subsets=config.kid_subsets,
            subset_size=subset_size,
            seed=seed,
        ),
        "precision": precision(real_features, generated_features, k=config.pr_k),
        "recall": recall(real_features, generated_features, k=config.pr_k),
    }
    shared = _shared_params(network)
    feature_id = network.describe()["id"]
    return {
        f"{name}[{feature_id}]": dataclasses.replace(e, params={**shared, **e.params})
        for name, e in results.items()
    }


def _undefined_reason(dataset: Dataset) -> str | None:
    try:
        check_image_shape(dataset.data_shape)
    except ValueError:
        return (
            f"dataset {dataset.name!r} holds vectors of shape {tuple(dataset.data_shape)}, not "
            f"images, and FID, KID and precision/recall compare images in the features of an "
            f"image network."
        )
    return None


def _shared_params(network: FeatureNetwork) -> dict[str, Any]:
    return {
        "feature_network": network.describe(),
        "clipped_to_unit_interval": True,
    }
