"""The VAE with a VampPrior (Tomczak & Welling, AISTATS 2018).

The prior is the variational mixture of posteriors (Eq. 9): a uniform mixture of the encoder's
own posteriors at K learned pseudo-inputs u_k,

    p_lambda(z) = (1/K) sum_k q_phi(z | u_k),

so it moves with the encoder towards the aggregate posterior. The KL term has no closed form
and is estimated with the reconstruction's own sample (`kl_to_prior`'s Monte Carlo fallback).
Pseudo-inputs live in data space; for data in [0, 1] (``bernoulli`` and
``discretized_logistic`` likelihoods) they pass through a hard tanh clipped to [0, 1], as in
the paper (Sec. 3.2), and start near 0.05 (the authors' MNIST initialisation [unverified]).

Presets: ``vamp_prior`` (small, 50 pseudo-inputs) and ``vamp_prior_paper`` (the paper's MNIST
one-layer model: K = 500 pseudo-inputs as in vaebench's literature.yaml; 40 latents and two
hidden layers of 300 units [unverified]; the paper's gated layers are replaced by the shared
ReLU trunk).

Equation and section numbers are cited from memory; vaebench's references do not hold the
paper's text [unverified].
"""

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, MixtureSameFamily

from registry._registry import register_model, register_model_preset
from registry.trunks import Architecture
from registry.vae import VAE, LikelihoodName

UNIT_INTERVAL_LIKELIHOODS = ("bernoulli", "discretized_logistic")

# The shared 200-200 trunk, and the paper's two hidden layers of 300 units.
SMALL_ARCHITECTURE = Architecture()
PAPER_ARCHITECTURE = Architecture(hidden=(300, 300))


class VampPriorVAE(VAE):
    """A Gaussian VAE whose prior is a mixture of its posteriors at learned pseudo-inputs.

    Args:
        data_shape: Shape of one observation (and of each pseudo-input).
        latent_dim: D.
        architecture: Encoder/decoder trunks.
        likelihood: Observation model.
        num_pseudo_inputs: K, the number of mixture components.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int,
        architecture: Architecture,
        likelihood: LikelihoodName,
        num_pseudo_inputs: int,
    ) -> None:
        super().__init__(data_shape, latent_dim, architecture, likelihood)
        init = torch.randn(num_pseudo_inputs, *self.data_shape) * 0.01 + 0.05
        self.raw_pseudo_inputs = nn.Parameter(init)
        self.clip_to_unit_interval = likelihood in UNIT_INTERVAL_LIKELIHOODS

    def pseudo_inputs(self) -> Tensor:
        """Return the K pseudo-inputs u_k, shape ``(K, *data_shape)``."""
        if self.clip_to_unit_interval:
            return nn.functional.hardtanh(self.raw_pseudo_inputs, 0.0, 1.0)
        return self.raw_pseudo_inputs

    def prior(self) -> Distribution:
        components = self.encode(self.pseudo_inputs())  # batch (K,), event (D,)
        logits = torch.zeros(components.batch_shape, device=self.raw_pseudo_inputs.device)
        return MixtureSameFamily(Categorical(logits=logits), components)


def _build(
    data_shape: tuple[int, ...],
    latent_dim: int,
    architecture: Architecture,
    likelihood: LikelihoodName,
    num_pseudo_inputs: int,
) -> VampPriorVAE:
    if num_pseudo_inputs < 1:
        raise ValueError(
            f"Expected `model.num_pseudo_inputs` to be >= 1, but got {num_pseudo_inputs}."
        )
    return VampPriorVAE(data_shape, latent_dim, architecture, likelihood, num_pseudo_inputs)


@register_model("vamp_prior")
def vamp_prior(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 16,
    architecture: Architecture = SMALL_ARCHITECTURE,
    likelihood: LikelihoodName = "bernoulli",
    num_pseudo_inputs: int = 50,
) -> VampPriorVAE:
    """Build a VAE with a VampPrior of `num_pseudo_inputs` components (Tomczak & Welling 2018)."""
    return _build(data_shape, latent_dim, architecture, likelihood, num_pseudo_inputs)


register_model_preset(
    "vamp_prior_paper",
    base="vamp_prior",
    doc="Build the VampPrior VAE (L = 1) of the paper's MNIST experiments (K = 500, 40 latents).",
    latent_dim=40,
    architecture=PAPER_ARCHITECTURE,
    num_pseudo_inputs=500,
)
