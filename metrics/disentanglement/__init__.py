"""Supervised disentanglement scores, after disentanglement_lib (Locatello et al., ICML 2019).

Pure functions on codes ``(N, D)`` and factor classes ``(N, K)`` (MIG, SAP, DCI, modularity and
explicitness), two intervention scores that render their own batches (BetaVAE, FactorVAE), and a
driver that samples each score's points from a ground-truth dataset through a representation
and fits the scores' classifiers, in parallel worker processes if asked.
Definitions, defaults and the reference's known defects are in the reference notes
(``disentanglement.md``); every deviation from disentanglement_lib is documented where it is made.
"""

from metrics.disentanglement.beta_vae_score import beta_vae_score
from metrics.disentanglement.config import (
    BetaVAEScoreConfig,
    DCIConfig,
    FactorVAEScoreConfig,
    MIGConfig,
    ModularityExplicitnessConfig,
    SAPConfig,
    ScoreConfig,
)
from metrics.disentanglement.dci import dci, dci_completeness, dci_disentanglement
from metrics.disentanglement.discretize import (
    discrete_entropy,
    discrete_mutual_information,
    histogram_discretize,
)
from metrics.disentanglement.driver import SCORES, ScoreName, disentanglement_scores
from metrics.disentanglement.factor_vae_score import factor_vae_score
from metrics.disentanglement.ground_truth import (
    GroundTruthData,
    Representation,
    Restartable,
    sample_codes_and_factors,
)
from metrics.disentanglement.mig import mutual_information_gap
from metrics.disentanglement.modularity import (
    explicitness_per_factor,
    modularity,
    modularity_explicitness,
)
from metrics.disentanglement.sap import sap_score

__all__ = [
    "SCORES",
    "BetaVAEScoreConfig",
    "DCIConfig",
    "FactorVAEScoreConfig",
    "GroundTruthData",
    "MIGConfig",
    "ModularityExplicitnessConfig",
    "Representation",
    "Restartable",
    "SAPConfig",
    "SampledRepresentation",
    "ScoreConfig",
    "ScoreName",
    "beta_vae_score",
    "dci",
    "dci_completeness",
    "dci_disentanglement",
    "discrete_entropy",
    "discrete_mutual_information",
    "disentanglement_scores",
    "explicitness_per_factor",
    "factor_vae_score",
    "histogram_discretize",
    "mean_representation",
    "modularity",
    "modularity_explicitness",
    "mutual_information_gap",
    "sample_codes_and_factors",
    "sampled_representation",
    "sap_score",
]

# NOTE: the model representations need torch; they load on first use, so that the worker
# processes fitting the classifiers (which import this package) never import torch.
_TORCH_NAMES = ("SampledRepresentation", "mean_representation", "sampled_representation")


def __getattr__(name: str) -> object:
    if name in _TORCH_NAMES:
        from metrics.disentanglement import representation

        return getattr(representation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
