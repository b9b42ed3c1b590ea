"""The BetaVAE score (Higgins et al., ICLR 2017), as disentanglement_lib's ``beta_vae_sklearn``.

One point: pick a factor k, draw two batches of factor rows that agree only on factor k, and
average |z1 - z2| over the batch; a linear classifier then predicts k from that vector. If one
code tracks factor k, that code's difference is about 0 and the classifier finds it. Chance is
1 / K. The classifier is an untuned L2 logistic regression on unscaled features, so the score
depends on the code scale (reference notes §2.1).
"""

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from metrics.disentanglement.config import BetaVAEScoreConfig
from metrics.disentanglement.ground_truth import (
    GroundTruthData,
    Representation,
    check_ground_truth,
    encode_batches,
    render,
)


def beta_vae_points(
    data: GroundTruthData,
    representation: Representation,
    *,
    num_points: int,
    batch_size: int,
    rng: np.random.RandomState,
) -> tuple[np.ndarray, np.ndarray]:
    """Return `num_points` mean absolute code differences ``(P, D)`` and their factors ``(P,)``.

    Per point, `rng` is consumed as in dlib: the factor index, the first factor batch, the
    second, then the rendering of each.
    """
    labels: list[int] = []

    def pair_batches() -> Iterator[np.ndarray]:
        for _ in range(num_points):
            k = rng.randint(len(data.factor_sizes))
            first = data.sample_factors(batch_size, rng)
            second = data.sample_factors(batch_size, rng)
            second[:, k] = first[:, k]  # the pair shares factor k only
            labels.append(k)
            yield np.concatenate([render(data, first, rng), render(data, second, rng)])

    features = [
        np.abs(z[:batch_size] - z[batch_size:]).mean(axis=0)  # (2B, D) -> (D,)
        for z in encode_batches(representation, pair_batches())
    ]
    return np.stack(features), np.array(labels)


def beta_vae_accuracies(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    *,
    random_state: np.random.RandomState | int,
) -> dict[str, float]:
    """Fit the logistic regression on the training points; return both accuracies.

    Args:
        x_train: ``(P, D)`` mean absolute code differences; y_train: ``(P,)`` their factors.
        x_eval: ``(Q, D)`` fresh points; y_eval: ``(Q,)`` their factors.
        random_state: Passed to the classifier, as dlib does (lbfgs draws nothing from it).
    """
    classifier = LogisticRegression(C=1.0, max_iter=100, solver="lbfgs", random_state=random_state)
    classifier.fit(x_train, y_train)
    return {
        "eval_accuracy": float(np.mean(classifier.predict(x_eval) == y_eval)),
        "train_accuracy": float(np.mean(classifier.predict(x_train) == y_train)),
    }


def beta_vae_samples(
    data: GroundTruthData,
    representation: Representation,
    *,
    rng: np.random.RandomState,
    config: BetaVAEScoreConfig,
) -> dict[str, Any]:
    """Draw the training points, then the evaluation points: `beta_vae_accuracies`' arguments.

    The classifier gets `rng` as it stood after the training points, as in dlib, where it is
    fitted before the evaluation points are drawn; lbfgs draws nothing from it, so fitting after
    both draws (possibly in another process) gives the same classifier.
    """
    sizes = {"batch_size": config.batch_size, "rng": rng}
    x_train, y_train = beta_vae_points(data, representation, num_points=config.num_train, **sizes)
    fit_state = copy.deepcopy(rng)
    x_eval, y_eval = beta_vae_points(data, representation, num_points=config.num_eval, **sizes)
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_eval": x_eval,
        "y_eval": y_eval,
        "random_state": fit_state,
    }


def beta_vae_score(
    data: GroundTruthData,
    representation: Representation,
    *,
    rng: np.random.RandomState,
    config: BetaVAEScoreConfig | None = None,
) -> dict[str, float]:
    """Return the BetaVAE score's ``eval_accuracy`` (headline) and ``train_accuracy``.

    Args:
        data: The ground-truth dataset.
        representation: Observations ``(n, *observation_shape)`` to codes ``(n, D)``.
        rng: Draws the training points, then the evaluation points; it also seeds the
            logistic regression, as in dlib (the lbfgs solver draws nothing from it).
        config: Sample sizes; None for the study's defaults.
    """
    check_ground_truth(data)
    config = config or BetaVAEScoreConfig()
    return beta_vae_accuracies(**beta_vae_samples(data, representation, rng=rng, config=config))
