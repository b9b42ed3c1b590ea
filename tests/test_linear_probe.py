"""Linear probes on frozen representations: known answers, the sklearn reference, the evaluator."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from benchmark.datasets import create_dataset
from benchmark.evaluators import get_evaluator, list_evaluators
from metrics.estimate import Estimate, NotDefined
from metrics.linear_probe import ProbeData, labelled_subset, linear_probe_accuracy
from registry import create_model

GRID = (0.01, 0.1, 1.0, 10.0)


def split_of(features: np.ndarray, labels: np.ndarray) -> ProbeData:
    return ProbeData(features, labels)


def label_data(num: int, classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, num)


def probe(train, valid, test, **settings) -> Estimate:
    return linear_probe_accuracy(
        train, valid, test, regularisations=GRID, seed=0, max_iter=500, **settings
    )


def test_a_representation_linear_in_the_label_scores_near_one():
    """Property (known answer): features = one_hot(y) @ M + small noise, a linear function of the
    label, are classified almost perfectly by the probe."""
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((5, 12))  # (C, D)

    def features(y):
        return np.eye(5)[y] @ mixing + 0.05 * rng.standard_normal((len(y), 12))

    train, valid, test = (label_data(n, 5, s) for n, s in ((200, 1), (200, 2), (1000, 3)))
    result = probe(*(split_of(features(y), y) for y in (train, valid, test)))
    assert result.value > 0.99 and result.n == 1000 and result.unit == "fraction"
    assert result.kind == "estimate" and result.higher_is_better is True
    assert result.diagnostics["num_labels"] == 200 and result.diagnostics["regularisation"] in GRID


def test_noise_scores_at_chance():
    """Property (known answer): features independent of the labels score at the chance level
    (1/4 for 4 balanced classes), within 3 standard errors."""
    rng = np.random.default_rng(1)
    train, valid, test = (label_data(n, 4, s) for n, s in ((400, 4), (400, 5), (4000, 6)))
    result = probe(*(split_of(rng.standard_normal((len(y), 8)), y) for y in (train, valid, test)))
    assert abs(result.value - 0.25) < 3 * result.stderr, (result.value, result.stderr)
    assert result.stderr == pytest.approx(
        np.sqrt(result.value * (1 - result.value) / 3999), rel=1e-6
    )


def test_matches_scikit_learn_with_the_chosen_regularisation():
    """Scikit-learn reference: the accuracy is that of a standardised LogisticRegression fitted by
    hand with the C the probe chose, and that C maximises the validation accuracy."""
    rng = np.random.default_rng(2)
    weights = rng.standard_normal((6, 3))
    data = []
    for size in (150, 150, 500):
        x = rng.standard_normal((size, 6))
        data.append(split_of(x, (x @ weights + rng.standard_normal((size, 3))).argmax(1)))
    result = probe(*data)
    chosen = result.diagnostics["regularisation"]
    scaler = StandardScaler().fit(data[0].features)
    fitted = LogisticRegression(C=chosen, max_iter=500, random_state=0).fit(
        scaler.transform(data[0].features), data[0].labels
    )
    expected = fitted.score(scaler.transform(data[2].features), data[2].labels)
    assert result.value == pytest.approx(expected, abs=1e-12)
    assert result.diagnostics["valid_accuracy"][str(chosen)] == max(
        result.diagnostics["valid_accuracy"].values()
    )


def test_too_few_labels_are_flagged():
    """Property: with fewer than 10 labels per class the estimate carries a warning."""
    rng = np.random.default_rng(3)
    y = label_data(300, 3, 7)
    data = split_of(rng.standard_normal((300, 4)) + y[:, None], y)
    few = split_of(data.features[:15], data.labels[:15])
    assert probe(few, data, data).warning is not None
    assert "labels" in probe(few, data, data).warning
    with pytest.raises(ValueError, match="num_labels"):
        labelled_subset(10, 11, seed=0)
    subset = labelled_subset(100, 30, seed=4)
    assert len(set(subset.tolist())) == 30 and (subset == labelled_subset(100, 30, seed=4)).all()


def test_evaluator_contract_on_digits():
    """Contract: ``linear_probe`` is registered; on a labelled dataset it returns one estimate with
    its settings; on an unlabelled dataset, or for a label-conditional model, `NotDefined`."""
    assert "linear_probe" in list_evaluators()
    evaluator = get_evaluator("linear_probe")
    dataset = create_dataset("digits")
    torch.manual_seed(0)
    model = create_model("vae", data_shape=dataset.data_shape, latent_dim=4).eval()
    config = evaluator.config_type(num_labels=200, num_valid=100, num_test=100, batch_size=64)
    results = evaluator.function(model=model, dataset=dataset, config=config, seed=3)
    estimate = results["linear_probe_accuracy"]
    assert set(results) == {"linear_probe_accuracy"} and isinstance(estimate, Estimate)
    assert 0 <= estimate.value <= 1 and estimate.n == 100
    assert estimate.params["num_labels"] == 200 and estimate.params["seed"] == 3
    again = evaluator.function(model=model, dataset=dataset, config=config, seed=3)
    assert again["linear_probe_accuracy"].value == estimate.value  # seeded
    cvae = create_model("cvae", data_shape=dataset.data_shape, latent_dim=4)
    undefined = evaluator.function(model=cvae, dataset=dataset, config=config, seed=0)
    assert isinstance(undefined["linear_probe_accuracy"], NotDefined)
    assert "label" in undefined["linear_probe_accuracy"].reason
    vectors = create_dataset("linear_gaussian", num_train=50, num_valid=20, num_test=20)
    linear = create_model("linear_vae", data_shape=vectors.data_shape)
    unlabelled = evaluator.function(model=linear, dataset=vectors, config=config, seed=0)
    assert "no labels" in unlabelled["linear_probe_accuracy"].reason
    with pytest.raises(ValueError, match="num_valid"):
        evaluator.function(
            model=model, dataset=dataset, config=evaluator.config_type(num_valid=10**6), seed=0
        )
