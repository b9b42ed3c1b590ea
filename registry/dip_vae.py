"""DIP-VAE-I and DIP-VAE-II (Kumar, Sattigeri & Balakrishnan, *Variational Inference of
Disentangled Latent Concepts from Unlabeled Observations*, ICLR 2018).

Both add to the negative ELBO a penalty that pushes a covariance towards the identity, Sec. 3:

    lambda_od sum_{i != j} Cov_ij^2 + lambda_d sum_i (Cov_ii - 1)^2,

on Cov_p(x)[mu(x)], the covariance of the encoder means (DIP-VAE-I), or on
Cov_q(z)[z] = E_p(x)[Sigma(x)] + Cov_p(x)[mu(x)], the covariance of the aggregate posterior
(DIP-VAE-II). Covariances are minibatch estimates with ddof 0, as in disentanglement_lib.
Locatello et al. (2019) tie lambda_d to lambda_od: lambda_d = 10 lambda_od for DIP-VAE-I and
lambda_d = lambda_od for DIP-VAE-II.
"""

from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Distribution

from registry._registry import register_model
from registry.base import LossOutput, kl_to_prior
from registry.trunks import LOCATELLO_CONV, Architecture
from registry.vae import VAE, LikelihoodName, _terms

DipKind = Literal["i", "ii"]


def dip_covariance(q_z: Distribution, kind: DipKind) -> Tensor:
    """Return the minibatch covariance the DIP penalty acts on, ``(D, D)``.

    Args:
        q_z: Posteriors of a minibatch, batch ``(B,)``, event ``(D,)``, with ``mean`` and
            ``variance`` (diagonal).
        kind: ``i`` for Cov[mu(x)]; ``ii`` adds the mean posterior variance, giving Cov_q(z)[z].
    """
    centred = q_z.mean - q_z.mean.mean(0)  # (B, D)
    covariance = centred.T @ centred / len(centred)  # (D, D), ddof 0
    if kind == "ii":
        covariance = covariance + torch.diag(q_z.variance.mean(0))
    return covariance


def dip_penalty(covariance: Tensor, *, lambda_od: float, lambda_d: float) -> Tensor:
    """Return ``lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2`` (a scalar)."""
    diagonal = torch.diagonal(covariance)
    off_diagonal = covariance - torch.diag(diagonal)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()


class DIPVAE(VAE):
    """A VAE whose (aggregate) posterior covariance is pushed towards the identity.

    Attributes:
        kind: ``i`` or ``ii``.
        lambda_od: Weight of the squared off-diagonal entries.
        lambda_d: Weight of the squared diagonal deviations from 1.
    """

    def __init__(self, *args, kind: DipKind, lambda_od: float, lambda_d: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind, self.lambda_od, self.lambda_d = kind, lambda_od, lambda_d

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        q_z = self.encode(x)
        z = q_z.rsample((1,))  # (1, B, D)
        reconstruction = self.decode(z).log_prob(x)[0]  # (B,)
        kl = kl_to_prior(q_z, self.prior(), z)  # (B,)
        # NOTE: KL warm-up scales the KL only; the DIP penalty is not a KL term.
        penalty = dip_penalty(
            dip_covariance(q_z, self.kind), lambda_od=self.lambda_od, lambda_d=self.lambda_d
        )
        loss = -(reconstruction - kl_weight * kl).mean() + penalty
        return LossOutput(loss, {**_terms(reconstruction, kl), "dip_penalty": penalty.detach()})


def _build(
    kind: DipKind,
    data_shape: tuple[int, ...],
    latent_dim: int,
    architecture: Architecture,
    likelihood: LikelihoodName,
    lambda_od: float,
    lambda_d_factor: float,
) -> DIPVAE:
    if lambda_od < 0 or lambda_d_factor < 0:
        raise ValueError(
            "Expected `model.lambda_od` and `model.lambda_d_factor` to be >= 0, but got "
            f"{lambda_od} and {lambda_d_factor}."
        )
    return DIPVAE(
        data_shape,
        latent_dim,
        architecture,
        likelihood,
        kind=kind,
        lambda_od=lambda_od,
        lambda_d=lambda_d_factor * lambda_od,
    )


@register_model("dip_vae_i")
def dip_vae_i(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 10,
    architecture: Architecture = LOCATELLO_CONV,
    likelihood: LikelihoodName = "bernoulli",
    lambda_od: float = 10.0,
    lambda_d_factor: float = 10.0,
) -> DIPVAE:
    """Build a DIP-VAE-I (Kumar et al. 2018): lambda_d = lambda_d_factor * lambda_od.

    The study sweeps ``lambda_od`` over {1, 2, 5, 10, 20, 50} with lambda_d = 10 lambda_od.
    """
    return _build("i", data_shape, latent_dim, architecture, likelihood, lambda_od, lambda_d_factor)


@register_model("dip_vae_ii")
def dip_vae_ii(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 10,
    architecture: Architecture = LOCATELLO_CONV,
    likelihood: LikelihoodName = "bernoulli",
    lambda_od: float = 10.0,
    lambda_d_factor: float = 1.0,
) -> DIPVAE:
    """Build a DIP-VAE-II (Kumar et al. 2018): lambda_d = lambda_d_factor * lambda_od.

    The study sweeps ``lambda_od`` over {1, 2, 5, 10, 20, 50} with lambda_d = lambda_od.
    """
    return _build(
        "ii", data_shape, latent_dim, architecture, likelihood, lambda_od, lambda_d_factor
    )
