"""Kernel distance between feature sets (KID; Bińkowski et al., ICLR 2018).

KID is the unbiased estimator of the squared maximum mean discrepancy (Gretton et al. 2012,
Eq. 3) with the cubic polynomial kernel k(a, b) = (a·b / F + 1)^3, averaged over random subsets
of both sets. Unlike FID it is unbiased in the sample count, so it is comparable across set sizes
(but, like FID, only between results from the same feature network).

The computation is torchmetrics' `KernelInceptionDistance`, fed with precomputed features.
"""

import warnings

import torch
from torch import Tensor
from torchmetrics.image.kid import KernelInceptionDistance

from metrics.estimate import Estimate
from metrics.fid import PrecomputedFeatures, check_features


def kernel_distance(
    real_features: Tensor,
    generated_features: Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    coef: float = 1.0,
    seed: int = 0,
) -> Estimate:
    """Estimate KID as the mean of the unbiased MMD^2 over random subsets of both feature sets.

    Bińkowski et al. (2018), Sec. 3 and Appendix D (subset averaging). The subsets overlap, so
    torchmetrics' standard deviation (ddof 0) of the per-subset values is the spread of one
    subset's estimate, not a standard error of their mean, and no sd / sqrt(n) of it is one
    either. It is recorded as what it is, ``diagnostics["subset_std"]``, and ``stderr`` is None:
    reports then show KID's uncertainty only across training seeds.

    Args:
        real_features: Reference-image features ``(N_r, F)``.
        generated_features: Generated-image features ``(N_g, F)``.
        subsets: Number of random subset pairs.
        subset_size: Rows drawn without replacement from each set per subset (<= both N).
        degree: Degree of the polynomial kernel.
        coef: Constant of the polynomial kernel; its scale gamma is 1 / F.
        seed: Seed of the subset draws.
    """
    check_features(real_features, generated_features, minimum=max(subset_size, 2))
    if subsets < 1 or subset_size < 2:
        raise ValueError(
            f"Expected `subsets` >= 1 and `subset_size` >= 2, but got {subsets} and {subset_size}."
        )
    with warnings.catch_warnings():
        # The features are already in memory, so torchmetrics' buffer-size warning adds nothing.
        warnings.filterwarnings("ignore", message=".*will save all extracted features")
        metric = KernelInceptionDistance(
            feature=PrecomputedFeatures(real_features.shape[1]),
            subsets=subsets,
            subset_size=subset_size,
            degree=degree,
            coef=float(coef),
        )
    metric.update(real_features.double(), real=True)
    metric.update(generated_features.double(), real=False)
    # NOTE: torchmetrics draws the subsets with the global generator (torch.randperm).
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        kid_mean, kid_std = metric.compute()
    params = {
        "num_real": len(real_features),
        "num_generated": len(generated_features),
        "subsets": subsets,
        "subset_size": subset_size,
        "degree": degree,
        "gamma": 1.0 / real_features.shape[1],
        "coef": float(coef),
        "seed": seed,
        "spread": "subset_std: std (ddof 0) of MMD^2 over overlapping random subsets, "
        "not a standard error",
    }
    diagnostics = {"subset_std": kid_std.item()}
    return Estimate(kid_mean.item(), None, subsets, "kernel units", False, params, diagnostics)
