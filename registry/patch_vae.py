"""PatchVAE (Gupta, Singh & Shrivastava, NeurIPS 2020): local latent codes for recognition.

A convolutional encoder maps x to an h x w grid of locations (patches). Each location p has two
latents: an *occurrence* o_p in {0, 1}, whether a part is present there, and an *appearance*
a_p in R^A, what it looks like. The decoder sees o_p * a_p at every location (an absent part
contributes nothing) and reconstructs x with transposed convolutions. The priors are the paper's:

    p(o_p) = Bernoulli(rho)  with a small rho (parts are rare),    p(a_p) = N(0, I_A),

and the posterior factorises the same way, q(o_p|x) = Bernoulli(pi_p(x)),
q(a_p|x) = N(mu_p(x), sigma_p(x)^2). The loss is the ELBO with the analytic KL of each factor
(Sec. 3), optionally weighted per factor (beta_occ, beta_app; 1 gives the ELBO).

Gradients through the discrete o_p use the straight-through Gumbel-sigmoid estimator: the
forward value is the hard sample 1[sigmoid((logit + logistic noise) / tau) > 1/2], an exact
draw of Bernoulli(pi_p), and the backward pass is that of the relaxed sample. So every density
is the discrete model's, and log q, log p and the KL are exact.

Interface: z is the flattened ``[o (P), a (P * A)]``, D = P (1 + A) for P = h * w locations. z is
partly discrete (``continuous_latents = False``), so AIS and the inference gaps, which move z
along gradients, are n/a; the ELBO, the NLL by importance sampling, samples and probes are
defined. The posterior mean ``[pi, mu]`` is the representation probes read.

Presets: ``patch_vae`` (small: a 4 x 4 grid of 4-d appearances on 8 x 8 images, rho = 0.1) and
``patch_vae_paper`` (rho = 0.01, appearance 64-d, 64-channel trunks, as recalled [unverified]).
The paper's parts are shared across locations, with one appearance per part; this family follows
the per-location reading of vaebench's reading list (an occurrence and an appearance per
location) [unverified].

Section numbers are cited from memory; vaebench's references do not hold the paper's text
[unverified].
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Normal, constraints, register_kl

from registry._registry import register_model, register_model_preset
from registry.base import LatentVariableModel, LossOutput
from registry.likelihoods import create_likelihood
from registry.vae import LikelihoodName
from registry.vq_vae import conv_decoder, conv_encoder


class OccurrenceAppearance(Distribution):
    """Independent Bernoulli occurrences and Gaussian appearances over ``[o (P), a (P * A)]``.

    Args:
        logits: Occurrence logits ``(..., P)``.
        loc: Appearance means ``(..., P * A)``.
        scale: Appearance standard deviations ``(..., P * A)``.
        temperature: tau of the straight-through Gumbel-sigmoid samples.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.real
    has_rsample = True

    def __init__(self, logits: Tensor, loc: Tensor, scale: Tensor, temperature: float) -> None:
        self.occurrence = Bernoulli(logits=logits, validate_args=False)
        self.appearance = Normal(loc, scale, validate_args=False)
        self.temperature = temperature
        batch = torch.broadcast_shapes(logits.shape[:-1], loc.shape[:-1])
        event = (logits.shape[-1] + loc.shape[-1],)
        super().__init__(batch, event, validate_args=False)

    @property
    def mean(self) -> Tensor:
        return torch.cat([self.occurrence.probs, self.appearance.loc], dim=-1)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        logits = self.occurrence.logits
        uniform = torch.rand(*sample_shape, *logits.shape, device=logits.device).clamp(
            1e-6, 1 - 1e-6
        )
        relaxed = torch.sigmoid((logits + uniform.log() - (-uniform).log1p()) / self.temperature)
        hard = (relaxed > 0.5).to(relaxed.dtype)  # an exact Bernoulli(sigmoid(logits)) draw
        occurrence = hard + (relaxed - relaxed.detach())  # straight-through; exact 0 added
        loc, scale = self.appearance.loc, self.appearance.scale
        appearance = loc + scale * torch.randn(*sample_shape, *loc.shape, device=loc.device)
        return torch.cat([occurrence, appearance], dim=-1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def split(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """Return the occurrences ``(..., P)`` and appearances ``(..., P * A)`` of ``value``."""
        num_locations = self.occurrence.logits.shape[-1]
        return value[..., :num_locations], value[..., num_locations:]

    def log_prob(self, value: Tensor) -> Tensor:
        occurrence, appearance = self.split(value)
        return self.occurrence.log_prob(occurrence).sum(-1) + self.appearance.log_prob(
            appearance
        ).sum(-1)


def factor_kls(q: OccurrenceAppearance, p: OccurrenceAppearance) -> tuple[Tensor, Tensor]:
    """Return the analytic KL of the occurrences and of the appearances, each summed, ``(...)``."""
    q_logits, p_logits = q.occurrence.logits, p.occurrence.logits
    log_q_on, log_q_off = F.logsigmoid(q_logits), F.logsigmoid(-q_logits)
    occurrence = log_q_on.exp() * (log_q_on - F.logsigmoid(p_logits)) + log_q_off.exp() * (
        log_q_off - F.logsigmoid(-p_logits)
    )  # (..., P); torch's Bernoulli KL does not broadcast a prior of batch shape ()
    occurrence = occurrence.sum(-1)
    appearance = torch.distributions.kl_divergence(q.appearance, p.appearance).sum(-1)
    return occurrence, appearance


@register_kl(OccurrenceAppearance, OccurrenceAppearance)
def _kl_occurrence_appearance(q: OccurrenceAppearance, p: OccurrenceAppearance) -> Tensor:
    occurrence, appearance = factor_kls(q, p)
    return occurrence + appearance


class PatchVAE(LatentVariableModel):
    """Per-location occurrence and appearance latents on a convolutional grid.

    Args:
        data_shape: ``(C, H, W)``.
        hidden_channels: Channels of the convolutional trunks.
        num_downsamples: Stride-2 convolutions; the grid is ``ceil(H / 2^n) x ceil(W / 2^n)``.
        num_residual_blocks: Residual blocks in encoder and decoder.
        appearance_dim: A.
        occurrence_prior: rho.
        occurrence_kl_weight: beta_occ.
        appearance_kl_weight: beta_app.
        temperature: tau of the straight-through occurrence samples.
        likelihood: Observation model.
    """

    continuous_latents = False

    def __init__(
        self,
        data_shape: tuple[int, ...],
        hidden_channels: int,
        num_downsamples: int,
        num_residual_blocks: int,
        appearance_dim: int,
        occurrence_prior: float,
        occurrence_kl_weight: float,
        appearance_kl_weight: float,
        temperature: float,
        likelihood: LikelihoodName,
    ) -> None:
        channels, height, width = data_shape
        factor = 2**num_downsamples
        grid = (math.ceil(height / factor), math.ceil(width / factor))
        super().__init__(data_shape, grid[0] * grid[1] * (1 + appearance_dim))
        self.grid, self.padded = grid, (grid[0] * factor, grid[1] * factor)
        self.appearance_dim, self.temperature = appearance_dim, temperature
        self.kl_weights = (occurrence_kl_weight, appearance_kl_weight)
        self.prior_logit = math.log(occurrence_prior) - math.log1p(-occurrence_prior)
        self.observation = create_likelihood(likelihood, self.data_shape)
        self.encoder = conv_encoder(
            channels, hidden_channels, num_downsamples, num_residual_blocks, 1 + 2 * appearance_dim
        )
        self.decoder = conv_decoder(
            appearance_dim,
            hidden_channels,
            num_downsamples,
            num_residual_blocks,
            channels * self.observation.num_params,
        )

    @property
    def num_locations(self) -> int:
        return self.grid[0] * self.grid[1]

    def prior(self) -> OccurrenceAppearance:
        reference = next(self.parameters())
        logits = torch.full((self.num_locations,), self.prior_logit, dtype=reference.dtype)
        loc = torch.zeros(self.num_locations * self.appearance_dim, dtype=reference.dtype)
        return OccurrenceAppearance(
            logits.to(reference.device), loc.to(reference.device), 1.0 + loc, self.temperature
        )

    def encode(self, x: Tensor) -> OccurrenceAppearance:
        self.check_input(x)
        x = nn.functional.pad(x, (0, self.padded[1] - x.shape[-1], 0, self.padded[0] - x.shape[-2]))
        h = self.encoder(x).permute(0, 2, 3, 1).flatten(1, 2)  # (B, P, 1 + 2A)
        logits, loc, raw_scale = h.split([1, self.appearance_dim, self.appearance_dim], dim=-1)
        scale = nn.functional.softplus(raw_scale) + 1e-4
        return OccurrenceAppearance(
            logits.squeeze(-1), loc.flatten(1), scale.flatten(1), self.temperature
        )

    def decode(self, z: Tensor) -> Distribution:
        occurrence = z[..., : self.num_locations, None]  # (..., B, P, 1)
        appearance = z[..., self.num_locations :].unflatten(-1, (-1, self.appearance_dim))
        parts = (occurrence * appearance).reshape(-1, *self.grid, self.appearance_dim)
        out = self.decoder(parts.permute(0, 3, 1, 2))  # (N, C * params, H', W')
        out = out[..., : self.data_shape[1], : self.data_shape[2]]  # (N, C * params, H, W)
        return self.observation(out.reshape(*z.shape[:-1], -1))

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        """Return the negative (beta-weighted) ELBO with the analytic KL of each factor."""
        q_z = self.encode(x)
        reconstruction = self.log_likelihood(x, q_z.rsample())  # (B,)
        kl_occurrence, kl_appearance = factor_kls(q_z, self.prior())  # (B,) each
        beta_occ, beta_app = self.kl_weights
        penalty = beta_occ * kl_occurrence + beta_app * kl_appearance
        terms = {
            name: value.detach().mean()
            for name, value in (
                ("elbo", reconstruction - kl_occurrence - kl_appearance),
                ("reconstruction", reconstruction),
                ("kl", kl_occurrence + kl_appearance),
                ("kl_occurrence", kl_occurrence),
                ("occurrence_rate", q_z.occurrence.probs),
            )
        }
        return LossOutput(-(reconstruction - kl_weight * penalty).mean(), terms)


def _build(data_shape: tuple[int, ...], **settings) -> PatchVAE:
    if len(data_shape) != 3:
        raise ValueError(
            f"Expected an image dataset with data_shape (C, H, W) for `patch_vae`, but got "
            f"{tuple(data_shape)}."
        )
    sizes = {k: settings[k] for k in ("hidden_channels", "num_downsamples", "appearance_dim")}
    if min(sizes.values()) < 1 or settings["num_residual_blocks"] < 0:
        raise ValueError(f"Expected positive sizes and residual blocks >= 0, but got {settings}.")
    if not 0 < settings["occurrence_prior"] < 1 or settings["temperature"] <= 0:
        raise ValueError(
            f"Expected `model.occurrence_prior` in (0, 1) and `model.temperature` > 0, but got "
            f"{settings['occurrence_prior']} and {settings['temperature']}."
        )
    return PatchVAE(data_shape, **settings)


@register_model("patch_vae")
def patch_vae(
    *,
    data_shape: tuple[int, ...],
    hidden_channels: int = 32,
    num_downsamples: int = 1,
    num_residual_blocks: int = 1,
    appearance_dim: int = 4,
    occurrence_prior: float = 0.1,
    occurrence_kl_weight: float = 1.0,
    appearance_kl_weight: float = 1.0,
    temperature: float = 1.0,
    likelihood: LikelihoodName = "bernoulli",
) -> PatchVAE:
    """Build a PatchVAE (Gupta et al. 2020): occurrence and appearance latents per location."""
    return _build(
        data_shape,
        hidden_channels=hidden_channels,
        num_downsamples=num_downsamples,
        num_residual_blocks=num_residual_blocks,
        appearance_dim=appearance_dim,
        occurrence_prior=occurrence_prior,
        occurrence_kl_weight=occurrence_kl_weight,
        appearance_kl_weight=appearance_kl_weight,
        temperature=temperature,
        likelihood=likelihood,
    )


register_model_preset(
    "patch_vae_paper",
    base="patch_vae",
    doc="Build the PatchVAE of the paper's image experiments (rho = 0.01, 64-d appearances).",
    hidden_channels=64,
    num_downsamples=2,
    num_residual_blocks=2,
    appearance_dim=64,
    occurrence_prior=0.01,
)
