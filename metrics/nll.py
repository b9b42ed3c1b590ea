"""Test log-likelihood by importance sampling: log p̂_K(x), the IWAE bound, NLL in nats and bits/dim.

For one example x, with z_1 ... z_K ~ q(z|x) and log w_k = log p(x, z_k) - log q(z_k|x),

    log p̂_K(x) = log (1/K) sum_k w_k                 (Burda, Grosse & Salakhutdinov 2016, Eq. 8)

is an unbiased estimate of the IWAE bound L_K, and ELBO = L_1 <= L_K <= L_K' <= log p(x) for
K <= K' (their Theorem 1). The reported NLL is -mean_x log p̂_K(x), an over-estimate of the true
NLL that shrinks with K; its standard error is the spread over examples, sd / sqrt(N). The
ELBO is estimated from the same draws (the mean of the log weights), so the two are paired.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metrics.batching import row_blocks
from metrics.estimate import Estimate, mean_estimate
from metrics.importance import (
    check_finite_log_weights,
    effective_sample_size,
    log_importance_weights,
    log_mean_exp,
)
from metrics.psis import RELIABLE_K, pareto_k_hat, pareto_tail_size
from registry.base import LatentVariableModel


@dataclass(frozen=True)
class ImportanceSampledLikelihood:
    """Per-example results of one importance-sampling pass, all ``(N,)`` float64 in nats.

    Attributes:
        log_likelihood: log p̂_K(x), the estimate of log p(x) (unbiased for the IWAE bound L_K).
        elbo: Mean of the K log weights, an unbiased estimate of the ELBO on the same draws.
        ess: Kish effective sample size of the K weights, in [1, K].
        pareto_k: PSIS shape k̂ of the weights (`metrics.psis`), or None when not computed.
        num_samples: K.
    """

    log_likelihood: Tensor
    elbo: Tensor
    ess: Tensor
    pareto_k: Tensor | None
    num_samples: int


def importance_sampled_log_likelihood(
    model: LatentVariableModel,
    x: Tensor,
    *,
    num_samples: int,
    chunk_size: int,
    batch_size: int,
    seed: int,
    pareto_k: bool = True,
) -> ImportanceSampledLikelihood:
    """Return per-example log p̂_K(x), ELBO, ESS and PSIS k̂ from K importance samples each.

    Burda et al. (2016), Eq. 8, with K exactly `num_samples` whatever the chunk and batch sizes.

    Args:
        model: Any registered model, in eval mode.
        x: Observations ``(N, *data_shape)``.
        num_samples: K, importance samples per example.
        chunk_size: Samples drawn per pass (bounds memory; see `log_importance_weights`).
        batch_size: Examples per pass.
        seed: Seed of the draws; the same seed gives bitwise-identical results.
        pareto_k: Also fit the PSIS k̂ of each example's weights (needs K >= 21).

    Raises:
        ValueError: if any log weight is not finite, naming the example index.
    """
    if pareto_k:
        pareto_tail_size(num_samples)  # fail before the expensive part if K is too small
    parts = []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for rows in row_blocks(len(x), _positive(batch_size, "batch_size")):
            log_w = log_importance_weights(
                model.select(rows), x[rows], num_samples=num_samples, chunk_size=chunk_size
            )  # (K, B)
            check_finite_log_weights(log_w, first_example=rows.start)
            parts.append(_per_example(log_w, pareto_k=pareto_k))
    return ImportanceSampledLikelihood(
        log_likelihood=torch.cat([p["log_likelihood"] for p in parts]),
        elbo=torch.cat([p["elbo"] for p in parts]),
        ess=torch.cat([p["ess"] for p in parts]),
        pareto_k=torch.cat([p["pareto_k"] for p in parts]) if pareto_k else None,
        num_samples=num_samples,
    )


def _per_example(log_w: Tensor, *, pareto_k: bool) -> dict[str, Tensor]:
    """Summarise log weights ``(K, B)`` into ``(B,)`` float64 vectors."""
    summary = {
        "log_likelihood": log_mean_exp(log_w, dim=0),
        "elbo": log_w.double().mean(0),
        "ess": effective_sample_size(log_w, dim=0),
    }
    if pareto_k:
        summary["pareto_k"] = pareto_k_hat(log_w, dim=0)
    return summary


def bits_per_dim(nats: Tensor | float, *, num_dims: int) -> Tensor | float:
    """Convert nats per example into bits per dimension: nats / (ln 2 * D)."""
    return nats / (math.log(2) * _positive(num_dims, "num_dims"))


def negative_log_likelihood_estimates(
    result: ImportanceSampledLikelihood,
    *,
    num_dims: int,
    log_likelihood_offset: float = 0.0,
    params: dict[str, Any] | None = None,
) -> dict[str, Estimate]:
    """Return ``nll``, ``nll_bits_per_dim``, ``iwae_bound``, ``elbo`` and ``ess`` as Estimates.

    Each value is a mean over examples with stderr sd / sqrt(N). `log_likelihood_offset` is
    added to every log-likelihood first, so that a density on dequantized 8-bit data becomes a
    lower bound on the log-probability of the discrete data (Theis et al. 2016, Sec. 3.1:
    ``-D log 256``); all four likelihood numbers are then on that scale.

    Args:
        result: Output of `importance_sampled_log_likelihood`.
        num_dims: D, data dimensions per example, for bits/dim.
        log_likelihood_offset: Nats added to each per-example log-likelihood and ELBO.
        params: Estimator parameters to record (K, chunk, seed, split, ...).
    """
    params = {
        **(params or {}),
        "k": result.num_samples,
        "log_likelihood_offset": log_likelihood_offset,
    }
    nll = -(result.log_likelihood + log_likelihood_offset)  # (N,) nats
    diagnostics = likelihood_diagnostics(result)
    nats = {"unit": "nats", "params": params, "diagnostics": diagnostics}
    return {
        "nll": mean_estimate(nll, higher_is_better=False, **nats),
        "nll_bits_per_dim": mean_estimate(
            bits_per_dim(nll, num_dims=num_dims),
            unit="bits/dim",
            higher_is_better=False,
            params={**params, "num_dims": num_dims},
        ),
        "iwae_bound": mean_estimate(-nll, higher_is_better=True, **nats),
        "elbo": mean_estimate(result.elbo + log_likelihood_offset, higher_is_better=True, **nats),
        "ess": mean_estimate(result.ess, unit="samples", higher_is_better=None, params=params),
    }


def likelihood_diagnostics(result: ImportanceSampledLikelihood) -> dict[str, float | int]:
    """Return the ESS and PSIS k̂ summaries worth recording beside an NLL."""
    diagnostics: dict[str, float | int] = {
        "ess_mean": result.ess.mean().item(),
        "ess_min": result.ess.min().item(),
        "ess_fraction_mean": result.ess.mean().item() / result.num_samples,
        "iwae_minus_elbo_mean": (result.log_likelihood - result.elbo).mean().item(),
    }
    if result.pareto_k is not None:
        diagnostics |= _pareto_k_summary(result.pareto_k)
    return diagnostics


def _pareto_k_summary(k_hat: Tensor) -> dict[str, float | int]:
    # NOTE: k̂ = -inf marks a bounded tail (equal top weights); it is counted, not averaged,
    # so that no infinity reaches a record.
    finite = k_hat[torch.isfinite(k_hat)]
    summary: dict[str, float | int] = {
        "pareto_k_fraction_unreliable": (k_hat >= RELIABLE_K).double().mean().item(),
        "pareto_k_bounded_tails": len(k_hat) - len(finite),
    }
    if len(finite):
        summary |= {"pareto_k_mean": finite.mean().item(), "pareto_k_max": finite.max().item()}
    return summary


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Expected `{name}` to be a positive int, but got {value!r}.")
    return value
