"""The Skip-VAE (Dieng, Kim, Rush & Blei, AISTATS 2019): generative skip connections.

The decoder feeds z into every one of its layers, not only the first (Sec. 3):

    h_1 = f(W_1 z),   h_l = f(W_l h_{l-1} + U_l z)  (l = 2..L),   params(x) = W_o h_L + U_o z,

so the likelihood cannot "forget" z on the way up; the paper finds that this raises the mutual
information between x and z and leaves fewer collapsed latent units at a similar ELBO.
Inference and objective are the VAE's; only the decoder changes. The skip decoder is a fully
connected network (the encoder may use either trunk).

Presets: ``skip_vae`` (small: the shared 200-200 trunk) and ``skip_vae_paper``. The paper's
image decoder is a skip PixelCNN whose settings are not in vaebench's references; the paper
preset takes the literature's MNIST MLP sizes (200-200 encoder, 50 latents) with a deeper
4-layer decoder, the regime in which a plain decoder collapses the posterior.

Equation and section numbers are cited from memory; vaebench's references do not hold the
paper's text [unverified].
"""

import math

from torch import Tensor, nn

from registry._registry import register_model, register_model_preset
from registry.trunks import ACTIVATIONS, Architecture
from registry.vae import VAE, LikelihoodName

# The shared 200-200 trunk, and a 200-200 encoder with a 4-layer skip decoder.
SMALL_ARCHITECTURE = Architecture()
PAPER_ARCHITECTURE = Architecture(hidden=(200, 200), decoder_hidden=(200,) * 4)


class SkipDecoder(nn.Module):
    """An MLP from z whose every layer, the output included, also receives z.

    Args:
        latent_dim: D.
        widths: Hidden widths in decoder order.
        out_features: Size of the output parameter vector.
        activation: Nonlinearity f.
    """

    def __init__(
        self, latent_dim: int, widths: tuple[int, ...], out_features: int, activation: str
    ) -> None:
        super().__init__()
        self.inputs = nn.ModuleList(
            nn.Linear(w_in, w_out)
            for w_in, w_out in zip((latent_dim, *widths), (*widths, out_features), strict=True)
        )
        # The first layer already sees z; every later layer gets its own skip projection U_l z.
        self.skips = nn.ModuleList(
            nn.Linear(latent_dim, w, bias=False) for w in (*widths[1:], out_features)
        )
        self.activation = ACTIVATIONS[activation]()

    def forward(self, z: Tensor) -> Tensor:
        h = self.activation(self.inputs[0](z))  # (..., B, widths[0])
        for layer, skip in zip(self.inputs[1:-1], self.skips[:-1], strict=True):
            h = self.activation(layer(h) + skip(z))
        return self.inputs[-1](h) + self.skips[-1](z)


class SkipVAE(VAE):
    """A VAE whose decoder is a `SkipDecoder`."""

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int,
        architecture: Architecture,
        likelihood: LikelihoodName,
    ) -> None:
        super().__init__(data_shape, latent_dim, architecture, likelihood)
        out_features = self.likelihood.num_params * math.prod(self.data_shape)
        widths = architecture.decoder_widths()
        self.decoder = SkipDecoder(latent_dim, widths, out_features, architecture.activation)


def _build(
    data_shape: tuple[int, ...],
    latent_dim: int,
    architecture: Architecture,
    likelihood: LikelihoodName,
) -> SkipVAE:
    if not architecture.decoder_widths():
        raise ValueError(
            "Expected `model.architecture` to have at least one decoder hidden layer for the skip "
            f"connections to enter, but got {architecture}."
        )
    return SkipVAE(data_shape, latent_dim, architecture, likelihood)


@register_model("skip_vae")
def skip_vae(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 16,
    architecture: Architecture = SMALL_ARCHITECTURE,
    likelihood: LikelihoodName = "bernoulli",
) -> SkipVAE:
    """Build a Skip-VAE (Dieng et al. 2019): z enters every decoder layer."""
    return _build(data_shape, latent_dim, architecture, likelihood)


register_model_preset(
    "skip_vae_paper",
    base="skip_vae",
    doc="Build a Skip-VAE with a deep 4-layer decoder and the literature's MNIST MLP sizes.",
    latent_dim=50,
    architecture=PAPER_ARCHITECTURE,
)
