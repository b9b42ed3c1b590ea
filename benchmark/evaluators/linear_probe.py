"""Evaluator ``linear_probe``: accuracy of a logistic-regression probe on frozen posterior means.

The probe (`metrics.linear_probe`) is fitted on the posterior means of `num_labels` training
examples drawn with the run's seed, its C is chosen on the validation split, and its accuracy is
scored on the test split. It is defined for every model with an encoder on a labelled dataset;
it is `NotDefined` on a dataset without labels, and for a label-conditional model (the CVAE),
whose q(z|x, y) reads the label it would be asked to predict.
"""

from dataclasses import dataclass

import torch

from benchmark.datasets.base import Dataset
from benchmark.evaluators import Output, Results, register_evaluator
from metrics.estimate import NotDefined
from metrics.linear_probe import (
    ProbeData,
    labelled_subset,
    linear_probe_accuracy,
    posterior_means,
)
from registry.base import LatentVariableModel


@dataclass(frozen=True)
class LinearProbeConfig:
    """Settings of the ``linear_probe`` evaluator."""

    num_labels: int = 1000  # labelled training examples the probe is fitted on (seeded subset)
    num_valid: int | None = None  # first N validation examples, which choose C; None = all
    num_test: int | None = None  # first N test examples, which score the probe; None = all
    regularisations: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)  # the grid of C
    max_iter: int = 1000  # L-BFGS iterations of each fit
    batch_size: int = 500  # examples per encoder pass


@register_evaluator("linear_probe", outputs=(Output("linear_probe_accuracy", "fraction", True),))
def linear_probe(
    *, model: LatentVariableModel, dataset: Dataset, config: LinearProbeConfig, seed: int
) -> Results:
    """Return ``linear_probe_accuracy`` (fraction of the test examples classified correctly)."""
    undefined = _undefined_reason(model, dataset)
    if undefined is not None:
        return {"linear_probe_accuracy": NotDefined(undefined)}
    if not config.regularisations or min(config.regularisations) <= 0:
        raise ValueError(
            f"Expected `regularisations` to be positive inverse strengths C, but got "
            f"{config.regularisations}."
        )
    train_x = dataset.evaluation_data("train")
    rows = torch.from_numpy(labelled_subset(len(train_x), config.num_labels, seed=seed))
    splits = {
        "train": (train_x[rows], dataset.split_labels("train")[rows]),
        "valid": _first(dataset, "valid", config.num_valid),
        "test": _first(dataset, "test", config.num_test),
    }
    device = next(model.parameters()).device
    data = {  # NOTE: the contract runs this seeded, in eval mode and without gradients
        split: ProbeData(
            posterior_means(model, x.to(device), batch_size=config.batch_size).numpy(), y.numpy()
        )
        for split, (x, y) in splits.items()
    }
    params = {"representation": "posterior_mean", "preprocessing": dataset.preprocessing}
    estimate = linear_probe_accuracy(
        data["train"],
        data["valid"],
        data["test"],
        regularisations=config.regularisations,
        seed=seed,
        max_iter=config.max_iter,
        params=params,
    )
    return {"linear_probe_accuracy": estimate}


def _undefined_reason(model: LatentVariableModel, dataset: Dataset) -> str | None:
    if not all(split in dataset.labels for split in ("train", "valid", "test")):
        return f"dataset {dataset.name!r} has no labels for the probe to predict."
    if model.conditions_on_labels:
        return (
            f"{model.display_name}'s q(z|x, y) takes the label as an input, so a probe on its "
            f"posterior means would read the label back rather than recognise x."
        )
    return None


def _first(dataset: Dataset, split: str, num: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = dataset.evaluation_data(split), dataset.split_labels(split)
    if num is not None and not 1 <= num <= len(x):
        raise ValueError(
            f"Expected `num_{split}` between 1 and the {len(x)} examples of split {split!r}, or "
            f"null for all, but got {num}."
        )
    return x[:num], y[:num]
