"""Supervised disentanglement scores, after disentanglement_lib (Locatello et al., ICML 2019).

Pure functions on codes ``(N, D)`` and factor classes ``(N, K)`` (MIG, SAP, DCI, modularity and
explicitness), two intervention scores that render their own batches (BetaVAE, FactorVAE), and a
driver that samples each score's points from a ground-truth dataset through a representation.
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
from metrics.disentanglement.driver import (
    SCORES,
    SampledRepresentation,
    ScoreName,
    disentanglement_scores,
    mean_representation,
    sampled_representation,
)
from metrics.disentanglement.factor_vae_score import factor_vae_score
from metrics.disentanglement.ground_truth import (
    GroundTruthData,
    Representation,
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
