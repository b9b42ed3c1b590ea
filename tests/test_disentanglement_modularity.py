"""Tests of modularity and explicitness (reference notes §2.6).

Sizes are reduced to 2,000 train / 1,000 test points (below that, the untuned logistic
regression's explicitness of a perfect code drops under 0.99). Noise's modularity comes from the
plug-in MI bias, so it depends on the sample size (0.66 at the study's 10,000 points).
"""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import label_binarize

from metrics.disentanglement import explicitness_per_factor, modularity, modularity_explicitness
from metrics.disentanglement.modularity import standardize
from tests._toy_ground_truth import Noise, constant, duplicated, identity, toy_splits, with_zeros


@pytest.mark.parametrize(
    ("mutual_information", "expected"),
    [
        (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 2 / 3),  # dlib's unit case
        (np.array([[2.0, 1.0, 0.0]]), 1 - (5 - 4) / (4 * 2)),  # theta 4, sum 5, K - 1 = 2
        (np.array([[1.0, 1.0]]), 0.0),  # equal information about both factors
    ],
)
def test_modularity_closed_form(mutual_information, expected):
    """Closed-form reference: 1 - delta per code, 0 for a code with no information, averaged."""
    assert modularity(mutual_information) == pytest.approx(expected)


def test_explicitness_matches_sklearn_one_vs_rest_auc():
    """Sklearn reference: macro one-vs-rest ROC-AUC of a default logistic regression."""
    codes_train, factors_train, codes_test, factors_test = toy_splits(Noise(), 500, 300)
    codes_train[:, 0] += factors_train[:, 1]  # make factor 1 partly readable
    codes_test[:, 0] += factors_test[:, 1]
    y_train, y_test = factors_train[:, 1], factors_test[:, 1]
    train, test = explicitness_per_factor(codes_train, y_train, codes_test, y_test, random_state=0)
    reference = LogisticRegression().fit(codes_train, y_train)
    classes = np.arange(6)
    for codes, y, value in ((codes_train, y_train, train), (codes_test, y_test, test)):
        expected = roc_auc_score(label_binarize(y, classes=classes), reference.predict_proba(codes))
        assert value == pytest.approx(expected, abs=1e-12)
    assert 0.6 < test < 1.0


def test_explicitness_survives_a_class_missing_from_the_test_split():
    """Property (reference pitfall 4): a class absent from the test labels neither misaligns the
    probability columns nor fails; the absent class is left out of the test average."""
    codes_train, factors_train, codes_test, factors_test = toy_splits(identity, 500, 300)
    keep = factors_test[:, 2] != 4  # drop class 4 of the 10-class factor from the test split
    y_test = factors_test[keep, 2]
    train, test = explicitness_per_factor(
        codes_train, factors_train[:, 2], codes_test[keep], y_test, random_state=0
    )
    classifier = LogisticRegression().fit(codes_train, factors_train[:, 2])
    proba = classifier.predict_proba(codes_test[keep])  # (M, 10)
    present = [c for c in range(10) if c != 4]
    expected = np.mean([roc_auc_score(y_test == c, proba[:, c]) for c in present])
    assert test == pytest.approx(expected, abs=1e-12)


def test_standardize_guards_constant_codes():
    """Property (reference pitfall 3): a constant training code is centred, not divided by 0."""
    train = np.array([[1.0, 5.0], [3.0, 5.0]])
    scaled_train, scaled_test = standardize(train, np.array([[2.0, 6.0]]))
    np.testing.assert_allclose(scaled_train, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(scaled_test, [[0.0, 1.0]])


def test_modularity_explicitness_identity_is_perfect():
    """Property: identity gives modularity 1 and explicitness about 1 (reference 0.9999)."""
    scores = modularity_explicitness(*toy_splits(identity, 2000, 1000), random_state=0)
    assert scores["modularity_score"] > 0.99
    assert scores["explicitness_score_test"] > 0.99


def test_modularity_rewards_noise_and_explicitness_does_not():
    """Property: pure noise gets modularity about 0.66 (reference; no informativeness check) but
    explicitness about 0.5 (chance)."""
    scores = modularity_explicitness(*toy_splits(Noise(), 2000, 1000), random_state=0)
    assert 0.55 < scores["modularity_score"] < 0.8
    assert scores["explicitness_score_test"] == pytest.approx(0.5, abs=0.03)


def test_modularity_duplicated_codes_stay_modular():
    """Property: each duplicated code still depends on one factor (reference 1.0)."""
    scores = modularity_explicitness(*toy_splits(duplicated, 2000, 1000), random_state=0)
    assert scores["modularity_score"] > 0.99 and scores["explicitness_score_test"] > 0.99


def test_constant_codes_do_not_crash():
    """Property (reference pitfall 3, where dlib raises): zero codes count 0 towards modularity
    and do not disturb explicitness; a wholly constant code gives 0 and chance (0.5)."""
    scores = modularity_explicitness(*toy_splits(with_zeros, 2000, 1000), random_state=0)
    assert scores["modularity_score"] == pytest.approx(0.5, abs=0.01)  # 5 perfect, 5 dead
    assert scores["explicitness_score_test"] > 0.99
    scores = modularity_explicitness(*toy_splits(constant, 500, 300), random_state=0)
    assert scores["modularity_score"] == 0.0
    assert scores["explicitness_score_test"] == pytest.approx(0.5)
