"""Test log-likelihood by importance sampling: log p̂_K(x), the IWAE bound, NLL in nats and bits/dim.

For one example x, with z_1 ... z_K ~ q(z|x) and log w_k = log p(x, z_k) - log q(z_k|x),

    log p̂_K(x) = log (1/K) sum_k w_k                 (Burda, Grosse & Salakhutdinov 2016, Eq. 8)

is an unbiased estimate of the IWAE bound L_K, and ELBO = L_1 <= L_K <= L_K' <= log p(x) for
K <= K' (their Theorem 1). The reported NLL is -mean_x log p̂_K(x), an over-estimate of the true
NLL that shrinks with K; its standard error is the spread over examples, sd / sqrt(N). The
ELBO is estimated from the same draws (the mean of the log weights), so the two are paired.
"""

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from metrics.batching import row_blocks
from metrics.estimate import Estimate, mean_estimate
from metrics.psis import RELIABLE_K, pareto_k_hat_of_largest, pareto_tail_size
from registry.base import LatentVariableModel
from registry.estimators import check_finite_log_weights, iter_log_importance_weights

# The NLL is flagged when more than this share of examples have k̂ >= RELIABLE_K (Vehtari et
# al. 2015, Sec. 3.2: those examples' estimates are unreliable) ...
MAX_UNRELIABLE_SHARE = 0.1
# ... or when the mean effective sample size is below this floor: the estimate then rests on a
# handful of draws per example, whatever K says.
MIN_MEAN_ESS = 10.0


@dataclass(frozen=True)
class ImportanceSampledLikelihood:
    """Per-example results of one importance-sampling pass, all ``(N,)`` float64 in nats.

    Attributes:
        log_likelihood: log p̂_K(x), the estimate of log p(x) (unbiased for the IWAE bound L_K).
        elbo: Mean of the K log weights, an unbiased estimate of the ELBO on the same draws.
        ess: Kish effective sample size of the K weights, in [1, K].
        pareto_k: PSIS shape k̂ of the weights (`metrics.psis`), or None when not computed.
        num_samples: K.
        point_mass_proposal: Every example's K weights were identical: q(z|x) is a point mass
            (VQ-VAE), so log p̂_K = ELBO for every K and the NLL is only an upper bound.
    """

    log_likelihood: Tensor
    elbo: Tensor
    ess: Tensor
    pareto_k: Tensor | None
    num_samples: int
    point_mass_proposal: bool = False


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
    The summaries are streamed over chunks of draws (running log-sum-exps, sums and the top
    M + 1 weights for k̂), so memory is bounded by ``chunk_size * batch_size`` log weights plus
    ``(3 sqrt(K) + 1) * batch_size`` tail weights, never by K: K = 10^9 runs (for a long time)
    in the memory of K = 10^3.

    Args:
        model: Any registered model, in eval mode.
        x: Observations ``(N, *data_shape)``.
        num_samples: K, importance samples per example.
        chunk_size: Samples drawn per pass (bounds memory; see `iter_log_importance_weights`).
        batch_size: Examples per pass.
        seed: Seed of the draws; the same seed gives bitwise-identical results.
        pareto_k: Also fit the PSIS k̂ of each example's weights (needs K >= 21).

    Raises:
        ValueError: if any log weight is not finite, naming the example index.
    """
    tail_size = pareto_tail_size(num_samples) if pareto_k else 0  # fails early if K is too small
    parts = []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for rows in row_blocks(len(x), _positive(batch_size, "batch_size")):
            summary = _StreamingSummary(tail_size)
            chunks = iter_log_importance_weights(
                model.select(rows), x[rows], num_samples=num_samples, chunk_size=chunk_size
            )
            for log_w in chunks:  # (k, B)
                check_finite_log_weights(log_w, first_example=rows.start)
                summary.update(log_w)
            parts.append(summary.finish())
    return ImportanceSampledLikelihood(
        log_likelihood=torch.cat([p["log_likelihood"] for p in parts]),
        elbo=torch.cat([p["elbo"] for p in parts]),
        ess=torch.cat([p["ess"] for p in parts]),
        pareto_k=torch.cat([p["pareto_k"] for p in parts]) if pareto_k else None,
        num_samples=num_samples,
        point_mass_proposal=num_samples > 1 and all(p["equal_weights"] for p in parts),
    )


class _StreamingSummary:
    """Running per-example summaries of log weights seen chunk by chunk, in float64.

    log-mean-exp and Kish's ESS come from running log-sum-exps of log w and 2 log w; the ELBO
    from a running sum; k̂ from the running top M + 1 (`pareto_k_hat_of_largest`).
    """

    def __init__(self, tail_size: int) -> None:
        self.tail_size, self.count = tail_size, 0
        self.log_sum = self.log_sum_sq = self.sum = self.top = self.low = self.high = None

    def update(self, log_w: Tensor) -> None:
        log_w = log_w.double()  # (k, B)
        chunk = {
            "log_sum": torch.logsumexp(log_w, 0),
            "log_sum_sq": torch.logsumexp(2 * log_w, 0),
            "sum": log_w.sum(0),
            "low": log_w.min(0).values,
            "high": log_w.max(0).values,
        }
        if self.count == 0:
            self.__dict__.update(chunk)
        else:
            self.log_sum = torch.logaddexp(self.log_sum, chunk["log_sum"])
            self.log_sum_sq = torch.logaddexp(self.log_sum_sq, chunk["log_sum_sq"])
            self.sum = self.sum + chunk["sum"]
            self.low = torch.minimum(self.low, chunk["low"])
            self.high = torch.maximum(self.high, chunk["high"])
        self.count += len(log_w)
        if self.tail_size:
            pool = log_w if self.top is None else torch.cat([self.top, log_w])  # (m + k, B)
            self.top = torch.topk(pool, min(self.tail_size + 1, len(pool)), dim=0).values

    def finish(self) -> dict[str, Any]:
        summary = {
            "log_likelihood": self.log_sum - math.log(self.count),
            "elbo": self.sum / self.count,
            "ess": torch.exp(2 * self.log_sum - self.log_sum_sq),
            "equal_weights": bool((self.high == self.low).all()),
        }
        if self.tail_size:
            summary["pareto_k"] = pareto_k_hat_of_largest(self.top.T)  # (B,)
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

    The two NLLs carry the verdict of the weights' own diagnostics (`likelihood_warning`), and
    are of kind ``upper_bound`` when q(z|x) is a point mass: -ELBO, whatever K.

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
    verdict = {
        "kind": "upper_bound" if result.point_mass_proposal else "estimate",
        "warning": likelihood_warning(result),
    }
    bits = bits_per_dim(nll, num_dims=num_dims)
    bits_params = {**params, "num_dims": num_dims}
    return {
        "nll": replace(mean_estimate(nll, higher_is_better=False, **nats), **verdict),
        "nll_bits_per_dim": replace(
            mean_estimate(bits, unit="bits/dim", higher_is_better=False, params=bits_params),
            **verdict,
        ),
        "iwae_bound": replace(
            mean_estimate(-nll, higher_is_better=True, **nats), warning=verdict["warning"]
        ),
        "elbo": mean_estimate(result.elbo + log_likelihood_offset, higher_is_better=True, **nats),
        "ess": replace(
            mean_estimate(result.ess, unit="samples", higher_is_better=None, params=params),
            kind="diagnostic",
        ),
    }


def likelihood_warning(result: ImportanceSampledLikelihood) -> str | None:
    """Return why the weights' own diagnostics distrust log p̂_K, or None when they trust it.

    Flagged when more than `MAX_UNRELIABLE_SHARE` of the examples have PSIS k̂ >= 0.7, or when
    the mean ESS is below `MIN_MEAN_ESS`. A point-mass proposal is not flagged: its NLL is
    exactly -ELBO and is labelled an upper bound instead.
    """
    if result.point_mass_proposal:
        return None
    reasons = []
    if result.pareto_k is not None:
        share = (result.pareto_k >= RELIABLE_K).double().mean().item()
        if share > MAX_UNRELIABLE_SHARE:
            reasons.append(f"{share:.0%} of examples have PSIS k-hat >= {RELIABLE_K}")
    ess = result.ess.mean().item()
    if ess < MIN_MEAN_ESS:
        reasons.append(f"mean ESS {ess:.1f} of K = {result.num_samples} is below {MIN_MEAN_ESS:g}")
    return "; ".join(reasons) or None


def likelihood_diagnostics(result: ImportanceSampledLikelihood) -> dict[str, float | int]:
    """Return the ESS and PSIS k̂ summaries worth recording beside an NLL."""
    diagnostics: dict[str, float | int] = {
        "ess_mean": result.ess.mean().item(),
        "ess_min": result.ess.min().item(),
        "ess_fraction_mean": result.ess.mean().item() / result.num_samples,
        "iwae_minus_elbo_mean": (result.log_likelihood - result.elbo).mean().item(),
        "point_mass_proposal": result.point_mass_proposal,
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
