"""Mutual Information Gap (Chen et al., NeurIPS 2018), in disentanglement_lib's discretized form.

For each factor y_j, the gap between the two codes most informative about it, normalised by the
factor's entropy: ``MIG = mean_j (I(z_(1); y_j) - I(z_(2); y_j)) / H(y_j)``. Chen et al. estimate
I from q(z|x); this, like dlib's ``mig`` and Locatello et al. (2019), uses the plug-in estimate on
20-bin histograms of the codes, so values are not comparable with the continuous estimator
(reference notes §2.3). The plug-in bias puts a perfect code slightly below 1 and noise slightly
above 0. MIG rewards compactness only: a code carrying several factors is not penalised.
"""

import numpy as np

from metrics.disentanglement.config import NUM_BINS
from metrics.disentanglement.discretize import (
    discrete_entropy,
    discrete_mutual_information,
    histogram_discretize,
)
from metrics.disentanglement.ground_truth import check_codes_and_factors


def mutual_information_gap(
    codes: np.ndarray, factors: np.ndarray, *, num_bins: int = NUM_BINS
) -> float:
    """Return the discretized MIG in [0, 1] (dlib key ``discrete_mig``).

    Deviation from dlib: a factor that is constant in the sample (entropy 0, where dlib divides
    by zero) is refused with a ValueError instead of turning the score into NaN.

    Args:
        codes: ``(N, D)`` codes, D >= 2.
        factors: ``(N, K)`` factor classes.
        num_bins: Equal-width bins per code.
    """
    codes, factors = check_codes_and_factors(codes, factors)
    if codes.shape[1] < 2:
        raise ValueError(f"Expected at least 2 codes for a gap, but got {codes.shape[1]}.")
    mutual_information = discrete_mutual_information(
        histogram_discretize(codes, num_bins=num_bins), factors
    )  # (D, K)
    top_two = -np.sort(-mutual_information, axis=0)[:2]  # (2, K), largest first
    return float(np.mean((top_two[0] - top_two[1]) / discrete_entropy(factors)))
