"""Evaluator ``elbo``: the ELBO with its reconstruction and KL terms, ± stderr over examples.

A model without p(z) or without a density q(z|x) (the concrete autoencoder) has no KL and so no
ELBO, but its reconstruction term E_q[log p(x|z)] is still defined: it is reported, and ``elbo``
and ``kl`` are `NotDefined` with the model's reason.
"""

from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.datasets.base import Dataset
from benchmark.evaluators import Output, Results, register_evaluator
from benchmark.evaluators._examples import evaluation_examples
from metrics.batching import row_blocks
from metrics.estimate import NotDefined, mean_estimate
from registry.base import LatentVariableModel, LikelihoodUndefined
from registry.estimators import elbo_terms, expected_log_likelihood


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
    blocks = list(row_blocks(len(x), config.batch_size))
    try:
        terms = [
            elbo_terms(model.select(rows), x[rows], num_samples=config.num_samples)
            for rows in blocks
        ]
    except LikelihoodUndefined as undefined:
        return _reconstruction_only(model, x, blocks, config.num_samples, undefined.reason)
    reconstruction = torch.cat([r for r, _ in terms])  # (N,)
    kl = torch.cat([k for _, k in terms])  # (N,)
    values = {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}
    return {
        name: mean_estimate(v, unit="nats", higher_is_better=None) for name, v in values.items()
    }


def _reconstruction_only(
    model: LatentVariableModel, x: torch.Tensor, blocks: list[slice], num_samples: int, reason: str
) -> Results:
    """Return E_q[log p(x|z)] for a model whose KL is undefined, with ``elbo`` and ``kl`` n/a.

    NOTE: a model whose p(x|z) is undefined as well raises again here, and the whole evaluator
    is n/a, as before.
    """
    reconstruction = torch.cat(  # (N,)
        [
            expected_log_likelihood(model.select(rows), x[rows], num_samples=num_samples)
            for rows in blocks
        ]
    )
    return {
        "reconstruction": mean_estimate(reconstruction, unit="nats", higher_is_better=None),
        "elbo": NotDefined(reason),
        "kl": NotDefined(reason),
    }
