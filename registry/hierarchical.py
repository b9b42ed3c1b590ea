"""Several latent groups behind the one-vector interface: ancestral distributions, top-down passes.

A hierarchical model has groups z_1 ... z_L with p(z) = p(z_1) prod_l p(z_l | z_<l) (groups
listed top first, in generative order). Metrics see one vector z: the groups flattened and
concatenated in that order, so D = sum of group sizes. `AncestralDistribution` gives such a
joint density the `Distribution` interface (``rsample`` runs ancestral sampling, ``log_prob``
re-runs the conditionals on a given z), which makes ``prior()`` and ``encode(x)`` return one
distribution with event shape ``(D,)``.

`TopDownHierarchy` is the base of models whose posterior follows the generative order,
q(z|x) = q(z_1|x) prod_l q(z_l | z_<l, x), sharing the top-down state with the prior: the Ladder
VAE (Sønderby et al. 2016, Eq. 12) and NVAE (Vahdat & Kautz 2020, Eq. 1). A subclass supplies
six small hooks; sampling, densities and the loss are written once here.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, constraints, kl_divergence

from registry.base import LatentDraws, LatentVariableModel, LossOutput
from registry.estimators import elbo_terms


class AncestralDistribution(Distribution):
    """A joint density over flattened groups, defined by an ancestral sampler and its log-density.

    Args:
        draw: Maps a leading shape ``(*S, *batch)`` to reparameterised samples ``(*S, *batch, D)``.
        density: Maps ``z (..., D)`` to log-density ``(...)``.
        location: Returns the ancestral plug-in mean ``(*batch, D)``: each group's conditional mean
            given the plug-in means of the groups before it. NOTE: exact for the first group
            sampled; for later groups it is the mean of the conditional at the upstream means,
            not E[z] (Burda et al. 2016 condition on one upstream sample instead).
        batch_shape: ``()`` for a prior, ``(B,)`` for a posterior.
        event_size: D.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        *,
        draw: Callable[[torch.Size], Tensor],
        density: Callable[[Tensor], Tensor],
        location: Callable[[], Tensor],
        batch_shape: torch.Size,
        event_size: int,
    ) -> None:
        self._draw, self._density, self._location = draw, density, location
        super().__init__(torch.Size(batch_shape), torch.Size([event_size]), validate_args=False)

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        return self._draw(torch.Size(sample_shape) + self.batch_shape)  # (*S, *batch, D)

    def log_prob(self, value: Tensor) -> Tensor:
        return self._density(value)

    @property
    def mean(self) -> Tensor:
        return self._location()


def diagonal_normal(loc: Tensor, scale: Tensor) -> Distribution:
    """Return a diagonal Gaussian over the last dim of ``loc``, batch shape ``loc.shape[:-1]``."""
    return Independent(Normal(loc, scale), 1)


@dataclass
class TopDownPass:
    """One pass through the groups in generative order.

    Attributes:
        z: Flattened groups ``(*lead, D)``.
        log_p: log p(z), ``(*lead,)``.
        log_q: log q(z|x), ``(*lead,)``; None without x.
        kl: Sum over groups of the analytic KL(q(z_l|z_<l,x) || p(z_l|z_<l)) at the sampled z_<l,
            ``(*lead,)``: an unbiased, lower-variance estimate of E_q[log q - log p]. None
            without x.
        state: The model's top-down state after the last group, input of `decode_state`.
    """

    z: Tensor
    log_p: Tensor
    log_q: Tensor | None
    kl: Tensor | None
    state: Any


class TopDownHierarchy(LatentVariableModel):
    """Base of hierarchical models with top-down inference (posterior in generative order).

    Subclasses implement `bottom_up`, `initial_state`, `group_prior`, `group_posterior`,
    `update_state` and `decode_state`; every group conditional is a diagonal Gaussian over the
    flattened group, with batch shape equal to the leading shape of the pass.

    Args:
        data_shape: Shape of one observation.
        group_sizes: Flattened size of each group, top (first generated) first.
    """

    def __init__(self, data_shape: tuple[int, ...], group_sizes: tuple[int, ...]) -> None:
        super().__init__(data_shape, sum(group_sizes))
        self.group_sizes = tuple(group_sizes)

    def bottom_up(self, x: Tensor) -> list[Any]:
        """Return the deterministic features of x used by each group's posterior, top first."""
        raise NotImplementedError

    def initial_state(self, lead: torch.Size) -> Any:
        """Return the top-down state before the first group, for a pass of leading shape `lead`."""
        raise NotImplementedError

    def group_prior(self, index: int, state: Any) -> Distribution:
        """Return p(z_index | z_<index) from the top-down state."""
        raise NotImplementedError

    def group_posterior(
        self, index: int, state: Any, feature: Any, prior: Distribution
    ) -> Distribution:
        """Return q(z_index | z_<index, x) from the state, x's feature and the group prior."""
        raise NotImplementedError

    def update_state(self, index: int, state: Any, z_group: Tensor) -> Any:
        """Return the top-down state after group `index` takes the value ``z_group (*lead, d)``."""
        raise NotImplementedError

    def decode_state(self, state: Any) -> Distribution:
        """Return p(x|z) from the top-down state after the last group."""
        raise NotImplementedError

    def top_down(
        self,
        lead: torch.Size,
        *,
        features: list[Any] | None = None,
        z: Tensor | None = None,
        use_means: bool = False,
    ) -> TopDownPass:
        """Run the groups in generative order, sampling or reading each z_l.

        Args:
            lead: Leading shape of the pass, e.g. ``(K, B)``; a given z must have it.
            features: `bottom_up(x)`; with it, z is drawn from (and scored under) q(z|x), else p(z).
            z: Given values ``(*lead, D)`` to score instead of sampling.
            use_means: Take each group's conditional mean instead of a sample.
        """
        given = (
            z.split(self.group_sizes, dim=-1) if z is not None else [None] * len(self.group_sizes)
        )
        state = self.initial_state(lead)
        groups, log_p, log_q, kl = [], 0.0, 0.0, 0.0
        for index, z_group in enumerate(given):
            p_group = self.group_prior(index, state).expand(lead)
            q_group = None
            if features is not None:
                q_group = self.group_posterior(index, state, features[index], p_group).expand(lead)
            sampler = q_group if q_group is not None else p_group
            if z_group is None:
                z_group = sampler.mean if use_means else sampler.rsample()  # (*lead, d_l)
            log_p = log_p + p_group.log_prob(z_group)
            if q_group is not None:
                log_q = log_q + q_group.log_prob(z_group)
                kl = kl + kl_divergence(q_group, p_group)
            groups.append(z_group)
            state = self.update_state(index, state, z_group)
        has_q = features is not None
        return TopDownPass(
            torch.cat(groups, dim=-1), log_p, log_q if has_q else None, kl if has_q else None, state
        )

    def prior(self) -> Distribution:
        return AncestralDistribution(
            draw=lambda lead: self.top_down(lead).z,
            density=lambda z: self.top_down(z.shape[:-1], z=z).log_p,
            location=lambda: self.top_down(torch.Size(), use_means=True).z,
            batch_shape=torch.Size(),
            event_size=self.latent_dim,
        )

    def encode(self, x: Tensor) -> Distribution:
        self.check_input(x)
        features = self.bottom_up(x)
        return AncestralDistribution(
            draw=lambda lead: self.top_down(lead, features=features).z,
            density=lambda z: self.top_down(z.shape[:-1], features=features, z=z).log_q,
            location=lambda: self.top_down(x.shape[:1], features=features, use_means=True).z,
            batch_shape=x.shape[:1],
            event_size=self.latent_dim,
        )

    def decode(self, z: Tensor) -> Distribution:
        return self.decode_state(self.top_down(z.shape[:-1], z=z).state)

    def draw_latents(self, x: Tensor, num_samples: int) -> LatentDraws:
        """Draw z ~ q(z|x) with every density from one fused top-down pass.

        The pass that samples the groups also scores them under p and q, reaches the decoder's
        state and sums the analytic per-group KLs at the drawn upper groups (Vahdat & Kautz 2020,
        Eq. 2), so the estimators need no second pass. Equal to the base composition (tested).
        """
        self.check_input(x)
        result = self.top_down(torch.Size([num_samples, len(x)]), features=self.bottom_up(x))
        return LatentDraws(
            result.z,  # (K, B, D)
            result.log_q,  # (K, B)
            log_prior=result.log_p,
            log_likelihood=self.decode_state(result.state).log_prob(x),
            kl=result.kl.mean(0),  # (B,)
        )

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        """Return the negative ELBO with analytic per-group KLs (Vahdat & Kautz 2020, Eq. 2)."""
        reconstruction, kl = elbo_terms(self, x, num_samples=1)  # (B,) each
        loss = -(reconstruction - kl_weight * kl).mean()
        rec, kl_mean = reconstruction.detach().mean(), kl.detach().mean()
        return LossOutput(loss, {"elbo": rec - kl_mean, "reconstruction": rec, "kl": kl_mean})
