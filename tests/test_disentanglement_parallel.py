"""Tests of the faster driver: shared codes and classifiers fitted in worker processes.

The speed-up must not move a value: the parallel path is compared, value for value and bit for
bit, with the straightforward path (each score alone, drawing its own points, fitting in this
process) and with the public score functions on identical codes.
"""

import numpy as np
import pytest

from metrics.disentanglement import (
    BetaVAEScoreConfig,
    DCIConfig,
    FactorVAEScoreConfig,
    MIGConfig,
    ModularityExplicitnessConfig,
    SAPConfig,
    dci,
    disentanglement_scores,
    modularity_explicitness,
    mutual_information_gap,
    sample_codes_and_factors,
    sap_score,
)
from metrics.disentanglement.driver import shared_splits
from tests._toy_ground_truth import Noise, ToyGroundTruth, rotation

SIZES = (3, 4, 5)  # few classes keep the 100-stage tree models of DCI cheap
TINY = {
    "beta_vae": BetaVAEScoreConfig(batch_size=16, num_train=120, num_eval=60),
    "factor_vae": FactorVAEScoreConfig(
        batch_size=16, num_train=120, num_eval=60, num_variance_estimate=300
    ),
    "mig": MIGConfig(num_train=300),
    "sap": SAPConfig(num_train=300, num_test=150),
    "dci": DCIConfig(num_train=300, num_test=150),
    "modularity_explicitness": ModularityExplicitnessConfig(num_train=300, num_test=150),
}


def one_at_a_time(data, representation, seed=0):
    """The straightforward path: each score alone, in this process."""
    return {
        name: disentanglement_scores(
            data, representation, scores=[name], configs={name: config}, seed=seed, workers=1
        )[name]
        for name, config in TINY.items()
    }


@pytest.mark.parametrize("representation", [rotation(3), Noise(3)], ids=["rotation", "noise"])
def test_parallel_scores_equal_the_sequential_scores_exactly(representation):
    """Property: with two worker processes every value of the six scores equals, bit for bit,
    the value of each score run alone in this process (noise: a restartable representation,
    rewound per score)."""
    data = ToyGroundTruth(SIZES)
    expected = one_at_a_time(data, representation)
    cpu_seconds: dict[str, float] = {}
    parallel = disentanglement_scores(
        data, representation, configs=TINY, workers=2, cpu_seconds=cpu_seconds
    )
    assert parallel == expected
    assert list(parallel) == list(TINY) and set(cpu_seconds) == set(TINY)
    assert cpu_seconds["dci"] > 0  # the fits' CPU time comes back from the workers


def test_parallel_scores_equal_the_score_functions_on_identical_codes():
    """Reference: on the same drawn codes, the driver's split-up fits (here in 2 workers) give
    exactly what MIG, SAP, DCI and modularity/explicitness give when called whole."""
    data, representation = ToyGroundTruth(SIZES), rotation(3)
    rng = np.random.RandomState(0)
    train, test = (
        sample_codes_and_factors(data, representation, num_points=n, rng=rng, batch_size=16)
        for n in (300, 150)
    )
    scores = ["mig", "sap", "dci", "modularity_explicitness"]
    parallel = disentanglement_scores(
        data, representation, scores=scores, configs={k: TINY[k] for k in scores}, workers=2
    )
    assert parallel["mig"] == {"discrete_mig": mutual_information_gap(*train)}
    assert parallel["sap"] == sap_score(*train, *test, random_state=0)
    assert parallel["dci"] == dci(*train, *test, random_state=0)
    assert parallel["modularity_explicitness"] == modularity_explicitness(
        *train, *test, random_state=0
    )


def test_shared_splits_draw_prefix_compatible_scores_once():
    """Contract: MIG's training split is SAP's (same batch size, a prefix of its splits), the
    same arrays, not a copy; a score with other sizes gets its own draw, equal to drawing alone."""
    data, representation = ToyGroundTruth(SIZES), rotation(3)
    configs = {"mig": TINY["mig"], "sap": TINY["sap"], "dci": DCIConfig(num_train=200, num_test=50)}
    splits = shared_splits(data, representation, configs, seed=3)
    assert splits["mig"][0] is splits["sap"][0] and len(splits["mig"]) == 1
    assert len(splits["dci"][0][0]) == 200 and splits["dci"][0] is not splits["sap"][0]
    alone = sample_codes_and_factors(
        data, representation, num_points=200, rng=np.random.RandomState(3), batch_size=16
    )
    np.testing.assert_array_equal(splits["dci"][0][0], alone[0])
    np.testing.assert_array_equal(splits["dci"][0][1], alone[1])


def test_workers_must_be_a_positive_int():
    """Contract: workers < 1 raises ValueError naming the argument."""
    with pytest.raises(ValueError, match="`workers`"):
        disentanglement_scores(
            ToyGroundTruth(SIZES),
            rotation(3),
            scores=["mig"],
            configs={"mig": TINY["mig"]},
            workers=0,
        )
