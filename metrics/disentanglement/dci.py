"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams, ICLR 2018).

One predictor per factor gives an importance matrix R (D x K), R[i, j] = how much code i is used
to predict factor j. Disentanglement asks whether each code serves one factor, completeness
whether each factor is served by one code, informativeness how well the codes predict the
factors. Following disentanglement_lib (and so Locatello et al. 2019), the predictor is sklearn's
`GradientBoostingClassifier` with its defaults, R is its impurity importance, and informativeness
is the classification *accuracy* (higher is better); the original DCI uses regressors (Lasso or
random forest) and reports a prediction error (reference notes §2.5).
"""

import numpy as np
from scipy.stats import entropy
from sklearn.ensemble import GradientBoostingClassifier

from metrics.disentanglement.ground_truth import check_train_test

# Added to R before the entropies, as dlib does, so an all-zero row or column is uniform.
_EPSILON = 1e-11


def gbt_factor_fit(
    codes_train: np.ndarray,
    y_train: np.ndarray,
    codes_test: np.ndarray,
    y_test: np.ndarray,
    *,
    random_state: int,
) -> tuple[np.ndarray, float, float]:
    """Fit one gradient-boosted tree classifier of one factor on all codes.

    Args:
        codes_train: ``(N, D)`` raw (unscaled) codes the classifier is fitted on.
        y_train: ``(N,)`` classes of the factor.
        codes_test: ``(M, D)`` codes for the test accuracy.
        y_test: ``(M,)`` classes of the factor.
        random_state: Seed of the classifier (dlib leaves it unseeded).

    Returns:
        The factor's column of R ``(D,)`` (summing to 1, or 0 if no split was made), and the
        train and test accuracies.
    """
    classifier = GradientBoostingClassifier(
        n_estimators=100,
        learning_rate=0.1,
        max_depth=3,
        subsample=1.0,
        random_state=random_state,
    )
    classifier.fit(codes_train, y_train)
    return (
        np.abs(classifier.feature_importances_),
        float(np.mean(classifier.predict(codes_train) == y_train)),
        float(np.mean(classifier.predict(codes_test) == y_test)),
    )


def stack_factor_fits(
    fits: list[tuple[np.ndarray, float, float]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return R ``(D, K)`` and the accuracies ``(K,)`` from one `gbt_factor_fit` per factor."""
    importance = np.stack([fit[0] for fit in fits], axis=1)  # K x (D,) -> (D, K)
    return importance, np.array([fit[1] for fit in fits]), np.array([fit[2] for fit in fits])


def dci_disentanglement(importance: np.ndarray) -> float:
    """Return sum_i rho_i (1 - H_K(P_i)), P_i = R[i] / sum R[i], rho_i = sum R[i] / sum R.

    Eastwood & Williams (2018), their disentanglement score; entropy with log base K.

    Args:
        importance: R, ``(D, K)`` non-negative, K >= 2.
    """
    per_code = 1.0 - entropy(importance.T + _EPSILON, base=importance.shape[1])  # (D,)
    return float(np.sum(per_code * _share(importance, axis=1)))


def dci_completeness(importance: np.ndarray) -> float:
    """Return sum_j w_j (1 - H_D(P_j)), P_j = R[:, j] / sum R[:, j], w_j = sum R[:, j] / sum R.

    Eastwood & Williams (2018), their completeness score; entropy with log base D.

    Args:
        importance: R, ``(D, K)`` non-negative, D >= 2.
    """
    per_factor = 1.0 - entropy(importance + _EPSILON, base=importance.shape[0])  # (K,)
    return float(np.sum(per_factor * _share(importance, axis=0)))


def _share(importance: np.ndarray, *, axis: int) -> np.ndarray:
    """Return the fraction of the total importance in each row (axis 1) or column (axis 0)."""
    if importance.sum() == 0:  # no predictor used any code: weigh all rows/columns equally
        importance = np.ones_like(importance)
    return importance.sum(axis=axis) / importance.sum()


def check_dci_inputs(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the checked splits (`check_train_test`); raise unless D, K >= 2."""
    splits = check_train_test(codes_train, factors_train, codes_test, factors_test)
    if splits[0].shape[1] < 2 or splits[1].shape[1] < 2:
        raise ValueError(
            "Expected at least 2 codes and 2 factors (entropies use log base D and K), but got "
            f"{splits[0].shape[1]} codes and {splits[1].shape[1]} factors."
        )
    return splits


def dci_from_fits(fits: list[tuple[np.ndarray, float, float]]) -> dict[str, float]:
    """Return DCI's four values from one `gbt_factor_fit` per factor, in factor order."""
    importance, accuracy_train, accuracy_test = stack_factor_fits(fits)
    return {
        "disentanglement": dci_disentanglement(importance),
        "completeness": dci_completeness(importance),
        "informativeness_train": float(accuracy_train.mean()),
        "informativeness_test": float(accuracy_test.mean()),
    }


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    random_state: int,
) -> dict[str, float]:
    """Return DCI with gradient-boosted trees (dlib ``dci``), seeded.

    Deviation from dlib: the trees are seeded with `random_state`; dlib's are not, which makes
    D and C jitter by about 1e-3 between runs.

    Returns:
        ``disentanglement``, ``completeness``, ``informativeness_train`` and
        ``informativeness_test`` (mean accuracy over factors).
    """
    codes_train, factors_train, codes_test, factors_test = check_dci_inputs(
        codes_train, factors_train, codes_test, factors_test
    )
    fits = [
        gbt_factor_fit(
            codes_train,
            factors_train[:, j],
            codes_test,
            factors_test[:, j],
            random_state=random_state,
        )
        for j in range(factors_train.shape[1])
    ]
    return dci_from_fits(fits)
