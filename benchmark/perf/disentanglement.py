"""Time the six disentanglement scores with the study's defaults on one 10-d representation.

``python -m benchmark.perf disentanglement [--num-train N] [--num-eval M] [--scores a,b]``

The ground truth has dSprites' latent factor sizes (3, 6, 40, 32, 32), so the classifiers face
the real numbers of classes, but observations are the factors themselves and the representation
is a fixed linear map, so the timing is of the scores, not of an encoder or a renderer. With a
real model the intervention scores add their encoder passes: BetaVAE encodes 15,000 x 128
images, FactorVAE 10,000 + 15,000 x 64. Prints wall and CPU seconds per score; the CPU time is
the steadier figure on a shared machine.
"""

import argparse
import os
import time
from importlib.metadata import version

import numpy as np

from metrics.disentanglement import SCORES, disentanglement_scores
from metrics.disentanglement.config import (
    BetaVAEScoreConfig,
    DCIConfig,
    FactorVAEScoreConfig,
    MIGConfig,
    ModularityExplicitnessConfig,
    SAPConfig,
    ScoreConfig,
)

DSPRITES_SIZES = (3, 6, 40, 32, 32)


class FactorGrid:
    """Uniform independent factors observed as ``class / (size - 1)``; rendering draws nothing."""

    def __init__(self, factor_sizes: tuple[int, ...]) -> None:
        self.factor_sizes = factor_sizes
        self.factor_names = tuple(f"factor_{k}" for k in range(len(factor_sizes)))
        self.observation_shape = (len(factor_sizes),)

    def sample_factors(self, num: int, rng: np.random.RandomState) -> np.ndarray:
        return np.stack([rng.randint(size, size=num) for size in self.factor_sizes], axis=1)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.RandomState
    ) -> np.ndarray:
        return (factors / (np.array(self.factor_sizes) - 1)).astype(np.float32)  # (N, K)


def linear_representation(num_factors: int, num_codes: int, seed: int = 0):
    """Return x -> x W with a fixed W: the first K codes nearly axis-aligned, the rest mixed."""
    rng = np.random.RandomState(seed)
    weights = np.concatenate(
        [
            np.eye(num_factors) + 0.1 * rng.randn(num_factors, num_factors),
            rng.randn(num_factors, num_codes - num_factors),
        ],
        axis=1,
    )  # (K, D)
    return lambda x: x @ weights  # (N, D)


def paper_configs(num_train: int, num_eval: int) -> dict[str, ScoreConfig]:
    """Return the study's per-score settings with the given sample sizes."""
    return {
        "beta_vae": BetaVAEScoreConfig(num_train=num_train, num_eval=num_eval),
        "factor_vae": FactorVAEScoreConfig(num_train=num_train, num_eval=num_eval),
        "mig": MIGConfig(num_train=num_train),
        "sap": SAPConfig(num_train=num_train, num_test=num_eval),
        "dci": DCIConfig(num_train=num_train, num_test=num_eval),
        "modularity_explicitness": ModularityExplicitnessConfig(
            num_train=num_train, num_test=num_eval
        ),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf disentanglement")
    parser.add_argument("--num-train", type=int, default=10_000)
    parser.add_argument("--num-eval", type=int, default=5_000)
    parser.add_argument("--scores", default=",".join(SCORES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = FactorGrid(DSPRITES_SIZES)
    representation = linear_representation(len(DSPRITES_SIZES), num_codes=10)
    configs = paper_configs(args.num_train, args.num_eval)
    print(
        f"factor sizes {DSPRITES_SIZES}, 10 codes, num_train {args.num_train}, num_eval "
        f"{args.num_eval}, seed {args.seed}; {os.cpu_count()} CPUs, scikit-learn "
        f"{version('scikit-learn')}, numpy {version('numpy')}"
    )
    total_wall = total_cpu = 0.0
    for name in args.scores.split(","):
        wall, cpu = time.perf_counter(), time.process_time()
        result = disentanglement_scores(
            data, representation, scores=[name], configs={name: configs[name]}, seed=args.seed
        )[name]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        values = ", ".join(f"{key} {value:.4f}" for key, value in result.items())
        print(f"{name:<24} wall {wall:8.1f} s  cpu {cpu:8.1f} s  | {values}", flush=True)
    print(f"{'total':<24} wall {total_wall:8.1f} s  cpu {total_cpu:8.1f} s")
