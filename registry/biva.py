"""BIVA, the bidirectional-inference variational auto-encoder (Maaløe, Fraccaro, Liévin & Winther,
NeurIPS 2019).

L stochastic layers. Every layer below the top holds two variables, a bottom-up z_i^BU and a
top-down z_i^TD; the top layer holds one, z_L. The generative model is top-down over both
(Sec. 3, Eq. 5 as recalled):

    p(x, z) = p(x | z) p(z_L) prod_{i<L} p(z_i^BU, z_i^TD | z_>i),

where each conditional reads a deterministic top-down path s_{i+1} that has seen every layer
above (the paper's skip connections between stochastic layers), and the observation model reads
s_1 and, through a skip connection, the top variable z_L directly. Inference is bidirectional
(Eq. 6 as recalled): a bottom-up pass infers z_i^BU from x and z_<i^BU and, at its end, z_L from
x and all of them; a top-down pass then infers each z_i^TD from the bottom-up features of x and
the top-down path,

    q(z|x) = q(z_L | x, z_<L^BU) prod_{i<L} q(z_i^BU | x, z_<i^BU) q(z_i^TD | x, z_>i).

Every factor is a diagonal Gaussian; the loss is the negative ELBO with a one-sample Monte Carlo
KL (q and p factorise in different orders). The flattened z of the model interface lists the
groups in generative order: z_L, then (z_i^BU, z_i^TD) for i = L-1 ... 1. q(z|x) chains
dependent groups, so no local q* family of the inference-gap protocol contains it: the gaps
report n/a, as for the Ladder VAE.

Presets: ``biva`` (small: 3 layers of 16, 8 and 4 latents on MLP blocks) and ``biva_paper``
(the authors' binarised-MNIST configuration, `get_deep_vae_mnist` in github.com/vlievin/
biva-pytorch, `biva/model/architectures.py`: 6 stochastic layers of 48, 40, 32, 24, 16 and 8
latents bottom first, three blocks per stage, ELU, and free bits of 2 nats per variable from
its `run_deepvae.py`; its 64-filter residual convolutional blocks with weight normalisation and
dropout are replaced by MLP blocks whose widths are vaebench's choice, and its Adamax at 2e-3 by
the trainer's Adam, so it is the authors' hierarchy, not their network).

Equation and section numbers are cited from memory; vaebench's references do not hold the
paper's text [unverified].
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from registry._registry import register_model, register_model_preset
from registry.base import LatentVariableModel, LossOutput, standard_normal_prior
from registry.hierarchical import AncestralDistribution, diagonal_normal
from registry.ladder_vae import mlp_block
from registry.likelihoods import create_likelihood
from registry.trunks import gaussian_head
from registry.vae import LikelihoodName

Activation = Literal["relu", "tanh", "elu", "leaky_relu"]
Values = dict[tuple[int, str], Tensor]  # {(layer, "bu" | "td" | "top"): tensor}


@dataclass
class BIVAPass:
    """One pass through BIVA's layers.

    Attributes:
        z: Flattened groups ``(*lead, D)`` in generative order.
        log_p: log p(z), ``(*lead,)``.
        log_q: log q(z|x), ``(*lead,)``; None without x.
        state: Inputs of the observation model, ``(*lead, hidden[0] + d_L)``.
        kl_terms: log q - log p of each variable (z_L, then z_i^BU and z_i^TD per layer), each
            ``(*lead,)``; empty without x.
    """

    z: Tensor
    log_p: Tensor
    log_q: Tensor | None
    state: Tensor
    kl_terms: list[Tensor]


class BIVA(LatentVariableModel):
    """BIVA with MLP blocks; see the module docstring.

    Args:
        data_shape: Shape of one observation (flattened by the first block).
        latent_dims: Size of each layer's variables, bottom (z_1) first; layers below the top
            hold two variables of that size (BU and TD), the top one.
        hidden: Width of the deterministic blocks of each layer, bottom first.
        block_depth: Linear layers per deterministic block.
        activation: Nonlinearity.
        likelihood: Observation model.
        free_bits: Floor, in nats, on each variable's batch-mean KL in the training objective;
            0 trains on the ELBO itself.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dims: tuple[int, ...],
        hidden: tuple[int, ...],
        block_depth: int,
        activation: Activation,
        likelihood: LikelihoodName,
        free_bits: float,
    ) -> None:
        dims, top = tuple(latent_dims), len(latent_dims) - 1
        groups = (dims[top], *[d for i in reversed(range(top)) for d in (dims[i], dims[i])])
        super().__init__(data_shape, sum(groups))
        self.latent_dims, self.hidden, self.group_sizes = dims, tuple(hidden), groups
        self.free_bits = free_bits
        self.observation = create_likelihood(likelihood, self.data_shape)

        def block(width_in: int, width: int) -> nn.Sequential:
            return mlp_block([width_in] + [width] * block_depth, activation)

        # Bottom-up path d_1 = f(x), d_i = f(d_{i-1}, z_{i-1}^BU); heads of q(z_i^BU|.), q(z_L|.).
        widths_in = [math.prod(self.data_shape)] + [
            h + d for h, d in zip(hidden, dims, strict=True)
        ][:-1]
        self.up = nn.ModuleList(block(w, h) for w, h in zip(widths_in, hidden, strict=True))
        self.up_heads = nn.ModuleList(
            nn.Linear(h, 2 * d) for h, d in zip(hidden, dims, strict=True)
        )
        # Top-down path: s_L = f(z_L), s_i = f(s_{i+1}, z_i^BU, z_i^TD), with the heads of
        # p(z_i^BU, z_i^TD | s_{i+1}) and q(z_i^TD | s_{i+1}, d_i) for every layer below the top.
        self.top_block = block(dims[top], hidden[top])
        self.prior_heads = nn.ModuleList(nn.Linear(hidden[i + 1], 4 * dims[i]) for i in range(top))
        self.td_blocks = nn.ModuleList(
            block(hidden[i + 1] + hidden[i], hidden[i]) for i in range(top)
        )
        self.td_heads = nn.ModuleList(nn.Linear(hidden[i], 2 * dims[i]) for i in range(top))
        self.down = nn.ModuleList(block(hidden[i + 1] + 2 * dims[i], hidden[i]) for i in range(top))
        self.decoder = nn.Sequential(
            block(hidden[0] + dims[top], hidden[0]),
            nn.Linear(hidden[0], self.observation.num_params * math.prod(self.data_shape)),
        )

    def _given(self, z: Tensor | None) -> Values | None:
        """Split a flattened ``z`` into ``{(layer, "bu" | "td" | "top"): value}``."""
        if z is None:
            return None
        parts, top = z.split(self.group_sizes, dim=-1), len(self.latent_dims) - 1
        given = {(top, "top"): parts[0]}
        for k, i in enumerate(reversed(range(top))):
            given[(i, "bu")], given[(i, "td")] = parts[1 + 2 * k], parts[2 + 2 * k]
        return given

    def _draw(
        self, dist: Distribution, key: tuple[int, str] | None, given: Values | None, use_means: bool
    ) -> Tensor:
        if given is not None:
            return given[key]
        return dist.mean if use_means else dist.rsample()

    def bottom_up(
        self, x: Tensor, lead: torch.Size, given: Values | None, use_means: bool
    ) -> tuple[list[Tensor], Values, Values]:
        """Run the bottom-up pass: features d_i ``(*lead, h_i)``, z^BU and z_L, and their log q."""
        top, features, values, log_q = len(self.latent_dims) - 1, [], {}, {}
        h = self.up[0](x.flatten(start_dim=1)).expand(*lead, -1)  # (*lead, h_1)
        for i in range(top + 1):
            if i > 0:
                h = self.up[i](torch.cat([h, values[(i - 1, "bu")]], dim=-1))
            features.append(h)
            key = (i, "top" if i == top else "bu")
            q_i = diagonal_normal(*gaussian_head(self.up_heads[i](h)))
            values[key] = self._draw(q_i, key, given, use_means)
            log_q[key] = q_i.log_prob(values[key])  # (*lead,)
        return features, values, log_q

    def run(
        self,
        lead: torch.Size,
        *,
        x: Tensor | None = None,
        z: Tensor | None = None,
        use_means: bool = False,
    ) -> BIVAPass:
        """Run the model in generative order, drawing (or scoring a given) z from q or p.

        Args:
            lead: Leading shape ``(*S, B)`` of the pass (``(*S,)`` for the prior without x).
            x: Observations ``(B, *data_shape)``; with them z is drawn from q(z|x), else p(z).
            z: Given values ``(*lead, D)`` to score instead of sampling.
            use_means: Take each conditional's mean instead of a sample.
        """
        given, top = self._given(z), len(self.latent_dims) - 1
        features, values, log_q_up = None, {}, {}
        if x is not None:
            features, values, log_q_up = self.bottom_up(x, lead, given, use_means)
        p_top = standard_normal_prior(self.latent_dims[top], like=self.decoder[-1].weight)
        z_top = values.get((top, "top"))
        if z_top is None:
            z_top = self._draw(p_top.expand(lead), (top, "top"), given, use_means)
        log_p, groups, s = p_top.log_prob(z_top), [z_top], self.top_block(z_top)
        kl_terms = [log_q_up[(top, "top")] - log_p] if features is not None else []
        log_q = sum(log_q_up.values()) if features is not None else None
        for i in reversed(range(top)):
            # p(z_i^BU, z_i^TD | s_{i+1}): one diagonal Gaussian, i.e. one per variable.
            loc, scale = gaussian_head(self.prior_heads[i](s))  # (*lead, 2 d_i) each
            (loc_bu, loc_td), (scale_bu, scale_td) = loc.chunk(2, -1), scale.chunk(2, -1)
            p_bu, p_td = diagonal_normal(loc_bu, scale_bu), diagonal_normal(loc_td, scale_td)
            if features is None and given is not None:
                z_bu, z_td = given[(i, "bu")], given[(i, "td")]
            elif features is None:
                z_bu, z_td = (self._draw(p, None, None, use_means) for p in (p_bu, p_td))
            else:
                td_input = self.td_blocks[i](torch.cat([s, features[i]], dim=-1))
                q_td = diagonal_normal(*gaussian_head(self.td_heads[i](td_input)))
                z_bu, z_td = values[(i, "bu")], self._draw(q_td, (i, "td"), given, use_means)
            log_p_bu, log_p_td = p_bu.log_prob(z_bu), p_td.log_prob(z_td)
            if features is not None:
                log_q_td = q_td.log_prob(z_td)
                log_q = log_q + log_q_td
                kl_terms += [log_q_up[(i, "bu")] - log_p_bu, log_q_td - log_p_td]
            log_p = log_p + log_p_bu + log_p_td
            pair = torch.cat([z_bu, z_td], dim=-1)  # (*lead, 2 d_i)
            groups.append(pair)
            s = self.down[i](torch.cat([s, pair], dim=-1))
        # NOTE: the skip connection: p(x|z) reads the top variable directly, beside s_1.
        state = torch.cat([s, z_top], dim=-1)
        return BIVAPass(torch.cat(groups, dim=-1), log_p, log_q, state, kl_terms)

    def prior(self) -> Distribution:
        return AncestralDistribution(
            draw=lambda lead: self.run(lead).z,
            density=lambda z: self.run(z.shape[:-1], z=z).log_p,
            location=lambda: self.run(torch.Size(), use_means=True).z,
            batch_shape=torch.Size(),
            event_size=self.latent_dim,
        )

    def encode(self, x: Tensor) -> Distribution:
        self.check_input(x)
        return AncestralDistribution(
            draw=lambda lead: self.run(lead, x=x).z,
            density=lambda z: self.run(z.shape[:-1], x=x, z=z).log_q,
            location=lambda: self.run(x.shape[:1], x=x, use_means=True).z,
            batch_shape=x.shape[:1],
            event_size=self.latent_dim,
        )

    def decode_state(self, state: Tensor) -> Distribution:
        return self.observation(self.decoder(state))

    def decode(self, z: Tensor) -> Distribution:
        return self.decode_state(self.run(z.shape[:-1], z=z).state)

    def sample_posterior(self, x: Tensor, num_samples: int) -> tuple[Tensor, Tensor]:
        self.check_input(x)
        result = self.run(torch.Size([num_samples, len(x)]), x=x)
        return result.z, result.log_q  # (K, B, D), (K, B)

    def log_importance_weights(self, x: Tensor, *, num_samples: int) -> Tensor:
        """Return log p(z) + log p(x|z) - log q(z|x) from one fused pass, shape ``(K, B)``."""
        self.check_input(x)
        result = self.run(torch.Size([num_samples, len(x)]), x=x)
        return result.log_p + self.decode_state(result.state).log_prob(x) - result.log_q

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        """Return the negative ELBO with one-sample Monte Carlo KLs, each variable's batch-mean
        KL floored at `free_bits` nats in the objective (Kingma et al. 2016, Eq. 15)."""
        self.check_input(x)
        result = self.run(x.shape[:1], x=x)
        reconstruction = self.decode_state(result.state).log_prob(x)  # (B,)
        kl_terms = torch.stack([term.mean() for term in result.kl_terms])  # (variables,)
        kl_objective = kl_terms.clamp(min=self.free_bits).sum()
        loss = -reconstruction.mean() + kl_weight * kl_objective
        rec, kl_mean = reconstruction.detach().mean(), kl_terms.detach().sum()
        return LossOutput(loss, {"elbo": rec - kl_mean, "reconstruction": rec, "kl": kl_mean})


@register_model("biva")
def biva(
    *,
    data_shape: tuple[int, ...],
    latent_dims: tuple[int, ...] = (16, 8, 4),
    hidden: tuple[int, ...] = (128, 64, 32),
    block_depth: int = 1,
    activation: Activation = "elu",
    likelihood: LikelihoodName = "bernoulli",
    free_bits: float = 0.0,
) -> BIVA:
    """Build BIVA (Maaløe et al. 2019). Sizes are listed bottom layer first; every layer below
    the top holds a bottom-up and a top-down variable of its size."""
    if len(latent_dims) < 2 or len(latent_dims) != len(hidden):
        raise ValueError(
            f"Expected `model.latent_dims` and `model.hidden` of equal length >= 2 (one entry per "
            f"stochastic layer; BIVA needs a layer below the top), but got {latent_dims} and "
            f"{hidden}."
        )
    if min(latent_dims + hidden) < 1 or block_depth < 1 or free_bits < 0:
        raise ValueError(
            f"Expected positive sizes, `model.block_depth` >= 1 and `model.free_bits` >= 0, but "
            f"got latent_dims={latent_dims}, hidden={hidden}, block_depth={block_depth}, "
            f"free_bits={free_bits}."
        )
    return BIVA(data_shape, latent_dims, hidden, block_depth, activation, likelihood, free_bits)


register_model_preset(
    "biva_paper",
    base="biva",
    doc="Build BIVA with the authors' binary-MNIST hierarchy on MLP blocks (Maaløe et al. 2019).",
    latent_dims=(48, 40, 32, 24, 16, 8),
    hidden=(512, 256, 256, 128, 128, 64),
    block_depth=3,
    free_bits=2.0,
)
