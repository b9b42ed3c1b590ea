"""The beta-VAE with a controlled capacity increase, "AnnealedVAE" (Burgess et al. 2018).

Burgess et al., *Understanding disentangling in beta-VAE* (arXiv 1804.03599), Sec. 5: the KL
term is pulled towards a target capacity C that grows during training,

    E_q[log p(x|z)] - gamma |KL(q(z|x) || p(z)) - C|,

with C raised linearly from 0 to C_max over a number of steps, so the code gains information a
little at a time. As in disentanglement_lib (the implementation behind Locatello et al. 2019),
the KL inside ``|.|`` is the minibatch mean, and C reaches C_max after 100,000 steps with
gamma = 1000 (estimators.md Section 5).

Like every disentanglement model here, it defaults to the study's convolutional architecture,
`registry.trunks.LOCATELLO_CONV`.
"""

from torch import Tensor

from registry._registry import register_model
from registry.base import LossOutput
from registry.estimators import elbo_terms
from registry.trunks import LOCATELLO_CONV, Architecture
from registry.vae import VAE, LikelihoodName, _terms


# Locatello et al. (2019) / disentanglement_lib conv encoder and deconv decoder on 64x64: four
# 4x4 stride-2 convolutions (32, 32, 64, 64 channels), a 256-unit dense layer, then the code;
# the decoder mirrors it (dense 256, dense 4*4*64, transposed convolutions 64, 32, 32, C).
class AnnealedVAE(VAE):
    """A VAE whose batch-mean KL is pulled towards a linearly growing capacity C.

    Attributes:
        gamma: Weight of ``|KL - C|``.
        c_max: Final capacity in nats.
        capacity_steps: Steps over which C rises from 0 to `c_max` (0: C = c_max throughout).
    """

    def __init__(self, *args, gamma: float, c_max: float, capacity_steps: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gamma, self.c_max, self.capacity_steps = gamma, c_max, capacity_steps

    def capacity(self, step: int) -> float:
        """Return the target KL at `step`: ``min(c_max, c_max * step / capacity_steps)``."""
        if self.capacity_steps <= 0:
            return self.c_max
        return min(self.c_max, self.c_max * step / self.capacity_steps)

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        # NOTE: the capacity schedule *is* this model's KL annealing; `kl_weight` is ignored.
        reconstruction, kl = elbo_terms(self, x, num_samples=1)  # (B,) each
        capacity = self.capacity(step)
        penalty = self.gamma * (kl.mean() - capacity).abs()
        terms = {
            **_terms(reconstruction, kl),
            "capacity": capacity,
            "capacity_penalty": penalty.detach(),
        }
        return LossOutput(-reconstruction.mean() + penalty, terms)


@register_model("annealed_vae")
def annealed_vae(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 10,
    architecture: Architecture = LOCATELLO_CONV,
    likelihood: LikelihoodName = "bernoulli",
    gamma: float = 1000.0,
    c_max: float = 25.0,
    capacity_steps: int = 100_000,
) -> AnnealedVAE:
    """Build an AnnealedVAE (Burgess et al. 2018); defaults from Locatello et al.'s grid.

    The study sweeps ``c_max`` over {5, 10, 25, 50, 75, 100}; a reduced training budget should
    shorten `capacity_steps` with it, or C never reaches C_max.
    """
    if gamma < 0 or c_max < 0 or capacity_steps < 0:
        raise ValueError(
            "Expected `model.gamma`, `model.c_max` and `model.capacity_steps` to be >= 0, but got "
            f"{gamma}, {c_max} and {capacity_steps}."
        )
    return AnnealedVAE(
        data_shape,
        latent_dim,
        architecture,
        likelihood,
        gamma=gamma,
        c_max=c_max,
        capacity_steps=capacity_steps,
    )
