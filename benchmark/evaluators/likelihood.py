"""Evaluators ``nll``, ``ais`` and ``bdmc``: test log-likelihood and a certificate of its accuracy.

The maths lives in `metrics.nll` (importance sampling), `metrics.ais` and `metrics.bdmc`; these
functions pick the examples, seed the estimators, run the model in eval mode and name the results.
Defaults follow the published protocols (reference: estimators.md §1-§2). Every estimate records
the parameters that produced it, and, for up to `MAX_PER_EXAMPLE` examples, its per-example
values in ``diagnostics["per_example"]`` (for paired comparisons between models).
"""

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor

from benchmark.datasets.base import Dataset
from benchmark.evaluators import Output, Results, register_evaluator
from benchmark.evaluators._examples import bind_labels, evaluation_examples
from metrics.ais import (
    AISResult,
    HMCSettings,
    ais_log_likelihood,
    looser_than_importance_warning,
)
from metrics.bdmc import bdmc_bounds, bdmc_warning
from metrics.estimate import Estimate, mean_estimate
from metrics.nll import (
    ImportanceSampledLikelihood,
    bits_per_dim,
    importance_sampled_log_likelihood,
    likelihood_warning,
    negative_log_likelihood_estimates,
)
from metrics.psis import MIN_TAIL
from registry.base import LatentVariableModel
from registry.estimators import effective_sample_size

Split = Literal["train", "valid", "test"]
VERSION = 1  # bump when numbers stop being comparable with older records
MAX_PER_EXAMPLE = 10_000  # per-example values are recorded up to this many examples
SIGNIFICANT_DIGITS = 6  # of each recorded per-example value
MIN_PARETO_K = 5 * MIN_TAIL - 4  # the smallest K whose weights support a PSIS tail fit


MAX_K = 1_000_000  # importance samples per example; see `NLLConfig`


@dataclass(frozen=True)
class NLLConfig:
    """Settings of the ``nll`` evaluator (importance sampling, Burda et al. 2016).

    Memory does not grow with K: the estimator streams its summaries over chunks of `chunk`
    draws (`metrics.nll.importance_sampled_log_likelihood`), so K is bounded by time, not memory.
    K above `MAX_K` is refused up front: at the NLL benchmark's rate it would take hours per
    thousand examples, and no published protocol uses more than 5,000.
    """

    k: int = 5000  # importance samples per example (Burda et al.: 5000; NVAE: 1000)
    chunk: int = 100  # samples drawn per pass; bounds memory, never changes K
    batch_size: int = 100  # examples per pass (Burda et al.: 20); orders the draws
    split: Split = "test"
    num_examples: int | None = None  # first N examples of the split; None = all
    pareto_k: bool = True  # fit the PSIS k̂ tail diagnostic of each example's weights

    def __post_init__(self) -> None:
        for name in ("k", "chunk", "batch_size"):
            _positive(getattr(self, name), name)
        if self.k > MAX_K:
            raise ValueError(
                f"Expected `k` to be at most {MAX_K:,} importance samples, but got {self.k:,}. "
                f"Published protocols use 5,000 (Burda et al. 2016) or 1,000 (NVAE)."
            )
        if self.pareto_k and self.k < MIN_PARETO_K:
            raise ValueError(
                f"Expected `k` to be at least {MIN_PARETO_K} for the PSIS k-hat diagnostic, but "
                f"got {self.k}. Raise k, or set `pareto_k: false`."
            )


@dataclass(frozen=True)
class AISConfig(HMCSettings):
    """Settings of the ``ais`` evaluator (Neal 2001; HMC settings of Cremer et al. 2018).

    The HMC fields (``leapfrog_steps``, ``step_size``, ``target_accept``, ``adapt``) are
    `metrics.ais.HMCSettings`'. The same examples are also scored by importance sampling with
    `is_k` samples, so AIS and IS are compared on one sample (set it to the ``nll`` evaluator's k).
    """

    chains: int = 16  # chains per datapoint (Cremer et al.: 100)
    steps: int = 500  # intermediate distributions T (Cremer et al.: 10,000)
    init: Literal["prior", "encoder"] = "prior"  # pi_0: the prior (Cremer et al.) or q(z|x)
    schedule: Literal["linear", "sigmoid"] = "sigmoid"  # spacing of the betas
    split: Split = "test"
    num_examples: int | None = 100  # first N examples of the split; None = all
    batch_size: int = 100  # datapoints annealed together (memory only: C x B chains)
    is_k: int = 5000  # importance samples of the IS NLL on the same examples


@dataclass(frozen=True)
class BDMCConfig(HMCSettings):
    """Settings of the ``bdmc`` evaluator (Grosse et al. 2015), on data simulated by the model."""

    num_examples: int = 10  # simulated datapoints
    chains: int = 16  # chains per datapoint and direction
    steps: int = 500  # intermediate distributions T, in each direction
    init: Literal["prior", "encoder"] = "prior"  # pi_0, the non-posterior end of the path
    schedule: Literal["linear", "sigmoid"] = "sigmoid"  # spacing of the betas


NLL_OUTPUTS = (
    Output("nll", "nats", False, other_kinds=("upper_bound",)),
    Output("nll_bits_per_dim", "bits/dim", False, other_kinds=("upper_bound",)),
    Output("iwae_bound", "nats", True),
    Output("elbo", "nats", True),
    Output("ess", "samples", None, "diagnostic"),
)


@register_evaluator("nll", outputs=NLL_OUTPUTS, version=VERSION)
def nll(*, model: LatentVariableModel, dataset: Dataset, config: NLLConfig, seed: int) -> Results:
    """Return ``nll`` (nats), ``nll_bits_per_dim``, ``iwae_bound``, ``elbo`` and ``ess``.

    All from the same K importance samples per example; ``nll`` carries the ESS and PSIS k̂
    summaries in its diagnostics, and their verdict in its warning.
    """
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    result = _importance_sampling(model, x, config.k, config.chunk, config.batch_size, seed)
    params = _params(dataset, len(x), estimator="importance_sampling")
    estimates = negative_log_likelihood_estimates(
        result,
        num_dims=dataset.num_dims,
        log_likelihood_offset=dataset.log_likelihood_offset,
        params=params,
    )
    per_example = _per_example_values(result, dataset)
    return {name: _finish(e, per_example[name]) for name, e in estimates.items()}


def _importance_sampling(
    model: LatentVariableModel, x: Tensor, k: int, chunk: int, batch_size: int, seed: int
) -> ImportanceSampledLikelihood:
    return importance_sampled_log_likelihood(
        model,
        x,
        num_samples=k,
        chunk_size=chunk,
        batch_size=batch_size,
        seed=seed,
        pareto_k=k >= MIN_PARETO_K,
    )


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


@register_evaluator(
    "ais",
    outputs=(
        Output("ais_log_likelihood", "nats", True),
        Output("ais_nll", "nats", False),
        Output("is_nll", "nats", False, other_kinds=("upper_bound",)),
    ),
    version=VERSION,
)
def ais(*, model: LatentVariableModel, dataset: Dataset, config: AISConfig, seed: int) -> Results:
    """Return ``ais_log_likelihood`` and ``ais_nll`` (nats), and ``is_nll`` on the same examples.

    ``is_nll`` is the importance-sampled NLL with `is_k` samples of exactly the examples AIS
    scored (the first `num_examples` of the split, as for the ``nll`` evaluator), so AIS - IS
    is a paired difference (in ``ais_nll``'s diagnostics) that mixes no sampling of examples.
    Where AIS gives the looser bound by more than two paired standard errors, both AIS estimates
    carry that warning (`metrics.ais.looser_than_importance_warning`).
    """
    model, x = evaluation_examples(model, dataset, config.split, config.num_examples)
    batches = []
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
                hmc=_hmc(config),
                init=config.init,
                schedule=config.schedule,
                seed=batch_seed,
            )
        )
    offset = dataset.log_likelihood_offset
    log_likelihood = torch.cat([b.log_likelihood for b in batches]) + offset  # (N,)
    importance = _importance_sampling(model, x, config.is_k, 100, batch_size, seed)
    is_nll = -(importance.log_likelihood + offset)  # (N,)
    params = _params(dataset, len(x), estimator="ais")
    paired = _paired(-log_likelihood - is_nll)
    diagnostics = _ais_diagnostics(batches, prefix="") | paired
    kwargs = {"unit": "nats", "params": params, "diagnostics": diagnostics}
    looser = looser_than_importance_warning(
        paired["ais_minus_is_nll_mean"], paired.get("ais_minus_is_nll_stderr"), config.is_k
    )

    def ais_estimate(values: Tensor, higher_is_better: bool) -> Estimate:
        estimate = mean_estimate(values, higher_is_better=higher_is_better, **kwargs)
        return _finish(replace(estimate, warning=looser), values)

    is_estimate = mean_estimate(
        is_nll,
        unit="nats",
        higher_is_better=False,
        params={**params, "estimator": "importance_sampling", "k": config.is_k},
    )
    return {
        "ais_log_likelihood": ais_estimate(log_likelihood, higher_is_better=True),
        "ais_nll": ais_estimate(-log_likelihood, higher_is_better=False),
        "is_nll": _finish(
            replace(
                is_estimate,
                kind="upper_bound" if importance.point_mass_proposal else "estimate",
                warning=likelihood_warning(importance),
            ),
            is_nll,
        ),
    }


@register_evaluator(
    "bdmc",
    outputs=(
        Output("bdmc_lower", "nats", None, "lower_bound"),
        Output("bdmc_upper", "nats", None, "upper_bound"),
        Output("bdmc_gap", "nats", False, "diagnostic"),
    ),
    version=VERSION,
)
def bdmc(*, model: LatentVariableModel, dataset: Dataset, config: BDMCConfig, seed: int) -> Results:
    """Return ``bdmc_lower``, ``bdmc_upper`` and ``bdmc_gap`` (nats) on data simulated by the model.

    The gap bounds the error of forward AIS with these settings on such data; the dataset only
    supplies the offset and the record's context, since the data are simulated. The runner
    copies the gap onto the ``ais`` estimates of the same run when their settings match
    (`certify_ais`).
    """
    # A label-conditional model simulates p(x|y) for the labels of the split's first examples.
    model = bind_labels(model, dataset, "test", config.num_examples)
    result = bdmc_bounds(
        model,
        num_examples=config.num_examples,
        num_chains=config.chains,
        num_steps=config.steps,
        hmc=_hmc(config),
        init=config.init,
        schedule=config.schedule,
        seed=seed,
    )
    params = _params(dataset, config.num_examples, estimator="bdmc")
    params["data"] = "simulated from the model: z ~ p(z), x ~ p(x|z)"
    diagnostics = _ais_diagnostics([result.lower], prefix="forward_") | _ais_diagnostics(
        [result.upper], prefix="reverse_"
    )
    values = {
        "bdmc_lower": result.lower.log_likelihood,
        "bdmc_upper": result.upper.log_likelihood,
        "bdmc_gap": result.gap,
    }
    estimates = {
        name: _finish(
            mean_estimate(
                v, unit="nats", higher_is_better=None, params=params, diagnostics=diagnostics
            ),
            v,
        )
        for name, v in values.items()
    }
    estimates["bdmc_gap"] = replace(
        estimates["bdmc_gap"], warning=bdmc_warning(estimates["bdmc_gap"].value)
    )
    return estimates


# Settings that must agree for a BDMC gap to certify an AIS run (Grosse et al. 2015, Sec. 4).
_AIS_SETTINGS = (
    "chains",
    "steps",
    "leapfrog_steps",
    "step_size",
    "target_accept",
    "adapt",
    "init",
    "schedule",
)


def certify_ais(
    ais_results: dict[str, Estimate], bdmc_results: dict[str, Estimate]
) -> dict[str, Estimate]:
    """Return the ``ais`` estimates with the BDMC gap of the same run as their reliability.

    Grosse et al. (2015): the gap between reverse and forward AIS on data simulated from the
    model bounds the error of forward AIS with the same settings. When the settings match, the
    gap goes into each AIS estimate's diagnostics and, above `metrics.bdmc.MAX_BDMC_GAP`, into
    its warning; otherwise the estimates are returned with a note that the gap does not apply.
    """
    gap = bdmc_results.get("bdmc_gap")
    if gap is None:
        return ais_results
    certified = {}
    for name, estimate in ais_results.items():
        if name == "is_nll":
            certified[name] = estimate
            continue
        matches = all(estimate.params.get(k) == gap.params.get(k) for k in _AIS_SETTINGS)
        diagnostics = {**estimate.diagnostics, "bdmc_gap": gap.value, "bdmc_gap_applies": matches}
        warning = estimate.warning
        if matches and gap.warning is not None:
            warning = gap.warning if warning is None else f"{warning}; {gap.warning}"
        certified[name] = replace(estimate, diagnostics=diagnostics, warning=warning)
    return certified


def _hmc(config: HMCSettings) -> HMCSettings:
    return HMCSettings(config.leapfrog_steps, config.step_size, config.target_accept, config.adapt)


def _paired(difference: Tensor) -> dict[str, float]:
    """Return the mean and stderr of per-example AIS NLL - IS NLL (same examples)."""
    n = len(difference)
    stderr = difference.double().std().item() / n**0.5 if n > 1 else float("nan")
    summary = {"ais_minus_is_nll_mean": difference.double().mean().item()}
    if n > 1:
        summary["ais_minus_is_nll_stderr"] = stderr
    return summary


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


def _params(dataset: Dataset, num_examples: int, *, estimator: str) -> dict[str, Any]:
    """Return the dataset context of a likelihood estimate (the settings are added by the
    contract, `benchmark.evaluators`)."""
    return {
        "estimator": estimator,
        "num_examples": num_examples,
        "dataset": dataset.name,
        "eval_seed": dataset.eval_seed,
        "log_likelihood_offset": dataset.log_likelihood_offset,
    }


def _finish(estimate: Estimate, values: Tensor) -> Estimate:
    """Return `estimate` with its unit in ``params`` and, for few enough examples, its values.

    The per-example values (rounded to `SIGNIFICANT_DIGITS`) are those whose mean is the
    estimate, in its unit, in example order.
    """
    diagnostics = dict(estimate.diagnostics)
    if len(values) <= MAX_PER_EXAMPLE:
        diagnostics["per_example"] = [float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in values.tolist()]
    return replace(
        estimate, params={**estimate.params, "unit": estimate.unit}, diagnostics=diagnostics
    )


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Expected `{name}` to be a positive int, but got {value!r}.")
    return value
