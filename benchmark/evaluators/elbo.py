"""Evaluator ``elbo``: the ELBO with its reconstruction and KL terms, ± stderr over examples."""

from dataclasses import asdict, dataclass
from typing import Literal

import torch

from benchmark.datasets.base import Dataset
from benchmark.evaluators import register_evaluator
from benchmark.evaluators._examples import evaluation_examples
from metrics.batching import row_blocks
from metrics.elbo import elbo_terms
from metrics.estimate import Estimate, mean_estimate
from registry.base import LatentVariableModel


@dataclass(frozen=True)
class ElboConfig:
    """Settings of the ``elbo`` evaluator."""

    split: Literal["train", "valid", "test"] = "test"
    num_samples: int = 1  # posterior samples per example for E_q[log p(x|z)]
    batch_size: int = 500  # examples per forward pass; part of the spec since it orders the draws
    num_examples: int | None = None  # first N examples of the split; None = all


@register_evaluator("elbo")
def elbo(
    *, model: LatentVariableModel, dataset: Dataset, config: ElboConfig, seed: int
) -> dict[str, Estimate]:
    """Return ``elbo``, ``reconstruction`` and ``kl`` in nats per example on a split."""
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        batches = [
            elbo_terms(model.select(rows), x[rows], num_samples=config.num_samples)
            for rows in row_blocks(len(x), config.batch_size)
        ]
    params = {**asdict(config), "seed": seed, "preprocessing": dataset.preprocessing, "version": 1}
    directions = {"elbo": True, "reconstruction": True, "kl": None}
    return {
        name: mean_estimate(
            torch.cat([b[name] for b in batches]),
            unit="nats",
            higher_is_better=direction,
            params=params,
        )
        for name, direction in directions.items()
    }
