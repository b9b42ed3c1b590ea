"""VQ-VAE-2: two levels of vector-quantised codes (Razavi, van den Oord & Vinyals, NeurIPS 2019).

The encoder maps x to a *bottom* feature grid, and that grid, downsampled once more, to a *top*
grid of vectors; each top vector is replaced by its nearest entry of the top codebook. The top
codes are decoded back to the bottom resolution and, with the bottom features, give the bottom
grid, quantised with its own codebook; the decoder sees the bottom codes and the upsampled top
codes (Sec. 3.1, Fig. 2a, Algorithm 1). Each level is trained with the VQ-VAE loss (van den Oord
et al. 2017, Eq. 3): a codebook term and a beta-weighted commitment term, the straight-through
gradient through each quantiser.

The prior over codes is autoregressive at each level, the top one unconditional and the bottom
one conditioned on the top codes (Sec. 3.2, Algorithm 2: P(k_top) P(k_bottom | k_top)), and
sampling goes top -> bottom -> decoder. The paper's PixelSNAIL/PixelCNN priors are replaced by a
MADE per level in raster order, the bottom MADE taking the embedded top codes as an unmasked
context, and both are fitted on the detached codes alongside the auto-encoder rather than in a
second stage (as in `registry.vq_vae`).

Densities are those of `registry.vq_vae` with z the two flattened grids of code vectors, top
first (D = (P_top + P_bottom) * E): q(z|x) is a point mass on x's cell, log P(z) the log-mass
of the cell's codes, so the importance-sampled NLL equals the ELBO log p(x|z_q) + log P(k) for
every K. The latents are discrete (``continuous_latents = False``): AIS and the inference-gap
optimisation report n/a.

Presets: ``vq_vae2`` (small: for 8x8 images a 4x4 bottom grid of 4 codes and a 2x2 top grid of
16 codes, 48 code bits) and ``vq_vae2_paper`` (the paper's 256x256 ImageNet model as recalled:
bottom grid at 1/4 and top at 1/8 of the image side, 512 codes of 64 dims per level, 128 hidden
channels, 2 residual blocks, beta = 0.25 [unverified]).

Equation, section and algorithm numbers are cited from memory; vaebench's references do not hold
the paper's text [unverified].
"""

import math

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution

from registry._registry import register_model, register_model_preset
from registry.base import LatentVariableModel, LossOutput
from registry.iaf_vae import MADE
from registry.likelihoods import create_likelihood
from registry.vae import LikelihoodName
from registry.vq_vae import (
    AutoregressiveCodePrior,
    CodePosterior,
    CodePrior,
    codes_used,
    conv_decoder,
    conv_encoder,
    nearest_code_indices,
    sample_in_raster_order,
    vq_objective,
)


class ConditionalCodePrior(AutoregressiveCodePrior):
    """P(k_bottom | k_top) = prod_i P(k_i | k_<i, k_top): a MADE with the top codes as context.

    Args:
        num_positions: P_bottom.
        codebook_size: N_bottom.
        hidden: MADE hidden widths.
        context_positions: P_top.
        context_codebook_size: N_top.
        embedding_dim: Size of the learned embedding of each (bottom or top) code.
    """

    def __init__(
        self,
        num_positions: int,
        codebook_size: int,
        hidden: tuple[int, ...],
        context_positions: int,
        context_codebook_size: int,
        embedding_dim: int = 16,
    ) -> None:
        super().__init__(num_positions, codebook_size, hidden, embedding_dim)
        positions = torch.arange(1, num_positions + 1)
        self.context_embed = nn.Embedding(context_codebook_size, embedding_dim)
        self.made = MADE(
            positions.repeat_interleave(embedding_dim),
            positions.repeat_interleave(codebook_size),
            hidden,
            context_dim=context_positions * embedding_dim,
        )

    def logits(self, codes: Tensor, context: Tensor) -> Tensor:
        """Return logits ``(..., P, N)`` of P(k_i | k_<i, k_top) for codes ``(..., P)``."""
        inputs = self.embed(codes).flatten(start_dim=-2)  # (..., P * E)
        given = self.context_embed(context).flatten(start_dim=-2)  # (..., P_top * E)
        out = self.made(inputs, given)
        return out.unflatten(-1, (self.num_positions, self.codebook_size))

    def log_prob(self, codes: Tensor, context: Tensor) -> Tensor:
        """Return log P(k_bottom | k_top), shape ``codes.shape[:-1]``."""
        return Categorical(logits=self.logits(codes, context)).log_prob(codes).sum(-1)

    @torch.no_grad()
    def sample(self, context: Tensor) -> Tensor:
        """Draw bottom grids ``(..., P)`` given top grids ``context (..., P_top)``."""
        codes = context.new_zeros(*context.shape[:-1], self.num_positions)
        return sample_in_raster_order(lambda grids: self.logits(grids, context), codes)


class TwoLevelCodePrior(nn.Module):
    """P(k) = P(k_top) P(k_bottom | k_top) over concatenated grids ``(..., P_top + P_bottom)``."""

    def __init__(self, top: AutoregressiveCodePrior, bottom: ConditionalCodePrior) -> None:
        super().__init__()
        self.top, self.bottom = top, bottom

    def log_prob(self, codes: Tensor) -> Tensor:
        top, bottom = codes.split([self.top.num_positions, self.bottom.num_positions], dim=-1)
        return self.top.log_prob(top) + self.bottom.log_prob(bottom, top)

    @torch.no_grad()
    def sample(self, shape: torch.Size) -> Tensor:
        """Draw ``(*shape, P_top + P_bottom)``: the top grid first, then the bottom given it."""
        top = self.top.sample(shape)
        return torch.cat([top, self.bottom.sample(top)], dim=-1)


class TwoLevelCodes(CodePrior):
    """The code prior as a distribution over z (see `registry.vq_vae.CodePrior`)."""

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        codes = self.model.code_prior.sample(torch.Size(sample_shape))
        return self.model.code_vectors(codes).detach()  # (*S, D)


class VQVAE2(LatentVariableModel):
    """VQ-VAE-2 with top and bottom code grids and autoregressive priors; see the module doc.

    Args:
        data_shape: ``(C, H, W)``.
        hidden_channels: Channels of the convolutional trunks.
        num_downsamples: Stride-2 convolutions to the bottom grid; the top grid is one more.
        num_residual_blocks: Residual blocks in each encoder and decoder.
        codebook_sizes: (N_top, N_bottom).
        embedding_dim: E, the size of every code vector.
        commitment_weight: beta.
        prior_hidden: MADE hidden widths of both priors.
        likelihood: Observation model.
    """

    continuous_latents = False
    point_mass_posterior = True

    def __init__(
        self,
        data_shape: tuple[int, ...],
        hidden_channels: int,
        num_downsamples: int,
        num_residual_blocks: int,
        codebook_sizes: tuple[int, int],
        embedding_dim: int,
        commitment_weight: float,
        prior_hidden: tuple[int, ...],
        likelihood: LikelihoodName,
    ) -> None:
        channels, height, width = data_shape
        factor = 2 ** (num_downsamples + 1)
        self.padded = (math.ceil(height / factor) * factor, math.ceil(width / factor) * factor)
        self.bottom_grid = (self.padded[0] * 2 // factor, self.padded[1] * 2 // factor)
        self.top_grid = (self.bottom_grid[0] // 2, self.bottom_grid[1] // 2)
        self.positions = (math.prod(self.top_grid), math.prod(self.bottom_grid))
        super().__init__(data_shape, sum(self.positions) * embedding_dim)
        self.embedding_dim, self.commitment_weight = embedding_dim, commitment_weight
        hidden, blocks = hidden_channels, num_residual_blocks
        self.observation = create_likelihood(likelihood, self.data_shape)
        # Bottom features at 1/2^n, top vectors one stride-2 convolution further down.
        self.encoder_bottom = conv_encoder(channels, hidden, num_downsamples, blocks, hidden)
        self.encoder_top = conv_encoder(hidden, hidden, 1, blocks, embedding_dim)
        # The top codes, decoded to the bottom resolution, condition the bottom quantiser.
        self.decoder_top = conv_decoder(embedding_dim, hidden, 1, blocks, hidden)
        self.pre_quantize_bottom = nn.Conv2d(2 * hidden, embedding_dim, 1)
        self.upsample_top = nn.ConvTranspose2d(embedding_dim, embedding_dim, 4, stride=2, padding=1)
        self.decoder = conv_decoder(
            2 * embedding_dim,
            hidden,
            num_downsamples,
            blocks,
            channels * self.observation.num_params,
        )
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.empty(n, embedding_dim).uniform_(-1 / n, 1 / n))
            for n in codebook_sizes
        )
        top = AutoregressiveCodePrior(self.positions[0], codebook_sizes[0], prior_hidden)
        bottom = ConditionalCodePrior(
            self.positions[1], codebook_sizes[1], prior_hidden, self.positions[0], codebook_sizes[0]
        )
        self.code_prior = TwoLevelCodePrior(top, bottom)

    def code_bits(self) -> float:
        """Return the bits of one code pair, P_top log2 N_top + P_bottom log2 N_bottom."""
        return sum(
            p * math.log2(len(c)) for p, c in zip(self.positions, self.codebooks, strict=True)
        )

    def _levels(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Split ``z (..., D)`` into top and bottom vectors ``(..., P_level, E)``."""
        sizes = [p * self.embedding_dim for p in self.positions]
        top, bottom = z.split(sizes, dim=-1)
        return top.unflatten(-1, (-1, self.embedding_dim)), bottom.unflatten(
            -1, (-1, self.embedding_dim)
        )

    def nearest_codes(self, z: Tensor) -> Tensor:
        """Return each position's nearest code of its level, ``(..., P_top + P_bottom)``."""
        levels = zip(self._levels(z), self.codebooks, strict=True)
        return torch.cat([nearest_code_indices(v, codebook) for v, codebook in levels], dim=-1)

    def code_vectors(self, codes: Tensor) -> Tensor:
        """Return the code vectors of grids ``(..., P_top + P_bottom)``, flattened, ``(..., D)``."""
        top, bottom = codes.split(list(self.positions), dim=-1)
        vectors = [
            c[k].flatten(start_dim=-2) for c, k in zip(self.codebooks, (top, bottom), strict=True)
        ]
        return torch.cat(vectors, dim=-1)

    def prior(self) -> Distribution:
        return TwoLevelCodes(self)

    def _grid(self, vectors: Tensor, grid: tuple[int, int]) -> Tensor:
        return vectors.reshape(-1, *grid, self.embedding_dim).permute(0, 3, 1, 2)  # (N, E, h, w)

    def _quantised(self, z_e: Tensor, codebook: Tensor) -> Tensor:
        """Return the straight-through quantisation of ``z_e (B, P, E)`` in one codebook."""
        return z_e + (codebook[nearest_code_indices(z_e, codebook)] - z_e).detach()

    def encode(self, x: Tensor) -> CodePosterior:
        self.check_input(x)
        x = nn.functional.pad(x, (0, self.padded[1] - x.shape[-1], 0, self.padded[0] - x.shape[-2]))
        h_bottom = self.encoder_bottom(x)  # (B, hidden, h_b, w_b)
        z_e_top = self.encoder_top(h_bottom).permute(0, 2, 3, 1).flatten(1, 2)  # (B, P_t, E)
        e_top = self._quantised(z_e_top, self.codebooks[0])
        conditioning = self.decoder_top(self._grid(e_top, self.top_grid))  # (B, hidden, h_b, w_b)
        z_e_bottom = self.pre_quantize_bottom(torch.cat([h_bottom, conditioning], dim=1))
        z_e_bottom = z_e_bottom.permute(0, 2, 3, 1).flatten(1, 2)  # (B, P_b, E)
        z_e = torch.cat([z_e_top.flatten(1), z_e_bottom.flatten(1)], dim=-1)  # (B, D)
        return CodePosterior(self, z_e)

    def decode(self, z: Tensor) -> Distribution:
        z = z + (self.code_vectors(self.nearest_codes(z)) - z).detach()  # straight-through
        top, bottom = self._levels(z)
        upsampled = self.upsample_top(self._grid(top, self.top_grid))  # (N, E, h_b, w_b)
        grids = torch.cat([self._grid(bottom, self.bottom_grid), upsampled], dim=1)
        out = self.decoder(grids)[..., : self.data_shape[1], : self.data_shape[2]]  # (N, C*P, H, W)
        return self.observation(out.reshape(*z.shape[:-1], -1))  # (..., B, P*C*H*W)

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        """Return Eq. 3 of VQ-VAE at both levels plus -log P(k); `kl_weight` is ignored."""
        per_example, terms, q_z = vq_objective(self, x)
        top, bottom = q_z.codes.split(list(self.positions), dim=-1)
        terms["codes_used_top"] = codes_used(top, len(self.codebooks[0]))
        terms["codes_used_bottom"] = codes_used(bottom, len(self.codebooks[1]))
        return LossOutput(per_example.mean(), terms)


@register_model("vq_vae2")
def vq_vae2(
    *,
    data_shape: tuple[int, ...],
    hidden_channels: int = 32,
    num_downsamples: int = 1,
    num_residual_blocks: int = 1,
    codebook_sizes: tuple[int, int] = (16, 4),
    embedding_dim: int = 8,
    commitment_weight: float = 0.25,
    prior_hidden: tuple[int, ...] = (64,),
    likelihood: LikelihoodName = "bernoulli",
) -> VQVAE2:
    """Build a VQ-VAE-2 (Razavi et al. 2019): top and bottom code grids; images only.

    ``codebook_sizes`` is (N_top, N_bottom); the bottom grid is at 1/2^num_downsamples of the
    image side and the top grid at half that.
    """
    sizes = (hidden_channels, num_downsamples, embedding_dim, *codebook_sizes)
    if len(data_shape) != 3:
        raise ValueError(
            f"Expected an image dataset with data_shape (C, H, W) for `vq_vae2`, but got "
            f"{tuple(data_shape)}."
        )
    if min(sizes) < 1 or num_residual_blocks < 0 or commitment_weight < 0 or not prior_hidden:
        raise ValueError(
            f"Expected positive sizes, `model.num_residual_blocks` >= 0, `model.commitment_weight`"
            f" >= 0 and non-empty `model.prior_hidden`, but got hidden_channels, num_downsamples, "
            f"embedding_dim, codebook_sizes = {sizes}, num_residual_blocks={num_residual_blocks}, "
            f"commitment_weight={commitment_weight}, prior_hidden={prior_hidden}."
        )
    return VQVAE2(
        data_shape,
        hidden_channels,
        num_downsamples,
        num_residual_blocks,
        codebook_sizes,
        embedding_dim,
        commitment_weight,
        prior_hidden,
        likelihood,
    )


register_model_preset(
    "vq_vae2_paper",
    base="vq_vae2",
    doc="Build the VQ-VAE-2 of the paper's ImageNet experiments (512 codes per level).",
    hidden_channels=128,
    num_downsamples=2,
    num_residual_blocks=2,
    codebook_sizes=(512, 512),
    embedding_dim=64,
    prior_hidden=(256, 256),
)
