"""The vector-quantised VAE, VQ-VAE (van den Oord, Vinyals & Kavukcuoglu, NeurIPS 2017).

A convolutional encoder maps x to a grid of P vectors z_e(x) (P = h * w positions); each is
replaced by its nearest codebook entry e_k (Eqs. 1-2), and the decoder sees only the codes.
The posterior is a point mass, q(k|x) = 1 for k = argmin ||z_e(x) - e_j||, so with a prior P(k)
over code grids the ELBO is log p(x|z_q(x)) + log P(k(x)); with the uniform prior used during
training this is log p(x|z_q) - P log N (Sec. 3.1: "the KL divergence is constant"). That bound
is a valid bound on log p(x) of the model p(x) = sum_k P(k) p(x|e_k), so the importance-sampled
NLL is defined; with a point-mass q every importance weight is the same, so it equals the ELBO
for every K. The prior is ``uniform`` (the paper's training prior) or a small ``autoregressive``
prior over the code grid in raster order (a MADE standing in for the paper's PixelCNN prior),
fitted on the detached codes alongside the auto-encoder rather than in a second stage.

The training loss is Eq. 3, -log p(x|z_q) + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2, with the
straight-through gradient for the quantiser, plus -log P(k) for the prior (a constant for the
uniform prior). Its value is -ELBO plus non-negative terms, an upper bound on -log p(x).

Interface: z is the flattened grid of code *vectors* (D = P * embedding_dim), and every density
is taken with respect to the cell (nearest code) that z falls in: p(x|z) and P(z) depend on z
only through its codes, and q(z|x) is 1 on x's cell and 0 elsewhere (log q = 0 or -inf). The
latents are discrete (``continuous_latents = False``): metrics that move z by gradients (AIS,
inference-gap optimisation) raise `LikelihoodUndefined` for this model.

Presets: ``vq_vae`` (small: 16 codes of 8 dims on a 2x2 grid for 8x8 images) and
``vq_vae_paper`` (N = 512 codes, beta = 0.25, 2 stride-2 4x4 convolutions and 2 residual blocks
of 256 channels, as recalled from the paper's image experiments; embedding_dim 64; all
[unverified]).

Equation and section numbers are cited from memory; vaebench's references do not hold the
paper's text [unverified].
"""

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, constraints

from registry._registry import register_model, register_model_preset
from registry.base import LatentVariableModel, LossOutput
from registry.iaf_vae import MADE
from registry.likelihoods import create_likelihood
from registry.vae import LikelihoodName


class ResidualBlock(nn.Module):
    """ReLU, 3x3 conv, ReLU, 1x1 conv, added to the input (van den Oord et al. 2017, Sec. 4.1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


def conv_encoder(
    channels: int, hidden: int, downsamples: int, blocks: int, out: int
) -> nn.Sequential:
    """Return stride-2 4x4 convolutions, residual blocks and a 1x1 projection to `out` channels."""
    layers: list[nn.Module] = []
    for c_in in (channels, *[hidden] * (downsamples - 1)):
        layers += [nn.Conv2d(c_in, hidden, 4, stride=2, padding=1), nn.ReLU()]
    layers += [ResidualBlock(hidden) for _ in range(blocks)]
    return nn.Sequential(*layers, nn.ReLU(), nn.Conv2d(hidden, out, 1))


def conv_decoder(
    embedding: int, hidden: int, upsamples: int, blocks: int, out: int
) -> nn.Sequential:
    """Return a 3x3 convolution, residual blocks and stride-2 transposed 4x4 convolutions."""
    layers: list[nn.Module] = [nn.Conv2d(embedding, hidden, 3, padding=1)]
    layers += [ResidualBlock(hidden) for _ in range(blocks)]
    for i in range(upsamples):
        c_out = out if i == upsamples - 1 else hidden
        layers += [nn.ReLU(), nn.ConvTranspose2d(hidden, c_out, 4, stride=2, padding=1)]
    return nn.Sequential(*layers)


class AutoregressiveCodePrior(nn.Module):
    """P(k) = prod_i P(k_i | k_<i) over the P grid positions in raster order, via a MADE.

    Args:
        num_positions: P.
        codebook_size: N.
        hidden: MADE hidden widths.
        embedding_dim: Size of the learned input embedding of each code.
    """

    def __init__(
        self,
        num_positions: int,
        codebook_size: int,
        hidden: tuple[int, ...],
        embedding_dim: int = 16,
    ) -> None:
        super().__init__()
        self.num_positions, self.codebook_size = num_positions, codebook_size
        positions = torch.arange(1, num_positions + 1)
        self.embed = nn.Embedding(codebook_size, embedding_dim)
        self.made = MADE(
            positions.repeat_interleave(embedding_dim),
            positions.repeat_interleave(codebook_size),
            hidden,
        )

    def logits(self, codes: Tensor) -> Tensor:
        """Return the logits of P(k_i | k_<i) for codes ``(..., P)``, shape ``(..., P, N)``."""
        inputs = self.embed(codes).flatten(start_dim=-2)  # (..., P * E)
        return self.made(inputs).unflatten(-1, (self.num_positions, self.codebook_size))

    def log_prob(self, codes: Tensor) -> Tensor:
        """Return log P(k), shape ``codes.shape[:-1]``."""
        return Categorical(logits=self.logits(codes)).log_prob(codes).sum(-1)

    @torch.no_grad()
    def sample(self, shape: torch.Size) -> Tensor:
        """Draw code grids ``(*shape, P)`` by ancestral sampling, one position per pass."""
        codes = torch.zeros(
            *shape, self.num_positions, dtype=torch.long, device=self.embed.weight.device
        )
        return sample_in_raster_order(self.logits, codes)


def sample_in_raster_order(logits: Callable[[Tensor], Tensor], codes: Tensor) -> Tensor:
    """Fill the code grids ``codes (..., P)`` in place, one position per pass, and return them.

    `logits` maps grids ``(..., P)`` to ``(..., P, N)``; it must be autoregressive (a MADE), so
    that position i's logits read only the codes before i, which are already drawn.
    """
    for i in range(codes.shape[-1]):
        codes[..., i] = Categorical(logits=logits(codes)[..., i, :]).sample()
    return codes


class UniformCodePrior(nn.Module):
    """P(k) = N^-P, the prior the paper trains with."""

    def __init__(self, num_positions: int, codebook_size: int) -> None:
        super().__init__()
        self.num_positions, self.codebook_size = num_positions, codebook_size

    def log_prob(self, codes: Tensor) -> Tensor:
        value = -self.num_positions * math.log(self.codebook_size)
        return torch.full(codes.shape[:-1], value, device=codes.device)

    def sample(self, shape: torch.Size) -> Tensor:
        return torch.randint(self.codebook_size, (*shape, self.num_positions))


class CodePrior(Distribution):
    """The prior over code grids as a distribution over z; batch ``()``, event ``(P * E,)``.

    ``log_prob(z)`` is the log-mass of the codes of the cell z falls in.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.real_vector

    def __init__(self, model: "VQVAE") -> None:
        self.model = model
        super().__init__(torch.Size(), torch.Size([model.latent_dim]), validate_args=False)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        codes = self.model.code_prior.sample(torch.Size(sample_shape)).to(
            self.model.codebook.device
        )
        return self.model.code_vectors(codes).detach()  # (*S, P * E)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.model.code_prior.log_prob(self.model.nearest_codes(value))


class CodePosterior(Distribution):
    """q(z|x): a point mass on x's quantised grid; batch ``(B,)``, event ``(P * E,)``.

    ``rsample`` returns the straight-through value z_e + sg(z_q - z_e): equal to z_q, with the
    gradient of z_e (van den Oord et al. 2017, Sec. 3.1).
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, model: "VQVAE", z_e: Tensor) -> None:
        self.model, self.z_e = model, z_e
        self.codes = model.nearest_codes(z_e)  # (B, P)
        self.z_q = model.code_vectors(self.codes)  # (B, P * E)
        super().__init__(z_e.shape[:1], z_e.shape[1:], validate_args=False)

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        z = self.z_e + (self.z_q - self.z_e).detach()  # (B, P * E)
        return z.expand(*sample_shape, *z.shape)

    def log_prob(self, value: Tensor) -> Tensor:
        on_cell = (self.model.nearest_codes(value) == self.codes).all(-1)  # (..., B)
        return torch.where(on_cell, 0.0, -math.inf).to(value.dtype)

    @property
    def mean(self) -> Tensor:
        return self.z_q


class VQVAE(LatentVariableModel):
    """VQ-VAE with a convolutional encoder/decoder and a uniform or autoregressive code prior.

    Args:
        data_shape: ``(C, H, W)``.
        hidden_channels: Channels of the convolutional trunks.
        num_downsamples: Stride-2 convolutions; the grid is ``ceil(H / 2^n) x ceil(W / 2^n)``.
        num_residual_blocks: Residual blocks in encoder and decoder.
        codebook_size: N.
        embedding_dim: E, the size of each code vector.
        commitment_weight: beta of Eq. 3.
        prior: ``uniform`` or ``autoregressive``.
        prior_hidden: MADE hidden widths of the autoregressive prior.
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
        codebook_size: int,
        embedding_dim: int,
        commitment_weight: float,
        prior: Literal["uniform", "autoregressive"],
        prior_hidden: tuple[int, ...],
        likelihood: LikelihoodName,
    ) -> None:
        channels, height, width = data_shape
        factor = 2**num_downsamples
        self.padded = (math.ceil(height / factor) * factor, math.ceil(width / factor) * factor)
        self.grid = (self.padded[0] // factor, self.padded[1] // factor)
        num_positions = self.grid[0] * self.grid[1]
        super().__init__(data_shape, num_positions * embedding_dim)
        self.embedding_dim, self.commitment_weight = embedding_dim, commitment_weight
        self.observation = create_likelihood(likelihood, self.data_shape)
        self.encoder = conv_encoder(
            channels, hidden_channels, num_downsamples, num_residual_blocks, embedding_dim
        )
        self.decoder = conv_decoder(
            embedding_dim,
            hidden_channels,
            num_downsamples,
            num_residual_blocks,
            channels * self.observation.num_params,
        )
        self.codebook = nn.Parameter(
            torch.empty(codebook_size, embedding_dim).uniform_(
                -1 / codebook_size, 1 / codebook_size
            )
        )
        if prior == "autoregressive":
            self.code_prior = AutoregressiveCodePrior(num_positions, codebook_size, prior_hidden)
        else:
            self.code_prior = UniformCodePrior(num_positions, codebook_size)

    def nearest_codes(self, z: Tensor) -> Tensor:
        """Return the nearest code's index at each position of ``z (..., P * E)``, ``(..., P)``."""
        vectors = z.unflatten(-1, (-1, self.embedding_dim))  # (..., P, E)
        return nearest_code_indices(vectors, self.codebook)

    def code_vectors(self, codes: Tensor) -> Tensor:
        """Return the code vectors of grids ``(..., P)``, flattened to ``(..., P * E)``."""
        return self.codebook[codes].flatten(start_dim=-2)

    def prior(self) -> Distribution:
        return CodePrior(self)

    def encode(self, x: Tensor) -> CodePosterior:
        self.check_input(x)
        x = nn.functional.pad(x, (0, self.padded[1] - x.shape[-1], 0, self.padded[0] - x.shape[-2]))
        z_e = self.encoder(x)  # (B, E, h, w)
        return CodePosterior(self, z_e.permute(0, 2, 3, 1).flatten(start_dim=1))  # (B, h*w*E)

    def decode(self, z: Tensor) -> Distribution:
        z = z + (self.code_vectors(self.nearest_codes(z)) - z).detach()  # straight-through
        grid = z.reshape(-1, *self.grid, self.embedding_dim).permute(0, 3, 1, 2)  # (N, E, h, w)
        out = self.decoder(grid)[..., : self.data_shape[1], : self.data_shape[2]]  # (N, C*P, H, W)
        return self.observation(out.reshape(*z.shape[:-1], -1))  # (..., B, P*C*H*W)

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        """Return Eq. 3 plus -log P(k); `kl_weight` is ignored (-log P(k) is not annealed)."""
        per_example, terms, q_z = vq_objective(self, x)
        terms["codes_used"] = codes_used(q_z.codes, len(self.codebook))
        return LossOutput(per_example.mean(), terms)


def vq_objective(model, x: Tensor) -> tuple[Tensor, dict[str, Tensor], "CodePosterior"]:
    """Return the per-example VQ-VAE loss (Eq. 3 plus -log P(k)), its logged terms and q(z|x).

    Shared by every vector-quantised model: `model` supplies ``encode`` (a `CodePosterior`),
    ``log_likelihood``, ``code_prior`` and ``commitment_weight``.
    """
    q_z = model.encode(x)
    reconstruction = model.log_likelihood(x, q_z.rsample())  # (B,)
    log_prior = model.code_prior.log_prob(q_z.codes)  # (B,); codes carry no gradient
    codebook = (q_z.z_e.detach() - q_z.z_q).pow(2).sum(-1)
    commitment = (q_z.z_e - q_z.z_q.detach()).pow(2).sum(-1)
    per_example = -reconstruction - log_prior + codebook + model.commitment_weight * commitment
    terms = {
        name: value.detach().mean()
        for name, value in (
            ("elbo", reconstruction + log_prior),
            ("reconstruction", reconstruction),
            ("kl", -log_prior),
            ("codebook", codebook),
            ("commitment", commitment),
        )
    }
    return per_example, terms, q_z


def nearest_code_indices(vectors: Tensor, codebook: Tensor) -> Tensor:
    """Return the index of the code nearest to each vector (squared Euclidean distance).

    Args:
        vectors: Encoder outputs ``(..., P, E)``.
        codebook: Code vectors ``(N, E)``.

    Returns:
        Indices ``(..., P)``; |v|^2 - 2 v.c + |c|^2 takes one matrix product per call.
    """
    squared = (
        vectors.pow(2).sum(-1, keepdim=True) - 2 * vectors @ codebook.T + codebook.pow(2).sum(-1)
    )  # (..., P, N)
    return squared.argmin(-1)


def codes_used(codes: Tensor, codebook_size: int) -> Tensor:
    """Return how many distinct codes of the codebook occur in `codes`, as a device tensor.

    NOTE: a bincount, not ``unique().numel()``: the count stays on the device, with no host sync.
    """
    return torch.bincount(codes.flatten(), minlength=codebook_size).gt(0).sum().double()


def _build(
    data_shape: tuple[int, ...],
    hidden_channels: int,
    num_downsamples: int,
    num_residual_blocks: int,
    codebook_size: int,
    embedding_dim: int,
    commitment_weight: float,
    prior: Literal["uniform", "autoregressive"],
    prior_hidden: tuple[int, ...],
    likelihood: LikelihoodName,
) -> VQVAE:
    if len(data_shape) != 3:
        raise ValueError(
            f"Expected an image dataset with data_shape (C, H, W) for `vq_vae`, but got "
            f"{tuple(data_shape)}."
        )
    sizes = (hidden_channels, num_downsamples, codebook_size, embedding_dim)
    if min(sizes) < 1 or num_residual_blocks < 0 or commitment_weight < 0 or not prior_hidden:
        raise ValueError(
            f"Expected positive sizes, `model.num_residual_blocks` >= 0, `model.commitment_weight`"
            f" >= 0 and non-empty `model.prior_hidden`, but got hidden_channels, num_downsamples, "
            f"codebook_size, embedding_dim = {sizes}, num_residual_blocks={num_residual_blocks}, "
            f"commitment_weight={commitment_weight}, prior_hidden={prior_hidden}."
        )
    return VQVAE(
        data_shape,
        hidden_channels,
        num_downsamples,
        num_residual_blocks,
        codebook_size,
        embedding_dim,
        commitment_weight,
        prior,
        prior_hidden,
        likelihood,
    )


@register_model("vq_vae")
def vq_vae(
    *,
    data_shape: tuple[int, ...],
    hidden_channels: int = 32,
    num_downsamples: int = 2,
    num_residual_blocks: int = 1,
    codebook_size: int = 16,
    embedding_dim: int = 8,
    commitment_weight: float = 0.25,
    prior: Literal["uniform", "autoregressive"] = "autoregressive",
    prior_hidden: tuple[int, ...] = (64,),
    likelihood: LikelihoodName = "bernoulli",
) -> VQVAE:
    """Build a VQ-VAE (van den Oord et al. 2017) with a prior over codes; images only."""
    return _build(
        data_shape,
        hidden_channels,
        num_downsamples,
        num_residual_blocks,
        codebook_size,
        embedding_dim,
        commitment_weight,
        prior,
        prior_hidden,
        likelihood,
    )


register_model_preset(
    "vq_vae_paper",
    base="vq_vae",
    doc="Build the VQ-VAE of the paper's image experiments (N = 512, beta = 0.25).",
    hidden_channels=256,
    num_residual_blocks=2,
    codebook_size=512,
    embedding_dim=64,
    prior_hidden=(256, 256),
)
