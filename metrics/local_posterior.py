"""Per-datapoint optimal posteriors q*(z) for the inference-gap metrics, optimised in one batch.

Cremer, Li & Duvenaud (ICML 2018, Sec. 3) measure how far an amortised encoder q(z|x) is from
the best member q* of its family for each x. Each q* maximises the ELBO of one datapoint with
Adam (lr 1e-3) from N(0, I), drawing k samples per step; every 100 steps the mean loss of those
steps is compared with the best so far, and a point stops after more than 10 checks in a row
without improvement.

Here B such problems run at once: the q* parameters are ``(B, ...)`` tensors and Adam is applied
elementwise, so one optimizer over the stack is exactly B independent optimizers. The stopping
rule is applied per datapoint: a stopped point is frozen and dropped from later forward passes.

Two families:
- ``ffg``: a fully factorised Gaussian, mean and log-variance per dimension (the paper's q*_FFG).
- ``flow``: that Gaussian followed by affine coupling layers (Dinh et al. 2017, RealNVP, Eq. 7-9)
  whose one-hidden-layer conditioners have their own weights per datapoint. NOTE: this is not
  the paper's q*_AF (an auxiliary-variable flow with 50-200-200-100 networks q(z0|v0) and
  r(v_T|z_T)); it is a smaller flow that can represent any Gaussian with a full covariance in two
  layers, and its density is exact, so no auxiliary bound enters L[q*].
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from registry.base import LatentVariableModel, LikelihoodUndefined
from registry.iaf_vae import IAFPosterior

Family = Literal["ffg", "flow"]
MOMENT_SAMPLES = 1000  # draws of q(z|x) for the moments of an encoder without closed forms
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class LocalOptimization:
    """How each q* is optimised (defaults: Cremer et al. 2018)."""

    family: Family = "ffg"  # q* family: fully factorised Gaussian, or Gaussian + coupling flow
    # Where each q* starts: N(0, I) as in the paper, or the amortised q(z|x), which makes
    # L[q*] >= L[q] hold from step 0 and converges far sooner under a reduced step budget.
    init: Literal["standard_normal", "encoder"] = "standard_normal"
    samples_per_step: int = 100  # k posterior samples per Adam step (lxuechen code: 100)
    lr: float = 1e-3  # Adam learning rate (betas 0.9, 0.999, eps 1e-8)
    check_every: int = 100  # steps averaged per stopping check
    patience: int = 10  # a point stops after more than `patience` checks without improvement
    max_steps: int = 50_000  # safety cap (the paper has none); points stopped by it are flagged
    flow_layers: int = 2  # coupling layers of the ``flow`` family
    flow_hidden: int = 200  # hidden units of each coupling conditioner (paper: 200)

    def __post_init__(self) -> None:
        for name in ("samples_per_step", "check_every", "max_steps", "flow_layers", "flow_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expected `{name}` to be >= 1, but got {getattr(self, name)}.")
        if self.patience < 0 or self.lr <= 0:
            raise ValueError(
                f"Expected `patience` >= 0 and `lr` > 0, but got {self.patience} and {self.lr}."
            )
        if self.init not in ("standard_normal", "encoder"):
            raise ValueError(
                f"Expected `init` to be 'standard_normal' or 'encoder', but got {self.init!r}."
            )
        if self.family not in ("ffg", "flow"):
            raise ValueError(f"Expected `family` to be 'ffg' or 'flow', but got {self.family!r}.")


def families_containing(q_z: Distribution) -> tuple[Family, ...]:
    """Return the q* families whose members include q(z|x), read from its distribution.

    Cremer et al. (2018) take q* from the encoder's family, so that L[q*] >= L[q] at the
    optimum and L[q*] - L[q] is an amortization gap:

    - a factorised Gaussian (``Independent`` over ``Normal``) is in both families;
    - a full-covariance Gaussian is in ``flow`` (two coupling layers represent any Gaussian);
    - an IAF posterior gets ``flow``. NOTE: vaebench's local flow is a coupling flow with free
      conditioners per datapoint, not an IAF: the closest local family, not a strict superset;
    - anything else gets none: e.g. a hierarchy's q(z_l | z_<l, x) chains dependent groups
      nonlinearly. Measured on the fashion_mnist ladder-vae: a factorised q* matched to q's
      moments starts 5,000 nats below L[q] and ends 900 below it after 3,000 steps, which would
      read as a -900 nat gap.
    """
    if isinstance(q_z, Independent) and type(q_z.base_dist) is Normal:
        return ("ffg", "flow")
    if isinstance(q_z, MultivariateNormal | IAFPosterior):
        return ("flow",)
    return ()


def require_local_posterior_family(model: LatentVariableModel, x: Tensor, family: Family) -> None:
    """Raise `LikelihoodUndefined` when q* of `family` cannot contain the model's q(z|x).

    Args:
        model: Any registered model.
        x: Observations ``(B, *data_shape)``; the first one's q(z|x) is inspected.
        family: The q* family of the inference-gap protocol (``ffg`` or ``flow``).
    """
    accepted = families_containing(model.select(slice(0, 1)).encode(x[:1]))
    if family not in accepted:
        shown = ", ".join(accepted) if accepted else "none of them"
        raise LikelihoodUndefined(
            f"the inference gaps take q* from the family of the encoder (Cremer et al. 2018), "
            f"but {model.display_name}'s q(z|x) is not in the {family!r} family of local "
            f"posteriors (families that contain it: {shown}), so L[q*] - L[q] would not be an "
            f"amortization gap."
        )


class FactorizedGaussian:
    """q*(z) = N(mu, diag(exp(log_var))) per point; parameters ``[mu, log_var]``, each (B, D)."""

    def __init__(self, latent_dim: int) -> None:
        self.latent_dim = latent_dim

    def initial_parameters(
        self, num_points: int, like: Tensor, start: tuple[Tensor, Tensor] | None = None
    ) -> list[Tensor]:
        """Return N(0, I) for every point (Cremer et al. 2018), or `start` = (mean, variance)."""
        if start is not None:
            mean, variance = start  # (B, D) each
            return [mean.detach().to(like.dtype).clone(), variance.detach().log().to(like.dtype)]
        zeros = torch.zeros(num_points, self.latent_dim, dtype=like.dtype, device=like.device)
        return [zeros, zeros.clone()]

    def sample(self, params: list[Tensor], eps: Tensor) -> tuple[Tensor, Tensor]:
        """Map standard-normal noise ``eps (K, B, D)`` to ``(z (K, B, D), log q*(z) (K, B))``."""
        loc, log_var = params[0], params[1]
        z = loc + (0.5 * log_var).exp() * eps  # (K, B, D)
        # NOTE: log N(z; loc, sigma) written through eps = (z - loc) / sigma: same value and the
        # same total gradient as `Normal(loc, sigma).log_prob(z)`, without re-dividing.
        log_q = -0.5 * (eps**2 + log_var + LOG_2PI)  # (K, B, D)
        return z, log_q.sum(-1)

    def log_prob(self, params: list[Tensor], z: Tensor) -> Tensor:
        """Return log q*(z) ``(K, B)`` at given points ``z (K, B, D)``."""
        loc, log_var = params[0], params[1]
        eps = (z - loc) * (-0.5 * log_var).exp()  # (K, B, D)
        return -0.5 * (eps**2 + log_var + LOG_2PI).sum(-1)


class CouplingFlow:
    """A factorised Gaussian followed by per-datapoint affine coupling layers.

    Layer l keeps the dimensions in its mask and maps the others to ``z * exp(s) + t``, where
    ``(s, t) = W2 elu(W1 (mask * z) + b1) + b2`` (Dinh et al. 2017, Eq. 7-9); log |det| = sum of s.
    Per layer and point: ``W1 (H, D)``, ``b1 (H,)``, ``W2 (2D, H)``, ``b2 (2D,)``. ``W2`` and ``b2``
    start at 0, so every q* starts at N(0, I) like the factorised family.
    """

    def __init__(self, latent_dim: int, *, num_layers: int, hidden: int) -> None:
        self.base = FactorizedGaussian(latent_dim)
        self.latent_dim, self.num_layers, self.hidden = latent_dim, num_layers, hidden
        half = torch.arange(latent_dim) < latent_dim // 2
        # Alternate which half conditions the other, so two layers transform every dimension.
        self.masks = [half if layer % 2 == 0 else ~half for layer in range(num_layers)]

    def initial_parameters(
        self, num_points: int, like: Tensor, start: tuple[Tensor, Tensor] | None = None
    ) -> list[Tensor]:
        """Return base Gaussian parameters (see `FactorizedGaussian`), then ``[W1, b1, W2, b2]``
        per layer; the output layers start at zero, so the flow starts as the identity."""
        params = self.base.initial_parameters(num_points, like, start)
        d, h = self.latent_dim, self.hidden
        options = {"dtype": like.dtype, "device": like.device}
        for _ in range(self.num_layers):
            w1 = torch.randn(num_points, h, d, **options) / math.sqrt(d)
            params += [
                w1,
                torch.zeros(num_points, h, **options),
                torch.zeros(num_points, 2 * d, h, **options),
                torch.zeros(num_points, 2 * d, **options),
            ]
        return params

    def sample(self, params: list[Tensor], eps: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``eps (K, B, D)`` to ``(z (K, B, D), log q*(z) (K, B))`` by change of variables."""
        z, log_q = self.base.sample(params[:2], eps)
        for layer, mask in enumerate(self.masks):
            w1, b1, w2, b2 = params[2 + 4 * layer : 6 + 4 * layer]
            keep = mask.to(z.device, z.dtype)  # (D,)
            h = torch.nn.functional.elu(torch.einsum("kbd,bhd->kbh", z * keep, w1) + b1)
            log_scale, shift = (torch.einsum("kbh,bch->kbc", h, w2) + b2).chunk(2, dim=-1)
            log_scale = log_scale * (1 - keep)  # (K, B, D); kept dims have scale 1
            z = z * log_scale.exp() + shift * (1 - keep)
            log_q = log_q - log_scale.sum(-1)
        return z, log_q

    def log_prob(self, params: list[Tensor], z: Tensor) -> Tensor:
        """Return log q*(z) ``(K, B)`` at given points ``z (K, B, D)``, inverting the layers.

        A coupling layer leaves its kept dims unchanged, so (s, t) are recomputed from the
        output and the other dims are mapped back as ``(z - t) * exp(-s)`` (Dinh et al. 2017).
        """
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)  # (K, B)
        for layer in reversed(range(self.num_layers)):
            w1, b1, w2, b2 = params[2 + 4 * layer : 6 + 4 * layer]
            keep = self.masks[layer].to(z.device, z.dtype)  # (D,)
            h = torch.nn.functional.elu(torch.einsum("kbd,bhd->kbh", z * keep, w1) + b1)
            log_scale, shift = (torch.einsum("kbh,bch->kbc", h, w2) + b2).chunk(2, dim=-1)
            log_scale = log_scale * (1 - keep)  # (K, B, D)
            z = (z - shift * (1 - keep)) * (-log_scale).exp()
            log_det = log_det + log_scale.sum(-1)
        return self.base.log_prob(params[:2], z) - log_det


def create_family(
    optimization: LocalOptimization, latent_dim: int
) -> FactorizedGaussian | CouplingFlow:
    """Return the q* family named by ``optimization.family``."""
    if optimization.family == "flow":
        return CouplingFlow(
            latent_dim, num_layers=optimization.flow_layers, hidden=optimization.flow_hidden
        )
    return FactorizedGaussian(latent_dim)


class PlateauStopping:
    """Per-datapoint stopping rule of Cremer et al. (2018).

    At every check a point's mean loss over the last window is compared with its best so far;
    a point stops once it has gone more than `patience` consecutive checks without a strict
    improvement (so with patience 10 the earliest stop is at the 12th check).
    """

    def __init__(self, num_points: int, *, patience: int) -> None:
        self.patience = patience
        self.best = torch.full((num_points,), math.inf, dtype=torch.float64)
        self.bad_checks = torch.zeros(num_points, dtype=torch.long)

    def check(self, mean_loss: Tensor, index: Tensor) -> Tensor:
        """Record window losses ``(A,)`` of points `index`; return which of them stop ``(A,)``."""
        mean_loss = mean_loss.detach().double().cpu()
        index = index.cpu()
        improved = mean_loss < self.best[index]
        self.best[index] = torch.where(improved, mean_loss, self.best[index])
        self.bad_checks[index] = torch.where(improved, 0, self.bad_checks[index] + 1)
        return self.bad_checks[index] > self.patience


class MaskedAdam:
    """Adam (Kingma & Ba 2015, Algorithm 1) over ``(B, ...)`` tensors, stepping only some rows.

    Matches `torch.optim.Adam` with default betas and eps. Rows are only ever dropped, never
    re-added, so all active rows share the step count used in the bias corrections.
    """

    def __init__(
        self,
        params: list[Tensor],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.first = [torch.zeros_like(p) for p in params]
        self.second = [torch.zeros_like(p) for p in params]

    def step(self, grads: list[Tensor], index: Tensor, step: int) -> None:
        """Apply step number `step` (from 1) to rows `index`, given their gradients."""
        beta1, beta2 = self.betas
        correction1, correction2 = 1 - beta1**step, 1 - beta2**step
        for p, m, v, g in zip(self.params, self.first, self.second, grads, strict=True):
            m[index] = beta1 * m[index] + (1 - beta1) * g
            v[index] = beta2 * v[index] + (1 - beta2) * g * g
            denom = (v[index] / correction2).sqrt() + self.eps
            p[index] = p[index] - self.lr / correction1 * m[index] / denom


LossFunction = Callable[[list[Tensor], Tensor], Tensor]


def minimize_per_datapoint(
    loss_fn: LossFunction, params: list[Tensor], *, optimization: LocalOptimization
) -> tuple[Tensor, Tensor]:
    """Minimise B independent losses jointly, stopping each point by `PlateauStopping`.

    Args:
        loss_fn: Maps the active rows of each parameter and their indices ``(A,)`` to the
            per-point losses ``(A,)``; point i's loss must depend only on row i.
        params: Tensors with a leading point axis ``(B, ...)``, updated in place.
        optimization: Learning rate, window, patience and step cap.

    Returns:
        Steps taken by each point ``(B,)``, and whether it stopped by the rule rather than
        the cap ``(B,)``.
    """
    num_points = params[0].shape[0]
    adam = MaskedAdam(params, lr=optimization.lr)
    stopping = PlateauStopping(num_points, patience=optimization.patience)
    active = torch.ones(num_points, dtype=torch.bool, device=params[0].device)
    steps = torch.zeros(num_points, dtype=torch.long, device=params[0].device)
    window = torch.zeros(num_points, dtype=torch.float64, device=params[0].device)
    for step in range(1, optimization.max_steps + 1):
        index = active.nonzero().squeeze(1)  # (A,)
        leaves = [p[index].requires_grad_() for p in params]
        with torch.enable_grad():
            losses = loss_fn(leaves, index)  # (A,)
            # Row i of the summed loss depends only on row i, so this is every point's own gradient.
            grads = torch.autograd.grad(losses.sum(), leaves)
        adam.step(list(grads), index, step)
        window[index] += losses.detach().double()
        steps[index] = step
        if step % optimization.check_every == 0:
            stopped = stopping.check(window[index] / optimization.check_every, index)
            active[index] = ~stopped.to(active.device)
            window.zero_()
            if not active.any():
                break
    return steps.cpu(), ~active.cpu()


@dataclass
class LocalPosterior:
    """Optimised q* for a batch of B datapoints.

    Attributes:
        family: The family object that maps noise to samples.
        params: Its parameters, each with a leading point axis ``(B, ...)``.
        steps: Adam steps each point took ``(B,)``.
        converged: Whether each point stopped by the plateau rule rather than the cap ``(B,)``.
    """

    family: FactorizedGaussian | CouplingFlow
    params: list[Tensor]
    steps: Tensor
    converged: Tensor

    def sample(self, num_samples: int) -> tuple[Tensor, Tensor]:
        """Return ``z (K, B, D)`` from q* and ``log q*(z) (K, B)``."""
        loc = self.params[0]
        eps = torch.randn(num_samples, *loc.shape, dtype=loc.dtype, device=loc.device)
        return self.family.sample(self.params, eps)

    def log_prob(self, z: Tensor) -> Tensor:
        """Return log q*(z) ``(K, B)`` at given points ``z (K, B, D)``."""
        return self.family.log_prob(self.params, z)


def _negative_elbo(
    model: LatentVariableModel,
    x: Tensor,
    family: FactorizedGaussian | CouplingFlow,
    samples_per_step: int,
) -> LossFunction:
    """Return the k-sample negative ELBO of each active point under its own q*."""
    num_points, latent_dim = x.shape[0], family.latent_dim

    def loss(params: list[Tensor], index: Tensor) -> Tensor:
        # NOTE: noise is drawn for all B points and then indexed, so the draws a point sees do not
        # depend on which other points are still active: the B problems stay independent.
        eps = torch.randn(samples_per_step, num_points, latent_dim, dtype=x.dtype, device=x.device)
        z, log_q = family.sample(params, eps[:, index])  # (k, A, D), (k, A)
        active = model.select(index)  # the model of the active rows (labels, if bound)
        log_w = active.log_prior(z) + active.log_likelihood(x[index], z) - log_q  # (k, A)
        return -log_w.mean(0)

    return loss


@torch.no_grad()
def encoder_moments(
    model: LatentVariableModel, x: Tensor, *, num_samples: int = MOMENT_SAMPLES
) -> tuple[Tensor, Tensor]:
    """Return the mean and variance of q(z|x) per dimension, each ``(B, D)``: q* starts there.

    Analytic for a Gaussian encoder. An encoder without closed-form moments (an IAF flow, a
    hierarchical top-down q) gets them from `num_samples` draws: q* then starts at the
    factorised Gaussian that matches q(z|x)'s first two moments.
    """
    q_z = model.encode(x)
    try:
        return q_z.mean, q_z.variance
    except NotImplementedError:
        z, _ = model.sample_posterior(x, num_samples)  # (S, B, D)
        return z.mean(0), z.var(0)


def optimal_local_posterior(
    model: LatentVariableModel, x: Tensor, *, optimization: LocalOptimization
) -> LocalPosterior:
    """Fit q* = argmax_q ELBO(x_i; q) of the chosen family separately for every datapoint.

    Cremer, Li & Duvenaud (2018), Sec. 3 (local optimisation of q*). Model parameters are not
    updated. Run under a seeded `torch.random.fork_rng` for reproducible noise.

    Args:
        model: Any registered model; only ``log_prior`` and ``log_likelihood`` are used.
        x: Observations ``(B, *data_shape)``, optimised together.
        optimization: Family and optimiser settings.

    Returns:
        The fitted `LocalPosterior` with steps used and convergence flags per point.
    """
    family = create_family(optimization, model.latent_dim)
    start = encoder_moments(model, x) if optimization.init == "encoder" else None
    params = family.initial_parameters(x.shape[0], like=x, start=start)
    loss_fn = _negative_elbo(model, x, family, optimization.samples_per_step)
    steps, converged = minimize_per_datapoint(loss_fn, params, optimization=optimization)
    return LocalPosterior(family, params, steps, converged)
