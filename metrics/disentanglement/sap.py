"""Separated Attribute Predictability, SAP (Kumar et al., ICLR 2018), both of dlib's variants.

A score matrix S (D x K) says how well each single code predicts each factor; SAP is the mean
over factors of the gap between the two best codes. Two variants (reference notes §2.4):

- discrete (the study's setting, ``continuous_factors=False``): S[i, j] is the test accuracy of
  a one-feature ``LinearSVC(C=0.01, class_weight="balanced")``. A strongly regularised linear
  one-vs-rest classifier on one feature cannot carve a many-valued factor into intervals, so even
  a perfect code scores far below 1, and the score depends on the code's scale;
- continuous: S[i, j] is the R^2 of a linear fit, ``cov(z_i, y_j)^2 / (var z_i var y_j)`` on the
  training points, which is about 1 for a perfect linear code.
"""

import numpy as np
from sklearn.svm import LinearSVC

from metrics.disentanglement.ground_truth import check_train_test

# Codes with a training variance at or below this carry no usable signal (dlib's guard).
_MIN_CODE_VARIANCE = 1e-12


def discrete_sap_row(
    code_train: np.ndarray,
    factors_train: np.ndarray,
    code_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    random_state: int,
) -> np.ndarray:
    """Return the test accuracy of a one-code linear SVM for each factor, shape ``(K,)``.

    Args:
        code_train: ``(N,)`` one code, the classifiers' only feature.
        factors_train: ``(N, K)`` factor classes.
        code_test: ``(M,)`` the same code on the test points.
        factors_test: ``(M, K)`` factor classes.
        random_state: Seed passed to every classifier.
    """
    scores = np.empty(factors_train.shape[1])
    for j in range(factors_train.shape[1]):
        # dual=False is what dlib's default `dual="auto"` picks for N > 1 sample per feature.
        classifier = LinearSVC(
            C=0.01, class_weight="balanced", dual=False, random_state=random_state
        )
        classifier.fit(code_train[:, None], factors_train[:, j])  # (N, 1) one feature
        scores[j] = np.mean(classifier.predict(code_test[:, None]) == factors_test[:, j])
    return scores


def discrete_sap_matrix(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    random_state: int,
) -> np.ndarray:
    """Return the test accuracy of each one-code linear SVM for each factor, shape ``(D, K)``.

    Args:
        codes_train: ``(N, D)`` codes the classifiers are fitted on.
        factors_train: ``(N, K)`` factor classes.
        codes_test: ``(M, D)`` codes the accuracies are measured on.
        factors_test: ``(M, K)`` factor classes.
        random_state: Seed passed to every classifier.
    """
    rows = [
        discrete_sap_row(
            codes_train[:, i],
            factors_train,
            codes_test[:, i],
            factors_test,
            random_state=random_state,
        )
        for i in range(codes_train.shape[1])
    ]
    return np.stack(rows)  # D x (K,) -> (D, K)


def continuous_sap_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Return the R^2 of a linear fit of each factor on each single code, shape ``(D, K)``.

    R^2 = cov(z_i, y_j)^2 / (var z_i var y_j) with ddof 1, and 0 for a code of variance <= 1e-12.
    """
    z = codes - codes.mean(axis=0)  # (N, D)
    y = factors - factors.mean(axis=0)  # (N, K)
    covariance = z.T @ y / (len(z) - 1)  # (D, K)
    var_z, var_y = z.var(axis=0, ddof=1), y.var(axis=0, ddof=1)
    active = var_z > _MIN_CODE_VARIANCE
    r_squared = np.zeros_like(covariance)
    r_squared[active] = covariance[active] ** 2 / np.outer(var_z[active], var_y)
    return r_squared


def top_two_gap(scores: np.ndarray) -> float:
    """Return the mean over factors (columns) of the best minus the second-best code's score."""
    top_two = -np.sort(-scores, axis=0)[:2]  # (2, K), largest first
    return float(np.mean(top_two[0] - top_two[1]))


def check_sap_inputs(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the checked splits (`check_train_test`); raise unless D >= 2."""
    splits = check_train_test(codes_train, factors_train, codes_test, factors_test)
    if splits[0].shape[1] < 2:
        raise ValueError(f"Expected at least 2 codes for a gap, but got {splits[0].shape[1]}.")
    return splits


def sap_from_matrices(discrete: np.ndarray, continuous: np.ndarray) -> dict[str, float]:
    """Return both SAP variants from their score matrices, each ``(D, K)``."""
    return {"SAP_score": top_two_gap(discrete), "SAP_score_continuous": top_two_gap(continuous)}


def sap_score(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    random_state: int,
) -> dict[str, float]:
    """Return both SAP variants (Kumar et al. 2018; dlib ``sap_score``).

    Returns:
        ``SAP_score`` (discrete, the study's headline) and ``SAP_score_continuous`` (R^2 on the
        training points; the test points are not used).
    """
    codes_train, factors_train, codes_test, factors_test = check_sap_inputs(
        codes_train, factors_train, codes_test, factors_test
    )
    discrete = discrete_sap_matrix(
        codes_train, factors_train, codes_test, factors_test, random_state=random_state
    )
    return sap_from_matrices(discrete, continuous_sap_matrix(codes_train, factors_train))
