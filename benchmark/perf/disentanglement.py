"""Time the six disentanglement scores at the study's defaults: sequential against parallel.

``python -m benchmark.perf disentanglement [--workers 2] [--factors toy|dsprites]
[--representations identity,rotation,noise] [--num-train N] [--num-eval M]``

The workload is the reference notes' toy (§6.1): five uniform factors of sizes (3, 6, 10, 16, 16)
observed as ``class / (size - 1)``, scored through three representations (identity, a fixed
rotation, independent noise), so that the time is the scores', not an encoder's or a renderer's.
``--factors dsprites`` uses dSprites' latent factor sizes (3, 6, 40, 32, 32) instead. Two runs
on the same codes, one after the other, both with one BLAS thread per process:

- sequential: each score alone, drawing its own points and fitting its classifiers one by one
  in this process through the public score functions (what `disentanglement_scores` did before
  it shared codes and used workers);
- parallel: `disentanglement_scores` with ``--workers`` worker processes (the pool's start-up
  included): shared codes, the fits spread over the workers, scikit-learn's per-fit checks off.

It prints each score's CPU seconds (in the parallel run: summed over all processes) and the
total wall time of both, their ratio, the CPU model, and whether every value is identical; it
exits with status 1 if one is not.
"""

import argparse
import os
import platform
import time
from importlib.metadata import version

import numpy as np
from threadpoolctl import threadpool_limits

from metrics.disentanglement import (
    SCORES,
    Restartable,
    beta_vae_score,
    dci,
    disentanglement_scores,
    factor_vae_score,
    modularity_explicitness,
    mutual_information_gap,
    sample_codes_and_factors,
    sap_score,
)
from metrics.disentanglement.config import (
    BetaVAEScoreConfig,
    DCIConfig,
    FactorVAEScoreConfig,
    MIGConfig,
    ModularityExplicitnessConfig,
    SAPConfig,
    ScoreConfig,
)

FACTOR_SIZES = {"toy": (3, 6, 10, 16, 16), "dsprites": (3, 6, 40, 32, 32)}


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


class NoiseCodes:
    """N(0, 1) codes independent of x from a private generator, rewound before each score."""

    def __init__(self, num_codes: int, seed: int = 1) -> None:
        self.num_codes, self.seed = num_codes, seed
        self.restart()

    def restart(self) -> None:
        self.rng = np.random.RandomState(self.seed)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.rng.randn(len(x), self.num_codes)  # (N, D)


def representations(names: list[str], num_factors: int) -> dict[str, object]:
    """Return the named toy representations of ``num_factors``-dimensional observations."""
    q, _ = np.linalg.qr(np.random.RandomState(0).randn(num_factors, num_factors))
    known = {
        "identity": lambda x: x,
        "rotation": lambda x: (x - 0.5) @ q,  # (N, K) @ (K, K)
        "noise": NoiseCodes(num_factors),
    }
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"Expected representations among {sorted(known)}, but got {unknown}.")
    return {name: known[name] for name in names}


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


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo (else what the platform says)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def straightforward_score(data, representation, name: str, config, seed: int) -> dict:
    """Run one score as the driver did before it shared codes and used workers.

    A fresh ``RandomState(seed)``, the score's own draws and encodings, every classifier fitted
    in turn in this process through the public score functions (scikit-learn's checks on).
    """
    if isinstance(representation, Restartable):
        representation.restart()
    rng = np.random.RandomState(seed)
    if name == "beta_vae":
        return beta_vae_score(data, representation, rng=rng, config=config)
    if name == "factor_vae":
        return factor_vae_score(data, representation, rng=rng, config=config)
    sizes = [config.num_train] if name == "mig" else [config.num_train, config.num_test]
    splits = [
        sample_codes_and_factors(
            data, representation, num_points=n, rng=rng, batch_size=config.batch_size
        )
        for n in sizes
    ]
    if name == "mig":
        return {"discrete_mig": mutual_information_gap(*splits[0], num_bins=config.num_bins)}
    if name == "sap":
        return sap_score(*splits[0], *splits[1], random_state=seed)
    if name == "dci":
        return dci(*splits[0], *splits[1], random_state=seed)
    return modularity_explicitness(
        *splits[0], *splits[1], num_bins=config.num_bins, random_state=seed
    )


def sequential_run(data, reps, configs, seed) -> tuple[dict, dict[str, float], float]:
    """Score each representation one score at a time in this process; values, CPU s, wall s."""
    values, cpu, wall = {}, dict.fromkeys(configs, 0.0), time.perf_counter()
    for rep_name, rep in reps.items():
        for name, config in configs.items():
            start = time.process_time()
            values[rep_name, name] = straightforward_score(data, rep, name, config, seed)
            cpu[name] += time.process_time() - start
    return values, cpu, time.perf_counter() - wall


def parallel_run(data, reps, configs, seed, workers) -> tuple[dict, dict[str, float], float]:
    """Score each representation with all scores at once and `workers` fitting processes."""
    values, cpu, wall = {}, dict.fromkeys(configs, 0.0), time.perf_counter()
    for rep_name, rep in reps.items():
        seconds: dict[str, float] = {}
        scores = disentanglement_scores(
            data, rep, configs=configs, seed=seed, workers=workers, cpu_seconds=seconds
        )
        for name in configs:
            values[rep_name, name] = scores[name]
            cpu[name] += seconds[name]
    return values, cpu, time.perf_counter() - wall


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf disentanglement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--factors", choices=sorted(FACTOR_SIZES), default="toy")
    parser.add_argument("--representations", default="identity,rotation,noise")
    parser.add_argument("--num-train", type=int, default=10_000)
    parser.add_argument("--num-eval", type=int, default=5_000)
    parser.add_argument("--scores", default=",".join(SCORES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = FACTOR_SIZES[args.factors]
    data = FactorGrid(sizes)
    reps = representations(args.representations.split(","), len(sizes))
    all_configs = paper_configs(args.num_train, args.num_eval)
    configs = {name: all_configs[name] for name in args.scores.split(",")}
    print(f"CPU: {cpu_model()}; {os.cpu_count()} logical CPUs; Python {platform.python_version()}")
    print(
        f"scikit-learn {version('scikit-learn')}, numpy {version('numpy')}, "
        f"joblib {version('joblib')}; factor sizes {sizes}; representations "
        f"{', '.join(reps)}; num_train {args.num_train}, num_eval {args.num_eval}, seed {args.seed}"
    )
    with threadpool_limits(limits=1):  # one BLAS thread per process in both runs
        sequential, seq_cpu, seq_wall = sequential_run(data, reps, configs, args.seed)
        parallel, par_cpu, par_wall = parallel_run(data, reps, configs, args.seed, args.workers)
    print(f"{'score':<24} {'sequential cpu s':>17} {f'{args.workers} workers cpu s':>17}")
    for name in configs:
        print(f"{name:<24} {seq_cpu[name]:17.1f} {par_cpu[name]:17.1f}")
    print(f"{'total cpu':<24} {sum(seq_cpu.values()):17.1f} {sum(par_cpu.values()):17.1f}")
    print(f"{'total wall':<24} {seq_wall:17.1f} {par_wall:17.1f}")
    print(f"speed-up (sequential wall / parallel wall): {seq_wall / par_wall:.2f}x")
    mismatches = [key for key in sequential if sequential[key] != parallel[key]]
    print(f"values identical: {'yes' if not mismatches else f'NO, differ for {mismatches}'}")
    if mismatches:
        raise SystemExit(1)
