"""Inference gaps: how much of log p(x) - ELBO is due to the family, and how much to amortisation.

Cremer, Li & Duvenaud (ICML 2018), Sec. 3: with L[q] the ELBO of the amortised encoder and q*
the best distribution of the same family for each datapoint (see `metrics.local_posterior`),

    log p(x) - L[q] = (log p(x) - L[q*]) + (L[q*] - L[q])
                    =  approximation gap  +  amortization gap.

log p(x) comes from ONE estimator: importance sampling with the mixture r = ½ q(z|x) + ½ q*(z)
as proposal, half the draws from each (deterministic-mixture weights, Veach & Guibas 1995;
Owen & Zhou 2000): w = p(x, z) / r(z). It is unbiased for p(x) and never worse than twice the
variance of the better of the two proposals, so a q that misses mass of p(z|x) (heavy-tailed
weights) is covered by q*, and vice versa. The per-example maximum of two IS estimates, used
before, sits above log p(x) by the noise of the larger one and inflated the approximation gap.

Both gaps are >= 0 in expectation; per-example estimates can dip below 0 through Monte Carlo
noise or an unconverged q*, which is why each is a mean with its standard error and the share
of q* that stopped by the rule (rather than at the step cap) is reported and, when low, flagged.
"""

import math
from dataclasses import asdict, replace
from typing import Any

import torch
from torch import Tensor

from metrics.batching import row_blocks
from metrics.estimate import Estimate, mean_estimate
from metrics.local_posterior import (
    LocalOptimization,
    LocalPosterior,
    optimal_local_posterior,
    require_local_posterior_family,
)
from registry.base import LatentDraws, LatentVariableModel, require_continuous_latents
from registry.estimators import effective_sample_size, joint_log_density, log_mean_exp

# Below this share of q* stopped by the plateau rule, L[q*] may sit below its optimum: the
# approximation gap is then overstated and the amortization gap understated, and both are flagged.
MIN_CONVERGED_SHARE = 0.9
LOG_PX_ESTIMATOR = "importance sampling with the mixture ½ q(z|x) + ½ q*(z)"


@torch.no_grad()
def inference_gap_terms(
    model: LatentVariableModel,
    x: Tensor,
    *,
    optimization: LocalOptimization,
    is_samples: int,
    elbo_samples: int,
    chunk_size: int,
) -> dict[str, Tensor]:
    """Return per-example L[q], L[q*] and the pooled log p̂(x) under q and the fitted q*, ``(B,)``.

    Draws ``max(ceil(is_samples / 2), elbo_samples)`` z from each of q and q*. L[q] and L[q*]
    are the means of the first `elbo_samples` log weights of each; log p̂(x) is the mixture
    importance-sampling estimate from the first ``ceil(is_samples / 2)`` draws of each.

    Args:
        model: Any registered model.
        x: Observations ``(B, *data_shape)``; their q* are optimised together.
        optimization: How q* is fitted.
        is_samples: K of the pooled importance-sampling estimate of log p(x) (both halves).
        elbo_samples: Samples averaged in L[q] and L[q*].
        chunk_size: Samples per forward pass.
    """
    posterior = optimal_local_posterior(model, x, optimization=optimization)
    half = math.ceil(is_samples / 2)
    num_samples = max(half, elbo_samples)
    from_q = _proposal_terms(model, x, posterior, num_samples, chunk_size, from_encoder=True)
    from_q_star = _proposal_terms(model, x, posterior, num_samples, chunk_size, from_encoder=False)
    pooled = torch.cat([from_q["log_w_mixture"][:half], from_q_star["log_w_mixture"][:half]])
    return {
        "elbo_q": from_q["log_w"][:elbo_samples].double().mean(0),
        "elbo_q_star": from_q_star["log_w"][:elbo_samples].double().mean(0),
        "log_px": log_mean_exp(pooled),  # (B,)
        "ess": effective_sample_size(pooled),
        "steps": posterior.steps.double(),
        "converged": posterior.converged.double(),
    }


def _proposal_terms(
    model: LatentVariableModel,
    x: Tensor,
    posterior: LocalPosterior,
    num_samples: int,
    chunk_size: int,
    *,
    from_encoder: bool,
) -> dict[str, Tensor]:
    """Return log w under the drawing proposal and under the mixture, each ``(K, B)``.

    The draws come from q(z|x) when `from_encoder`, else from q*; each is scored under both.
    """
    log_w, log_w_mixture = [], []
    q_z = model.encode(x)
    for start in range(0, num_samples, chunk_size):
        k = min(chunk_size, num_samples - start)
        if from_encoder:
            draws = model.draw_latents(x, k)  # z (k, B, D)
            log_q, log_q_star = draws.log_q, posterior.log_prob(draws.z)
            own = log_q
        else:
            z, log_q_star = posterior.sample(k)  # (k, B, D), (k, B)
            draws, log_q = LatentDraws(z, log_q_star), q_z.log_prob(z)
            own = log_q_star
        log_joint = joint_log_density(model, x, draws)  # (k, B)
        log_mixture = torch.logaddexp(log_q.double(), log_q_star.double()) - math.log(2)
        log_w.append(log_joint - own)
        log_w_mixture.append(log_joint.double() - log_mixture)
    return {"log_w": torch.cat(log_w), "log_w_mixture": torch.cat(log_w_mixture)}


def _concatenate(batches: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Join per-batch terms into per-example tensors ``(N,)`` on the CPU."""
    return {name: torch.cat([b[name].cpu() for b in batches]) for name in batches[0]}


def convergence_warning(converged_share: float) -> str | None:
    """Return why L[q*] may be below its optimum, or None when enough q* stopped by the rule."""
    if converged_share >= MIN_CONVERGED_SHARE:
        return None
    return (
        f"only {converged_share:.0%} of q* stopped by the stopping rule (the rest hit max_steps), "
        f"so L[q*] may be below its optimum"
    )


def _diagnostics(terms: dict[str, Tensor], log_px_source: str) -> dict[str, Any]:
    steps = terms["steps"]
    return {
        "steps_mean": steps.mean().item(),
        "steps_min": int(steps.min()),
        "steps_max": int(steps.max()),
        "converged_fraction": terms["converged"].mean().item(),
        "log_px_ess_mean": terms["ess"].mean().item(),
        "log_px_ess_min": terms["ess"].min().item(),
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
    """Return log p̂(x), L[q], L[q*], the three gaps and the share of q* that converged.

    Cremer, Li & Duvenaud (2018), Sec. 3. Each is a mean ± stderr over the examples, in nats;
    ``q_star_converged`` is the share of q* stopped by the plateau rule. Without `log_px`,
    log p̂(x) is the pooled mixture estimate (module docstring). The L[q*]-based outputs carry
    `convergence_warning` when too few q* converged.

    Args:
        model: Any registered model, in eval mode.
        x: Observations ``(N, *data_shape)``.
        optimization: How q* is fitted (family, Adam, stopping rule, cap).
        is_samples: K of the importance-sampling estimate of log p(x) (paper: 5000).
        elbo_samples: Samples for L[q] and L[q*] (chriscremer code: 5000).
        batch_size: Points whose q* are optimised together; it bounds memory and changes which
            random draws each point sees, not the quantity estimated.
        chunk_size: Samples per forward pass when evaluating bounds.
        log_px: Optional better per-example log p(x) ``(N,)`` (exact, or AIS) to use instead.
    """
    require_continuous_latents(model, metric="the inference-gap protocol")
    require_local_posterior_family(model, x, optimization.family)
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
    source = "given" if log_px is not None else LOG_PX_ESTIMATOR
    log_px = (terms["log_px"] if log_px is None else log_px).detach().double().cpu()
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
        "q_star_converged": (terms["converged"], None),
    }
    diagnostics = _diagnostics(terms, source)
    warning = convergence_warning(diagnostics["converged_fraction"])
    results = {
        name: mean_estimate(
            v, unit="nats", higher_is_better=better, params=params, diagnostics=diagnostics
        )
        for name, (v, better) in values.items()
    }
    for name in ("elbo_q_star", "approximation_gap", "amortization_gap"):
        results[name] = replace(results[name], warning=warning)
    results["q_star_converged"] = replace(
        results["q_star_converged"], unit="fraction", kind="diagnostic", warning=warning
    )
    return results
