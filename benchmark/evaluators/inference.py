"""Evaluators ``inference_gaps``, ``active_units``, ``posterior_collapse``: is inference good?

The maths lives in `metrics.inference_gaps`, `metrics.active_units` and
`metrics.posterior_collapse`; these functions pick the examples, seed the estimators and name
the results. Defaults follow the published protocols (reference: estimators.md §3-§4).
"""

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch

from benchmark.datasets.base import Dataset
from benchmark.evaluators import register_evaluator
from benchmark.evaluators._examples import evaluation_examples
from metrics.active_units import active_units as count_active_units
from metrics.estimate import Estimate
from metrics.inference_gaps import inference_gaps as estimate_inference_gaps
from metrics.local_posterior import LocalOptimization
from metrics.posterior_collapse import posterior_collapse as estimate_posterior_collapse
from registry.base import LatentVariableModel

Split = Literal["train", "valid", "test"]


@dataclass(frozen=True)
class InferenceGapsConfig:
    """Settings of the ``inference_gaps`` evaluator (Cremer, Li & Duvenaud 2018)."""

    split: Split = "train"  # the paper uses the first 1,000 training images
    num_examples: int = 1000
    family: Literal["ffg", "flow"] = "ffg"  # q* family; match the encoder's family
    is_k: int = 5000  # importance samples for log p̂(x) (paper: IWAE with k = 5000)
    elbo_k: int = 5000  # samples for L[q] and L[q*] (chriscremer code: 5000)
    samples_per_step: int = 100  # k samples per Adam step of q*
    init: Literal["standard_normal", "encoder"] = "standard_normal"  # q* start: paper, or q(z|x)
    lr: float = 1e-3  # Adam learning rate for q*
    check_every: int = 100  # steps per stopping check
    patience: int = 10  # stop after more than this many checks without improvement
    max_steps: int = 50_000  # safety cap per point; unconverged points are counted in diagnostics
    flow_layers: int = 2  # coupling layers of the ``flow`` family
    flow_hidden: int = 200  # hidden units per coupling conditioner
    batch_size: int = 100  # points whose q* are optimised together (memory only)
    chunk_size: int = 500  # samples per forward pass when evaluating bounds


@dataclass(frozen=True)
class ActiveUnitsConfig:
    """Settings of the ``active_units`` evaluator (Burda et al. 2016)."""

    split: Split = "train"  # the paper uses the first 500 training images
    num_examples: int = 500
    threshold: float = 0.01  # active when the variance of the posterior mean is > threshold
    batch_size: int = 500  # examples per forward pass


@dataclass(frozen=True)
class PosteriorCollapseConfig:
    """Settings of the ``posterior_collapse`` evaluator (KL per dim, I(x; z), rate-distortion)."""

    split: Split = "test"
    num_examples: int = 1000  # also the size of the aggregate posterior, so I(x; z) <= log N
    num_samples: int = 10  # posterior draws per example
    batch_size: int = 500  # examples per forward pass
    chunk_size: int = 256  # points per chunk when evaluating the aggregate posterior


def _with_context(results: dict[str, Estimate], context: dict[str, Any]) -> dict[str, Estimate]:
    """Add the evaluator settings, the seed and the preprocessing to every estimate's params."""
    return {
        name: replace(est, params={**context, **est.params}) if isinstance(est, Estimate) else est
        for name, est in results.items()
    }


@register_evaluator("inference_gaps")
def inference_gaps(
    *, model: LatentVariableModel, dataset: Dataset, config: InferenceGapsConfig, seed: int
) -> dict[str, Estimate]:
    """Return the inference gaps of Cremer et al. (2018), in nats, mean ± stderr over examples.

    Names: ``log_px``, ``elbo_q``, ``elbo_q_star``, ``approximation_gap``, ``amortization_gap``
    and ``inference_gap``; steps used and convergence are in each estimate's diagnostics.
    """
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    optimization = LocalOptimization(
        family=config.family,
        samples_per_step=config.samples_per_step,
        init=config.init,
        lr=config.lr,
        check_every=config.check_every,
        patience=config.patience,
        max_steps=config.max_steps,
        flow_layers=config.flow_layers,
        flow_hidden=config.flow_hidden,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        results = estimate_inference_gaps(
            model,
            x,
            optimization=optimization,
            is_samples=config.is_k,
            elbo_samples=config.elbo_k,
            batch_size=config.batch_size,
            chunk_size=config.chunk_size,
        )
    return _with_context(
        results, {**asdict(config), "seed": seed, "preprocessing": dataset.preprocessing}
    )


@register_evaluator("active_units")
def active_units(
    *, model: LatentVariableModel, dataset: Dataset, config: ActiveUnitsConfig, seed: int
) -> dict[str, Estimate]:
    """Return ``active_units`` (count, per-unit activity in diagnostics), per group if any.

    Hierarchical models (`registry.hierarchical`) list their group sizes, top group first, in
    ``group_sizes``; the counts are then also reported per group in that order.
    """
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    groups = getattr(model, "group_sizes", None)
    results = count_active_units(
        model, x, threshold=config.threshold, batch_size=config.batch_size, latent_groups=groups
    )
    return _with_context(
        results, {**asdict(config), "seed": seed, "preprocessing": dataset.preprocessing}
    )


@register_evaluator("posterior_collapse")
def posterior_collapse(
    *, model: LatentVariableModel, dataset: Dataset, config: PosteriorCollapseConfig, seed: int
) -> dict[str, Estimate]:
    """Return ``kl_per_dim``, ``rate``, ``distortion``, ``mutual_information``, ``marginal_kl``."""
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        results = estimate_posterior_collapse(
            model,
            x,
            num_samples=config.num_samples,
            batch_size=config.batch_size,
            chunk_size=config.chunk_size,
        )
    return _with_context(
        results, {**asdict(config), "seed": seed, "preprocessing": dataset.preprocessing}
    )
