"""The model interface every metric relies on: distributions in, distributions out.

A model is a latent-variable model p(z) p(x|z) with an inference network q(z|x):

- ``prior() -> Distribution`` over z, event shape ``(D,)``;
- ``encode(x) -> Distribution``, q(z|x) with batch shape ``(B,)`` and event shape ``(D,)``;
- ``decode(z) -> Distribution``, p(x|z); z may carry leading sample dims ``(K, B, D)``;
- ``loss(x, step, *, kl_weight=1.0) -> LossOutput``, the training objective, which may be
  model-specific; ``kl_weight`` is the trainer's KL warm-up factor in [0, 1].

Metrics and losses only use these, or the densities and the sampler built from them
(``log_prior``, ``log_likelihood``, ``draw_latents``), through the estimators of
`registry.estimators` (importance weights, ELBO terms), which exist once for every model.
Hierarchical models (several latent groups) flatten their groups into one vector z and override
those densities and the sampler, never an estimator.

Label-conditional models (``conditions_on_labels``, e.g. the CVAE) model p(x|y). The harness
binds a batch of labels with ``conditioned_on(y)``, which returns a model *bound* to those rows:
its prior has batch shape ``(B,)``, one p(z|y_i) per example. Metrics that process data in
blocks take the block's model with ``select(rows)`` and draw latents with ``sample_prior``; an
unbound model, every other model, returns itself from ``select``, so the code path is the same.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence


@dataclass
class LossOutput:
    """A training objective and the terms worth logging.

    Attributes:
        loss: Scalar to minimise over the model's main parameters.
        terms: Scalar diagnostics (e.g. ``elbo``, ``kl``, ``reconstruction``) as detached
            0-dim tensors: the trainer holds them on the device and reads them only at its
            logging steps, so a training step never waits for the host.
        auxiliary_loss: Scalar minimised over ``model.auxiliary_parameters()`` by a separate
            optimizer (e.g. FactorVAE's discriminator); None for most models.
    """

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    auxiliary_loss: Tensor | None = None


@dataclass
class LatentDraws:
    """Draws z ~ q(z|x) with their log q, and the densities the sampler computed on the way.

    A field left None is computed by the estimator from the model's densities; a sampler that
    gets it for free (a hierarchy's fused top-down pass) fills it in.

    Attributes:
        z: Draws ``(K, B, D)``, reparameterised where q allows it.
        log_q: log q(z|x) ``(K, B)``.
        log_prior: log p(z) ``(K, B)``, or None.
        log_likelihood: log p(x|z) ``(K, B)``, or None.
        kl: KL(q(z|x) || p(z)) per example ``(B,)`` in closed form (summed per group for a
            hierarchy, at the drawn upper groups), or None where no closed form is registered;
            or a function of no arguments that returns it, so that the estimators that never
            read it (the importance weights of a training step) do not compute it.
    """

    z: Tensor
    log_q: Tensor
    log_prior: Tensor | None = None
    log_likelihood: Tensor | None = None
    kl: Tensor | Callable[[], Tensor] | None = None


# The class attributes below that say what a model is; a view of a model (`registry.cvae`'s
# model of p(x|y)) carries its model's.
CAPABILITY_FLAGS = (
    "trains_on_likelihood_bound",
    "continuous_latents",
    "point_mass_posterior",
    "has_prior",
)


class LatentVariableModel(nn.Module):
    """Base class for registered models.

    Attributes:
        data_shape: Shape of one observation, e.g. ``(1, 8, 8)`` or ``(16,)``.
        latent_dim: Total number of latent dimensions D (all groups, flattened).
        trains_on_likelihood_bound: False when ``loss`` is not a bound on log p(x) (e.g. WAE);
            likelihood metrics are still defined from the distributions, and the report flags it.
        continuous_latents: False when z is discrete; metrics that move z along gradients
            (AIS, local q* optimisation) then raise `LikelihoodUndefined`.
        point_mass_posterior: True when q(z|x) puts all its mass on one code (VQ-VAE): the
            active-units statistic, which thresholds how much E_q[z] varies against the unit
            scale of a N(0, I) prior, then raises `MetricUndefined`.
        has_prior: False when the model defines no p(z) (the concrete autoencoder): its
            ``prior()`` raises `LikelihoodUndefined`, so every metric that needs p(z) (ELBO, NLL,
            AIS, BDMC, gaps, collapse diagnostics, samples) is n/a with that reason.
        conditions_on_labels: True for models of p(x|y) (the CVAE): the trainer and the
            evaluators then bind each batch's labels with `conditioned_on`.
    """

    trains_on_likelihood_bound: bool = True
    continuous_latents: bool = True  # False for discrete codes (VQ-VAE): no gradients in z
    point_mass_posterior: bool = False  # True for quantised codes: no active units
    has_prior: bool = True  # False: no p(z), so `prior()` raises `LikelihoodUndefined`
    # True for models of p(x|y) that the harness must train and score on (x, label) pairs.
    conditions_on_labels: bool = False
    # Adam settings for `auxiliary_parameters()` (e.g. FactorVAE: lr 1e-4, betas (0.5, 0.9)).
    auxiliary_optimizer: dict[str, object] = {}

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.latent_dim = latent_dim

    def prior(self) -> Distribution:
        """Return p(z) with event shape ``(D,)``."""
        raise NotImplementedError

    def encode(self, x: Tensor) -> Distribution:
        """Return q(z|x) for a batch ``x`` of shape ``(B, *data_shape)``."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Distribution:
        """Return p(x|z) for ``z`` of shape ``(..., B, D)``; event shape is ``data_shape``."""
        raise NotImplementedError

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        """Return the training objective on a batch at optimisation step ``step``."""
        raise NotImplementedError

    def initialize_from_data(self, x_train: Tensor) -> None:
        """Set data-dependent initial values before training (default: none).

        Called once on a fresh model with the raw training split ``(N, *data_shape)``; e.g. the
        IWAE protocol sets the decoder's output bias to the logit of the training mean.
        """

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        """Return parameters trained on `LossOutput.auxiliary_loss` by their own optimizer."""
        return []

    def log_prior(self, z: Tensor) -> Tensor:
        """Return log p(z), shape ``z.shape[:-1]``."""
        return self.prior().log_prob(z)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """Return log p(x|z), shape ``(..., B)``, for x ``(B, *data_shape)``, z ``(..., B, D)``."""
        return self.decode(z).log_prob(x)

    def draw_latents(self, x: Tensor, num_samples: int) -> LatentDraws:
        """Draw reparameterised z ~ q(z|x), shape ``(K, B, D)``, with log q and the analytic KL.

        The KL is `closed_form_kl` of q(z|x) and p(z), or None without a registered rule.
        """
        q_z = self.encode(x)
        z = q_z.rsample((num_samples,))  # (K, B, D)
        return LatentDraws(z, q_z.log_prob(z), kl=closed_form_kl(q_z, self.prior()))

    def sample_posterior(self, x: Tensor, num_samples: int) -> tuple[Tensor, Tensor]:
        """Draw z ~ q(z|x) and return ``(z (K, B, D), log q(z|x) (K, B))`` (see `draw_latents`)."""
        draws = self.draw_latents(x, num_samples)
        return draws.z, draws.log_q

    def sample(self, num_samples: int) -> Tensor:
        """Return the means of p(x|z) for z ~ p(z), shape ``(N, *data_shape)``."""
        return self.decode(self.sample_prior(num_samples)).mean

    def sample_prior(self, num_rows: int, sample_shape: tuple[int, ...] = ()) -> Tensor:
        """Draw z ~ p(z) for `num_rows` examples, shape ``(*sample_shape, num_rows, D)``.

        A model bound to a batch (see `conditioned_on`) has one prior per row and requires
        `num_rows` to be its batch size.
        """
        return self.prior().sample((*sample_shape, num_rows))

    def select(self, rows: slice | Tensor) -> "LatentVariableModel":
        """Return the model of rows `rows` of the batch this model is bound to.

        Metrics call it on every block of examples they process. Models bound to no batch
        (all but a `conditioned_on` view) are the same for every row and return themselves.
        """
        return self

    @property
    def display_name(self) -> str:
        """The model's name in n/a reasons and messages: its class name."""
        return type(self).__name__

    def conditioned_on(self, y: Tensor) -> "LatentVariableModel":
        """Return the model of p(x|y) bound to labels ``y (B,)`` (label-conditional models)."""
        raise TypeError(
            f"`{type(self).__name__}` does not condition on labels "
            f"(`conditions_on_labels` is False); use it without `conditioned_on`."
        )

    def check_input(self, x: Tensor) -> None:
        """Raise a clear error when ``x`` is not a batch of observations of ``data_shape``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"Expected `x` to be a torch.Tensor, but got {type(x).__name__}.")
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"Expected `x` to have shape (B, {', '.join(map(str, self.data_shape))}), "
                f"but got {tuple(x.shape)}. Build the model with the dataset's `data_shape`."
            )


def closed_form_kl(q_z: Distribution, p_z: Distribution) -> Tensor | None:
    """Return KL(q || p) per example where `torch.distributions` registers a rule, else None."""
    try:
        return kl_divergence(q_z, p_z)
    except NotImplementedError:
        return None


def kl_to_prior(q_z: Distribution, p_z: Distribution, z: Tensor | None = None) -> Tensor:
    """Return KL(q(z|x) || p(z)) per example, analytic where registered, else one-sample MC.

    Args:
        q_z: Posterior with batch shape ``(B,)``.
        p_z: Prior.
        z: Samples ``(K, B, D)`` from q_z for the Monte Carlo fallback.
    """
    try:
        return kl_divergence(q_z, p_z)
    except NotImplementedError:
        if z is None:
            z = q_z.rsample((1,))  # (1, B, D)
        return (q_z.log_prob(z) - p_z.log_prob(z)).mean(0)


def standard_normal_prior(latent_dim: int, like: Tensor) -> Distribution:
    """Return N(0, I) over ``latent_dim`` dims on the device and dtype of ``like``."""
    loc = torch.zeros(latent_dim, device=like.device, dtype=like.dtype)
    return torch.distributions.Independent(torch.distributions.Normal(loc, torch.ones_like(loc)), 1)


class MetricUndefined(Exception):  # noqa: N818  the name says what is undefined, not "Error"
    """A metric is not defined for this model; the runner records it as n/a with the reason.

    Args:
        reason: One sentence naming the model and the cause, shown as "n/a (reason)" in reports.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LikelihoodUndefined(MetricUndefined):
    """A likelihood quantity (p(z), log p(x), a bound, a gradient in z) is not defined."""


def require_continuous_latents(model: LatentVariableModel, *, metric: str) -> None:
    """Raise `LikelihoodUndefined` when `metric` needs gradients in z but z is discrete.

    A model declares discrete latents with the class attribute ``continuous_latents = False``
    (VQ-VAE); AIS (HMC moves) and the local q* optimisation of the inference-gap protocol call
    this before they start.

    Args:
        model: Any registered model.
        metric: Name of the calling metric, used in the reason.
    """
    if not getattr(model, "continuous_latents", True):
        raise LikelihoodUndefined(
            f"{metric} moves z along gradients of log p(x, z), but {model.display_name} has "
            f"discrete latent codes, so those gradients are zero almost everywhere."
        )
