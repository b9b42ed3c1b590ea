"""Histogram discretization of codes and the plug-in information quantities built on it.

MIG and modularity treat each code as a discrete variable: its values are cut into equal-width
bins between the code's minimum and maximum in the current sample (disentanglement_lib's
``histogram_discretizer``, 20 bins in Locatello et al. 2019). Mutual information and entropy are
plug-in estimates in nats, without bias correction (reference notes §1.4).
"""

import numpy as np
from sklearn.metrics import mutual_info_score

from metrics.disentanglement.config import NUM_BINS


def histogram_discretize(codes: np.ndarray, *, num_bins: int = NUM_BINS) -> np.ndarray:
    """Return bin labels ``1 .. num_bins`` per code, from equal-width bins over the sample range.

    The maximum falls in the last bin; a constant code falls wholly in one bin (numpy widens
    its range by 0.5 either side), so it carries no information instead of failing.

    Args:
        codes: ``(N, D)`` codes.
        num_bins: Bins per code.

    Returns:
        ``(N, D)`` int64 labels.
    """
    if num_bins < 1:
        raise ValueError(f"Expected `num_bins` to be >= 1, but got {num_bins}.")
    labels = np.empty(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], bins=num_bins)[1]  # (num_bins + 1,)
        # NOTE: digitizing against the left edges only puts the maximum in the last bin.
        labels[:, i] = np.digitize(codes[:, i], edges[:-1])
    return labels


def discrete_mutual_information(labels: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Return the plug-in mutual information I(z_i; y_j) in nats, shape ``(D, K)``.

    Args:
        labels: ``(N, D)`` discrete codes (e.g. from `histogram_discretize`).
        factors: ``(N, K)`` factor classes.
    """
    mutual_information = np.empty((labels.shape[1], factors.shape[1]))
    for i in range(labels.shape[1]):
        for j in range(factors.shape[1]):
            mutual_information[i, j] = mutual_info_score(factors[:, j], labels[:, i])
    return mutual_information


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Return the plug-in entropy H(y_j) = I(y_j; y_j) in nats of each factor, shape ``(K,)``."""
    return np.array([mutual_info_score(y, y) for y in factors.T])
