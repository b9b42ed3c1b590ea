"""A hierarchical NVAE-style model (Vahdat & Kautz, NeurIPS 2020), scaled for CPU.

Latent groups are feature maps at several scales, coarsest first. The prior and the posterior
share one top-down path (Eq. 1): p(z) = prod_l p(z_l | z_<l) and q(z|x) = prod_l q(z_l | z_<l, x),
where q(z_l|.) reads the top-down state and the bottom-up encoder feature of its group. The
posterior is parameterised *relative to the prior* (residual normal distributions, Sec. 3.2):

    p(z_l^i | z_<l) = N(mu_i, sigma_i),   q(z_l^i | z_<l, x) = N(mu_i + dmu_i, sigma_i * dsigma_i),

so KL(q || p) = 1/2 (dmu_i^2 / sigma_i^2 + dsigma_i^2 - log dsigma_i^2 - 1) per unit (Eq. 2);
the loss sums these analytic KLs over groups at the sampled z_<l. Both towers are built from
residual cells (Swish, 3x3 conv, Swish, 3x3 conv, squeeze-and-excitation; Sec. 3.1, Fig. 3a),
and the optional spectral regularisation adds lambda * sum of the largest singular values of
every convolution, estimated by power iteration carried over training steps (Sec. 3.2).

Scaled for CPU and the interface: no batch normalisation, no normalising-flow cells, no KL
balancing, one residual cell per group by default, a single stride-2 convolution per
preprocessing step, and nearest-neighbour upsampling followed by a 3x3 convolution between
scales. Images are padded so that every scale halves exactly.

Presets: ``nvae`` (small: 2 scales of 2 groups, 4 latent channels, 16 channels) and
``nvae_paper`` (the MNIST configuration of the official code as recorded in vaebench's
references: 2 scales, 10 groups at the finer scale and 5 at the coarser, 20 latent channels
per group; 32 channels, 2 preprocessing downsamples and lambda = 0.01 [unverified]).

Equation and section numbers are cited from memory; vaebench's references do not hold the
paper's text [unverified].
"""

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from registry._registry import register_model, register_model_preset
from registry.base import LossOutput, standard_normal_prior
from registry.hierarchical import TopDownHierarchy, diagonal_normal
from registry.likelihoods import create_likelihood
from registry.vae import LikelihoodName


def apply_2d(module: nn.Module, h: Tensor) -> Tensor:
    """Apply an image module to ``h (..., C, H, W)`` with any leading dims, e.g. ``(K, B)``."""
    out = module(h.reshape(-1, *h.shape[-3:]))  # (N, C', H', W')
    return out.reshape(*h.shape[:-3], *out.shape[-3:])


def soft_exp(raw: Tensor) -> Tensor:
    """Return exp(5 tanh(raw / 5)): a positive scale whose log is softly clamped to [-5, 5]."""
    return torch.exp(5.0 * torch.tanh(raw / 5.0))


class SqueezeExcitation(nn.Module):
    """Channel gating by globally pooled features (Hu et al. 2018), as in NVAE's cells."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, h: Tensor) -> Tensor:
        return h * self.gate(h.mean(dim=(-2, -1)))[..., None, None]  # (N, C, H, W)


class ResidualCell(nn.Module):
    """h + 0.1 * SE(conv(swish(conv(swish(h))))), NVAE's encoder cell without batch norm."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            SqueezeExcitation(channels),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + 0.1 * self.body(h)


def cells(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualCell(channels) for _ in range(count)))


def upsample(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(channels, channels, 3, padding=1))


class NVAE(TopDownHierarchy):
    """The NVAE-style hierarchy; see the module docstring.

    Args:
        data_shape: ``(C, H, W)``.
        channels: Channels of the residual towers.
        latent_channels: Channels of every latent group.
        groups_per_scale: Number of groups at each scale, coarsest first.
        cells_per_group: Residual cells per group in each tower.
        spectral_regularization: lambda; 0 disables it.
        power_iterations: Power-iteration steps per loss evaluation.
        likelihood: Observation model.
        preprocess_downsamples: Stride-2 convolutions between the image and the finest latent
            scale (NVAE's preprocessing blocks), mirrored by upsampling before the output.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        channels: int,
        latent_channels: int,
        groups_per_scale: tuple[int, ...],
        cells_per_group: int,
        spectral_regularization: float,
        power_iterations: int,
        likelihood: LikelihoodName,
        preprocess_downsamples: int,
    ) -> None:
        num_scales = len(groups_per_scale)
        factor = 2 ** (num_scales - 1 + preprocess_downsamples)
        padded = tuple(math.ceil(side / factor) * factor for side in data_shape[1:])
        # Scale s (0 = coarsest) has resolution padded / 2^(n + S - 1 - s), n preprocessing steps.
        shifts = [preprocess_downsamples + num_scales - 1 - s for s in range(num_scales)]
        self.resolutions = [(padded[0] >> shift, padded[1] >> shift) for shift in shifts]
        self.group_scales = [s for s, n in enumerate(groups_per_scale) for _ in range(n)]
        sizes = tuple(latent_channels * math.prod(self.resolutions[s]) for s in self.group_scales)
        super().__init__(data_shape, sizes)
        self.padded, self.latent_channels = padded, latent_channels
        self.preprocess_downsamples = preprocess_downsamples
        self.spectral_regularization, self.power_iterations = (
            spectral_regularization,
            power_iterations,
        )
        self.observation = create_likelihood(likelihood, self.data_shape)
        self._build_towers(channels, cells_per_group)
        self._init_power_iteration()

    def _build_towers(self, channels: int, cells_per_group: int) -> None:
        num_groups, num_scales = len(self.group_sizes), len(self.resolutions)
        latent, image_channels = self.latent_channels, self.data_shape[0]
        downsamples = [
            layer
            for _ in range(self.preprocess_downsamples)
            for layer in (nn.SiLU(), nn.Conv2d(channels, channels, 3, stride=2, padding=1))
        ]
        self.stem = nn.Sequential(nn.Conv2d(image_channels, channels, 3, padding=1), *downsamples)
        self.encoder_cells = nn.ModuleList(
            cells(channels, cells_per_group) for _ in range(num_groups)
        )
        self.encoder_down = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(num_scales - 1)
        )
        self.initial = nn.Parameter(torch.zeros(channels, *self.resolutions[0]))
        self.prior_heads = nn.ModuleList(
            nn.Sequential(nn.ELU(), nn.Conv2d(channels, 2 * latent, 3, padding=1))
            for _ in range(num_groups - 1)
        )
        self.posterior_heads = nn.ModuleList(
            nn.Sequential(nn.ELU(), nn.Conv2d(2 * channels, 2 * latent, 3, padding=1))
            for _ in range(num_groups)
        )
        self.combiners = nn.ModuleList(
            nn.Conv2d(channels + latent, channels, 1) for _ in range(num_groups)
        )
        self.decoder_cells = nn.ModuleList(
            cells(channels, cells_per_group) for _ in range(num_groups)
        )
        self.decoder_up = nn.ModuleList(upsample(channels) for _ in range(num_scales - 1))
        out_channels = image_channels * self.observation.num_params
        # NOTE: the cell runs at the finest latent resolution and only the last layer at the full
        # one; full-resolution 3x3 convolutions would dominate the cost on CPU.
        ups = [upsample(channels) for _ in range(self.preprocess_downsamples)]
        last = [nn.Upsample(scale_factor=2)] if ups else []
        self.output = nn.Sequential(
            ResidualCell(channels),
            *(layer for up in ups[:-1] for layer in (*up, nn.ELU())),
            nn.ELU(),
            *last,
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )

    def bottom_up(self, x: Tensor) -> list[Tensor]:
        x = nn.functional.pad(x, (0, self.padded[1] - x.shape[-1], 0, self.padded[0] - x.shape[-2]))
        h = self.stem(x)  # (B, C, finest resolution)
        features = []  # the encoder runs fine to coarse, i.e. groups last to first
        for index in reversed(range(len(self.group_sizes))):
            h = self.encoder_cells[index](h)
            features.append(h)
            scale = self.group_scales[index]
            if index > 0 and self.group_scales[index - 1] != scale:
                h = self.encoder_down[scale - 1](h)
        return features[::-1]

    def initial_state(self, lead: torch.Size) -> Tensor:
        return self.initial.expand(*lead, *self.initial.shape)  # (*lead, C, h, w)

    def group_prior(self, index: int, state: Tensor) -> Distribution:
        if index == 0:
            return standard_normal_prior(self.group_sizes[0], like=self.initial)
        loc, raw_scale = apply_2d(self.prior_heads[index - 1], state).chunk(2, dim=-3)
        return diagonal_normal(loc.flatten(-3), soft_exp(raw_scale.flatten(-3)))  # (*lead, d)

    def group_posterior(
        self, index: int, state: Tensor, feature: Tensor, prior: Distribution
    ) -> Distribution:
        both = torch.cat([state, feature.expand_as(state)], dim=-3)  # (*lead, 2C, h, w)
        delta_loc, raw_delta_scale = apply_2d(self.posterior_heads[index], both).chunk(2, dim=-3)
        loc = prior.base_dist.loc + delta_loc.flatten(-3)
        return diagonal_normal(loc, prior.base_dist.scale * soft_exp(raw_delta_scale.flatten(-3)))

    def update_state(self, index: int, state: Tensor, z_group: Tensor) -> Tensor:
        z_map = z_group.unflatten(
            -1, (self.latent_channels, *self.resolutions[self.group_scales[index]])
        )
        state = apply_2d(self.combiners[index], torch.cat([state, z_map], dim=-3))
        state = apply_2d(self.decoder_cells[index], state)
        scale = self.group_scales[index]
        if index + 1 < len(self.group_sizes) and self.group_scales[index + 1] != scale:
            state = apply_2d(self.decoder_up[scale], state)
        return state

    def decode_state(self, state: Tensor) -> Distribution:
        out = apply_2d(self.output, state)[..., : self.data_shape[1], : self.data_shape[2]]
        return self.observation(out.flatten(-3))  # (..., B, P*C*H*W)

    def _init_power_iteration(self) -> None:
        self.convolutions = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        for i, conv in enumerate(self.convolutions):
            u = nn.functional.normalize(torch.randn(conv.out_channels), dim=0)
            self.register_buffer(f"_power_u{i}", u, persistent=False)

    def spectral_norms(self) -> Tensor:
        """Return the largest singular value of each convolution's ``(out, in*k*k)`` matrix.

        Power iteration with a left vector carried across calls, so a few iterations per training
        step suffice (Vahdat & Kautz 2020, Sec. 3.2; Miyato et al. 2018, Algorithm 1).
        """
        norms = []
        for i, conv in enumerate(self.convolutions):
            weight = conv.weight.flatten(start_dim=1)  # (out, in*k*k)
            u = getattr(self, f"_power_u{i}")
            with torch.no_grad():
                for _ in range(self.power_iterations):
                    v = nn.functional.normalize(weight.T @ u, dim=0)
                    u = nn.functional.normalize(weight @ v, dim=0)
                setattr(self, f"_power_u{i}", u)
            norms.append(u @ weight @ v)
        return torch.stack(norms)

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        output = super().loss(x, step, kl_weight=kl_weight)
        if self.spectral_regularization > 0:
            spectral = self.spectral_norms().sum()
            output.loss = output.loss + self.spectral_regularization * spectral
            output.terms["spectral_norm_sum"] = spectral.detach()
        return output


MINIMA = {"channels": 1, "latent_channels": 1, "cells_per_group": 0, "preprocess_downsamples": 0,
          "spectral_regularization": 0, "power_iterations": 1}  # fmt: skip


def _build(data_shape: tuple[int, ...], **settings: Any) -> NVAE:
    """Validate the factory settings (see `NVAE`) and build the model."""
    if len(data_shape) != 3:
        raise ValueError(
            f"Expected an image dataset with data_shape (C, H, W) for `nvae`, but got "
            f"{tuple(data_shape)}."
        )
    groups = settings["groups_per_scale"]
    if not groups or min(groups) < 1:
        raise ValueError(
            f"Expected `model.groups_per_scale` to be non-empty positive counts, but got {groups}."
        )
    for key, least in MINIMA.items():
        if settings[key] < least:
            raise ValueError(f"Expected `model.{key}` to be >= {least}, but got {settings[key]}.")
    return NVAE(data_shape, **settings)


@register_model("nvae")
def nvae(
    *,
    data_shape: tuple[int, ...],
    channels: int = 16,
    latent_channels: int = 4,
    groups_per_scale: tuple[int, ...] = (2, 2),
    cells_per_group: int = 1,
    preprocess_downsamples: int = 1,
    spectral_regularization: float = 0.0,
    power_iterations: int = 1,
    likelihood: LikelihoodName = "bernoulli",
) -> NVAE:
    """Build a small NVAE-style hierarchical VAE (Vahdat & Kautz 2020); images only."""
    return _build(
        data_shape, channels=channels, latent_channels=latent_channels,
        groups_per_scale=groups_per_scale, cells_per_group=cells_per_group,
        preprocess_downsamples=preprocess_downsamples,
        spectral_regularization=spectral_regularization, power_iterations=power_iterations,
        likelihood=likelihood,
    )  # fmt: skip


register_model_preset(
    "nvae_paper",
    base="nvae",
    doc="Build the NVAE-style model in the paper's MNIST configuration (2 scales, 20 channels).",
    channels=32,
    latent_channels=20,
    groups_per_scale=(5, 10),
    preprocess_downsamples=2,
    spectral_regularization=0.01,
)
