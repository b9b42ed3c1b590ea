"""Pareto-smoothed importance sampling diagnostic: the tail shape k̂ of the importance weights.

Vehtari, Simpson, Gelman, Yao & Gabry (2015, "Pareto smoothed importance sampling", Sec. 3):
fit a generalized Pareto distribution (GPD) to the M = ceil(min(K / 5, 3 sqrt(K))) largest
weights, as exceedances over the next largest one. Its shape k̂ says how heavy the tail of the
weights is, hence how far an importance-sampling estimate can be trusted:

- k̂ < 0.5: finite variance, the estimate converges quickly;
- 0.5 <= k̂ < 0.7: usable, slower convergence;
- k̂ >= 0.7: the estimate is unreliable (the proposal q(z|x) misses mass of p(z|x)).

The GPD is fitted with the quasi-Bayesian estimator of Zhang & Stephens (2009, Sec. 3) and the
weakly informative prior of Vehtari et al. (k̂ shrunk towards 0.5 as if by 10 extra samples).
"""

import math

import torch
from torch import Tensor

RELIABLE_K = 0.7  # k̂ at or above this flags an unreliable estimate (Vehtari et al., Sec. 3.2)
MIN_TAIL = 5  # fewer tail samples than this cannot support a GPD fit
_PRIOR_SAMPLES = 10  # weight of the k = 0.5 prior, in samples (Vehtari et al., Appendix C)
_PRIOR_SCALE = 3.0  # Zhang & Stephens's prior scale on theta, in units of the first quartile


def pareto_k_hat(log_w: Tensor, dim: int = 0) -> Tensor:
    """Return the PSIS shape estimate k̂ of the weights exp(`log_w`) along `dim`.

    Args:
        log_w: Log importance weights, e.g. ``(K, B)`` with ``dim=0``.
        dim: The sample dimension.

    Returns:
        k̂ per remaining index, float64, e.g. ``(B,)``. ``-inf`` where the M largest weights are
        all equal (a bounded tail, no Pareto tail at all).

    Raises:
        ValueError: if there are too few samples for a tail of `MIN_TAIL` weights.
    """
    log_w = log_w.double().movedim(dim, -1)  # (..., K)
    tail_size = pareto_tail_size(log_w.shape[-1])
    return pareto_k_hat_of_largest(torch.topk(log_w, tail_size + 1, dim=-1).values)


def pareto_k_hat_of_largest(largest: Tensor) -> Tensor:
    """Return k̂ from the M + 1 largest log weights ``(..., M+1)``, in any order.

    Only the tail enters the fit, so a streaming caller keeps the running top M + 1 of each
    example's weights (`pareto_tail_size`) instead of all K.
    """
    top = torch.sort(largest.double(), dim=-1).values  # (..., M+1), ascending
    # NOTE: k̂ is invariant to the scale of the weights, so shift by the max to avoid overflow.
    shifted = torch.exp(top - top[..., -1:])  # (..., M+1), the largest is 1
    exceedances = shifted[..., 1:] - shifted[..., :1]  # (..., M), ascending, >= 0
    shape, _ = generalized_pareto_fit(exceedances, weak_prior=True)
    return shape


def pareto_tail_size(num_samples: int) -> int:
    """Return M = ceil(min(K / 5, 3 sqrt(K))), the tail length of Vehtari et al. (Sec. 3)."""
    tail_size = math.ceil(min(num_samples / 5, 3 * math.sqrt(num_samples)))
    if tail_size < MIN_TAIL:
        raise ValueError(
            f"Expected `num_samples` to be at least {5 * MIN_TAIL - 4} for a Pareto tail of "
            f"{MIN_TAIL}, but got {num_samples}. Use more samples, or skip the k̂ diagnostic."
        )
    return tail_size


def generalized_pareto_fit(
    exceedances: Tensor, *, weak_prior: bool = False
) -> tuple[Tensor, Tensor]:
    """Fit a generalized Pareto distribution to positive exceedances over a threshold of 0.

    Zhang & Stephens (2009), Sec. 3: a posterior-mean estimate of theta = -shape / scale over a
    grid of m = 30 + floor(sqrt(n)) values, each scored by its profile likelihood, then shape and
    scale given theta. The parametrisation is scipy's ``genpareto(c=shape, scale=scale)``.

    Args:
        exceedances: ``(..., n)`` samples >= 0, in any order; the fit is batched over ``...``.
        weak_prior: Shrink the shape towards 0.5 as if by 10 extra samples (Vehtari et al.).

    Returns:
        ``(shape, scale)``, each ``(...)``, float64. Where every exceedance is 0, shape is -inf
        and scale 0.
    """
    x = torch.sort(exceedances.double(), dim=-1).values  # (..., n)
    n = x.shape[-1]
    theta = _theta_grid(x)  # (..., m)
    shape_given_theta = torch.log1p(-theta[..., :, None] * x[..., None, :]).mean(-1)  # (..., m)
    # Zhang & Stephens's profile log-likelihood of theta, in the shape of scipy's convention.
    profile = n * (torch.log(-theta / shape_given_theta) - shape_given_theta - 1)  # (..., m)
    # A grid point at theta = 0 gives 0/0; it carries no weight.
    profile = torch.nan_to_num(profile, nan=-math.inf)
    posterior = torch.softmax(profile, dim=-1)  # (..., m)
    theta_hat = (posterior * theta).sum(-1, keepdim=True)  # (..., 1)
    shape = torch.log1p(-theta_hat * x).mean(-1)  # (...)
    scale = -shape / theta_hat.squeeze(-1)
    if weak_prior:
        shape = (n * shape + _PRIOR_SAMPLES * 0.5) / (n + _PRIOR_SAMPLES)
    degenerate = x[..., -1] <= 0
    shape = torch.where(degenerate, torch.full_like(shape, -math.inf), shape)
    scale = torch.where(degenerate, torch.zeros_like(scale), scale)
    return shape, scale


def _theta_grid(x: Tensor) -> Tensor:
    """Return Zhang & Stephens's grid of m values of theta (their Sec. 3).

    theta_j = 1/x_(n) + (1 - sqrt(m / (j - 1/2))) / (3 x*) for j = 1 ... m.

    x* is the first quartile of the sorted sample `x` ``(..., n)``. Every theta_j < 1 / x_(n), so
    ``1 - theta x > 0`` on the whole sample.
    """
    n = x.shape[-1]
    m = 30 + math.isqrt(n)
    j = torch.arange(1, m + 1, dtype=torch.float64, device=x.device)  # (m,)
    quartile = x[..., int(n / 4 + 0.5) - 1 : int(n / 4 + 0.5)]  # (..., 1)
    # Ties at the threshold can make the quartile 0; a tiny floor keeps the grid finite.
    quartile = quartile.clamp(min=1e-300)
    largest = x[..., -1:]  # (..., 1)
    # NOTE: a zero sample gives inf/nan here; `generalized_pareto_fit` masks those rows.
    return 1 / largest + (1 - torch.sqrt(m / (j - 0.5))) / (_PRIOR_SCALE * quartile)  # (..., m)
