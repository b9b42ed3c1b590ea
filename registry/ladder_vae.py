"""The Ladder VAE (Sønderby, Raiko, Maaløe, Sønderby & Winther, NeurIPS 2016).

Generative model with L stochastic layers, p(z) = p(z_L) prod_i p(z_i | z_{i+1}) and p(x | z_1),
each conditional a diagonal Gaussian from an MLP (Eqs. 1-3). Inference runs top-down through the
*same* conditionals (Eq. 12): a deterministic bottom-up pass d_i = MLP(d_{i-1}) proposes
(mu_hat_i, sigma_hat_i) for every layer, and each layer below the top merges that proposal with
the top-down prior p(z_i | z_{i+1}) by precision weighting (Eqs. 17-19):

    sigma_q^2 = 1 / (sigma_hat^-2 + sigma_p^-2),
    mu_q = (mu_hat sigma_hat^-2 + mu_p sigma_p^-2) sigma_q^2.

``inference="bottom_up"`` gives the plain hierarchical VAE the paper compares against (the
2-layer architecture of Burda et al. 2016): q(z_1|x) prod_i q(z_{i+1}|z_i), with the same
generative model. Layers are listed bottom first (z_1 first), as in the paper; the flattened z
of the model interface lists them top first (generation order). The paper's batch
normalisation is the ``batch_norm`` option (evaluate in eval mode); its KL warm-up is the
trainer's ``kl_weight`` schedule.

Presets: ``ladder_vae`` (small, for the quick suite) and ``ladder_vae_paper`` (the paper's MNIST
model: 5 stochastic layers, as in vaebench's literature.yaml, of 64-32-16-8-4 latents with MLP
blocks of 512-256-128-64-32 units [unverified], leaky ReLU, batch normalisation).

Equation and section numbers are cited from memory; vaebench's references do not hold the
paper's text [unverified].
"""

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from registry._registry import register_model, register_model_preset
from registry.base import LatentDraws, standard_normal_prior
from registry.hierarchical import AncestralDistribution, TopDownHierarchy, diagonal_normal
from registry.likelihoods import create_likelihood
from registry.trunks import ACTIVATIONS, gaussian_head
from registry.vae import LikelihoodName

Activation = Literal["relu", "tanh", "elu", "leaky_relu"]


class SampleBatchNorm(nn.BatchNorm1d):
    """Batch normalisation over all leading dims of ``(..., C)``, e.g. ``(K, B, C)``.

    NOTE: in training mode the statistics couple the examples of a batch; evaluate in eval mode.
    A single row in training mode uses the running statistics instead of failing.
    """

    def forward(self, h: Tensor) -> Tensor:
        flat = h.reshape(-1, h.shape[-1])  # (N, C)
        if self.training and len(flat) > 1:
            return super().forward(flat).reshape(h.shape)
        return nn.functional.batch_norm(
            flat, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        ).reshape(h.shape)


def mlp_block(widths: list[int], activation: str, batch_norm: bool = False) -> nn.Sequential:
    """Return Linear layers of `widths`, each followed by [batch norm and] `activation`."""
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
        layers.append(nn.Linear(width_in, width_out))
        if batch_norm:
            layers.append(SampleBatchNorm(width_out))
        layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def precision_weighted(
    loc_hat: Tensor, scale_hat: Tensor, loc_p: Tensor, scale_p: Tensor
) -> Distribution:
    """Return the normalised product of N(loc_hat, scale_hat^2) and N(loc_p, scale_p^2).

    Sønderby et al. (2016), Eqs. 17-19: the merged precision is the sum of precisions, and the
    merged mean the precision-weighted mean.
    """
    precision_hat, precision_p = scale_hat.pow(-2), scale_p.pow(-2)
    variance = 1.0 / (precision_hat + precision_p)
    loc = (loc_hat * precision_hat + loc_p * precision_p) * variance
    return diagonal_normal(loc, variance.sqrt())


class LadderVAE(TopDownHierarchy):
    """Ladder VAE with MLP blocks; see the module docstring.

    Args:
        data_shape: Shape of one observation (flattened by the first block).
        latent_dims: Size of each stochastic layer, bottom (z_1) first.
        hidden: Width of the deterministic block of each layer, bottom first.
        block_depth: Linear layers per deterministic block.
        activation: Nonlinearity.
        likelihood: Observation model p(x|z_1).
        batch_norm: Batch-normalise every hidden layer, as in the paper's experiments.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dims: tuple[int, ...],
        hidden: tuple[int, ...],
        block_depth: int,
        activation: Activation,
        likelihood: LikelihoodName,
        batch_norm: bool,
    ) -> None:
        super().__init__(data_shape, tuple(reversed(latent_dims)))
        self.latent_dims, self.hidden = tuple(latent_dims), tuple(hidden)
        self.depth, self.activation, self.batch_norm = block_depth, activation, batch_norm
        self.observation = create_likelihood(likelihood, self.data_shape)
        # Top-down conditionals p(z_i | z_{i+1}) for every layer below the top, bottom first.
        self.down = nn.ModuleList(
            self._block(latent_dims[i + 1], hidden[i]) for i in range(len(latent_dims) - 1)
        )
        self.down_heads = nn.ModuleList(
            nn.Linear(hidden[i], 2 * latent_dims[i]) for i in range(len(latent_dims) - 1)
        )
        self.decoder = nn.Sequential(
            self._block(latent_dims[0], hidden[0]),
            nn.Linear(hidden[0], self.observation.num_params * math.prod(self.data_shape)),
        )
        self.build_inference()

    def _block(self, width_in: int, width: int) -> nn.Sequential:
        return mlp_block([width_in] + [width] * self.depth, self.activation, self.batch_norm)

    def build_inference(self) -> None:
        """Build the bottom-up deterministic path d_i and its proposals (mu_hat_i, sigma_hat_i)."""
        widths_in = (math.prod(self.data_shape), *self.hidden[:-1])
        self.up = nn.ModuleList(
            self._block(w_in, w) for w_in, w in zip(widths_in, self.hidden, strict=True)
        )
        self.up_heads = nn.ModuleList(
            nn.Linear(w, 2 * d) for w, d in zip(self.hidden, self.latent_dims, strict=True)
        )

    def bottom_up(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        h, proposals = x.flatten(start_dim=1), []  # (B, prod(data_shape))
        for block, head in zip(self.up, self.up_heads, strict=True):
            h = block(h)
            proposals.append(gaussian_head(head(h)))  # (B, d_i) each
        return proposals[::-1]

    def initial_state(self, lead: torch.Size) -> None:
        return None  # p(z_L) = N(0, I) needs no state; below it, the state is z_{i+1} itself

    def group_prior(self, index: int, state: Tensor | None) -> Distribution:
        if index == 0:
            return standard_normal_prior(self.group_sizes[0], like=self.decoder[-1].weight)
        layer = len(self.latent_dims) - 1 - index
        return diagonal_normal(*gaussian_head(self.down_heads[layer](self.down[layer](state))))

    def group_posterior(
        self, index: int, state: Tensor | None, feature: tuple[Tensor, Tensor], prior: Distribution
    ) -> Distribution:
        loc_hat, scale_hat = feature
        if index == 0:
            return diagonal_normal(loc_hat, scale_hat)
        return precision_weighted(loc_hat, scale_hat, prior.base_dist.loc, prior.base_dist.scale)

    def update_state(self, index: int, state: Tensor | None, z_group: Tensor) -> Tensor:
        return z_group

    def decode_state(self, state: Tensor) -> Distribution:
        return self.observation(self.decoder(state))


class BottomUpHierarchicalVAE(LadderVAE):
    """The plain hierarchical VAE: bottom-up inference q(z_1|x) prod_i q(z_{i+1}|z_i).

    Same generative model as `LadderVAE`; q(z_{i+1}|z_i) is an MLP block of the layer's width on
    the sampled z_i (Burda et al. 2016, Sec. 5). Its loss uses the single-sample Monte Carlo KL,
    because q and p factorise in opposite orders.
    """

    def build_inference(self) -> None:
        self.up = nn.ModuleList([self._block(math.prod(self.data_shape), self.hidden[0])])
        self.up_heads = nn.ModuleList([nn.Linear(self.hidden[0], 2 * self.latent_dims[0])])
        self.infer = nn.ModuleList(
            self._block(d, w) for d, w in zip(self.latent_dims[:-1], self.hidden[1:], strict=True)
        )
        self.infer_heads = nn.ModuleList(
            nn.Linear(w, 2 * d) for w, d in zip(self.hidden[1:], self.latent_dims[1:], strict=True)
        )

    def inference_pass(
        self, x: Tensor, lead: torch.Size, z: Tensor | None = None, use_means: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Sample (or score a given) z bottom-up.

        Returns:
            z ``(*lead, D)`` with the groups top first, and log q(z|x) ``(*lead,)``.
        """
        given = list(z.split(self.group_sizes, dim=-1))[::-1] if z is not None else None
        loc, scale = gaussian_head(self.up_heads[0](self.up[0](x.flatten(start_dim=1))))  # (B, d_1)
        groups, log_q = [], 0.0
        for i in range(len(self.latent_dims)):
            if i > 0:
                loc, scale = gaussian_head(self.infer_heads[i - 1](self.infer[i - 1](groups[-1])))
            q_i = diagonal_normal(loc, scale).expand(lead)
            z_i = given[i] if given is not None else (q_i.mean if use_means else q_i.rsample())
            log_q = log_q + q_i.log_prob(z_i)
            groups.append(z_i)
        return torch.cat(groups[::-1], dim=-1), log_q

    def encode(self, x: Tensor) -> Distribution:
        self.check_input(x)
        return AncestralDistribution(
            draw=lambda lead: self.inference_pass(x, lead)[0],
            density=lambda z: self.inference_pass(x, z.shape[:-1], z=z)[1],
            location=lambda: self.inference_pass(x, x.shape[:1], use_means=True)[0],
            batch_shape=x.shape[:1],
            event_size=self.latent_dim,
        )

    def draw_latents(self, x: Tensor, num_samples: int) -> LatentDraws:
        """Draw z from the bottom-up pass, then score it in one generative top-down pass.

        q and p do not share their conditionals here, so the KL has no per-group closed form;
        the estimators take the Monte Carlo mean of log q - log p(z).
        """
        self.check_input(x)
        z, log_q = self.inference_pass(x, torch.Size([num_samples, len(x)]))  # (K, B, D), (K, B)
        generative = self.top_down(z.shape[:-1], z=z)
        return LatentDraws(
            z,
            log_q,
            log_prior=generative.log_p,
            log_likelihood=self.decode_state(generative.state).log_prob(x),
        )


def _build(
    data_shape: tuple[int, ...],
    latent_dims: tuple[int, ...],
    hidden: tuple[int, ...],
    block_depth: int,
    activation: Activation,
    likelihood: LikelihoodName,
    inference: Literal["ladder", "bottom_up"],
    batch_norm: bool,
) -> LadderVAE:
    if not latent_dims or len(latent_dims) != len(hidden):
        raise ValueError(
            f"Expected `model.latent_dims` and `model.hidden` to be non-empty and of equal length "
            f"(one width per stochastic layer), but got {latent_dims} and {hidden}."
        )
    if min(latent_dims + hidden) < 1 or block_depth < 1:
        raise ValueError(
            f"Expected positive sizes and `model.block_depth` >= 1, but got latent_dims="
            f"{latent_dims}, hidden={hidden}, block_depth={block_depth}."
        )
    cls = LadderVAE if inference == "ladder" else BottomUpHierarchicalVAE
    return cls(data_shape, latent_dims, hidden, block_depth, activation, likelihood, batch_norm)


@register_model("ladder_vae")
def ladder_vae(
    *,
    data_shape: tuple[int, ...],
    latent_dims: tuple[int, ...] = (16, 8),
    hidden: tuple[int, ...] = (128, 64),
    block_depth: int = 2,
    activation: Activation = "leaky_relu",
    likelihood: LikelihoodName = "bernoulli",
    inference: Literal["ladder", "bottom_up"] = "ladder",
    batch_norm: bool = False,
) -> LadderVAE:
    """Build a Ladder VAE (Sønderby et al. 2016), or with ``inference="bottom_up"`` the plain
    hierarchical VAE it is compared with. Sizes are listed bottom layer first."""
    return _build(
        data_shape, latent_dims, hidden, block_depth, activation, likelihood, inference, batch_norm
    )


register_model_preset(
    "ladder_vae_paper",
    base="ladder_vae",
    doc="Build the Ladder VAE of the paper's MNIST experiments (Sønderby et al. 2016, Sec. 3).",
    latent_dims=(64, 32, 16, 8, 4),
    hidden=(512, 256, 128, 64, 32),
    batch_norm=True,
)
