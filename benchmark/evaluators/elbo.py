"""Evaluator ``elbo``: the ELBO with its reconstruction and KL terms, ± stderr over examples."""

from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.datasets.base import Dataset
from benchmark.evaluators import Output, Results, register_evaluator
from benchmark.evaluators._examples import evaluation_examples
from metrics.batching import row_blocks
from metrics.estimate import mean_estimate
from registry.base import LatentVariableModel
from registry.estimators import elbo_terms


@dataclass(frozen=True)
class ElboConfig:
    """Settings of the ``elbo`` evaluator."""

    split: Literal["train", "valid", "test"] = "test"
    num_samples: int = 1  # posterior samples per example for E_q[log p(x|z)]
    batch_size: int = 500  # examples per forward pass; part of the spec since it orders the draws
    num_examples: int | None = None  # first N examples of the split; None = all


@register_evaluator(
    "elbo",
    outputs=(
        Output("elbo", "nats", True),
        Output("reconstruction", "nats", True),
        Output("kl", "nats", None),
    ),
)
def elbo(*, model: LatentVariableModel, dataset: Dataset, config: ElboConfig, seed: int) -> Results:
    """Return ``elbo``, ``reconstruction`` and ``kl`` in nats per example on a split."""
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    terms = [
        elbo_terms(model.select(rows), x[rows], num_samples=config.num_samples)
        for rows in row_blocks(len(x), config.batch_size)
    ]
    reconstruction = torch.cat([r for r, _ in terms])  # (N,)
    kl = torch.cat([k for _, k in terms])  # (N,)
    values = {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}
    return {
        name: mean_estimate(v, unit="nats", higher_is_better=None) for name, v in values.items()
    }
