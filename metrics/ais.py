"""Annealed importance sampling (AIS) of log p(x) with Hamiltonian Monte Carlo transitions.

Neal (2001), as used for decoder-based models by Wu et al. (2017) and Cremer, Li & Duvenaud
(2018). A geometric path joins an initial density pi_0(z) (the prior, or the encoder q(z|x)) to
the unnormalised posterior p(x, z):

    f_t(z) = pi_0(z)^(1 - beta_t) * p(x, z)^beta_t,        0 = beta_0 < beta_1 < ... < beta_T = 1.

Each chain starts at z_0 ~ pi_0 and, for t = 1 ... T, adds (beta_t - beta_{t-1}) times
``log p(x, z) - log pi_0(z)`` at its current z to its log weight, then moves z by one HMC trajectory
that leaves f_t invariant (Neal 2001, Eq. 3-5). exp(log w) is unbiased for p(x), so the
log-mean-exp over chains is a stochastic lower bound on log p(x). Chains and datapoints are one
batch: z has shape ``(C, B, D)``.

Step sizes, one per datapoint shared by its chains, start at `step_size` and are multiplied by
1.02 or 0.98 after every transition to steer the acceptance rate towards `target_accept`,
clamped to [1e-4, 0.5] (Cremer et al.'s defaults). NOTE: adapting the step size on the chains'
own acceptance makes the transitions depend on the past, as in the reference codes; the bias this
adds is not measurable on the closed-form tests.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Distribution

from registry.base import LatentVariableModel, require_continuous_latents
from registry.estimators import argument_validation, log_mean_exp

Init = Literal["prior", "encoder"]
Schedule = Literal["linear", "sigmoid"]
STEP_SIZE_RANGE = (1e-4, 0.5)  # clamp of the adapted step size (Cremer et al. 2018)
ADAPTATION_FACTOR = 1.02  # step size x 1.02 when accepting above the target, x 0.98 below
SIGMOID_RADIUS = 4.0  # the sigmoid schedule spans sigmoid(-4) ... sigmoid(4) (Grosse et al. 2015)


@dataclass(frozen=True)
class HMCSettings:
    """How each AIS transition moves z.

    Attributes:
        leapfrog_steps: Leapfrog steps per HMC trajectory (Cremer et al.: 10).
        step_size: Initial leapfrog step size (Cremer et al.: 0.01).
        target_accept: Acceptance rate the step size is steered towards (Cremer et al.: 0.65).
        adapt: Adapt the step size; with False it stays at `step_size`.
    """

    leapfrog_steps: int = 10
    step_size: float = 0.01
    target_accept: float = 0.65
    adapt: bool = True


DEFAULT_HMC = HMCSettings()


@dataclass(frozen=True)
class AISResult:
    """Per-datapoint output of one AIS run.

    Attributes:
        log_likelihood: log-mean-exp of the chains' weights ``(B,)`` float64: a stochastic lower
            bound on log p(x) for a forward run.
        log_weights: Final log weight of each chain ``(C, B)`` float64.
        acceptance_rate: HMC acceptance rate ``(B,)``, averaged over chains and transitions.
        step_size: Final step size of each datapoint ``(B,)``.
    """

    log_likelihood: Tensor
    log_weights: Tensor
    acceptance_rate: Tensor
    step_size: Tensor


class AnnealingPath:
    """The geometric path between pi_0(z) and p(x, z) for a batch of datapoints.

    Args:
        model: Any registered model with continuous latents.
        x: Observations ``(B, *data_shape)``.
        init: ``prior`` (pi_0 = p(z)) or ``encoder`` (pi_0 = q(z|x), from ``model.encode(x)``).
    """

    def __init__(self, model: LatentVariableModel, x: Tensor, init: Init) -> None:
        if init not in ("prior", "encoder"):
            raise ValueError(f"Expected `init` to be 'prior' or 'encoder', but got {init!r}.")
        self.model, self.x, self.init = model, x, init
        with torch.no_grad():
            self.q_z: Distribution | None = model.encode(x) if init == "encoder" else None

    def sample_initial(self, num_chains: int) -> Tensor:
        """Draw z_0 ~ pi_0 for every chain and datapoint, shape ``(C, B, D)``."""
        with torch.no_grad():
            if self.q_z is None:
                return self.model.sample_prior(len(self.x), (num_chains,))  # (C, B, D)
            return self.q_z.sample((num_chains,))

    def log_densities(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Return log pi_0(z) and log p(x, z) for ``z (C, B, D)``, each of shape ``(C, B)``."""
        log_prior = self.model.log_prior(z)
        log_joint = log_prior + self.model.log_likelihood(self.x, z)
        log_initial = log_prior if self.q_z is None else self.q_z.log_prob(z)
        return log_initial, log_joint


def annealing_schedule(num_steps: int, kind: Schedule) -> Tensor:
    """Return beta_0 = 0 < ... < beta_T = 1, shape ``(T + 1,)`` float64.

    ``linear``: beta_t = t / T (Cremer et al.'s run.py). ``sigmoid``: sigmoid of a linear grid on
    [-4, 4], rescaled to [0, 1], which spends more steps near both ends (Grosse et al. 2015, BDMC).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"Expected `num_steps` to be a positive int, but got {num_steps!r}.")
    grid = torch.linspace(0, 1, num_steps + 1, dtype=torch.float64)
    if kind == "linear":
        return grid
    if kind == "sigmoid":
        s = torch.sigmoid(SIGMOID_RADIUS * (2 * grid - 1))
        return (s - s[0]) / (s[-1] - s[0])
    raise ValueError(f"Expected `schedule` to be 'linear' or 'sigmoid', but got {kind!r}.")


def ais_log_likelihood(
    model: LatentVariableModel,
    x: Tensor,
    *,
    num_chains: int,
    num_steps: int,
    hmc: HMCSettings = DEFAULT_HMC,
    init: Init = "prior",
    schedule: Schedule = "sigmoid",
    seed: int,
) -> AISResult:
    """Return AIS estimates of log p(x), a stochastic lower bound, for a batch of datapoints.

    Neal (2001), Eq. 3-5; settings as in Cremer et al. (2018), Sec. 5 (who use 100 chains and
    10,000 intermediate distributions).

    Args:
        model: Any registered model with continuous latents, in eval mode.
        x: Observations ``(B, *data_shape)``.
        num_chains: C, independent chains per datapoint.
        num_steps: T, intermediate distributions (HMC transitions) per chain.
        hmc: Transition settings.
        init: Initial distribution pi_0: ``prior`` or ``encoder``.
        schedule: ``linear`` or ``sigmoid`` spacing of the betas.
        seed: Seed of every draw; the same seed gives bitwise-identical results.
    """
    require_continuous_latents(model, metric="AIS")
    _check_hmc(hmc, num_chains)
    betas = annealing_schedule(num_steps, schedule)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        path = AnnealingPath(model, x, init)
        z = path.sample_initial(num_chains)  # (C, B, D)
        log_w, acceptance, step_size = anneal(path, z, betas, hmc=hmc)
    return AISResult(log_mean_exp(log_w, dim=0), log_w, acceptance, step_size)


def anneal(
    path: AnnealingPath, z: Tensor, betas: Tensor, *, hmc: HMCSettings
) -> tuple[Tensor, Tensor, Tensor]:
    """Run chains from `z` along `betas` and return their log weights.

    The same loop serves forward AIS (betas from 0 to 1, z ~ pi_0; exp(log w) estimates p(x))
    and reverse AIS (betas from 1 to 0, z ~ p(z|x); exp(log w) estimates 1 / p(x)).

    Args:
        path: The path between pi_0 and p(x, z).
        z: Starting states ``(C, B, D)``.
        betas: Inverse temperatures ``(T + 1,)``, from the start's to the end's.
        hmc: Transition settings.

    Returns:
        Log weights ``(C, B)`` float64, acceptance rate ``(B,)`` and final step size ``(B,)``.
    """
    num_chains, batch = z.shape[:2]
    log_w = torch.zeros(num_chains, batch, dtype=torch.float64, device=z.device)
    step_size = torch.full((batch,), hmc.step_size, dtype=z.dtype, device=z.device)
    accepted = torch.zeros(batch, dtype=torch.float64, device=z.device)
    for beta_before, beta in zip(betas[:-1].tolist(), betas[1:].tolist(), strict=True):
        state = evaluate_chains(path, z, beta)
        log_w += (beta - beta_before) * (state.log_joint - state.log_initial).double()
        z, accept = hmc_transition(path, state, beta, step_size, hmc.leapfrog_steps)  # (C, B)
        rate = accept.double().mean(0)  # (B,)
        accepted += rate
        if hmc.adapt:
            step_size = _adapt(step_size, rate, hmc.target_accept)
    return log_w, accepted / (len(betas) - 1), step_size


@dataclass(frozen=True)
class ChainState:
    """Chains at one inverse temperature: positions and what HMC needs there, ``(C, B, ...)``."""

    z: Tensor
    log_initial: Tensor
    log_joint: Tensor
    log_f: Tensor  # log f_beta(z) = (1 - beta) log pi_0 + beta log p(x, z)
    grad: Tensor  # d log f_beta / dz


def evaluate_chains(path: AnnealingPath, z: Tensor, beta: float) -> ChainState:
    """Return the densities of the path at `z` and the gradient of log f_beta w.r.t. z."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        log_initial, log_joint = path.log_densities(z)  # (C, B) each
        log_f = log_initial + beta * (log_joint - log_initial)
        (grad,) = torch.autograd.grad(log_f.sum(), z)
    return ChainState(z.detach(), log_initial.detach(), log_joint.detach(), log_f.detach(), grad)


def hmc_transition(
    path: AnnealingPath, state: ChainState, beta: float, step_size: Tensor, leapfrog_steps: int
) -> tuple[Tensor, Tensor]:
    """Run one HMC trajectory per chain on f_beta and accept or reject it (Neal 2011, Sec. 5.3).

    Args:
        path: The annealing path.
        state: Current chains, evaluated at `beta`.
        beta: Inverse temperature of the target f_beta.
        step_size: Leapfrog step size per datapoint ``(B,)``.
        leapfrog_steps: Leapfrog steps L.

    Returns:
        The new positions ``(C, B, D)`` and whether each chain accepted ``(C, B)``.
    """
    eps = step_size[:, None]  # (B, 1), broadcast over chains and latent dims
    momentum = torch.randn_like(state.z)  # (C, B, D)
    hamiltonian = -state.log_f + 0.5 * momentum.square().sum(-1)  # (C, B)
    proposal = state
    momentum = momentum + 0.5 * eps * proposal.grad
    for step in range(leapfrog_steps):
        # NOTE: a trajectory may leave the region where the model's networks give finite
        # parameters (a hierarchical prior at z ~ 1e12); argument validation would raise there,
        # while the Metropolis test below rejects such a proposal by design.
        with argument_validation(False):
            proposal = evaluate_chains(path, proposal.z + eps * momentum, beta)
        scale = 0.5 if step == leapfrog_steps - 1 else 1.0  # the last momentum step is a half
        momentum = momentum + scale * eps * proposal.grad
    proposed_hamiltonian = -proposal.log_f + 0.5 * momentum.square().sum(-1)
    log_accept = (hamiltonian - proposed_hamiltonian).double()
    # NOTE: a NaN energy (a trajectory that diverged) compares False, i.e. is rejected.
    accept = torch.log(torch.rand_like(log_accept)) < log_accept  # (C, B)
    z = torch.where(accept[..., None], proposal.z, state.z)
    return z, accept


def _adapt(step_size: Tensor, rate: Tensor, target: float) -> Tensor:
    factor = torch.where(rate > target, ADAPTATION_FACTOR, 2 - ADAPTATION_FACTOR)  # (B,)
    return (step_size * factor.to(step_size.dtype)).clamp(*STEP_SIZE_RANGE)


def _check_hmc(hmc: HMCSettings, num_chains: int) -> None:
    for name, value in (("num_chains", num_chains), ("leapfrog_steps", hmc.leapfrog_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Expected `{name}` to be a positive int, but got {value!r}.")
    if not STEP_SIZE_RANGE[0] <= hmc.step_size <= STEP_SIZE_RANGE[1]:
        raise ValueError(
            f"Expected `step_size` to be in {list(STEP_SIZE_RANGE)}, but got {hmc.step_size}."
        )
    if not 0 < hmc.target_accept < 1:
        raise ValueError(f"Expected `target_accept` to be in (0, 1), but got {hmc.target_accept}.")


LOOSER_Z = 2.0  # paired standard errors by which AIS must trail IS before it is flagged


def looser_than_importance_warning(mean: float, stderr: float | None, is_k: int) -> str | None:
    """Return why AIS is distrusted when IS on the same examples gives the tighter bound, or None.

    AIS (log-mean-exp over chains) and IS (log-mean-exp over K samples) are both stochastic lower
    bounds on log p(x), so on the same examples the larger log p̂ is the tighter one. An AIS NLL
    above the IS NLL by more than `LOOSER_Z` paired standard errors means the annealing was too
    short for this model (too few temperatures or chains, or a poor initial distribution): the
    AIS figure then over-states the NLL by at least that difference.

    Args:
        mean: Mean over examples of AIS NLL - IS NLL, same examples (nats).
        stderr: Its paired standard error; None for one example, which gives no verdict.
        is_k: The importance-sample count of the IS side, named in the message.
    """
    if stderr is None or mean <= LOOSER_Z * stderr:
        return None
    return (
        f"AIS is {mean:.2f} ± {stderr:.2f} nats looser than IS with K = {is_k} on the same "
        "examples: too few temperatures or chains for this model"
    )
