"""Linear probes: how much of the label a frozen representation holds linearly.

A multinomial logistic regression (scikit-learn) is fitted on the representations of a seeded
subset of labelled training examples, its inverse regularisation strength C is chosen by
accuracy on a validation split, and its accuracy is reported on the test split with the standard
error of a mean of 0/1 outcomes. The features are standardised with the statistics of the
probe's training subset, so the grid of C means the same for every model. This is the protocol
the self-supervised literature uses to judge representations (e.g. AASAE, Falcon et al. 2021;
PatchVAE, Gupta et al. 2020); the representation here is the posterior mean E_q[z|x].
"""

from dataclasses import dataclass, replace

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from metrics.batching import row_blocks
from metrics.estimate import Estimate, mean_estimate
from registry.base import LatentVariableModel

MIN_LABELS_PER_CLASS = 10  # below this on average, the probe's accuracy is flagged


@dataclass(frozen=True)
class ProbeData:
    """Features ``(N, D)`` and integer labels ``(N,)`` of one split, as numpy arrays."""

    features: np.ndarray
    labels: np.ndarray


@torch.no_grad()
def posterior_means(model: LatentVariableModel, x: Tensor, *, batch_size: int) -> Tensor:
    """Return E_q[z|x] of every example, ``(N, D)`` float64 on the CPU."""
    return torch.cat(
        [
            model.select(rows).encode(x[rows]).mean.double().cpu()
            for rows in row_blocks(len(x), batch_size)
        ]
    )


def labelled_subset(num_examples: int, num_labels: int, *, seed: int) -> np.ndarray:
    """Return `num_labels` distinct indices of ``range(num_examples)``, drawn with `seed`."""
    if not 1 <= num_labels <= num_examples:
        raise ValueError(
            f"Expected `num_labels` between 1 and the {num_examples} training examples, but got "
            f"{num_labels}."
        )
    return np.random.default_rng(seed).choice(num_examples, size=num_labels, replace=False)


def linear_probe_accuracy(
    train: ProbeData,
    valid: ProbeData,
    test: ProbeData,
    *,
    regularisations: tuple[float, ...],
    seed: int,
    max_iter: int,
    params: dict[str, object] | None = None,
) -> Estimate:
    """Return the test accuracy of the logistic-regression probe whose C is best on `valid`.

    Args:
        train: The labelled examples the probe is fitted on.
        valid: Examples that choose C (ties go to the smallest C, the strongest regulariser).
        test: Examples the accuracy is measured on.
        regularisations: The grid of inverse regularisation strengths C.
        seed: Seed of the solver.
        max_iter: Iterations of the L-BFGS solver.
        params: Settings that produced the features, recorded with the estimate.

    Returns:
        The accuracy (fraction of ``test`` classified correctly) with its standard error; the
        chosen C and every validation accuracy in ``diagnostics``, and a ``warning`` when fewer
        than `MIN_LABELS_PER_CLASS` labels per class were used or the C chosen lies on the edge of
        the grid.
    """
    scaler = StandardScaler().fit(train.features)
    fitted = {}
    for c in sorted(regularisations):
        probe = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
        probe.fit(scaler.transform(train.features), train.labels)
        fitted[c] = (probe, probe.score(scaler.transform(valid.features), valid.labels))
    best = max(fitted, key=lambda c: (fitted[c][1], -c))
    correct = fitted[best][0].predict(scaler.transform(test.features)) == test.labels
    classes = len(np.unique(train.labels))
    diagnostics = {
        "regularisation": best,
        "valid_accuracy": {str(c): accuracy for c, (_, accuracy) in fitted.items()},
        "num_labels": len(train.labels),
        "classes_in_labels": classes,
        "chance": float(np.bincount(test.labels).max() / len(test.labels)),
    }
    estimate = mean_estimate(
        torch.from_numpy(correct.astype(np.float64)),
        unit="fraction",
        higher_is_better=True,
        params=params,
        diagnostics=diagnostics,
    )
    return replace(
        estimate, warning=_probe_warning(len(train.labels), classes, best, regularisations)
    )


def _probe_warning(
    num_labels: int, classes: int, best: float, regularisations: tuple[float, ...]
) -> str | None:
    if num_labels < MIN_LABELS_PER_CLASS * classes:
        return (
            f"only {num_labels} labels for {classes} classes (fewer than {MIN_LABELS_PER_CLASS} "
            f"per class): the probe's accuracy depends strongly on which examples were labelled."
        )
    if len(regularisations) > 1 and best in (min(regularisations), max(regularisations)):
        return f"the regularisation chosen, C = {best}, is on the edge of the grid searched."
    return None
