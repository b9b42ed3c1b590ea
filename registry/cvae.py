"""The conditional VAE (Sohn, Lee & Yan, NeurIPS 2015), with class labels as the condition.

With a condition c (here the one-hot label y of x) every distribution is conditioned on it:
a prior network p(z|c), a recognition network q(z|x, c) and a generation network p(x|z, c),
trained on the conditional ELBO (Eq. 4):

    log p(x|c) >= E_{q(z|x,c)} log p(x|z, c) - KL(q(z|x, c) || p(z|c)).

(The paper writes the condition as x and the output as y.) The condition is concatenated to the
inputs of the recognition and generation networks; the prior network is linear in the one-hot
condition, i.e. one learned Gaussian per class.

Interface. The model interface passes only x, so the condition is bound explicitly:
``model.conditioned_on(y)`` returns a `ConditionedVAE`, a view that *is* a `LatentVariableModel`
of p(x|y) for a batch of labels ``y (B,)``, so every metric applies to it unchanged (prior batch
shape ``(B,)``; metrics take the view of each block of rows with ``select``).
``conditions_on_labels`` is True, so the trainer draws (x, y) batches and trains the view, and
the evaluators score the view bound to the labels of the examples they use: the leaderboard's
ELBO and NLL of a CVAE are of log p(x|y), and its samples are drawn for the labels of the
reference images. Used directly, without labels, the model falls back to the all-zero condition
(no class), a valid but untrained-for input.

Presets: ``cvae`` (small) and ``cvae_paper`` (the MNIST MLP sizes vaebench's references record
for the literature's MLP VAEs, 200-200 hidden units and 50 latents; the reference notes hold no
architecture of Sohn et al.'s label-conditioned models).

Equation and section numbers are cited from memory; vaebench's references do not hold the
paper's text [unverified].
"""

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from registry._registry import register_model, register_model_preset
from registry.base import (
    CAPABILITY_FLAGS,
    LatentVariableModel,
    LossOutput,
    kl_to_prior,
    standard_normal_prior,
)
from registry.hierarchical import diagonal_normal
from registry.likelihoods import create_likelihood
from registry.trunks import Architecture, build_decoder, build_encoder, gaussian_head
from registry.vae import LikelihoodName

# The shared 200-200 ReLU trunk, and the literature's MNIST MLP (200-200, tanh).
SMALL_ARCHITECTURE = Architecture()
PAPER_ARCHITECTURE = Architecture(hidden=(200, 200), activation="tanh")


class ConditionalVAE(LatentVariableModel):
    """A conditional VAE over one-hot class conditions; see the module docstring.

    Args:
        data_shape: Shape of one observation.
        latent_dim: D.
        architecture: MLP trunks (the condition is concatenated to their inputs).
        likelihood: Observation model.
        num_classes: Number of label classes C.
        conditional_prior: Learn p(z|c) (Sohn et al.'s prior network); else p(z) = N(0, I).
    """

    conditions_on_labels = True

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int,
        architecture: Architecture,
        likelihood: LikelihoodName,
        num_classes: int,
        conditional_prior: bool,
    ) -> None:
        super().__init__(data_shape, latent_dim)
        self.num_classes = num_classes
        self.likelihood = create_likelihood(likelihood, self.data_shape)
        inputs = (math.prod(self.data_shape) + num_classes,)
        self.encoder = build_encoder(inputs, architecture, 2 * latent_dim)
        self.decoder = build_decoder(
            self.data_shape, architecture, latent_dim + num_classes, self.likelihood.num_params
        )
        self.prior_net = nn.Linear(num_classes, 2 * latent_dim) if conditional_prior else None

    def one_hot(self, y: Tensor) -> Tensor:
        """Return the conditions ``(B, C)`` of integer labels ``y (B,)``, checking them.

        The range check reads the labels on the host, so it runs where torch.distributions
        validates arguments: always in evaluation, on the first training step only.
        """
        if not isinstance(y, Tensor) or y.dim() != 1 or y.is_floating_point():
            raise TypeError(f"Expected `y` to be a 1-d integer label tensor, but got {y!r}.")
        check = torch.distributions.Distribution._validate_args
        if check and len(y) and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(
                f"Expected labels `y` in [0, {self.num_classes}), but got values in "
                f"[{y.min().item()}, {y.max().item()}]."
            )
        return nn.functional.one_hot(y, self.num_classes).to(next(self.parameters()).dtype)

    def no_condition(self) -> Tensor:
        """Return the all-zero condition ``(C,)`` of the unconditional fallback."""
        return torch.zeros(self.num_classes, device=next(self.parameters()).device)

    def conditional_prior(self, c: Tensor) -> Distribution:
        """Return p(z|c) for conditions ``c (..., C)``; batch shape ``c.shape[:-1]``."""
        if self.prior_net is None:
            return standard_normal_prior(self.latent_dim, like=c).expand(c.shape[:-1])
        return diagonal_normal(*gaussian_head(self.prior_net(c)))

    def conditional_encode(self, x: Tensor, c: Tensor) -> Distribution:
        """Return q(z|x, c) for ``x (B, *data_shape)`` and ``c (B, C)``."""
        self.check_input(x)
        inputs = torch.cat([x.flatten(start_dim=1), c], dim=-1)  # (B, prod(data_shape) + C)
        return diagonal_normal(*gaussian_head(self.encoder(inputs)))

    def conditional_decode(self, z: Tensor, c: Tensor) -> Distribution:
        """Return p(x|z, c) for ``z (..., B, D)``; ``c`` broadcasts against z's leading dims."""
        c = c.expand(*z.shape[:-1], self.num_classes)  # (..., B, C)
        return self.likelihood(self.decoder(torch.cat([z, c], dim=-1)))

    def conditional_loss(self, x: Tensor, c: Tensor, kl_weight: float = 1.0) -> LossOutput:
        """Return the negative conditional ELBO (Sohn et al. 2015, Eq. 4) on one sample."""
        q_z = self.conditional_encode(x, c)
        z = q_z.rsample((1,))  # (1, B, D)
        reconstruction = self.conditional_decode(z, c).log_prob(x).mean(0)
        kl = kl_to_prior(q_z, self.conditional_prior(c), z)
        rec, kl_mean = reconstruction.detach().mean(), kl.detach().mean()
        terms = {"elbo": rec - kl_mean, "reconstruction": rec, "kl": kl_mean}
        return LossOutput(-(reconstruction - kl_weight * kl).mean(), terms)

    def conditioned_on(self, y: Tensor) -> "ConditionedVAE":
        """Return the model of p(x|y) for a batch of labels ``y (B,)``."""
        return ConditionedVAE(self, self.one_hot(y))

    def prior(self) -> Distribution:
        return self.conditional_prior(self.no_condition())

    def encode(self, x: Tensor) -> Distribution:
        return self.conditional_encode(x, self.no_condition().expand(len(x), -1))

    def decode(self, z: Tensor) -> Distribution:
        return self.conditional_decode(z, self.no_condition())

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        return self.conditional_loss(x, self.no_condition().expand(len(x), -1), kl_weight)


class ConditionedVAE(LatentVariableModel):
    """A `ConditionalVAE` with its condition bound to a batch: the model of p(x|y).

    Shares the parameters of the model it views. Its ``prior()`` has batch shape ``(B,)``; x
    passed to it must be the batch the labels belong to.
    """

    def __init__(self, model: ConditionalVAE, condition: Tensor) -> None:
        super().__init__(model.data_shape, model.latent_dim)
        self.model, self.condition = model, condition
        # NOTE: metrics read these flags on the view: an evidential CVAE's discrete z must make
        # AIS n/a here too, not fail on its one-hot support.
        for flag in CAPABILITY_FLAGS:
            setattr(self, flag, getattr(model, flag))

    @property
    def display_name(self) -> str:
        return f"{self.model.display_name} (given y)"

    def _check_batch(self, x: Tensor) -> None:
        if len(x) != len(self.condition):
            raise ValueError(
                f"Expected `x` to hold the {len(self.condition)} examples the labels were bound "
                f"to, but got a batch of {len(x)}."
            )

    def prior(self) -> Distribution:
        return self.model.conditional_prior(self.condition)

    def encode(self, x: Tensor) -> Distribution:
        self._check_batch(x)
        return self.model.conditional_encode(x, self.condition)

    def decode(self, z: Tensor) -> Distribution:
        return self.model.conditional_decode(z, self.condition)

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        self._check_batch(x)
        return self.model.conditional_loss(x, self.condition, kl_weight)

    def select(self, rows: slice | Tensor) -> "ConditionedVAE":
        """Return the view bound to the labels of rows `rows` only."""
        return ConditionedVAE(self.model, self.condition[rows])

    def sample_prior(self, num_rows: int, sample_shape: tuple[int, ...] = ()) -> Tensor:
        """Draw z ~ p(z|y_i) for each bound row, shape ``(*sample_shape, B, D)``."""
        if num_rows != len(self.condition):
            raise ValueError(
                f"Expected `num_rows` to be the {len(self.condition)} rows whose labels are bound, "
                f"but got {num_rows}; bind as many labels as samples with `conditioned_on`."
            )
        return self.prior().sample(sample_shape)


def _build(
    data_shape: tuple[int, ...],
    latent_dim: int,
    architecture: Architecture,
    likelihood: LikelihoodName,
    num_classes: int,
    conditional_prior: bool,
) -> ConditionalVAE:
    if architecture.trunk != "mlp":
        raise ValueError(
            f"Expected `model.architecture.trunk` to be 'mlp' for `cvae` (the condition is "
            f"concatenated to the input), but got {architecture.trunk!r}."
        )
    if num_classes < 1:
        raise ValueError(f"Expected `model.num_classes` to be >= 1, but got {num_classes}.")
    return ConditionalVAE(
        data_shape, latent_dim, architecture, likelihood, num_classes, conditional_prior
    )


@register_model("cvae")
def cvae(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 16,
    architecture: Architecture = SMALL_ARCHITECTURE,
    likelihood: LikelihoodName = "bernoulli",
    num_classes: int = 10,
    conditional_prior: bool = True,
) -> ConditionalVAE:
    """Build a label-conditional VAE (Sohn et al. 2015); bind labels with ``conditioned_on(y)``."""
    return _build(data_shape, latent_dim, architecture, likelihood, num_classes, conditional_prior)


register_model_preset(
    "cvae_paper",
    base="cvae",
    doc="Build the conditional VAE with the literature's MNIST MLP sizes (see the module doc).",
    latent_dim=50,
    architecture=PAPER_ARCHITECTURE,
)
