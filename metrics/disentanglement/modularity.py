"""Modularity and explicitness (Ridgeway & Mozer, NeurIPS 2018), as in disentanglement_lib.

Modularity asks whether each code depends on at most one factor, from the plug-in mutual
information of 20-bin histograms of the codes. Explicitness asks whether every factor can be read
off the codes linearly: the macro one-vs-rest ROC-AUC of a logistic regression per factor.

Modularity has no informativeness check, so pure noise scores about 0.66 rather than 0 (the
plug-in bias gives every noise code a spurious "best" factor; reference notes §2.6).
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from metrics.disentanglement.config import NUM_BINS
from metrics.disentanglement.discretize import discrete_mutual_information, histogram_discretize
from metrics.disentanglement.ground_truth import check_train_test


def modularity(mutual_information: np.ndarray) -> float:
    """Return the mean over codes of 1 - delta_i (Ridgeway & Mozer 2018, modularity score).

    delta_i = (sum_j m_ij^2 - theta_i) / (theta_i (K - 1)) with theta_i = max_j m_ij^2; a code
    with no information (theta_i = 0, e.g. a dead or constant code) scores 0 and still counts.

    Args:
        mutual_information: ``(D, K)`` mutual information between codes and factors, K >= 2.
    """
    squared = mutual_information**2  # (D, K)
    theta = squared.max(axis=1)  # (D,)
    informative = theta > 0
    per_code = np.zeros_like(theta)
    deviation = squared.sum(axis=1)[informative] - theta[informative]
    per_code[informative] = 1.0 - deviation / (theta[informative] * (squared.shape[1] - 1))
    return float(per_code.mean())


def standardize(codes_train: np.ndarray, codes_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return both splits z-scored with the training mean and standard deviation (ddof 0).

    Deviation from dlib: a code that is constant on the training split is only centred (std
    taken as 1); dlib divides by zero and its logistic regression then fails on NaN.
    """
    mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)  # (D,) each
    std = np.where(std > 0, std, 1.0)
    return (codes_train - mean) / std, (codes_test - mean) / std


def explicitness_per_factor(
    codes_train: np.ndarray,
    y_train: np.ndarray,
    codes_test: np.ndarray,
    y_test: np.ndarray,
    *,
    random_state: int,
) -> tuple[float, float]:
    """Return the macro one-vs-rest ROC-AUC of a logistic regression on train and test.

    Deviation from dlib: the classes are the union of both splits' labels, fixed before
    one-hot encoding, so a class missing from one split cannot misalign the probability
    columns (dlib binarizes each split on its own); a class the classifier never saw gets
    probability 0, and a class absent from a split is left out of that split's average.

    Args:
        codes_train: ``(N, D)`` standardized codes.
        y_train: ``(N,)`` classes of one factor.
        codes_test: ``(M, D)`` standardized codes.
        y_test: ``(M,)`` classes of the same factor.
        random_state: Seed of the classifier.
    """
    classifier = LogisticRegression(C=1.0, max_iter=100, solver="lbfgs", random_state=random_state)
    classifier.fit(codes_train, y_train)
    classes = np.union1d(y_train, y_test)
    columns = np.searchsorted(classes, classifier.classes_)
    return tuple(
        _macro_auc(y, classifier.predict_proba(codes), classes, columns)
        for codes, y in ((codes_train, y_train), (codes_test, y_test))
    )


def _macro_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray, columns: np.ndarray) -> float:
    scores = np.zeros((len(y), len(classes)))  # (N, C): classes the classifier never saw get 0
    scores[:, columns] = proba
    one_hot = y[:, None] == classes[None, :]  # (N, C)
    present = one_hot.any(axis=0) & ~one_hot.all(axis=0)  # AUC needs positives and negatives
    return float(roc_auc_score(one_hot[:, present], scores[:, present], average="macro"))


def check_modularity_inputs(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the checked splits (`check_train_test`); raise unless K >= 2."""
    splits = check_train_test(codes_train, factors_train, codes_test, factors_test)
    if splits[1].shape[1] < 2:
        raise ValueError(f"Expected at least 2 factors, but got {splits[1].shape[1]}.")
    return splits


def histogram_modularity(codes: np.ndarray, factors: np.ndarray, *, num_bins: int) -> float:
    """Return `modularity` of the plug-in MI between binned codes ``(N, D)`` and factors."""
    labels = histogram_discretize(codes, num_bins=num_bins)
    return modularity(discrete_mutual_information(labels, factors))


def modularity_explicitness_from_parts(
    modularity_score: float, explicitness: list[tuple[float, float]]
) -> dict[str, float]:
    """Return the three values from modularity and one (train, test) explicitness per factor."""
    per_factor = np.array(explicitness)  # (K, 2): train, test
    return {
        "modularity_score": modularity_score,
        "explicitness_score_train": float(per_factor[:, 0].mean()),
        "explicitness_score_test": float(per_factor[:, 1].mean()),
    }


def modularity_explicitness(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    num_bins: int = NUM_BINS,
    random_state: int,
) -> dict[str, float]:
    """Return modularity and explicitness (dlib ``modularity_explicitness``).

    Modularity uses the training split only; explicitness is the mean over factors.

    Returns:
        ``modularity_score``, ``explicitness_score_train`` and ``explicitness_score_test``.
    """
    codes_train, factors_train, codes_test, factors_test = check_modularity_inputs(
        codes_train, factors_train, codes_test, factors_test
    )
    scaled_train, scaled_test = standardize(codes_train, codes_test)
    explicitness = [
        explicitness_per_factor(
            scaled_train,
            factors_train[:, j],
            scaled_test,
            factors_test[:, j],
            random_state=random_state,
        )
        for j in range(factors_train.shape[1])
    ]
    return modularity_explicitness_from_parts(
        histogram_modularity(codes_train, factors_train, num_bins=num_bins), explicitness
    )
