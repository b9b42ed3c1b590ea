"""Evaluators ``nll``, ``ais`` and ``bdmc``: test log-likelihood and a certificate of its accuracy.

The maths lives in `metrics.nll` (importance sampling), `metrics.ais` and `metrics.bdmc`; these
functions pick the examples, seed the estimators, run the model in eval mode and name the results.
Defaults follow the published protocols (reference: estimators.md §1-§2). Every estimate records
the parameters that produced it, and, for up to `MAX_PER_EXAMPLE` examples, its per-example
values in ``diagnostics["per_example"]`` (for paired comparisons between models).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from benchmark.datasets.base import Dataset
from benchmark.evaluators import register_evaluator
from benchmark.evaluators._examples import bind_labels, evaluation_examples
from metrics.ais import AISResult, HMCSettings, ais_log_likelihood
from metrics.bdmc import bdmc_bounds
from metrics.estimate import Estimate, mean_estimate
from metrics.importance import effective_sample_size
from metrics.nll import (
    ImportanceSampledLikelihood,
    bits_per_dim,
    importance_sampled_log_likelihood,
    negative_log_likelihood_estimates,
)
from registry.base import LatentVariableModel

Split = Literal["train", "valid", "test"]
VERSION = 1  # bump when numbers stop being comparable with older records
MAX_PER_EXAMPLE = 10_000  # per-example values are recorded up to this many examples
SIGNIFICANT_DIGITS = 6  # of each recorded per-example value


@dataclass(frozen=True)
class NLLConfig:
    """Settings of the ``nll`` evaluator (importance sampling, Burda et al. 2016)."""

    k: int = 5000  # importance samples per example (Burda et al.: 5000; NVAE: 1000)
    chunk: int = 100  # samples drawn per pass; bounds memory, never changes K
    batch_size: int = 100  # examples per pass (Burda et al.: 20); orders the draws
    split: Split = "test"
    num_examples: int | None = None  # first N examples of the split; None = all
    pareto_k: bool = True  # fit the PSIS k̂ tail diagnostic of each example's weights


@dataclass(frozen=True)
class AISConfig:
    """Settings of the ``ais`` evaluator (Neal 2001; HMC settings of Cremer et al. 2018)."""

    chains: int = 16  # chains per datapoint (Cremer et al.: 100)
    steps: int = 500  # intermediate distributions T (Cremer et al.: 10,000)
    leapfrog: int = 10  # leapfrog steps per HMC trajectory (Cremer et al.: 10)
    step_size: float = 0.01  # initial leapfrog step size, then adapted (Cremer et al.: 0.01)
    target_accept: float = 0.65  # acceptance rate the step size is steered to (Cremer et al.)
    init: Literal["prior", "encoder"] = "prior"  # pi_0: the prior (Cremer et al.) or q(z|x)
    schedule: Literal["linear", "sigmoid"] = "sigmoid"  # spacing of the betas
    split: Split = "test"
    num_examples: int | None = 100  # first N examples of the split; None = all
    batch_size: int = 100  # datapoints annealed together (memory only: C x B chains)


@dataclass(frozen=True)
class BDMCConfig:
    """Settings of the ``bdmc`` evaluator (Grosse et al. 2015), on data simulated by the model."""

    num_examples: int = 10  # simulated datapoints
    chains: int = 16  # chains per datapoint and direction
    steps: int = 500  # intermediate distributions T, in each direction
    leapfrog: int = 10  # leapfrog steps per HMC trajectory
    step_size: float = 0.01  # initial leapfrog step size, then adapted
    target_accept: float = 0.65  # acceptance rate the step size is steered to
    init: Literal["prior", "encoder"] = "prior"  # pi_0, the non-posterior end of the path
    schedule: Literal["linear", "sigmoid"] = "sigmoid"  # spacing of the betas


@register_evaluator("nll")
def nll(
    *, model: LatentVariableModel, dataset: Dataset, config: NLLConfig, seed: int
) -> dict[str, Estimate]:
    """Return ``nll`` (nats), ``nll_bits_per_dim``, ``iwae_bound``, ``elbo`` and ``ess``.

    All from the same K importance samples per example; ``nll`` carries the ESS and PSIS k̂
    summaries in its diagnostics.
    """
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    with _evaluation_mode(model):
        result = importance_sampled_log_likelihood(
            model,
            x,
            num_samples=config.k,
            chunk_size=config.chunk,
            batch_size=config.batch_size,
            seed=seed,
            pareto_k=config.pareto_k,
        )
    params = _params(config, dataset, seed, len(x), estimator="importance_sampling")
    estimates = negative_log_likelihood_estimates(
        result,
        num_dims=dataset.num_dims,
        log_likelihood_offset=dataset.log_likelihood_offset,
        params=params,
    )
    per_example = _per_example_values(result, dataset)
    return {name: _finish(e, per_example[name]) for name, e in estimates.items()}


def _per_example_values(result: ImportanceSampledLikelihood, dataset: Dataset) -> dict[str, Tensor]:
    """Return, per estimate of the ``nll`` evaluator, the ``(N,)`` values whose mean it is."""
    log_likelihood = result.log_likelihood + dataset.log_likelihood_offset
    return {
        "nll": -log_likelihood,
        "nll_bits_per_dim": bits_per_dim(-log_likelihood, num_dims=dataset.num_dims),
        "iwae_bound": log_likelihood,
        "elbo": result.elbo + dataset.log_likelihood_offset,
        "ess": result.ess,
    }


@register_evaluator("ais")
def ais(
    *, model: LatentVariableModel, dataset: Dataset, config: AISConfig, seed: int
) -> dict[str, Estimate]:
    """Return ``ais_log_likelihood`` (a stochastic lower bound, nats) and ``ais_nll``."""
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    hmc = HMCSettings(config.leapfrog, config.step_size, config.target_accept)
    batches = []
    with _evaluation_mode(model), torch.random.fork_rng():
        torch.manual_seed(seed)
        batch_size = _positive(config.batch_size, "batch_size")
        for start in range(0, len(x), batch_size):
            rows = slice(start, start + batch_size)
            batch_seed = int(torch.randint(2**62, ()))  # one stream per batch, drawn from `seed`
            batches.append(
                ais_log_likelihood(
                    model.select(rows),
                    x[rows],
                    num_chains=config.chains,
                    num_steps=config.steps,
                    hmc=hmc,
                    init=config.init,
                    schedule=config.schedule,
                    seed=batch_seed,
                )
            )
    log_likelihood = torch.cat([b.log_likelihood for b in batches])  # (N,)
    log_likelihood = log_likelihood + dataset.log_likelihood_offset
    params = _params(config, dataset, seed, len(x), estimator="ais")
    kwargs = {"unit": "nats", "params": params, "diagnostics": _ais_diagnostics(batches, prefix="")}
    return {
        "ais_log_likelihood": _finish(
            mean_estimate(log_likelihood, higher_is_better=True, **kwargs), log_likelihood
        ),
        "ais_nll": _finish(
            mean_estimate(-log_likelihood, higher_is_better=False, **kwargs), -log_likelihood
        ),
    }


@register_evaluator("bdmc")
def bdmc(
    *, model: LatentVariableModel, dataset: Dataset, config: BDMCConfig, seed: int
) -> dict[str, Estimate]:
    """Return ``bdmc_lower``, ``bdmc_upper`` and ``bdmc_gap`` (nats) on data simulated by the model.

    The gap bounds the error of forward AIS with these settings on such data; the dataset only
    supplies the offset and the record's context, since the data are simulated.
    """
    hmc = HMCSettings(config.leapfrog, config.step_size, config.target_accept)
    # A label-conditional model simulates p(x|y) for the labels of the split's first examples.
    model = bind_labels(model, dataset, "test", config.num_examples)
    with _evaluation_mode(model):
        result = bdmc_bounds(
            model,
            num_examples=config.num_examples,
            num_chains=config.chains,
            num_steps=config.steps,
            hmc=hmc,
            init=config.init,
            schedule=config.schedule,
            seed=seed,
        )
    params = _params(config, dataset, seed, config.num_examples, estimator="bdmc")
    params["data"] = "simulated from the model: z ~ p(z), x ~ p(x|z)"
    diagnostics = _ais_diagnostics([result.lower], prefix="forward_") | _ais_diagnostics(
        [result.upper], prefix="reverse_"
    )
    values = {
        "bdmc_lower": (result.lower.log_likelihood, None),
        "bdmc_upper": (result.upper.log_likelihood, None),
        "bdmc_gap": (result.gap, False),
    }
    return {
        name: _finish(
            mean_estimate(
                v, unit="nats", higher_is_better=direction, params=params, diagnostics=diagnostics
            ),
            v,
        )
        for name, (v, direction) in values.items()
    }


def _ais_diagnostics(batches: list[AISResult], *, prefix: str) -> dict[str, float]:
    acceptance = torch.cat([b.acceptance_rate for b in batches])  # (N,)
    step_size = torch.cat([b.step_size for b in batches]).double()  # (N,)
    chain_ess = torch.cat([effective_sample_size(b.log_weights, dim=0) for b in batches])
    return {
        f"{prefix}acceptance_rate_mean": acceptance.mean().item(),
        f"{prefix}acceptance_rate_min": acceptance.min().item(),
        f"{prefix}acceptance_rate_max": acceptance.max().item(),
        f"{prefix}final_step_size_mean": step_size.mean().item(),
        f"{prefix}final_step_size_min": step_size.min().item(),
        f"{prefix}final_step_size_max": step_size.max().item(),
        f"{prefix}chain_ess_mean": chain_ess.mean().item(),
    }


def _params(
    config: Any, dataset: Dataset, seed: int, num_examples: int, *, estimator: str
) -> dict[str, Any]:
    return {
        **asdict(config),
        "estimator": estimator,
        "seed": seed,
        "num_examples": num_examples,
        "dataset": dataset.name,
        "preprocessing": dataset.preprocessing,
        "eval_seed": dataset.eval_seed,
        "log_likelihood_offset": dataset.log_likelihood_offset,
        "version": VERSION,
    }


def _finish(estimate: Estimate, values: Tensor) -> Estimate:
    """Return `estimate` with its unit in ``params`` and, for few enough examples, its values.

    The per-example values (rounded to `SIGNIFICANT_DIGITS`) are those whose mean is the
    estimate, in its unit, in example order.
    """
    diagnostics = dict(estimate.diagnostics)
    if len(values) <= MAX_PER_EXAMPLE:
        diagnostics["per_example"] = [float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in values.tolist()]
    return Estimate(
        estimate.value,
        estimate.stderr,
        estimate.n,
        estimate.unit,
        estimate.higher_is_better,
        {**estimate.params, "unit": estimate.unit},
        diagnostics,
    )


@contextmanager
def _evaluation_mode(model: LatentVariableModel) -> Iterator[None]:
    """Put `model` in eval mode (no dropout or batch-norm updates), then restore its mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Expected `{name}` to be a positive int, but got {value!r}.")
    return value
