"""Active units (Burda, Grosse & Salakhutdinov, ICLR 2016, Sec. 5.2).

A latent unit u is active when its activity ``A_u = Cov_x(E_{q(u|x)}[u])`` exceeds a threshold
(0.01 in the paper): the posterior mean of an inactive unit does not move with x, so the unit
carries no information about the input. As in Burda et al.'s code the covariance is the
population variance (ddof 0) of the posterior means over the evaluated inputs.

NOTE: the comparison is strict, ``A_u > threshold``, as in the paper's text; the released code
counts ``A_u >= threshold``. The two differ only for an activity exactly at the threshold.

Hierarchical models: a unit's activity is computed from ``model.encode(x).mean``, the posterior
mean over the flattened z; `latent_groups` (sizes of the groups, in the order of z) splits the
counts per layer. Burda et al. computed the second layer's means from one sampled z1; the
hierarchical models here (`registry.hierarchical`) return an ancestral plug-in mean instead, each
group's conditional mean at the upstream means.

Quantised codes (VQ-VAE, VQ-VAE-2: ``point_mass_posterior``) have no active units: q(z|x) is a
point mass, so "the posterior mean" is the encoder's output itself, and its scale is set by the
codebook, not by a N(0, I) prior, so the threshold 0.01 does not separate used units from
unused ones (the fashion_mnist VQ-VAE counted all 784 encoder outputs active). The metric raises
`MetricUndefined` for them; the fraction of the codebook in use (``codes_used`` in the training
log) is the collapse diagnostic of discrete codes.
"""

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from metrics.batching import row_blocks
from metrics.estimate import Estimate, exact_value
from registry.base import LatentVariableModel, MetricUndefined


@torch.no_grad()
def posterior_mean_activity(model: LatentVariableModel, x: Tensor, *, batch_size: int) -> Tensor:
    """Return A_u, the variance over x of the posterior mean of each unit, shape ``(D,)`` float64.

    Burda et al. (2016), Sec. 5.2: ``A_u = Cov_x(E_{u ~ q(u|x)}[u])``, population variance.

    Args:
        model: Any registered model whose ``encode(x)`` has a ``mean``.
        x: Observations ``(N, *data_shape)``.
        batch_size: Examples per forward pass.
    """
    means = torch.cat(
        [
            model.select(rows).encode(x[rows]).mean.double().cpu()
            for rows in row_blocks(len(x), batch_size)
        ]
    )  # (N, D)
    return means.var(dim=0, correction=0)


def _check_groups(latent_groups: Sequence[int] | None, latent_dim: int) -> list[int]:
    groups = [latent_dim] if latent_groups is None else list(latent_groups)
    if sum(groups) != latent_dim or any(size < 1 for size in groups):
        raise ValueError(
            f"Expected `latent_groups` to be positive sizes summing to the latent dimension "
            f"{latent_dim}, but got {latent_groups}."
        )
    return groups


def active_units(
    model: LatentVariableModel,
    x: Tensor,
    *,
    threshold: float,
    batch_size: int,
    latent_groups: Sequence[int] | None = None,
) -> dict[str, Estimate]:
    """Return the number of active units, in total and per latent group.

    Burda et al. (2016), Sec. 5.2: unit u is active when ``A_u > threshold``.

    Args:
        model: Any registered model.
        x: Observations ``(N, *data_shape)`` (paper: the first 500 training images).
        threshold: Activity above which a unit counts as active (paper: 0.01).
        batch_size: Examples per forward pass.
        latent_groups: Sizes of the latent layers in the order of z, for per-layer counts
            (e.g. ``[100, 50]``); None for a single layer.

    Raises:
        MetricUndefined: For a point-mass posterior (quantised codes), see the module doc.

    Returns:
        ``active_units`` with the per-unit activity and the active mask in its diagnostics,
        and, for several groups, ``active_units_group1``, ``active_units_group2``, ... in the
        order of `latent_groups`.
    """
    if model.point_mass_posterior:
        raise MetricUndefined(
            f"active units threshold the variance of E_q[z] against a N(0, I) prior's scale, "
            f"but {model.display_name}'s q(z|x) is a point mass on a code whose scale the "
            f"codebook sets; its collapse diagnostic is the codebook usage (`codes_used` in the "
            f"training log)."
        )
    groups = _check_groups(latent_groups, model.latent_dim)
    activity = posterior_mean_activity(model, x, batch_size=batch_size)  # (D,)
    active = activity > threshold
    per_group = [int(part.sum()) for part in active.split(groups)]
    params = {
        "threshold": threshold,
        "comparison": ">",
        "num_examples": x.shape[0],
        "statistic": "population variance (ddof 0) of the posterior mean",
        "latent_groups": groups,
    }
    total = exact_value(int(active.sum()), unit="count", higher_is_better=None, params=params)
    diagnostics = {
        "activity": activity.tolist(),
        "active": active.tolist(),
        "per_group": per_group,
        "fraction_active": active.double().mean().item(),
    }
    results = {"active_units": replace(total, diagnostics=diagnostics)}
    if len(groups) > 1:
        for i, count in enumerate(per_group, start=1):
            results[f"active_units_group{i}"] = exact_value(
                count, unit="count", higher_is_better=None, params={**params, "group": i}
            )
    return results
