"""The settings of each disentanglement score, defaulting to the study of Locatello et al. (2019).

The defaults are those of disentanglement_lib's ``unsupervised_study_v1`` metric configs: every
score samples 10,000 training points and (where it has one) 5,000 evaluation points; the two
intervention scores build each point from a batch of 64 observations; the others draw codes in
batches of 16 and discretize codes into 20 equal-width bins. Quick suites override the sizes.
"""

from dataclasses import dataclass, fields

NUM_BINS = 20  # histogram bins per code, the study's `discretizer.num_bins`


def _check_sizes(config: object, *, at_least_two: tuple[str, ...] = ()) -> None:
    """Raise ValueError unless every int field is >= 1 (>= 2 for those in `at_least_two`)."""
    for field in fields(config):  # type: ignore[arg-type]
        value = getattr(config, field.name)
        minimum = 2 if field.name in at_least_two else 1
        if isinstance(value, int) and value < minimum:
            raise ValueError(
                f"Expected `{field.name}` of {type(config).__name__} to be >= {minimum}, "
                f"but got {value}."
            )


@dataclass(frozen=True)
class BetaVAEScoreConfig:
    """Higgins et al. (2017) BetaVAE score; dlib ``beta_vae_sklearn``."""

    batch_size: int = 64  # observation pairs averaged into one training point
    num_train: int = 10_000  # points the logistic regression is fitted on
    num_eval: int = 5_000  # fresh points the headline accuracy is measured on

    def __post_init__(self) -> None:
        _check_sizes(self)


@dataclass(frozen=True)
class FactorVAEScoreConfig:
    """Kim & Mnih (2018) FactorVAE score; dlib ``factor_vae_score``."""

    batch_size: int = 64  # observations sharing one fixed factor per vote
    num_train: int = 10_000  # votes that fix the majority-vote classifier
    num_eval: int = 5_000  # fresh votes the headline accuracy is measured on
    num_variance_estimate: int = 10_000  # observations for the global code variance
    prune_threshold: float = 0.05  # codes with global std below this are inactive

    def __post_init__(self) -> None:
        _check_sizes(self, at_least_two=("batch_size", "num_variance_estimate"))
        if not self.prune_threshold >= 0:
            raise ValueError(
                f"Expected `prune_threshold` to be >= 0, but got {self.prune_threshold}."
            )


@dataclass(frozen=True)
class MIGConfig:
    """Chen et al. (2018) Mutual Information Gap, discretized; dlib ``mig``."""

    num_train: int = 10_000  # points the plug-in mutual information is computed on
    batch_size: int = 16  # observations per sampling batch
    num_bins: int = NUM_BINS  # equal-width bins per code

    def __post_init__(self) -> None:
        _check_sizes(self)


@dataclass(frozen=True)
class SAPConfig:
    """Kumar et al. (2018) SAP score; dlib ``sap_score`` (both variants are reported)."""

    num_train: int = 10_000  # points the per-(code, factor) classifiers are fitted on
    num_test: int = 5_000  # points the discrete variant's accuracies are measured on
    batch_size: int = 16  # observations per sampling batch

    def __post_init__(self) -> None:
        _check_sizes(self)


@dataclass(frozen=True)
class DCIConfig:
    """Eastwood & Williams (2018) DCI with gradient-boosted trees; dlib ``dci``."""

    num_train: int = 10_000  # points each factor's classifier is fitted on
    num_test: int = 5_000  # points the test informativeness is measured on
    batch_size: int = 16  # observations per sampling batch

    def __post_init__(self) -> None:
        _check_sizes(self)


@dataclass(frozen=True)
class ModularityExplicitnessConfig:
    """Ridgeway & Mozer (2018) modularity and explicitness; dlib ``modularity_explicitness``."""

    num_train: int = 10_000  # points for the mutual information and the classifiers
    num_test: int = 5_000  # points the test explicitness is measured on
    batch_size: int = 16  # observations per sampling batch
    num_bins: int = NUM_BINS  # equal-width bins per code for the mutual information

    def __post_init__(self) -> None:
        _check_sizes(self)


ScoreConfig = (
    BetaVAEScoreConfig
    | FactorVAEScoreConfig
    | MIGConfig
    | SAPConfig
    | DCIConfig
    | ModularityExplicitnessConfig
)
