"""Inference gaps: how much of log p(x) - ELBO is due to the family, and how much to amortisation.

Cremer, Li & Duvenaud (ICML 2018), Sec. 3: with L[q] the ELBO of the amortised encoder and q*
the best distribution of the same family for each datapoint (see `metrics.local_posterior`),

    log p(x) - L[q] = (log p(x) - L[q*]) + (L[q*] - L[q])
                    =  approximation gap  +  amortization gap.

Both gaps are >= 0 in expectation; per-example estimates can dip below 0 through Monte Carlo
noise or an unconverged q*, which is why each is reported as a mean with its standard error.
"""

from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from metrics.batching import row_blocks
from metrics.estimate import Estimate, mean_estimate
from metrics.importance import effective_sample_size, log_importance_weights, log_mean_exp
from metrics.local_posterior import (
    LocalOptimization,
    local_log_importance_weights,
    optimal_local_posterior,
)
from registry.base import (
    LatentVariableModel,
    require_continuous_latents,
    require_local_posterior_family,
)


def inference_gap_terms(
    model: LatentVariableModel,
    x: Tensor,
    *,
    optimization: LocalOptimization,
    is_samples: int,
    elbo_samples: int,
    chunk_size: int,
) -> dict[str, Tensor]:
    """Return per-example bounds under q and the fitted q*, each of shape ``(B,)``.

    L[q] and L[q*] are means of `elbo_samples` log weights. Each set of weights also yields an
    importance-sampling estimate of log p(x) from `is_samples` of them (Burda et al. 2016, Eq. 8),
    one with q and one with q* as the proposal. Both use the first draws of one sample of
    ``max(is_samples, elbo_samples)`` i.i.d. draws, so the ELBO and the IS estimate share samples.

    Args:
        model: Any registered model.
        x: Observations ``(B, *data_shape)``; their q* are optimised together.
        optimization: How q* is fitted.
        is_samples: K of the importance-sampling estimates of log p(x).
        elbo_samples: Samples averaged in L[q] and L[q*].
        chunk_size: Samples per forward pass.
    """
    posterior = optimal_local_posterior(model, x, optimization=optimization)
    num_samples = max(is_samples, elbo_samples)
    log_w_star = local_log_importance_weights(
        model, x, posterior, num_samples=num_samples, chunk_size=chunk_size
    )  # (K, B)
    log_w = log_importance_weights(model, x, num_samples=num_samples, chunk_size=chunk_size)
    return {
        "elbo_q": log_w[:elbo_samples].double().mean(0),
        "elbo_q_star": log_w_star[:elbo_samples].double().mean(0),
        "log_px_q": log_mean_exp(log_w[:is_samples]),
        "log_px_q_star": log_mean_exp(log_w_star[:is_samples]),
        "ess_q": effective_sample_size(log_w[:is_samples]),
        "ess_q_star": effective_sample_size(log_w_star[:is_samples]),
        "steps": posterior.steps.double(),
        "converged": posterior.converged.double(),
    }


def _concatenate(batches: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Join per-batch terms into per-example tensors ``(N,)`` on the CPU."""
    return {name: torch.cat([b[name].cpu() for b in batches]) for name in batches[0]}


def _diagnostics(terms: dict[str, Tensor], log_px_source: str) -> dict[str, Any]:
    steps = terms["steps"]
    return {
        "steps_mean": steps.mean().item(),
        "steps_min": int(steps.min()),
        "steps_max": int(steps.max()),
        "converged_fraction": terms["converged"].mean().item(),
        "log_px_q_mean": terms["log_px_q"].mean().item(),
        "log_px_q_star_mean": terms["log_px_q_star"].mean().item(),
        "ess_q_mean": terms["ess_q"].mean().item(),
        "ess_q_star_mean": terms["ess_q_star"].mean().item(),
        "log_px_source": log_px_source,
    }


def inference_gaps(
    model: LatentVariableModel,
    x: Tensor,
    *,
    optimization: LocalOptimization,
    is_samples: int,
    elbo_samples: int,
    batch_size: int,
    chunk_size: int,
    log_px: Tensor | None = None,
) -> dict[str, Estimate]:
    """Return log p̂(x), L[q], L[q*], the approximation, amortization and total inference gaps.

    Cremer, Li & Duvenaud (2018), Sec. 3. Each is a mean ± stderr over the examples, in nats.
    Without `log_px`, log p̂(x) is per example the larger of the two importance-sampling
    estimates (proposals q and q*): both are stochastic lower bounds on log p(x), and the larger
    is usually the tighter (Cremer et al. reportedly take the larger of IWAE and AIS). NOTE: when
    both are already tight, the max of two noisy estimates sits slightly above log p(x), by about
    their Monte Carlo error (~0.01 nats on the linear-Gaussian oracle of the tests).

    Args:
        model: Any registered model, in eval mode.
        x: Observations ``(N, *data_shape)``.
        optimization: How q* is fitted (family, Adam, stopping rule, cap).
        is_samples: K of the importance-sampling estimates of log p(x) (paper: 5000).
        elbo_samples: Samples for L[q] and L[q*] (chriscremer code: 5000).
        batch_size: Points whose q* are optimised together; it bounds memory and changes which
            random draws each point sees, not the quantity estimated.
        chunk_size: Samples per forward pass when evaluating bounds.
        log_px: Optional better per-example log p(x) ``(N,)`` (exact, or AIS) to use instead.
    """
    require_continuous_latents(model, metric="the inference-gap protocol")
    require_local_posterior_family(model, optimization.family)
    if log_px is not None and log_px.shape != (x.shape[0],):
        raise ValueError(
            f"Expected `log_px` to have shape ({x.shape[0]},), but got {tuple(log_px.shape)}."
        )
    batches = [
        inference_gap_terms(
            model.select(rows),
            x[rows],
            optimization=optimization,
            is_samples=is_samples,
            elbo_samples=elbo_samples,
            chunk_size=chunk_size,
        )
        for rows in row_blocks(len(x), batch_size)
    ]
    terms = _concatenate(batches)
    source = "given" if log_px is not None else "max(IS with q, IS with q*)"
    if log_px is None:
        log_px = torch.maximum(terms["log_px_q"], terms["log_px_q_star"])
    log_px = log_px.detach().double().cpu()
    params = {
        **asdict(optimization),
        "is_samples": is_samples,
        "elbo_samples": elbo_samples,
        "batch_size": batch_size,
        "chunk_size": chunk_size,
        "log_px_estimator": source,
    }
    values = {
        "log_px": (log_px, True),
        "elbo_q": (terms["elbo_q"], True),
        "elbo_q_star": (terms["elbo_q_star"], True),
        "approximation_gap": (log_px - terms["elbo_q_star"], False),
        "amortization_gap": (terms["elbo_q_star"] - terms["elbo_q"], False),
        "inference_gap": (log_px - terms["elbo_q"], False),
    }
    diagnostics = _diagnostics(terms, source)
    return {
        name: mean_estimate(
            v, unit="nats", higher_is_better=better, params=params, diagnostics=diagnostics
        )
        for name, (v, better) in values.items()
    }
