"""Shared encoder/decoder trunks: MLP and convolutional, configurable from the spec.

A trunk maps a flat or image input to a flat feature vector (encoder) or a flat latent to a
flat parameter vector (decoder); likelihood heads and Gaussian heads sit on top.
"""

import math
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}


@dataclass(frozen=True)
class Architecture:
    """Encoder and decoder trunks of an amortised VAE.

    Attributes:
        trunk: ``mlp`` (fully connected) or ``conv`` (strided conv encoder, transposed-conv
            decoder; the Locatello et al. 2019 architecture with the defaults below on 64x64).
        hidden: MLP layer widths, or conv channels, in encoder order.
        decoder_hidden: Decoder widths/channels in decoder order; default ``reversed(hidden)``.
        activation: Nonlinearity between layers.
        conv_fc: Conv only: width of the fully connected layer between conv stack and code.
    """

    trunk: Literal["mlp", "conv"] = "mlp"
    hidden: tuple[int, ...] = (200, 200)
    decoder_hidden: tuple[int, ...] | None = None
    activation: Literal["relu", "tanh", "elu", "leaky_relu"] = "relu"
    conv_fc: int = 256

    def decoder_widths(self) -> tuple[int, ...]:
        return self.decoder_hidden if self.decoder_hidden is not None else self.hidden[::-1]


# The convolutional encoder/decoder of Locatello et al. (2019) (disentanglement_lib's
# `conv_encoder`/`deconv_decoder`): four 4x4 stride-2 convs of 32, 32, 64, 64 channels, an FC
# layer of 256, and the mirror image; latent 10 in the study.
LOCATELLO_CONV = Architecture(trunk="conv", hidden=(32, 32, 64, 64), conv_fc=256)


def mlp(widths: list[int], activation: str) -> nn.Sequential:
    """Return Linear layers of the given widths with `activation` between (not after the last)."""
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(w_in, w_out))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convolutions, then a fully connected layer, then a linear output.

    Images whose side is not divisible by 2**layers are zero-padded at the bottom/right first.
    """

    def __init__(self, data_shape: tuple[int, ...], arch: Architecture, out_features: int) -> None:
        super().__init__()
        channels, height, width = data_shape
        layers, act = len(arch.hidden), ACTIVATIONS[arch.activation]
        self.padded = (_padded_side(height, layers), _padded_side(width, layers))
        convs: list[nn.Module] = []
        for c_in, c_out in zip((channels, *arch.hidden[:-1]), arch.hidden, strict=True):
            convs += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), act()]
        side = (self.padded[0] >> layers, self.padded[1] >> layers)
        self.convs = nn.Sequential(*convs)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(arch.hidden[-1] * side[0] * side[1], arch.conv_fc),
            act(),
            nn.Linear(arch.conv_fc, out_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        pad_h, pad_w = self.padded[0] - x.shape[-2], self.padded[1] - x.shape[-1]
        x = nn.functional.pad(x, (0, pad_w, 0, pad_h))  # (B, C, H', W')
        return self.head(self.convs(x))


class ConvDecoder(nn.Module):
    """Mirror of `ConvEncoder`: linear layers, then stride-2 transposed convolutions, cropped."""

    def __init__(
        self,
        data_shape: tuple[int, ...],
        arch: Architecture,
        in_features: int,
        params_per_pixel: int,
    ) -> None:
        super().__init__()
        channels, height, width = data_shape
        widths, act = arch.decoder_widths(), ACTIVATIONS[arch.activation]
        layers = len(widths)
        self.data_shape = tuple(data_shape)
        self.params_per_pixel = params_per_pixel
        self.start = (
            widths[0],
            _padded_side(height, layers) >> layers,
            _padded_side(width, layers) >> layers,
        )
        self.head = nn.Sequential(
            nn.Linear(in_features, arch.conv_fc),
            act(),
            nn.Linear(arch.conv_fc, math.prod(self.start)),
            act(),
        )
        deconvs: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            deconvs += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), act()]
        out_channels = channels * params_per_pixel
        deconvs.append(nn.ConvTranspose2d(widths[-1], out_channels, 4, stride=2, padding=1))
        self.deconvs = nn.Sequential(*deconvs)

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        h = self.head(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)  # (N, C0, h0, w0)
        out = self.deconvs(h)[..., : self.data_shape[1], : self.data_shape[2]]  # (N, C*P, H, W)
        channels = self.data_shape[0]
        # (N, C*P, H, W) -> (N, P, C, H, W) -> (..., B, P*C*H*W), parameter-major like the MLP.
        out = out.reshape(-1, channels, self.params_per_pixel, *self.data_shape[1:])
        return out.transpose(1, 2).reshape(*lead, -1)


def _padded_side(side: int, layers: int) -> int:
    return math.ceil(side / 2**layers) * 2**layers


def build_encoder(data_shape: tuple[int, ...], arch: Architecture, out_features: int) -> nn.Module:
    """Return a network from ``(B, *data_shape)`` to ``(B, out_features)``."""
    if arch.trunk == "conv":
        _check_image_shape(data_shape)
        return ConvEncoder(data_shape, arch, out_features)
    widths = [math.prod(data_shape), *arch.hidden, out_features]
    return nn.Sequential(nn.Flatten(start_dim=1), mlp(widths, arch.activation))


def build_decoder(
    data_shape: tuple[int, ...], arch: Architecture, latent_dim: int, params_per_pixel: int
) -> nn.Module:
    """Return a network from ``(..., B, latent_dim)`` to ``(..., B, P * prod(data_shape))``."""
    if arch.trunk == "conv":
        _check_image_shape(data_shape)
        return ConvDecoder(data_shape, arch, latent_dim, params_per_pixel)
    widths = [latent_dim, *arch.decoder_widths(), params_per_pixel * math.prod(data_shape)]
    return mlp(widths, arch.activation)


def _check_image_shape(data_shape: tuple[int, ...]) -> None:
    if len(data_shape) != 3:
        raise ValueError(
            f"Expected an image dataset with data_shape (C, H, W) for `trunk: conv`, but got "
            f"{data_shape}. Use `trunk: mlp` for vector data."
        )


def gaussian_head(features: Tensor, min_scale: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Split ``(..., 2D)`` features into a mean and a positive scale, each ``(..., D)``."""
    loc, raw_scale = features.chunk(2, dim=-1)
    return loc, nn.functional.softplus(raw_scale) + min_scale
