"""Bidirectional Monte Carlo (BDMC): AIS sandwich bounds on log p(x) of data simulated by the model.

Grosse, Ghahramani & Adams (2015), Sec. 4; used for decoder-based models by Wu et al. (2017)
and as the AIS sanity check of Cremer et al. (2018). Simulating (z, x) ~ p(z) p(x|z) gives, for
each x, one exact posterior sample z. Then

- forward AIS (pi_0 -> p(z|x)) from z_0 ~ pi_0 gives log p̂(x), a stochastic *lower* bound;
- reverse AIS (p(z|x) -> pi_0) started at the known z gives an unbiased estimate of 1 / p(x),
  hence -log of it is a stochastic *upper* bound (Jensen's inequality).

The gap between them bounds the error of forward AIS with the same settings on such data: it is
the estimator's own certificate of accuracy. All reverse chains of an example start from its one
exact sample; each chain's weight is still unbiased for 1 / p(x), so their mean is too.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from metrics.ais import (
    DEFAULT_HMC,
    AISResult,
    AnnealingPath,
    HMCSettings,
    Init,
    Schedule,
    anneal,
    annealing_schedule,
)
from registry.base import LatentVariableModel, require_continuous_latents
from registry.estimators import log_mean_exp

# A mean BDMC gap above this many nats leaves AIS with the same settings uncertified.
MAX_BDMC_GAP = 1.0


@dataclass(frozen=True)
class BDMCResult:
    """Sandwich bounds for simulated data.

    Attributes:
        x: The simulated observations ``(N, *data_shape)``.
        z: The latents that generated them ``(N, D)``: exact posterior samples.
        lower: Forward AIS; ``lower.log_likelihood`` ``(N,)`` is a stochastic lower bound.
        upper: Reverse AIS; ``upper.log_likelihood`` ``(N,)`` is a stochastic upper bound and
            ``upper.log_weights`` estimate log 1 / p(x) per chain.
    """

    x: Tensor
    z: Tensor
    lower: AISResult
    upper: AISResult

    @property
    def gap(self) -> Tensor:
        """Return upper - lower per example ``(N,)``, in nats (>= 0 up to Monte Carlo noise)."""
        return self.upper.log_likelihood - self.lower.log_likelihood


def simulate_data(model: LatentVariableModel, num_examples: int) -> tuple[Tensor, Tensor]:
    """Draw (z, x) ~ p(z) p(x|z): ``z (N, D)`` and ``x (N, *data_shape)``; uses the global RNG."""
    with torch.no_grad():
        z = model.sample_prior(num_examples)  # (N, D)
        x = model.decode(z).sample()  # (N, *data_shape)
    return z, x


def bdmc_bounds(
    model: LatentVariableModel,
    *,
    num_examples: int,
    num_chains: int,
    num_steps: int,
    hmc: HMCSettings = DEFAULT_HMC,
    init: Init = "prior",
    schedule: Schedule = "sigmoid",
    seed: int,
) -> BDMCResult:
    """Simulate data from `model` and return forward and reverse AIS bounds on their log p(x).

    Grosse et al. (2015), Sec. 4. Both directions use the same schedule, run backwards for the
    reverse chains, and the same HMC settings (each adapts its own step sizes).

    Args:
        model: Any registered model with continuous latents whose ``decode(z)`` can ``sample()``.
        num_examples: N, simulated datapoints.
        num_chains: C, chains per datapoint in each direction.
        num_steps: T, intermediate distributions per chain.
        hmc: Transition settings.
        init: pi_0, the end of the path opposite the posterior: ``prior`` or ``encoder``.
        schedule: ``linear`` or ``sigmoid`` spacing of the betas.
        seed: Seed of the simulation and both runs; the same seed gives identical results.
    """
    require_continuous_latents(model, metric="BDMC")
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
        raise ValueError(f"Expected `num_examples` to be a positive int, but got {num_examples!r}.")
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 1:
        raise ValueError(f"Expected `num_chains` to be a positive int, but got {num_chains!r}.")
    betas = annealing_schedule(num_steps, schedule)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        z, x = simulate_data(model, num_examples)
        path = AnnealingPath(model, x, init)
        forward = _result(*anneal(path, path.sample_initial(num_chains), betas, hmc=hmc))
        z_exact = z.expand(num_chains, *z.shape).clone()  # (C, N, D): all start at the known z
        log_w, acceptance, step_size = anneal(path, z_exact, betas.flip(0), hmc=hmc)
    # exp(log_w) estimates 1 / p(x), so log p̂ = -log_mean_exp(log_w) is an upper bound.
    reverse = AISResult(-log_mean_exp(log_w, dim=0), log_w, acceptance, step_size)
    return BDMCResult(x, z, forward, reverse)


def bdmc_warning(gap: float) -> str | None:
    """Return why a mean BDMC gap (nats) distrusts AIS with the same settings, or None.

    The gap bounds the error of forward AIS on simulated data (Grosse et al. 2015, Sec. 4);
    above `MAX_BDMC_GAP` nats the AIS estimate is not certified to that accuracy.
    """
    if gap <= MAX_BDMC_GAP:
        return None
    return f"BDMC gap {gap:.2f} nats > {MAX_BDMC_GAP:g} on simulated data with these AIS settings"


def _result(log_w: Tensor, acceptance: Tensor, step_size: Tensor) -> AISResult:
    return AISResult(log_mean_exp(log_w, dim=0), log_w, acceptance, step_size)
