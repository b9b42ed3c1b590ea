"""Evaluator ``disentanglement``: Locatello et al.'s (2019) six scores on a ground-truth dataset.

The codes are the model's posterior means (``representation: mean``) or one posterior draw
(``sampled``); the study evaluates both, so a record says which. Observations are rendered fresh
from the dataset's factors, not taken from its splits. Defaults are the study's sample sizes;
quick suites lower ``num_train``/``num_eval``. Each result carries its chance level (or noise
level) in ``diagnostics``, since several scores are far from 0 for a useless code.
"""

from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any, Literal

import numpy as np

from benchmark.evaluators import Output, Results, register_evaluator
from metrics.disentanglement import (
    SCORES,
    BetaVAEScoreConfig,
    DCIConfig,
    FactorVAEScoreConfig,
    GroundTruthData,
    MIGConfig,
    ModularityExplicitnessConfig,
    SAPConfig,
    ScoreConfig,
    ScoreName,
    disentanglement_scores,
    mean_representation,
    sampled_representation,
)
from metrics.estimate import Estimate
from registry.base import LatentVariableModel


@dataclass(frozen=True)
class DisentanglementConfig:
    """Settings of the ``disentanglement`` evaluator (defaults: Locatello et al. 2019)."""

    representation: Literal["mean", "sampled"] = "mean"  # codes: E_q[z], or one z ~ q(z|x)
    scores: tuple[ScoreName, ...] = SCORES  # which of the six scores to compute
    num_train: int = 10_000  # training points (BetaVAE points, FactorVAE votes, samples)
    num_eval: int = 5_000  # evaluation / test points of every score that has them
    num_variance_estimate: int = 10_000  # FactorVAE: observations for the global code variance
    intervention_batch_size: int = 64  # BetaVAE / FactorVAE: observations per point or vote
    batch_size: int = 16  # MIG, SAP, DCI, modularity: observations per sampling batch
    num_bins: int = 20  # MIG, modularity: equal-width histogram bins per code
    prune_threshold: float = 0.05  # FactorVAE: codes with global std below this are inactive


def score_configs(config: DisentanglementConfig) -> dict[str, ScoreConfig]:
    """Return the per-score configs that `config`'s shared settings stand for."""
    train, test, batch = config.num_train, config.num_eval, config.batch_size
    interventions = {"batch_size": config.intervention_batch_size, "num_train": train}
    return {
        "beta_vae": BetaVAEScoreConfig(**interventions, num_eval=test),
        "factor_vae": FactorVAEScoreConfig(
            **interventions,
            num_eval=test,
            num_variance_estimate=config.num_variance_estimate,
            prune_threshold=config.prune_threshold,
        ),
        "mig": MIGConfig(num_train=train, batch_size=batch, num_bins=config.num_bins),
        "sap": SAPConfig(num_train=train, num_test=test, batch_size=batch),
        "dci": DCIConfig(num_train=train, num_test=test, batch_size=batch),
        "modularity_explicitness": ModularityExplicitnessConfig(
            num_train=train, num_test=test, batch_size=batch, num_bins=config.num_bins
        ),
    }


_ME = "modularity_explicitness"
# (score, dlib key) -> (record name, sample the value is computed on, unit, higher is better)
RESULT_NAMES: dict[tuple[str, str], tuple[str, str, str, bool | None]] = {
    ("beta_vae", "eval_accuracy"): ("beta_vae_score", "eval", "fraction", True),
    ("beta_vae", "train_accuracy"): ("beta_vae_score_train", "train", "fraction", True),
    ("factor_vae", "eval_accuracy"): ("factor_vae_score", "eval", "fraction", True),
    ("factor_vae", "train_accuracy"): ("factor_vae_score_train", "train", "fraction", True),
    ("factor_vae", "num_active_dims"): ("factor_vae_num_active_dims", "variance", "count", None),
    ("mig", "discrete_mig"): ("mig", "train", "fraction", True),
    ("sap", "SAP_score"): ("sap", "eval", "fraction", True),
    ("sap", "SAP_score_continuous"): ("sap_continuous", "train", "fraction", True),
    ("dci", "disentanglement"): ("dci_disentanglement", "train", "fraction", True),
    ("dci", "completeness"): ("dci_completeness", "train", "fraction", True),
    ("dci", "informativeness_test"): ("dci_informativeness", "eval", "fraction", True),
    ("dci", "informativeness_train"): ("dci_informativeness_train", "train", "fraction", True),
    (_ME, "modularity_score"): ("modularity", "train", "fraction", True),
    (_ME, "explicitness_score_test"): ("explicitness", "eval", "fraction", True),
    (_ME, "explicitness_score_train"): ("explicitness_train", "train", "fraction", True),
}


def chance_level(score: str, key: str, factor_sizes: tuple[int, ...]) -> dict[str, Any]:
    """Return what a code independent of the factors scores, where it is known in closed form."""
    sizes = np.array(factor_sizes)
    if score in ("beta_vae", "factor_vae") and key != "num_active_dims":
        return {"chance": 1.0 / len(sizes)}
    if key.startswith("informativeness"):
        return {"chance": float(np.mean(1.0 / sizes))}  # majority class of uniform factors
    if key.startswith("explicitness"):
        return {"chance": 0.5}
    if key == "modularity_score":
        return {"chance": None, "noise_level": "about 0.66 for pure noise (reference notes §6.2)"}
    return {"chance": 0.0} if key != "num_active_dims" else {}


def ground_truth_of(dataset: object) -> GroundTruthData:
    """Return the dataset's factor sampler and renderer, or raise naming the fix."""
    for candidate in (dataset, getattr(dataset, "ground_truth", None)):
        if isinstance(candidate, GroundTruthData):
            return candidate
    raise ValueError(
        "Expected `dataset` to be a ground-truth dataset (implementing GroundTruthData, or with "
        f"a `ground_truth` attribute that does), but got {type(dataset).__name__} "
        f"{getattr(dataset, 'name', '')!r}. Use a ground-truth dataset such as `dsprites`, or "
        "remove `disentanglement` from the spec's `eval:` section."
    )


@register_evaluator(
    "disentanglement",
    outputs=tuple(
        Output(name, unit, higher_is_better)
        for name, _, unit, higher_is_better in RESULT_NAMES.values()
    ),
)
def disentanglement(
    *, model: LatentVariableModel, dataset: object, config: DisentanglementConfig, seed: int
) -> Results:
    """Return the BetaVAE, FactorVAE, MIG, SAP, DCI and modularity/explicitness scores.

    Every score and its sub-scores is an `Estimate` without a standard error (no bootstrap):
    ``n`` is the number of points it was computed on, ``params`` every setting, the seed, the
    representation and the library versions the classifiers come from.
    """
    data = ground_truth_of(dataset)
    if tuple(data.observation_shape) != tuple(model.data_shape):
        raise ValueError(
            f"Expected the model's data_shape {tuple(model.data_shape)} to match the dataset's "
            f"observation_shape {tuple(data.observation_shape)}."
        )
    representation = (
        mean_representation(model)
        if config.representation == "mean"
        else sampled_representation(model, seed=seed)
    )
    shared = score_configs(config)
    configs = {score: shared[score] for score in config.scores}
    results = disentanglement_scores(
        data, representation, scores=config.scores, configs=configs, seed=seed
    )
    estimates = {}
    for score, values in results.items():
        for key, value in values.items():
            name, sample, unit, higher_is_better = RESULT_NAMES[score, key]
            params = _params(config, configs[score], score, key, seed)
            estimates[name] = Estimate(
                value,
                None,
                _sample_size(config, sample),
                unit,
                higher_is_better,
                params,
                chance_level(score, key, tuple(data.factor_sizes)),
            )
    return estimates


def _sample_size(config: DisentanglementConfig, sample: str) -> int:
    return {
        "train": config.num_train,
        "eval": config.num_eval,
        "variance": config.num_variance_estimate,
    }[sample]


def _params(
    config: DisentanglementConfig, score_config: ScoreConfig, score: str, key: str, seed: int
) -> dict[str, Any]:
    return {
        "score": score,
        "key": key,  # disentanglement_lib's result key
        "representation": config.representation,
        "seed": seed,
        **asdict(score_config),
        "versions": {lib: version(lib) for lib in ("scikit-learn", "numpy", "scipy")},
    }
