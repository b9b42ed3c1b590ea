"""VAE-GAN: reconstruction measured in a discriminator's features (Larsen, Sønderby, Larochelle &
Winther, ICML 2016).

An encoder q(z|x), a decoder x~ = Dec(z) and a discriminator Dis share the training. The pixel
reconstruction error of the VAE is replaced by a Gaussian error on the l-th layer of Dis
(Sec. 2.2, Eq. 7 as recalled): -log p(Dis_l(x) | z) = 1/2 ||Dis_l(x) - Dis_l(Dec(z))||^2 up to a
constant. With L_prior = KL(q(z|x) || p(z)) and the GAN loss on data, reconstructions and prior
samples x_p = Dec(z_p), z_p ~ p(z) (Eq. 9 as recalled),

    L_GAN = log Dis(x) + log(1 - Dis(Dec(z))) + log(1 - Dis(Dec(z_p))),

the three parts are trained with three losses (Algorithm 1):

    encoder:       L_prior + L_llike^Dis_l,
    decoder:       gamma L_llike^Dis_l - L_GAN,
    discriminator: L_GAN (maximised; here its binary cross-entropy is minimised).

The decoder's -L_GAN is the usual non-saturating generator loss, -log Dis(x~) - log Dis(x_p).
gamma weighs content against style. In vaebench the encoder's and decoder's losses are one scalar
for the main optimizer, each reaching only its own part: the encoder's terms run the decoder and
Dis with detached weights, the decoder's run on detached z; Dis has its own Adam over
`auxiliary_parameters()` and is never trained by L_llike (as in the paper).

The decoder's output is also read as a Bernoulli (or the configured) likelihood p(x|z), which the
likelihood metrics use; the objective trains no pixel likelihood and is not a bound on log p(x),
so the model sets ``trains_on_likelihood_bound = False`` (as the WAE does) and reports flag it.

Presets: ``vae_gan`` (small: the shared MLP trunk, a 3-layer convolutional discriminator) and
``vae_gan_paper`` (the paper's CelebA setting as recalled: z of 128 dims, gamma = 1e-6, RMSProp
at 3e-4 replaced by Adam, a discriminator of 32, 128, 256, 256 channels with its third
convolution as the feature layer l, and the shared convolutional trunk of 64, 128, 256 channels
for encoder and decoder [unverified]; 5x5 kernels and batch normalisation are not reproduced).

Equation, section and algorithm numbers are cited from memory; vaebench's references do not hold
the paper's text [unverified].
"""

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call

from registry._registry import register_model, register_model_preset
from registry.base import LossOutput, kl_to_prior
from registry.trunks import Architecture
from registry.vae import VAE, LikelihoodName


class Discriminator(nn.Module):
    """Stride-2 convolutions with leaky ReLUs, then a linear real/fake logit.

    Args:
        data_shape: ``(C, H, W)``.
        channels: Channels of each convolution; the first is stride 1, the others stride 2.
        feature_layer: Index of the convolution whose activations are Dis_l (0-based).
    """

    def __init__(
        self, data_shape: tuple[int, ...], channels: tuple[int, ...], feature_layer: int
    ) -> None:
        super().__init__()
        c_in, height, width = data_shape
        self.convs = nn.ModuleList()
        for i, c_out in enumerate(channels):
            stride = 1 if i == 0 else 2
            self.convs.append(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1))
            height, width, c_in = math.ceil(height / stride), math.ceil(width / stride), c_out
        self.feature_layer = feature_layer
        self.head = nn.Linear(c_in * height * width, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return the logit ``(N,)`` and the flattened features of layer l ``(N, F)``."""
        h, features = x, None
        for i, conv in enumerate(self.convs):
            h = nn.functional.leaky_relu(conv(h), 0.2)
            if i == self.feature_layer:
                features = h.flatten(start_dim=1)
        return self.head(h.flatten(start_dim=1)).squeeze(-1), features


class VAEGAN(VAE):
    """A VAE whose reconstruction error lives in a discriminator's features; see the module doc.

    Args:
        data_shape, latent_dim, architecture, likelihood: As for the VAE.
        gamma: Weight of the feature reconstruction in the decoder's loss.
        discriminator_channels: Channels of the discriminator's convolutions.
        feature_layer: The discriminator convolution whose activations are compared.
        discriminator_lr: Adam learning rate of the discriminator.
    """

    trains_on_likelihood_bound = False

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int,
        architecture: Architecture,
        likelihood: LikelihoodName,
        *,
        gamma: float,
        discriminator_channels: tuple[int, ...],
        feature_layer: int,
        discriminator_lr: float,
    ) -> None:
        super().__init__(data_shape, latent_dim, architecture, likelihood)
        self.gamma = gamma
        self.discriminator = Discriminator(self.data_shape, discriminator_channels, feature_layer)
        self.auxiliary_optimizer = {"lr": discriminator_lr, "betas": (0.5, 0.999)}

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def image(self, z: Tensor, decoder_weights: dict[str, Tensor] | None = None) -> Tensor:
        """Return x~ = Dec(z), the decoder's mean image ``(N, *data_shape)``."""
        if decoder_weights is None:
            params = self.decoder(z)
        else:
            params = functional_call(self.decoder, decoder_weights, (z,))
        return self.likelihood(params).mean.reshape(-1, *self.data_shape)

    def discriminate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return Dis's logit and layer-l features with detached weights (no Dis training)."""
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, frozen, (x,))

    def feature_error(self, features_x: Tensor, x_tilde: Tensor) -> Tensor:
        """Return L_llike = 1/2 ||Dis_l(x) - Dis_l(x~)||^2 per example, ``(B,)`` (Eq. 7)."""
        return 0.5 * (self.discriminate(x_tilde)[1] - features_x).pow(2).sum(-1)

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        q_z = self.encode(x)
        z = q_z.rsample()  # (B, D)
        kl = kl_to_prior(q_z, self.prior(), z[None])  # (B,)
        features_x = self.discriminate(x)[1].detach()  # (B, F)
        frozen_decoder = {name: p.detach() for name, p in self.decoder.named_parameters()}
        # Encoder: L_prior + L_llike, through a decoder with detached weights.
        llike_encoder = self.feature_error(features_x, self.image(z, frozen_decoder))
        # Decoder: gamma L_llike - L_GAN, on detached codes and prior samples.
        x_tilde = self.image(z.detach())  # (B, *data_shape)
        x_p = self.image(self.prior().sample(z.shape[:1]))
        llike_decoder = self.feature_error(features_x, x_tilde)
        fooling = -(
            nn.functional.logsigmoid(self.discriminate(x_tilde)[0])
            + nn.functional.logsigmoid(self.discriminate(x_p)[0])
        )
        loss = (kl_weight * kl + llike_encoder + self.gamma * llike_decoder + fooling).mean()
        d_loss, d_accuracy = discriminator_loss(self.discriminator, x, x_tilde, x_p)
        with torch.no_grad():  # the pixel ELBO, logged for comparison with the other families
            reconstruction = self.decode(z).log_prob(x).mean()
        terms = {
            "reconstruction": reconstruction,
            "kl": kl.detach().mean(),
            "elbo": reconstruction - kl.detach().mean(),
            "feature_reconstruction": llike_decoder.detach().mean(),
            "generator_loss": fooling.detach().mean(),
            "discriminator_loss": d_loss.detach(),
            "discriminator_accuracy": d_accuracy.detach(),
        }
        return LossOutput(loss, terms, auxiliary_loss=d_loss)


def discriminator_loss(
    discriminator: nn.Module, x: Tensor, x_tilde: Tensor, x_p: Tensor
) -> tuple[Tensor, Tensor]:
    """Return -L_GAN as a binary cross-entropy (data 1; reconstructions and samples 0), and the
    accuracy; the generated images are detached here."""
    fakes = torch.cat([x_tilde, x_p]).detach()
    logits = discriminator(torch.cat([x, fakes]))[0]  # (3B,)
    labels = torch.cat([torch.ones(len(x)), torch.zeros(len(fakes))]).to(logits)
    accuracy = ((logits > 0).to(labels) == labels).float().mean()
    return nn.functional.binary_cross_entropy_with_logits(logits, labels), accuracy


@register_model("vae_gan")
def vae_gan(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 16,
    architecture: Architecture = Architecture(),
    likelihood: LikelihoodName = "bernoulli",
    gamma: float = 1e-2,
    discriminator_channels: tuple[int, ...] = (16, 32, 32),
    feature_layer: int = 1,
    discriminator_lr: float = 3e-4,
) -> VAEGAN:
    """Build a VAE-GAN (Larsen et al. 2016); images only. Not trained on a likelihood bound."""
    if len(data_shape) != 3:
        raise ValueError(
            f"Expected an image dataset with data_shape (C, H, W) for `vae_gan` (its "
            f"discriminator is convolutional), but got {tuple(data_shape)}."
        )
    if gamma < 0 or discriminator_lr <= 0 or not 0 <= feature_layer < len(discriminator_channels):
        raise ValueError(
            f"Expected `model.gamma` >= 0, `model.discriminator_lr` > 0 and `model.feature_layer` "
            f"in [0, {len(discriminator_channels)}), but got {gamma}, {discriminator_lr} and "
            f"{feature_layer}."
        )
    return VAEGAN(
        data_shape,
        latent_dim,
        architecture,
        likelihood,
        gamma=gamma,
        discriminator_channels=discriminator_channels,
        feature_layer=feature_layer,
        discriminator_lr=discriminator_lr,
    )


register_model_preset(
    "vae_gan_paper",
    base="vae_gan",
    doc="Build the VAE-GAN of the paper's CelebA experiments (z = 128, gamma = 1e-6).",
    latent_dim=128,
    architecture=Architecture(trunk="conv", hidden=(64, 128, 256), conv_fc=2048),
    gamma=1e-6,
    discriminator_channels=(32, 128, 256, 256),
    feature_layer=2,
)
