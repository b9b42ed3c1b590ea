"""A linear-Gaussian VAE whose marginal likelihood and posterior are known in closed form.

Generative model (probabilistic PCA, Tipping & Bishop 1999): ``z ~ N(0, I_d)``,
``x | z ~ N(W z + b, sigma^2 I_D)``, so ``log p(x) = log N(x; b, W W^T + sigma^2 I)`` exactly, and
the posterior is ``N(M^{-1} W^T (x - b) / sigma^2, M^{-1})`` with ``M = I + W^T W / sigma^2``.
The encoder is linear with an input-independent diagonal variance, so the best diagonal
Gaussian posterior is reachable by amortised inference. Used to validate every likelihood and
inference-gap estimator against exact answers (Lucas et al. 2019 use the same oracle).
"""

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from registry._registry import register_model
from registry.base import LatentVariableModel, standard_normal_prior
from registry.vae import VAE


class LinearVAE(VAE):
    """pPCA decoder with learned W, b and log sigma; linear Gaussian encoder."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, init_noise_std: float) -> None:
        if len(data_shape) != 1:
            raise ValueError(
                f"Expected a vector dataset with data_shape (D,) for `linear_vae`, but got "
                f"{tuple(data_shape)}; use it with the `linear_gaussian` dataset."
            )
        # NOTE: skips VAE.__init__ (no trunks) but keeps its ELBO loss.
        LatentVariableModel.__init__(self, data_shape, latent_dim)
        (data_dim,) = data_shape
        self.weight = nn.Parameter(torch.randn(data_dim, latent_dim) / math.sqrt(latent_dim))
        self.bias = nn.Parameter(torch.zeros(data_dim))
        self.log_noise_std = nn.Parameter(torch.tensor(math.log(init_noise_std)))
        self.encoder_weight = nn.Parameter(torch.zeros(latent_dim, data_dim))
        self.encoder_bias = nn.Parameter(torch.zeros(latent_dim))
        self.encoder_log_std = nn.Parameter(torch.zeros(latent_dim))

    def prior(self) -> Distribution:
        return standard_normal_prior(self.latent_dim, like=self.weight)

    def encode(self, x: Tensor) -> Distribution:
        self.check_input(x)
        loc = x @ self.encoder_weight.T + self.encoder_bias  # (B, d)
        return Independent(Normal(loc, self.encoder_log_std.exp().expand_as(loc)), 1)

    def decode(self, z: Tensor) -> Distribution:
        loc = z @ self.weight.T + self.bias  # (..., B, D)
        return Independent(Normal(loc, self.log_noise_std.exp().expand_as(loc)), 1)

    def exact_log_marginal(self, x: Tensor) -> Tensor:
        """Return the exact log p(x) = log N(x; b, W W^T + sigma^2 I), shape ``(B,)``, float64."""
        weight, noise_var = self.weight.double(), self.log_noise_std.double().exp() ** 2
        cov = weight @ weight.T + noise_var * torch.eye(self.data_shape[0], dtype=torch.float64)
        return MultivariateNormal(self.bias.double(), covariance_matrix=cov).log_prob(x.double())

    def exact_posterior(self, x: Tensor) -> MultivariateNormal:
        """Return the exact p(z|x): a full-covariance Gaussian, batch shape ``(B,)``, float64."""
        weight, noise_var = self.weight.double(), self.log_noise_std.double().exp() ** 2
        precision = torch.eye(self.latent_dim, dtype=torch.float64) + weight.T @ weight / noise_var
        cov = torch.linalg.inv(precision)
        loc = (x.double() - self.bias.double()) @ weight @ cov.T / noise_var  # (B, d)
        return MultivariateNormal(loc, covariance_matrix=cov)

    @torch.no_grad()
    def set_generative_model(self, weight, bias, noise_std: float) -> "LinearVAE":
        """Set W ``(D, d)``, b ``(D,)`` and sigma, then the encoder to the best diagonal one.

        With a `linear_gaussian` dataset's true parameters (``dataset.info["W"]``, ``["b"]``,
        ``["noise_std"]``) this is the oracle the estimator tests compare against. Returns self.
        """
        self.weight.copy_(torch.as_tensor(weight, dtype=self.weight.dtype))
        self.bias.copy_(torch.as_tensor(bias, dtype=self.bias.dtype))
        self.log_noise_std.fill_(math.log(noise_std))
        self.set_encoder_to_optimal_diagonal()
        return self

    @torch.no_grad()
    def set_encoder_to_optimal_diagonal(self) -> None:
        """Set the encoder to the best amortised diagonal Gaussian (exact mean, KL-optimal scales).

        For a Gaussian posterior with precision Lambda, the diagonal Gaussian minimising
        KL(q || p) keeps the mean and takes variances ``1 / diag(Lambda)`` (Bishop 2006, 10.1.2).
        """
        weight, noise_var = self.weight, self.log_noise_std.exp() ** 2
        precision = torch.eye(self.latent_dim) + weight.T @ weight / noise_var
        cov = torch.linalg.inv(precision)
        self.encoder_weight.copy_(cov @ weight.T / noise_var)
        self.encoder_bias.copy_(-(cov @ weight.T / noise_var) @ self.bias)
        self.encoder_log_std.copy_(-0.5 * torch.log(torch.diagonal(precision)))


@register_model("linear_vae")
def linear_vae(
    *, data_shape: tuple[int, ...], latent_dim: int = 2, init_noise_std: float = 1.0
) -> LinearVAE:
    """Build a linear-Gaussian VAE (pPCA decoder) with exact log p(x) for estimator checks."""
    if init_noise_std <= 0:
        raise ValueError(f"Expected `model.init_noise_std` to be > 0, but got {init_noise_std}.")
    return LinearVAE(data_shape, latent_dim, init_noise_std)
