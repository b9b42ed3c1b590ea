"""Run the six disentanglement scores of Locatello et al. (2019) on one representation.

Each score gets its own fresh ``np.random.RandomState(seed)``, as in disentanglement_lib, so a
score's value does not depend on which other scores ran before it; the same seed also seeds every
scikit-learn estimator. The representation is any callable from observations to codes;
`mean_representation` and `sampled_representation` build the study's two from a model.

Three things make a run faster without changing a value:

- MIG, SAP, DCI and modularity each draw their training (then test) points from a fresh
  ``RandomState(seed)`` in the same batches, so scores with the same batch size get the same
  codes; those are drawn and encoded once and shared;
- the classifiers (per factor for DCI and explicitness, per code for SAP) are fitted in worker
  processes when ``workers > 1``, the longest first, while this process draws and encodes the
  BetaVAE and FactorVAE points;
- observations are encoded in chunks of up to ``ENCODE_CHUNK_SIZE`` (`ground_truth`).
"""

import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from functools import partial
from typing import Any, Literal

import numpy as np

from metrics.disentanglement.beta_vae_score import beta_vae_accuracies, beta_vae_samples
from metrics.disentanglement.config import (
    BetaVAEScoreConfig,
    DCIConfig,
    FactorVAEScoreConfig,
    MIGConfig,
    ModularityExplicitnessConfig,
    SAPConfig,
    ScoreConfig,
)
from metrics.disentanglement.dci import check_dci_inputs, dci_from_fits, gbt_factor_fit
from metrics.disentanglement.factor_vae_score import factor_vae_score
from metrics.disentanglement.ground_truth import (
    GroundTruthData,
    Representation,
    Restartable,
    check_ground_truth,
    sample_codes_and_factors,
)
from metrics.disentanglement.mig import mutual_information_gap
from metrics.disentanglement.modularity import (
    check_modularity_inputs,
    explicitness_per_factor,
    histogram_modularity,
    modularity_explicitness_from_parts,
    standardize,
)
from metrics.disentanglement.parallel import Submit, task_pool
from metrics.disentanglement.sap import (
    check_sap_inputs,
    continuous_sap_matrix,
    discrete_sap_row,
    sap_from_matrices,
)

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
WORKERS_ENV = "VAEBENCH_DISENTANGLEMENT_WORKERS"  # default `workers` where none is given
Splits = list[tuple[np.ndarray, np.ndarray]]  # [(codes (N, D), factors (N, K)), ...]
Finish = Callable[[], dict[str, float]]  # gathers a launched score's fits into its values


def _restarted(representation: Representation) -> Representation:
    if isinstance(representation, Restartable):
        representation.restart()
    return representation


def _split_sizes(config: ScoreConfig) -> tuple[int, ...]:
    """Return the sizes of the splits a sampled score draws, in drawing order."""
    if isinstance(config, MIGConfig):
        return (config.num_train,)
    return (config.num_train, config.num_test)


def shared_splits(
    data: GroundTruthData,
    representation: Representation,
    configs: Mapping[str, ScoreConfig],
    seed: int,
) -> dict[str, Splits]:
    """Return the splits of MIG, SAP, DCI and modularity, drawing shared ones once.

    A score's splits are drawn from a fresh ``RandomState(seed)`` after restarting the
    representation, split after split; so a score whose (batch size, split sizes) are a prefix
    of another's gets exactly the other's first splits.
    """
    sampled = {
        n: c for n, c in configs.items() if n in ("mig", "sap", "dci", "modularity_explicitness")
    }
    drawn: list[tuple[int, tuple[int, ...], Splits]] = []  # (batch size, sizes, splits)
    result = {}
    for name in sorted(sampled, key=lambda n: -len(_split_sizes(sampled[n]))):
        batch, sizes = sampled[name].batch_size, _split_sizes(sampled[name])
        match = next((d for d in drawn if d[0] == batch and d[1][: len(sizes)] == sizes), None)
        if match is None:
            rng, rep = np.random.RandomState(seed), _restarted(representation)
            splits = [
                sample_codes_and_factors(data, rep, num_points=n, rng=rng, batch_size=batch)
                for n in sizes
            ]
            match = (batch, sizes, splits)
            drawn.append(match)
        result[name] = match[2][: len(sizes)]
    return result


def _num_classes(y: np.ndarray) -> int:
    return len(np.unique(y))


def _launch_dci(submit: Submit, splits: Splits, config: DCIConfig, seed: int) -> list[Future]:
    codes_train, factors_train, codes_test, factors_test = check_dci_inputs(*splits[0], *splits[1])
    # NOTE: a tree model's cost grows with its factor's classes; the longest fits go first.
    order = sorted(range(factors_train.shape[1]), key=lambda j: -_num_classes(factors_train[:, j]))
    futures = {
        j: submit(
            gbt_factor_fit,
            codes_train,
            factors_train[:, j],
            codes_test,
            factors_test[:, j],
            random_state=seed,
        )
        for j in order
    }
    return [futures[j] for j in range(factors_train.shape[1])]


def _launch_modularity(
    submit: Submit, splits: Splits, config: ModularityExplicitnessConfig, seed: int
) -> list[Future]:
    codes_train, factors_train, codes_test, factors_test = check_modularity_inputs(
        *splits[0], *splits[1]
    )
    scaled_train, scaled_test = standardize(codes_train, codes_test)
    explicitness = [
        submit(
            explicitness_per_factor,
            scaled_train,
            factors_train[:, j],
            scaled_test,
            factors_test[:, j],
            random_state=seed,
        )
        for j in range(factors_train.shape[1])
    ]
    modularity = submit(histogram_modularity, codes_train, factors_train, num_bins=config.num_bins)
    return [modularity, *explicitness]


def _launch_sap(submit: Submit, splits: Splits, config: SAPConfig, seed: int) -> list[Future]:
    codes_train, factors_train, codes_test, factors_test = check_sap_inputs(*splits[0], *splits[1])
    rows = [
        submit(
            discrete_sap_row,
            codes_train[:, i],
            factors_train,
            codes_test[:, i],
            factors_test,
            random_state=seed,
        )
        for i in range(codes_train.shape[1])
    ]
    return [submit(continuous_sap_matrix, codes_train, factors_train), *rows]


def _launch_mig(submit: Submit, splits: Splits, config: MIGConfig, seed: int) -> list[Future]:
    return [submit(mutual_information_gap, *splits[0], num_bins=config.num_bins)]


# Each turns its score's fitted parts (the futures' results, in launch order) into its values.
_COMBINE: dict[str, Callable[[list[Any]], dict[str, float]]] = {
    "dci": dci_from_fits,
    "modularity_explicitness": lambda parts: modularity_explicitness_from_parts(
        parts[0], parts[1:]
    ),
    "sap": lambda parts: sap_from_matrices(np.stack(parts[1:]), parts[0]),
    "mig": lambda parts: {"discrete_mig": parts[0]},
    "beta_vae": lambda parts: parts[0],
    "factor_vae": lambda parts: parts[0],
}
# Longest fits first (DCI's trees); the intervention scores last, since they draw and encode
# in this process while the workers fit the others.
_LAUNCH_ORDER = ("dci", "modularity_explicitness", "sap", "mig", "beta_vae", "factor_vae")
_LAUNCH_SAMPLED = {
    "dci": _launch_dci,
    "modularity_explicitness": _launch_modularity,
    "sap": _launch_sap,
    "mig": _launch_mig,
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
    workers: int | None = None,
    cpu_seconds: dict[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """Return each requested score with its sub-scores, under disentanglement_lib's key names.

    Args:
        data: A ground-truth dataset (factor classes in, observations out).
        representation: Observations ``(n, *observation_shape)`` to codes ``(n, D)``; a
            `Restartable` one is restarted before each score's draws.
        scores: Which scores to compute, from `SCORES`.
        configs: Per-score settings; missing scores use the study's defaults.
        seed: Seed of each score's fresh ``RandomState`` and of every scikit-learn estimator.
        workers: Processes that fit the classifiers; 1 fits them here. None reads the
            ``VAEBENCH_DISENTANGLEMENT_WORKERS`` environment variable (default 1). The values
            do not depend on it.
        cpu_seconds: If given, filled with each score's CPU seconds: drawing and encoding in
            this process plus its fits in whichever process ran them.

    Returns:
        ``{score: {key: value}}``, e.g. ``{"mig": {"discrete_mig": 0.31}}``.
    """
    check_ground_truth(data)
    resolved = resolve_configs(scores, configs)
    workers = int(os.environ.get(WORKERS_ENV, "1")) if workers is None else workers
    timings = {name: 0.0 for name in resolved} if cpu_seconds is None else cpu_seconds
    with task_pool(workers) as submit:
        start = time.process_time()
        splits = shared_splits(data, representation, resolved, seed)
        for name in splits:  # the shared draws are charged to the scores in equal parts
            timings[name] = (time.process_time() - start) / len(splits)
        launchers = {
            **{name: partial(_LAUNCH_SAMPLED[name], submit, splits[name]) for name in splits},
            "beta_vae": partial(_launch_beta_vae, submit, data, representation),
            "factor_vae": partial(_launch_factor_vae, submit, data, representation),
        }
        launched = {}
        for name in sorted(resolved, key=_LAUNCH_ORDER.index):
            start = time.process_time()
            launched[name] = launchers[name](resolved[name], seed)
            timings[name] = timings.get(name, 0.0) + time.process_time() - start
        # NOTE: fits run in this process were timed within their launch already.
        return {name: _gather(timings, name, launched[name], workers > 1) for name in resolved}


def _launch_beta_vae(
    submit: Submit,
    data: GroundTruthData,
    representation: Representation,
    config: BetaVAEScoreConfig,
    seed: int,
) -> list[Future]:
    rng = np.random.RandomState(seed)
    samples = beta_vae_samples(data, _restarted(representation), rng=rng, config=config)
    return [submit(beta_vae_accuracies, **samples)]


def _launch_factor_vae(
    submit: Submit,
    data: GroundTruthData,
    representation: Representation,
    config: FactorVAEScoreConfig,
    seed: int,
) -> list[Future]:
    rng = np.random.RandomState(seed)
    # NOTE: no classifier to fit (a majority vote), so it runs here; the future is already done.
    done: Future = Future()
    done.set_result(
        (factor_vae_score(data, _restarted(representation), rng=rng, config=config), 0.0)
    )
    return [done]


def _gather(
    timings: dict[str, float], name: str, futures: list[Future], elsewhere: bool
) -> dict[str, float]:
    parts = [future.result() for future in futures]  # (result, cpu seconds) each
    timings[name] += sum(seconds for _, seconds in parts) if elsewhere else 0.0
    return _COMBINE[name]([result for result, _ in parts])
