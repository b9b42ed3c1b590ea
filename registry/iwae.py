"""The importance-weighted auto-encoder (Burda, Grosse & Salakhutdinov, ICLR 2016).

Same networks as the VAE; trained on the k-sample bound
``L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)]`` (Eq. 8), which tightens with k.
"""

import math

import torch
from torch import Tensor

from registry._registry import register_model
from registry.base import LossOutput
from registry.estimators import log_importance_weights
from registry.trunks import Architecture
from registry.vae import VAE, LikelihoodName


class IWAE(VAE):
    """A VAE trained on the importance-weighted bound with `num_samples` samples."""

    def __init__(self, *args, num_samples: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.num_samples = num_samples

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        # NOTE: KL warm-up has no clean meaning for L_k; `kl_weight` is accepted and ignored.
        k = self.num_samples
        log_w = log_importance_weights(
            self, x, num_samples=k, chunk_size=k, decode_rows=k * len(x)
        )  # (k, B), decoded in one pass (see `joint_log_density`)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.num_samples)  # (B,)
        elbo = log_w.mean(0)
        terms = {"iwae_bound": bound.detach().mean(), "elbo": elbo.detach().mean()}
        return LossOutput(-bound.mean(), terms)


@register_model("iwae")
def iwae(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 16,
    architecture: Architecture = Architecture(),
    likelihood: LikelihoodName = "bernoulli",
    num_samples: int = 5,
) -> IWAE:
    """Build an IWAE (Burda et al. 2016) trained with `num_samples` importance samples (k)."""
    if num_samples < 1:
        raise ValueError(f"Expected `model.num_samples` to be >= 1, but got {num_samples}.")
    return IWAE(data_shape, latent_dim, architecture, likelihood, num_samples=num_samples)
