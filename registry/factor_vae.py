"""FactorVAE (Kim & Mnih, *Disentangling by Factorising*, ICML 2018).

The VAE objective plus a total-correlation penalty, Sec. 3:

    E_q[log p(x|z)] - KL(q(z|x) || p(z)) - gamma KL(q(z) || prod_j q(z_j)).

The total correlation (TC) is estimated with the density-ratio trick: a discriminator D is trained
to tell codes z ~ q(z) from codes whose dimensions were shuffled independently across the batch
(samples of prod_j q(z_j)), and ``TC ~ E_q(z)[log D(z) / (1 - D(z))]``, the mean logit difference.

D has its own Adam (lr 1e-4, betas (0.5, 0.9)) over `auxiliary_parameters()`, stepped on
`LossOutput.auxiliary_loss`. Each loss reaches only its own parameters whatever the trainer does:
the TC term sees D through detached weights, and D's loss sees detached codes. As in
disentanglement_lib, the permuted codes come from the same minibatch (the paper draws a second).
"""

import torch
from torch import Tensor, nn
from torch.func import functional_call

from registry._registry import register_model
from registry.base import LossOutput, kl_to_prior
from registry.trunks import LOCATELLO_CONV, Architecture
from registry.vae import VAE, LikelihoodName, _terms

JOINT, PERMUTED = 0, 1  # discriminator classes: z ~ q(z), and z ~ prod_j q(z_j)


def permute_dims(z: Tensor) -> Tensor:
    """Shuffle each latent dimension independently across the batch (Kim & Mnih, Alg. 1).

    Args:
        z: Codes ``(B, D)``; the result is a sample of prod_j q(z_j) of the same shape.
    """
    order = torch.argsort(torch.rand(z.shape, device=z.device), dim=0)  # (B, D), one perm per dim
    return torch.gather(z, 0, order)


def build_discriminator(latent_dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """Return the MLP discriminator: leaky ReLU (slope 0.2) hidden layers, then 2 logits."""
    layers: list[nn.Module] = []
    for w_in, w_out in zip((latent_dim, *hidden[:-1]), hidden, strict=True):
        layers += [nn.Linear(w_in, w_out), nn.LeakyReLU(0.2)]
    layers.append(nn.Linear(hidden[-1] if hidden else latent_dim, 2))
    return nn.Sequential(*layers)


def discriminator_loss(discriminator: nn.Module, z: Tensor) -> tuple[Tensor, Tensor]:
    """Return the discriminator's cross-entropy and accuracy on joint vs permuted codes.

    Args:
        discriminator: Codes ``(B, D)`` to logits ``(B, 2)``.
        z: Codes ``(B, D)`` sampled from q(z|x) over a minibatch; detached here.
    """
    z = z.detach()
    logits = discriminator(torch.cat([z, permute_dims(z)]))  # (2B, 2)
    labels = torch.cat([torch.full((len(z),), JOINT), torch.full((len(z),), PERMUTED)])
    labels = labels.to(z.device)
    accuracy = (logits.argmax(-1) == labels).float().mean()
    return nn.functional.cross_entropy(logits, labels), accuracy


class FactorVAE(VAE):
    """A VAE with a discriminator-estimated total-correlation penalty.

    Attributes:
        gamma: Weight of the TC penalty.
        discriminator: Codes to logits over (joint, permuted).
        auxiliary_optimizer: Adam settings of the discriminator.
    """

    def __init__(
        self,
        *args,
        gamma: float,
        discriminator_hidden: tuple[int, ...],
        discriminator_lr: float,
        discriminator_betas: tuple[float, float],
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gamma = gamma
        self.discriminator = build_discriminator(self.latent_dim, discriminator_hidden)
        self.auxiliary_optimizer = {"lr": discriminator_lr, "betas": discriminator_betas}

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def total_correlation(self, z: Tensor) -> Tensor:
        """Return the density-ratio TC estimate, mean of ``logit_joint - logit_permuted``.

        Gradients reach `z` only: the discriminator's weights enter detached.
        """
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = functional_call(self.discriminator, frozen, (z,))  # (B, 2)
        return (logits[:, JOINT] - logits[:, PERMUTED]).mean()

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        q_z = self.encode(x)
        z = q_z.rsample()  # (B, D)
        reconstruction = self.decode(z).log_prob(x)  # (B,)
        kl = kl_to_prior(q_z, self.prior(), z[None])  # (B,)
        tc = self.total_correlation(z)
        d_loss, d_accuracy = discriminator_loss(self.discriminator, z)
        loss = -(reconstruction - kl_weight * kl).mean() + self.gamma * tc
        terms = {
            **_terms(reconstruction, kl),
            "total_correlation": tc.detach(),
            "discriminator_loss": d_loss.detach(),
            "discriminator_accuracy": d_accuracy.detach(),
        }
        return LossOutput(loss, terms, auxiliary_loss=d_loss)


@register_model("factor_vae")
def factor_vae(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 10,
    architecture: Architecture = LOCATELLO_CONV,
    likelihood: LikelihoodName = "bernoulli",
    gamma: float = 30.0,
    discriminator_hidden: tuple[int, ...] = (1000, 1000, 1000, 1000, 1000, 1000),
    discriminator_lr: float = 1e-4,
    discriminator_betas: tuple[float, float] = (0.5, 0.9),
) -> FactorVAE:
    """Build a FactorVAE (Kim & Mnih 2018) with the study's discriminator and its optimizer.

    The study sweeps ``gamma`` over {10, 20, 30, 40, 50, 100}; the discriminator is the paper's
    six fully connected layers of 1000 units.
    """
    if gamma < 0 or discriminator_lr <= 0:
        raise ValueError(
            "Expected `model.gamma` >= 0 and `model.discriminator_lr` > 0, but got "
            f"{gamma} and {discriminator_lr}."
        )
    return FactorVAE(
        data_shape,
        latent_dim,
        architecture,
        likelihood,
        gamma=gamma,
        discriminator_hidden=discriminator_hidden,
        discriminator_lr=discriminator_lr,
        discriminator_betas=discriminator_betas,
    )
