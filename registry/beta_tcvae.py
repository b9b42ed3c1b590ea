"""The beta-TCVAE (Chen, Li, Grosse & Duvenaud, *Isolating Sources of Disentanglement in VAEs*,
NeurIPS 2018).

Sec. 3 splits the averaged KL term into index-code mutual information, total correlation (TC)
and dimension-wise KL,

    E_p(n) KL(q(z|n) || p(z)) = I_q(z; n) + KL(q(z) || prod_j q(z_j)) + sum_j KL(q(z_j) || p(z_j)),

and the beta-TCVAE weights only the TC by beta (alpha = gamma = 1). The objective is then the ELBO
minus (beta - 1) TC; the KL keeps its analytic form, as in disentanglement_lib.

The aggregate posterior q(z) = (1/N) sum_n q(z|n) is estimated by minibatch-weighted sampling
(MWS, Sec. 4.1): for a batch of M codes z_i ~ q(z|x_i),

    log q(z_i) ~ logsumexp_j log q(z_i | x_j) - log(N M),

and likewise per dimension for log q(z_ij). The dataset size N only adds the constant
(D - 1) log N to the TC estimate: it changes the logged value, never the gradients.
"""

import math

from torch import Tensor
from torch.distributions import Distribution, Normal

from registry._registry import register_model
from registry.base import LossOutput, kl_to_prior
from registry.trunks import LOCATELLO_CONV, Architecture
from registry.vae import VAE, LikelihoodName, _terms


def log_aggregate_posterior_mws(
    z: Tensor, q_z: Distribution, *, dataset_size: int
) -> tuple[Tensor, Tensor]:
    """Return MWS estimates of log q(z_i) and of sum_j log q(z_ij) (Chen et al. 2018, Sec. 4.1).

    Args:
        z: One code per example, ``(M, D)``, with z_i ~ q(z|x_i).
        q_z: The minibatch's diagonal-Gaussian posteriors, batch ``(M,)``, event ``(D,)``.
        dataset_size: N, the number of training examples.

    Returns:
        ``(log_q_z, log_q_z_product)``, each ``(M,)``.
    """
    loc, scale = q_z.base_dist.loc, q_z.base_dist.scale  # (M, D) each
    # (M, 1, D) against (1, M, D) -> (M_i, M_j, D): log q(z_i,d | x_j) for every pair.
    log_q_pairs = Normal(loc[None], scale[None]).log_prob(z[:, None])
    log_norm = math.log(dataset_size * len(z))
    log_q_z = log_q_pairs.sum(-1).logsumexp(dim=1) - log_norm
    log_q_z_product = (log_q_pairs.logsumexp(dim=1) - log_norm).sum(-1)
    return log_q_z, log_q_z_product


def kl_decomposition(
    z: Tensor, q_z: Distribution, p_z: Distribution, *, dataset_size: int
) -> dict[str, Tensor]:
    """Return the per-example MWS terms of the KL decomposition (Chen et al. 2018, Sec. 3).

    ``index_code_mi + total_correlation + dimension_wise_kl = log q(z|x) - log p(z)``, whose
    expectation is KL(q(z|x) || p(z)); each entry has shape ``(M,)``.
    """
    log_q_z, log_q_z_product = log_aggregate_posterior_mws(z, q_z, dataset_size=dataset_size)
    return {
        "index_code_mi": q_z.log_prob(z) - log_q_z,
        "total_correlation": log_q_z - log_q_z_product,
        "dimension_wise_kl": log_q_z_product - p_z.log_prob(z),
    }


class BetaTCVAE(VAE):
    """A VAE whose total-correlation term is weighted by `beta`.

    Attributes:
        beta: Weight of the TC (the KL's other two terms keep weight 1).
        dataset_size: N in the MWS estimator.
    """

    def __init__(self, *args, beta: float, dataset_size: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.beta, self.dataset_size = beta, dataset_size

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        q_z = self.encode(x)
        z = q_z.rsample()  # (B, D)
        reconstruction = self.decode(z).log_prob(x)  # (B,)
        kl = kl_to_prior(q_z, self.prior(), z[None])  # (B,)
        parts = kl_decomposition(z, q_z, self.prior(), dataset_size=self.dataset_size)
        tc = parts["total_correlation"].mean()
        # KL warm-up scales the whole regulariser, KL + (beta - 1) TC.
        loss = -reconstruction.mean() + kl_weight * (kl.mean() + (self.beta - 1) * tc)
        terms = {**_terms(reconstruction, kl), **{k: v.detach().mean() for k, v in parts.items()}}
        return LossOutput(loss, terms)


@register_model("beta_tcvae")
def beta_tcvae(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 10,
    architecture: Architecture = LOCATELLO_CONV,
    likelihood: LikelihoodName = "bernoulli",
    beta: float = 6.0,
    dataset_size: int = 737_280,
) -> BetaTCVAE:
    """Build a beta-TCVAE (Chen et al. 2018) trained with the MWS estimator of the TC.

    The study sweeps ``beta`` over {1, 2, 4, 6, 8, 10}. `dataset_size` defaults to dSprites'
    737,280; it only offsets the logged TC (see the module docstring).
    """
    if beta < 0 or dataset_size < 1:
        raise ValueError(
            "Expected `model.beta` >= 0 and `model.dataset_size` >= 1, but got "
            f"{beta} and {dataset_size}."
        )
    return BetaTCVAE(
        data_shape, latent_dim, architecture, likelihood, beta=beta, dataset_size=dataset_size
    )
