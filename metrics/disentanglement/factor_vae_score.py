"""The FactorVAE score (Kim & Mnih, ICML 2018), as disentanglement_lib's ``factor_vae_score``.

Codes are first scaled by their global standard deviation. One vote: fix factor k across a batch,
encode, and find the active code whose variance dropped most relative to its global variance; the
vote is (k, that code). A majority-vote classifier maps each code to the factor it was most often
the least-varying code for; the score is its accuracy on fresh votes. Chance is about 1 / K.
Dividing by the global variance makes it invariant to scaling, permutation and sign, and almost
blind to rotation (reference notes §2.2).
"""

from collections.abc import Iterator

import numpy as np

from metrics.disentanglement.config import FactorVAEScoreConfig
from metrics.disentanglement.ground_truth import (
    GroundTruthData,
    Representation,
    check_ground_truth,
    encode_batches,
    render,
)


def global_code_variance(
    data: GroundTruthData,
    representation: Representation,
    *,
    num_points: int,
    batch_size: int,
    rng: np.random.RandomState,
) -> np.ndarray:
    """Return the variance (ddof 1) of each code over `num_points` random observations, ``(D,)``.

    As in dlib, all factor rows are drawn first; they are rendered `batch_size` rows at a time.
    """
    factors = data.sample_factors(num_points, rng)  # (N, K)
    batches = (
        render(data, factors[s : s + batch_size], rng) for s in range(0, num_points, batch_size)
    )
    return np.concatenate(list(encode_batches(representation, batches))).var(axis=0, ddof=1)


def factor_vae_votes(
    data: GroundTruthData,
    representation: Representation,
    *,
    num_votes: int,
    batch_size: int,
    global_variance: np.ndarray,
    active: np.ndarray,
    rng: np.random.RandomState,
) -> np.ndarray:
    """Return the vote counts ``(K, D)``: votes[k, i] = how often code i varied least with k fixed.

    Args:
        global_variance: ``(D,)`` variance of each code over random observations.
        active: ``(D,)`` bool mask of the codes that may receive votes (at least one).
    """
    labels: list[int] = []

    def fixed_factor_batches() -> Iterator[np.ndarray]:
        for _ in range(num_votes):
            k = rng.randint(len(data.factor_sizes))
            factors = data.sample_factors(batch_size, rng)
            factors[:, k] = factors[0, k]  # every row shares the first row's class of factor k
            labels.append(k)
            yield render(data, factors, rng)

    ratios = [
        z[:, active].var(axis=0, ddof=1) / global_variance[active]  # (num active,)
        for z in encode_batches(representation, fixed_factor_batches())
    ]
    votes = np.zeros((len(data.factor_sizes), len(active)), dtype=np.int64)
    # NOTE: map the argmin over the active subset back to the code's own index.
    np.add.at(votes, (np.array(labels), np.flatnonzero(active)[np.argmin(ratios, axis=1)]), 1)
    return votes


def majority_vote_accuracy(votes: np.ndarray, assignment: np.ndarray) -> float:
    """Return the fraction of `votes` ``(K, D)`` whose factor is the one assigned to their code."""
    return float(votes[assignment, np.arange(votes.shape[1])].sum() / votes.sum())


def factor_vae_score(
    data: GroundTruthData,
    representation: Representation,
    *,
    rng: np.random.RandomState,
    config: FactorVAEScoreConfig | None = None,
) -> dict[str, float]:
    """Return the FactorVAE score's ``eval_accuracy`` (headline), ``train_accuracy`` and
    ``num_active_dims``.

    Deviations from dlib: ``num_active_dims`` is the number of active codes (dlib reports the
    length of the mask, i.e. always D); a code with zero global variance is inactive whatever
    the threshold (dlib's function default of 0 keeps it and divides by zero); votes are indexed
    by the code itself rather than by its position among the active codes, which leaves both
    accuracies unchanged.

    Args:
        data: The ground-truth dataset.
        representation: Observations ``(n, *observation_shape)`` to codes ``(n, D)``.
        rng: Draws the variance sample, then the training votes, then the evaluation votes.
        config: Sample sizes and the pruning threshold; None for the study's defaults.
    """
    check_ground_truth(data)
    config = config or FactorVAEScoreConfig()
    global_variance = global_code_variance(
        data,
        representation,
        num_points=config.num_variance_estimate,
        batch_size=config.batch_size,
        rng=rng,
    )
    # NOTE: a code of zero variance is never active, even at threshold 0, where dlib divides 0 by 0.
    active = (global_variance > 0) & (np.sqrt(global_variance) >= config.prune_threshold)
    if not active.any():  # every code is (nearly) constant: nothing can be attributed
        return {"eval_accuracy": 0.0, "train_accuracy": 0.0, "num_active_dims": 0.0}
    votes = {
        split: factor_vae_votes(
            data,
            representation,
            num_votes=num,
            batch_size=config.batch_size,
            global_variance=global_variance,
            active=active,
            rng=rng,
        )
        for split, num in (("train", config.num_train), ("eval", config.num_eval))
    }
    assignment = np.argmax(votes["train"], axis=0)  # (D,) factor of each code
    return {
        "eval_accuracy": majority_vote_accuracy(votes["eval"], assignment),
        "train_accuracy": majority_vote_accuracy(votes["train"], assignment),
        "num_active_dims": float(active.sum()),
    }
