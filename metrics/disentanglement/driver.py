"""Run the six disentanglement scores of Locatello et al. (2019) on one representation.

Each score gets its own fresh ``np.random.RandomState(seed)``, as in disentanglement_lib, so a
score's value does not depend on which other scores ran before it; the same seed also seeds every
scikit-learn estimator. The representation is any callable from observations to codes;
`mean_representation` and `sampled_representation` build the study's two from a model.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch

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
from metrics.disentanglement.dci import dci
from metrics.disentanglement.factor_vae_score import factor_vae_score
from metrics.disentanglement.ground_truth import (
    GroundTruthData,
    Representation,
    check_ground_truth,
    sample_codes_and_factors,
)
from metrics.disentanglement.mig import mutual_information_gap
from metrics.disentanglement.modularity import modularity_explicitness
from metrics.disentanglement.sap import sap_score
from registry.base import LatentVariableModel

Data, Rng = GroundTruthData, np.random.RandomState  # short names for the score runners below
ScoreName = Literal["beta_vae", "factor_vae", "mig", "sap", "dci", "modularity_explicitness"]
SCORES: tuple[ScoreName, ...] = (
    "beta_vae",
    "factor_vae",
    "mig",
    "sap",
    "dci",
    "modularity_explicitness",
)
CONFIG_TYPES: dict[str, type] = {
    "beta_vae": BetaVAEScoreConfig,
    "factor_vae": FactorVAEScoreConfig,
    "mig": MIGConfig,
    "sap": SAPConfig,
    "dci": DCIConfig,
    "modularity_explicitness": ModularityExplicitnessConfig,
}


@runtime_checkable
class Restartable(Protocol):
    """A stateful representation (e.g. sampled codes) that can rewind to its first draw."""

    def restart(self) -> None: ...


def mean_representation(model: LatentVariableModel) -> Representation:
    """Return the representation x -> E_q(z|x)[z], the study's "mean" codes ``(N, D)``."""
    parameter = next(model.parameters())

    @torch.no_grad()
    def represent(x: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(x, dtype=parameter.dtype, device=parameter.device)
        return model.encode(x).mean.cpu().numpy()  # (N, D)

    return represent


class SampledRepresentation:
    """The representation x -> one draw z ~ q(z|x), the study's "sampled" codes ``(N, D)``.

    Call c draws under a forked torch RNG seeded from (seed, c), so draws are reproducible,
    independent across calls, and leave the global RNG alone. `restart` rewinds to call 0; the
    driver restarts it before each score, so every score sees the same noise for a given seed.
    """

    def __init__(self, model: LatentVariableModel, *, seed: int) -> None:
        self.model, self.seed, self.calls = model, seed, 0
        self.parameter = next(model.parameters())

    def restart(self) -> None:
        self.calls = 0

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        call_seed = int(np.random.SeedSequence([self.seed, self.calls]).generate_state(1)[0])
        self.calls += 1
        x = torch.as_tensor(x, dtype=self.parameter.dtype, device=self.parameter.device)
        devices = [self.parameter.device] if self.parameter.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(call_seed)
            return self.model.encode(x).sample().cpu().numpy()  # (N, D)


def sampled_representation(model: LatentVariableModel, *, seed: int) -> SampledRepresentation:
    """Return the study's "sampled" representation of `model`, one posterior draw per input."""
    return SampledRepresentation(model, seed=seed)


def _train_test(
    data: GroundTruthData,
    representation: Representation,
    rng: np.random.RandomState,
    config: SAPConfig | DCIConfig | ModularityExplicitnessConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample the training points, then the test points, from the same `rng` (as dlib does)."""
    train = sample_codes_and_factors(
        data, representation, num_points=config.num_train, rng=rng, batch_size=config.batch_size
    )
    test = sample_codes_and_factors(
        data, representation, num_points=config.num_test, rng=rng, batch_size=config.batch_size
    )
    return (*train, *test)


def _beta_vae(
    data: Data, rep: Representation, rng: Rng, config: BetaVAEScoreConfig, seed: int
) -> dict[str, float]:
    return beta_vae_score(data, rep, rng=rng, config=config)


def _factor_vae(
    data: Data, rep: Representation, rng: Rng, config: FactorVAEScoreConfig, seed: int
) -> dict[str, float]:
    return factor_vae_score(data, rep, rng=rng, config=config)


def _mig(
    data: Data, rep: Representation, rng: Rng, config: MIGConfig, seed: int
) -> dict[str, float]:
    codes, factors = sample_codes_and_factors(
        data, rep, num_points=config.num_train, rng=rng, batch_size=config.batch_size
    )
    return {"discrete_mig": mutual_information_gap(codes, factors, num_bins=config.num_bins)}


def _sap(
    data: Data, rep: Representation, rng: Rng, config: SAPConfig, seed: int
) -> dict[str, float]:
    return sap_score(*_train_test(data, rep, rng, config), random_state=seed)


def _dci(
    data: Data, rep: Representation, rng: Rng, config: DCIConfig, seed: int
) -> dict[str, float]:
    return dci(*_train_test(data, rep, rng, config), random_state=seed)


def _modularity(
    data: Data, rep: Representation, rng: Rng, config: ModularityExplicitnessConfig, seed: int
) -> dict[str, float]:
    splits = _train_test(data, rep, rng, config)
    return modularity_explicitness(*splits, num_bins=config.num_bins, random_state=seed)


# Each runs one score from a fresh `rng`; `seed` seeds the scikit-learn estimators.
_SCORE_FUNCTIONS: dict[str, Callable[..., dict[str, float]]] = {
    "beta_vae": _beta_vae,
    "factor_vae": _factor_vae,
    "mig": _mig,
    "sap": _sap,
    "dci": _dci,
    "modularity_explicitness": _modularity,
}


def resolve_configs(
    scores: Sequence[str], configs: Mapping[str, ScoreConfig] | None
) -> dict[str, ScoreConfig]:
    """Return one config per score: the given one, else the study's defaults; raise on misuse."""
    configs = dict(configs or {})
    unknown = [name for name in scores if name not in SCORES]
    if unknown:
        raise ValueError(f"Expected `scores` to be among {list(SCORES)}, but got {unknown}.")
    extra = sorted(set(configs) - set(scores))
    if extra:
        raise ValueError(
            f"Expected the keys of `configs` to be among the requested scores {list(scores)}, "
            f"but got {extra}."
        )
    for name, config in configs.items():
        if not isinstance(config, CONFIG_TYPES[name]):
            raise TypeError(
                f"Expected `configs[{name!r}]` to be a {CONFIG_TYPES[name].__name__}, "
                f"but got {type(config).__name__}."
            )
    return {name: configs.get(name, CONFIG_TYPES[name]()) for name in scores}


def disentanglement_scores(
    data: GroundTruthData,
    representation: Representation,
    *,
    scores: Sequence[ScoreName] = SCORES,
    configs: Mapping[str, ScoreConfig] | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Return each requested score with its sub-scores, under disentanglement_lib's key names.

    Args:
        data: A ground-truth dataset (factor classes in, observations out).
        representation: Observations ``(n, *observation_shape)`` to codes ``(n, D)``; a
            `Restartable` one is restarted before each score.
        scores: Which scores to compute, from `SCORES`.
        configs: Per-score settings; missing scores use the study's defaults.
        seed: Seed of each score's fresh ``RandomState`` and of every scikit-learn estimator.

    Returns:
        ``{score: {key: value}}``, e.g. ``{"mig": {"discrete_mig": 0.31}}``.
    """
    check_ground_truth(data)
    results = {}
    for name, config in resolve_configs(scores, configs).items():
        if isinstance(representation, Restartable):
            representation.restart()
        rng = np.random.RandomState(seed)
        results[name] = _SCORE_FUNCTIONS[name](data, representation, rng, config, seed)
    return results
