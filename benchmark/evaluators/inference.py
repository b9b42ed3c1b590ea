"""Evaluators ``inference_gaps``, ``active_units``, ``posterior_collapse``: is inference good?

The maths lives in `metrics.inference_gaps`, `metrics.active_units` and
`metrics.posterior_collapse`; these functions pick the examples and name the results (seeding,
settings and output declarations are the contract's, `benchmark.evaluators`). Defaults follow
the published protocols (reference: estimators.md §3-§4).
"""

from dataclasses import dataclass, fields
from typing import Literal

from benchmark.datasets.base import Dataset
from benchmark.evaluators import Output, Results, register_evaluator
from benchmark.evaluators._examples import evaluation_examples
from metrics.active_units import active_units as count_active_units
from metrics.inference_gaps import inference_gaps as estimate_inference_gaps
from metrics.local_posterior import LocalOptimization
from metrics.posterior_collapse import posterior_collapse as estimate_posterior_collapse
from registry.base import LatentVariableModel

Split = Literal["train", "valid", "test"]


@dataclass(frozen=True)
class InferenceGapsConfig(LocalOptimization):
    """Settings of the ``inference_gaps`` evaluator (Cremer, Li & Duvenaud 2018).

    The q* fields (``family``, ``init``, ``samples_per_step``, ``lr``, ``check_every``,
    ``patience``, ``max_steps``, ``flow_layers``, ``flow_hidden``) are
    `metrics.local_posterior.LocalOptimization`'s, with its defaults (the paper's).
    """

    split: Split = "train"  # the paper uses the first 1,000 training images
    num_examples: int = 1000
    is_k: int = 5000  # draws of the pooled IS estimate of log p(x), half from q, half from q*
    elbo_k: int = 5000  # samples for L[q] and L[q*] (chriscremer code: 5000)
    batch_size: int = 100  # points whose q* are optimised together (memory only)
    chunk_size: int = 500  # samples per forward pass when evaluating bounds

    def optimization(self) -> LocalOptimization:
        """Return the q* settings alone."""
        names = [f.name for f in fields(LocalOptimization)]
        return LocalOptimization(**{name: getattr(self, name) for name in names})


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


GAP_OUTPUTS = (
    Output("log_px", "nats", True),
    Output("elbo_q", "nats", True),
    Output("elbo_q_star", "nats", True),
    Output("approximation_gap", "nats", False),
    Output("amortization_gap", "nats", False),
    Output("inference_gap", "nats", False),
    Output("q_star_converged", "fraction", None, "diagnostic"),
)


@register_evaluator("inference_gaps", outputs=GAP_OUTPUTS, version=2)
def inference_gaps(
    *, model: LatentVariableModel, dataset: Dataset, config: InferenceGapsConfig, seed: int
) -> Results:
    """Return the inference gaps of Cremer et al. (2018), in nats, mean ± stderr over examples.

    log p(x) is one pooled estimate (importance sampling over ½ q + ½ q*); the outputs that
    depend on L[q*] are flagged when too few q* stopped by the rule (``q_star_converged``).
    """
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    return estimate_inference_gaps(
        model,
        x,
        optimization=config.optimization(),
        is_samples=config.is_k,
        elbo_samples=config.elbo_k,
        batch_size=config.batch_size,
        chunk_size=config.chunk_size,
    )


@register_evaluator(
    "active_units",
    outputs=(
        Output("active_units", "count", None),
        Output("active_units_group", "count", None, keyed=True),
    ),
)
def active_units(
    *, model: LatentVariableModel, dataset: Dataset, config: ActiveUnitsConfig, seed: int
) -> Results:
    """Return ``active_units`` (count, per-unit activity in diagnostics), per group if any.

    Hierarchical models (`registry.hierarchical`) list their group sizes, top group first, in
    ``group_sizes``; the counts are then also reported per group in that order.
    """
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    groups = getattr(model, "group_sizes", None)
    return count_active_units(
        model, x, threshold=config.threshold, batch_size=config.batch_size, latent_groups=groups
    )


@register_evaluator(
    "posterior_collapse",
    outputs=(
        Output("kl_per_dim", "nats", None),
        Output("rate", "nats", None),
        Output("distortion", "nats", False),
        Output("mutual_information", "nats", None, "lower_bound"),
        Output("marginal_kl", "nats", None, "upper_bound"),
    ),
)
def posterior_collapse(
    *, model: LatentVariableModel, dataset: Dataset, config: PosteriorCollapseConfig, seed: int
) -> Results:
    """Return ``kl_per_dim``, ``rate``, ``distortion``, the I(x; z) lower bound (bracketed by
    the rate) and the ``marginal_kl`` upper bound, flagged when the lower bound saturates."""
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    return estimate_posterior_collapse(
        model,
        x,
        num_samples=config.num_samples,
        batch_size=config.batch_size,
        chunk_size=config.chunk_size,
    )
