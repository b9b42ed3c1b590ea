"""The variational auto-encoder (Kingma & Welling, ICLR 2014).

Amortised diagonal-Gaussian q(z|x), standard-normal prior, and a decoder whose output is a
likelihood distribution. Trained on the negative ELBO (Eq. 10 of the paper, with the analytic KL
of Appendix B): ``-E_q[log p(x|z)] + KL(q(z|x) || p(z))``.
"""

from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from registry._registry import register_model
from registry.base import LatentDraws, LatentVariableModel, LossOutput, standard_normal_prior
from registry.estimators import (
    elbo_terms,
    normal_kl_to_standard_normal,
    normal_log_prob,
    standard_normal_log_prob,
)
from registry.likelihoods import create_likelihood
from registry.trunks import Architecture, build_decoder, build_encoder, gaussian_head

LikelihoodName = Literal["bernoulli", "gaussian", "gaussian_fixed", "discretized_logistic"]


class VAE(LatentVariableModel):
    """A one-layer Gaussian VAE; subclasses change only the training objective.

    Attributes:
        beta: Weight of the KL term in the loss; 1 for the VAE (see `registry.beta_vae`).
    """

    beta: float = 1.0

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int,
        architecture: Architecture,
        likelihood: LikelihoodName,
    ) -> None:
        super().__init__(data_shape, latent_dim)
        self.likelihood = create_likelihood(likelihood, self.data_shape)
        self.encoder = build_encoder(self.data_shape, architecture, 2 * latent_dim)
        self.decoder = build_decoder(
            self.data_shape, architecture, latent_dim, self.likelihood.num_params
        )

    def prior(self) -> Distribution:
        return standard_normal_prior(self.latent_dim, like=next(self.parameters()))

    def encode(self, x: Tensor) -> Distribution:
        self.check_input(x)
        loc, scale = gaussian_head(self.encoder(x))  # (B, D) each
        return Independent(Normal(loc, scale), 1)

    def decode(self, z: Tensor) -> Distribution:
        return self.likelihood(self.decoder(z))

    def log_prior(self, z: Tensor) -> Tensor:
        if type(self).prior is not VAE.prior or Distribution._validate_args:
            return super().log_prior(z)
        return standard_normal_log_prob(z)  # (...,)

    def draw_latents(self, x: Tensor, num_samples: int) -> LatentDraws:
        """Draw z ~ q(z|x) as the base class does, from the densities in closed form.

        The same draws, log q and KL (the same bits, see `registry.estimators.normal_log_prob`)
        without building q(z|x) and p(z) as distributions, which is a sizeable share of a small
        model's training step. A subclass with another posterior or prior takes the base path,
        and so does a call with torch.distributions' argument validation on (the trainer's first
        step, evaluation), so that bad parameters raise there as they always have.
        """
        custom = type(self).encode is not VAE.encode or type(self).prior is not VAE.prior
        if custom or Distribution._validate_args:
            return super().draw_latents(x, num_samples)
        self.check_input(x)
        loc, scale = gaussian_head(self.encoder(x))  # (B, D) each
        eps = torch.randn((num_samples, *loc.shape), dtype=loc.dtype, device=loc.device)
        z = loc + eps * scale  # (K, B, D), reparameterised as `Normal.rsample` does
        kl = lambda: normal_kl_to_standard_normal(loc, scale)  # noqa: E731  (B,), when read
        return LatentDraws(z, normal_log_prob(z, loc, scale), kl=kl)

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        reconstruction, kl = elbo_terms(self, x, num_samples=1)  # (B,) each
        loss = -(reconstruction - self.beta * kl_weight * kl).mean()
        return LossOutput(loss, _terms(reconstruction, kl))


def _terms(reconstruction: Tensor, kl: Tensor) -> dict[str, float]:
    rec, kl = reconstruction.detach().mean(), kl.detach().mean()
    return {"elbo": rec - kl, "reconstruction": rec, "kl": kl}


@register_model("vae")
def vae(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 16,
    architecture: Architecture = Architecture(),
    likelihood: LikelihoodName = "bernoulli",
) -> VAE:
    """Build a VAE (Kingma & Welling 2014)."""
    return VAE(data_shape, latent_dim, architecture, likelihood)
