"""The beta-VAE (Higgins et al., ICLR 2017).

The VAE objective with the KL term weighted by beta (Eq. 4): ``E_q[log p(x|z)] - beta KL``.
beta > 1 pressures the posterior towards the factorised prior; beta = 1 is the VAE.
"""

from registry._registry import register_model
from registry.trunks import Architecture
from registry.vae import VAE, LikelihoodName


class BetaVAE(VAE):
    """A VAE whose KL term is multiplied by `beta` (the loss is `VAE.loss`)."""

    def __init__(self, *args, beta: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.beta = beta


@register_model("beta_vae")
def beta_vae(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 16,
    architecture: Architecture = Architecture(),
    likelihood: LikelihoodName = "bernoulli",
    beta: float = 4.0,
) -> BetaVAE:
    """Build a beta-VAE (Higgins et al. 2017)."""
    if beta < 0:
        raise ValueError(f"Expected `model.beta` to be >= 0, but got {beta}.")
    return BetaVAE(data_shape, latent_dim, architecture, likelihood, beta=beta)
