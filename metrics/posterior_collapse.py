"""Posterior-collapse diagnostics: KL per latent dimension, I(x; z), and the rate-distortion pair.

- KL per dimension: ``KL(q(z_d|x) || p(z_d))`` for factorised posteriors and priors, analytic
  where `torch.distributions.kl_divergence` has a rule for the univariate factors, otherwise a
  Monte Carlo average of ``log q - log p`` per dimension. A collapsed dimension has KL near 0.
- ELBO surgery (Hoffman & Johnson 2016, "ELBO surgery: yet another way to carve up the
  variational evidence lower bound"): the average KL term splits as
  ``E_x KL(q(z|x) || p(z)) = I(x; z) + KL(q(z) || p(z))``, where ``q(z) = (1/N) sum_n q(z|x_n)``
  is the aggregate posterior over the N evaluated points and I(x; z) the mutual information
  between the data index and z under q. Both are estimated by Monte Carlo with z ~ q(z|x_n).
- The bracket on I(x; z) under the data distribution (Poole et al. 2019, "On variational bounds
  of mutual information", Sec. 2.2-2.4; Alemi et al. 2018): the aggregate-posterior estimate
  with each point's own component in the mixture is the InfoNCE bound
  I_NCE = E[log q(z|x_n) - log (1/N) sum_m q(z|x_m)] <= I(x; z), computed over the whole
  evaluated set, and the rate E_x KL(q(z|x) || p(z)) >= I(x; z). So I_NCE <= I <= rate, and
  ``marginal_kl`` = rate - I_NCE is an upper bound on KL(q(z) || p(z)).
  NOTE: I_NCE <= log N. Once it nears log N the lower bound is saturated: it says only that
  I(x; z) is at least about log N, and the bracket is wide; the estimate is then flagged.
- Rate-distortion (Alemi et al. 2018): rate = E_x KL(q(z|x) || p(z)), distortion =
  -E_x E_q[log p(x|z)], both in nats; computed by `registry.estimators.elbo_terms`.
"""

import math
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, kl_divergence

from metrics.batching import row_blocks
from metrics.estimate import Estimate, NotDefined, mean_estimate
from registry.base import LatentVariableModel
from registry.estimators import elbo_terms, log_mean_exp

SATURATION_MARGIN = 0.1  # nats below log N at which the I(x; z) lower bound counts as saturated


def univariate_factors(distribution: Distribution) -> Distribution | None:
    """Return the univariate factors (batch ``(..., D)``) of a factorised distribution, or None."""
    if isinstance(distribution, Independent) and distribution.reinterpreted_batch_ndims == 1:
        return distribution.base_dist
    return None


@torch.no_grad()
def kl_per_dimension(
    model: LatentVariableModel, x: Tensor, *, num_samples: int
) -> tuple[Tensor, str]:
    """Return KL(q(z_d|x) || p(z_d)) per example and dimension ``(B, D)``, and the method used.

    Analytic where a rule is registered for the univariate factors (e.g. Normal vs Normal,
    Kingma & Welling 2014, App. B), else the mean of ``log q - log p`` over `num_samples` draws.

    Raises:
        TypeError: if the posterior or the prior does not factorise over dimensions.
    """
    q_factors, p_factors = univariate_factors(model.encode(x)), univariate_factors(model.prior())
    if q_factors is None or p_factors is None:
        raise TypeError(
            "Expected the posterior and the prior to factorise over latent dimensions "
            "(`Independent` over univariate factors), but got "
            f"{type(model.encode(x)).__name__} and {type(model.prior()).__name__}."
        )
    try:
        return kl_divergence(q_factors, p_factors), "analytic"  # (B, D)
    except NotImplementedError:
        z = q_factors.sample((num_samples,))  # (S, B, D)
        return (q_factors.log_prob(z) - p_factors.log_prob(z)).mean(0), "monte_carlo"


def log_aggregate_posterior(q_z: Distribution, z: Tensor, *, chunk_size: int) -> Tensor:
    """Return log q(z) = log (1/N) sum_n q(z|x_n) for points ``z (M, D)``, shape ``(M,)`` float64.

    Args:
        q_z: Posterior with batch shape ``(N,)``, one component per evaluated example.
        z: Points at which to evaluate the mixture.
        chunk_size: Points per chunk; memory is ``chunk_size * N`` log densities.
    """
    num_components = q_z.batch_shape[0]
    chunks = []
    for zc in z.split(chunk_size):
        # (c, D) -> (c, N, D): every point against every component. Expanded, not broadcast,
        # so that densities defined by a network pass (hierarchical posteriors) see full shapes.
        grid = zc.unsqueeze(1).expand(-1, num_components, -1)
        chunks.append(log_mean_exp(q_z.log_prob(grid), dim=1))  # (c,)
    return torch.cat(chunks)


@torch.no_grad()
def aggregate_posterior_terms(
    model: LatentVariableModel, x: Tensor, *, num_samples: int, chunk_size: int
) -> dict[str, Tensor]:
    """Return each example's share of I(x; z) and of KL(q(z) || p(z)), each ``(N,)`` float64.

    Hoffman & Johnson (2016): with z ~ q(z|x_n), the example's terms are
    ``E[log q(z|x_n) - log q(z)]`` and ``E[log q(z) - log p(z)]``; their means over n are I(x; z)
    and the marginal KL, and they sum to the example's KL(q(z|x_n) || p(z)).

    Args:
        model: Any registered model; ``encode`` must give a density for arbitrary z.
        x: All N examples defining the aggregate posterior ``(N, *data_shape)``.
        num_samples: Draws of z per example.
        chunk_size: Points per chunk when evaluating the N-component mixture.
    """
    q_z = model.encode(x)  # batch (N,)
    z = q_z.sample((num_samples,))  # (S, N, D)
    log_q_own = q_z.log_prob(z).double()  # (S, N)
    # (S, N, D) -> (S*N, D) for the mixture, then back to (S, N).
    log_q_agg = log_aggregate_posterior(q_z, z.reshape(-1, z.shape[-1]), chunk_size=chunk_size)
    log_q_agg = log_q_agg.reshape(z.shape[:2])
    log_p = model.log_prior(z).double()  # (S, N)
    return {
        "mutual_information": (log_q_own - log_q_agg).mean(0),
        "marginal_kl": (log_q_agg - log_p).mean(0),
    }


def _kl_per_dim_estimate(
    model: LatentVariableModel, x: Tensor, num_samples: int, batch_size: int, params: dict[str, Any]
) -> Estimate:
    pieces = [
        kl_per_dimension(model.select(rows), x[rows], num_samples=num_samples)
        for rows in row_blocks(len(x), batch_size)
    ]
    kl = torch.cat([p[0] for p in pieces]).double().cpu()  # (N, D)
    diagnostics = {
        "per_dim": kl.mean(0).tolist(),
        "per_dim_stderr": (kl.std(0) / math.sqrt(kl.shape[0])).tolist(),
        "method": pieces[0][1],
    }
    return mean_estimate(
        kl.sum(-1), unit="nats", higher_is_better=None, params=params, diagnostics=diagnostics
    )


@torch.no_grad()
def posterior_collapse(
    model: LatentVariableModel, x: Tensor, *, num_samples: int, batch_size: int, chunk_size: int
) -> dict[str, Estimate | NotDefined]:
    """Return ``kl_per_dim``, ``rate``, ``distortion``, ``mutual_information``, ``marginal_kl``.

    Each is a mean ± stderr over the N examples, in nats. ``kl_per_dim`` holds the total KL as
    its value and the per-dimension means in ``diagnostics["per_dim"]``; it is `NotDefined`,
    with the reason, when q(z|x) or p(z) does not factorise over dimensions (the other four are
    defined for any model).

    Args:
        model: Any registered model, in eval mode.
        x: Observations ``(N, *data_shape)``; they also define the aggregate posterior.
        num_samples: Posterior draws per example (reconstruction, Monte Carlo KL, I(x; z)).
        batch_size: Examples per forward pass for the KL and reconstruction terms.
        chunk_size: Points per chunk when evaluating the aggregate posterior.
    """
    params = {
        "num_samples": num_samples,
        "num_examples": x.shape[0],
        "batch_size": batch_size,
        "chunk_size": chunk_size,
    }
    terms = [
        elbo_terms(model.select(rows), x[rows], num_samples=num_samples)
        for rows in row_blocks(len(x), batch_size)
    ]
    rate = torch.cat([kl for _, kl in terms])
    distortion = -torch.cat([reconstruction for reconstruction, _ in terms])
    surgery = aggregate_posterior_terms(model, x, num_samples=num_samples, chunk_size=chunk_size)
    nats = {"unit": "nats", "params": params}
    rate_estimate = mean_estimate(rate, higher_is_better=None, **nats)
    lower = mean_estimate(surgery["mutual_information"], higher_is_better=None, **nats)
    bracket = {
        "log_n": math.log(x.shape[0]),
        "lower_bound": lower.value,
        "upper_bound": rate_estimate.value,  # the rate
        "upper_bound_stderr": rate_estimate.stderr,
    }
    warning = saturation_warning(lower.value, x.shape[0], rate_estimate.value)
    results = {
        "rate": rate_estimate,
        "distortion": mean_estimate(distortion, higher_is_better=False, **nats),
        "mutual_information": replace(
            lower, kind="lower_bound", diagnostics=bracket, warning=warning
        ),
        "marginal_kl": replace(
            mean_estimate(surgery["marginal_kl"], higher_is_better=None, **nats),
            kind="upper_bound",
            diagnostics=bracket,
            warning=warning,
        ),
    }
    if _factorises(model.select(slice(0, 1)), x[:1]):
        results["kl_per_dim"] = _kl_per_dim_estimate(model, x, num_samples, batch_size, params)
    else:
        results["kl_per_dim"] = NotDefined(
            f"{model.display_name}'s q(z|x) or p(z) is not a product of univariate factors, "
            f"so the KL does not split into one term per latent dimension."
        )
    return results


def saturation_warning(lower_bound: float, num_points: int, rate: float) -> str | None:
    """Return why the I(x; z) lower bound says little, or None when it is below log N - 0.1.

    I_NCE over N points cannot exceed log N (Poole et al. 2019, Sec. 2.4); within
    `SATURATION_MARGIN` of it, the true I(x; z) may lie anywhere up to the rate.
    """
    log_n = math.log(num_points)
    if lower_bound <= log_n - SATURATION_MARGIN:
        return None
    return (
        f"saturated: the lower bound {lower_bound:.2f} is within {SATURATION_MARGIN} of log N = "
        f"{log_n:.2f} (N = {num_points}); I(x; z) lies in [{lower_bound:.2f}, {rate:.2f}] (rate)"
    )


def _factorises(model: LatentVariableModel, x: Tensor) -> bool:
    """Return whether both q(z|x) and p(z) are products of univariate factors."""
    return (
        univariate_factors(model.encode(x)) is not None
        and univariate_factors(model.prior()) is not None
    )
