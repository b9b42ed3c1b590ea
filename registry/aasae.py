"""The augmentation-augmented stochastic autoencoder, AASAE (Falcon, Jha, Koker & Cho, 2021).

AASAE keeps the VAE's stochastic bottleneck, z ~ q(z|x) with a reparameterised Gaussian, but
drops the KL term: its regulariser is data augmentation instead. The encoder sees an augmented
view a(x), and the decoder reconstructs the *original* x, so the loss is

    -E_{a} E_{q(z|a(x))} log p(x|z)

(Sec. 3). The code must then keep what identifies x across its augmentations, which is what
makes it useful downstream; the paper judges it by linear-probe accuracy.

The augmentations here are those that suit the zoo's small greyscale images: a random
translation by up to ``max_shift`` pixels (zero padding, as a random crop of the padded image),
an optional horizontal flip, and flipping each pixel towards 1 - x with ``flip_probability``;
vector data get additive Gaussian noise of ``noise_std`` instead. The paper's SimCLR-style colour
augmentations do not apply to one channel.

Densities. The prior is N(0, I), as in the paper's generative reading, so every likelihood metric
is defined from the distributions; the loss, however, is not a bound on log p(x) (no KL), so the
model sets ``trains_on_likelihood_bound = False`` and reports flag it, as for the WAE.

Presets: ``aasae`` (small) and ``aasae_paper`` (latent 128, shifts of up to 4 pixels and
horizontal flips, the CIFAR-10 setting as recalled [unverified]; the paper's ResNet encoder is
replaced by the shared MLP trunk).

Section numbers are cited from memory; vaebench's references do not hold the paper's text
[unverified].
"""

import torch
from torch import Tensor, nn

from registry._registry import register_model, register_model_preset
from registry.base import LossOutput, kl_to_prior
from registry.trunks import Architecture
from registry.vae import VAE, LikelihoodName


def random_translation(x: Tensor, max_shift: int) -> Tensor:
    """Return each image of ``x (B, C, H, W)`` shifted by up to `max_shift` pixels, zero-filled.

    A random crop of the image padded by `max_shift` on every side, drawn per example.
    """
    if max_shift == 0:
        return x
    batch, _, height, width = x.shape
    padded = nn.functional.pad(x, (max_shift,) * 4)  # (B, C, H + 2s, W + 2s)
    top, left = torch.randint(0, 2 * max_shift + 1, (2, batch, 1), device=x.device)
    rows = top + torch.arange(height, device=x.device)  # (B, H)
    cols = left + torch.arange(width, device=x.device)  # (B, W)
    examples = torch.arange(batch, device=x.device)[:, None, None]  # (B, 1, 1)
    crops = padded.permute(0, 2, 3, 1)[examples, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return crops.permute(0, 3, 1, 2)


class AASAE(VAE):
    """A Gaussian-encoder autoencoder whose KL term is replaced by data augmentation.

    Args:
        data_shape, latent_dim, architecture, likelihood: As for the VAE.
        max_shift: Largest translation of an image, in pixels.
        horizontal_flip: Flip images left-right with probability 1/2.
        flip_probability: Probability of replacing a pixel x by 1 - x (images in [0, 1]).
        noise_std: Standard deviation of the Gaussian noise added to vector data.
    """

    trains_on_likelihood_bound = False

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int,
        architecture: Architecture,
        likelihood: LikelihoodName,
        max_shift: int,
        horizontal_flip: bool,
        flip_probability: float,
        noise_std: float,
    ) -> None:
        super().__init__(data_shape, latent_dim, architecture, likelihood)
        self.max_shift, self.horizontal_flip = max_shift, horizontal_flip
        self.flip_probability, self.noise_std = flip_probability, noise_std

    @torch.no_grad()
    def augment(self, x: Tensor) -> Tensor:
        """Return one random augmented view of each example of ``x``."""
        if len(self.data_shape) != 3:
            return x + self.noise_std * torch.randn_like(x)
        x = random_translation(x, self.max_shift)
        if self.horizontal_flip:
            mirrored = torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5  # (B, 1, 1, 1)
            x = torch.where(mirrored, x.flip(-1), x)
        flips = torch.rand_like(x) < self.flip_probability
        return torch.where(flips, 1.0 - x, x)

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        # NOTE: no KL term, so the trainer's KL warm-up (`kl_weight`) has nothing to act on.
        q_z = self.encode(self.augment(x))
        reconstruction = self.log_likelihood(x, q_z.rsample())  # (B,), of the original x
        with torch.no_grad():  # logged for comparison with the other families
            kl = kl_to_prior(q_z, self.prior()).mean()
        rec = reconstruction.detach().mean()
        return LossOutput(-reconstruction.mean(), {"reconstruction": rec, "kl": kl})


def _build(
    data_shape: tuple[int, ...],
    latent_dim: int,
    architecture: Architecture,
    likelihood: LikelihoodName,
    max_shift: int,
    horizontal_flip: bool,
    flip_probability: float,
    noise_std: float,
) -> AASAE:
    if max_shift < 0 or not 0 <= flip_probability < 0.5 or noise_std < 0:
        raise ValueError(
            f"Expected `model.max_shift` >= 0, `model.flip_probability` in [0, 0.5) and "
            f"`model.noise_std` >= 0, but got {max_shift}, {flip_probability} and {noise_std}."
        )
    return AASAE(
        data_shape,
        latent_dim,
        architecture,
        likelihood,
        max_shift,
        horizontal_flip,
        flip_probability,
        noise_std,
    )


@register_model("aasae")
def aasae(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 16,
    architecture: Architecture = Architecture(),
    likelihood: LikelihoodName = "bernoulli",
    max_shift: int = 1,
    horizontal_flip: bool = False,
    flip_probability: float = 0.05,
    noise_std: float = 0.1,
) -> AASAE:
    """Build an AASAE (Falcon et al. 2021): augmentation instead of KL; not trained on a bound."""
    return _build(
        data_shape,
        latent_dim,
        architecture,
        likelihood,
        max_shift,
        horizontal_flip,
        flip_probability,
        noise_std,
    )


register_model_preset(
    "aasae_paper",
    base="aasae",
    doc="Build the AASAE of the paper's image experiments (latent 128, crops and flips).",
    latent_dim=128,
    max_shift=4,
    horizontal_flip=True,
)
