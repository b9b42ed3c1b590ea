"""The evidence lower bound and its two terms, per example, for any registered model.

ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))  (Kingma & Welling 2014, Eq. 3). The KL is
analytic where `torch.distributions.kl_divergence` has a rule for the model's posterior and
prior, and a Monte Carlo average of log q - log p otherwise (e.g. mixture priors, flows).
"""

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from registry.base import LatentVariableModel


def analytic_kl(model: LatentVariableModel, x: Tensor) -> Tensor | None:
    """Return KL(q(z|x) || p(z)) per example ``(B,)`` in closed form, or None if not registered."""
    try:
        return kl_divergence(model.encode(x), model.prior())
    except NotImplementedError:
        return None


@torch.no_grad()
def elbo_terms(model: LatentVariableModel, x: Tensor, *, num_samples: int) -> dict[str, Tensor]:
    """Return per-example ``elbo``, ``reconstruction`` and ``kl``, each of shape ``(B,)``.

    Args:
        model: Any registered model.
        x: Observations ``(B, *data_shape)``.
        num_samples: Posterior samples for the expectation (and for a Monte Carlo KL).
    """
    z, log_q = model.sample_posterior(x, num_samples)  # (K, B, D), (K, B)
    reconstruction = model.log_likelihood(x, z).mean(0)
    kl = analytic_kl(model, x)
    if kl is None:
        kl = (log_q - model.log_prior(z)).mean(0)
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}
