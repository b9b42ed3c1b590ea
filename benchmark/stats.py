"""Statistics of reports: pure functions on arrays of numbers, no records, no I/O.

- `welch_test`: difference of two means across training seeds, Welch's t-test and its CI;
- `minimum_detectable_difference`: the smallest true difference that test detects with a given
  power, from the observed seed spread;
- `paired_bootstrap_difference`: the mean paired difference over test examples, with a
  percentile CI and a bootstrap p-value;
- `holm_adjust` (family-wise error) and `benjamini_hochberg` (false discovery rate);
- `mean_interval`: the Student-t CI of a mean across seeds.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.8
_BOOTSTRAP_CELLS = 2_000_000  # resample indices drawn per chunk, to bound memory
# Gauss–Legendre nodes and weights on (0, 1), for expectations over a quantile u of a variable
_nodes, _weights = np.polynomial.legendre.leggauss(400)
_QUANTILES, _QUANTILE_WEIGHTS = (_nodes + 1) / 2, _weights / 2


@dataclass(frozen=True)
class Difference:
    """A difference NEW − baseline with its 95% CI and two-sided p-value (None if undefined)."""

    estimate: float
    low: float | None
    high: float | None
    p_value: float | None
    detail: str  # what produced it, e.g. "Welch df=2.6" or "B=10000, 360 examples x 2 seeds"
    df: float | None = None  # degrees of freedom of a t-test
    standard_error: float | None = None  # of `estimate`, where a t-test gives one


def mean_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Return the Student-t CI of the mean of `values`: mean ± t_{n−1} · sd / sqrt(n), n ≥ 2."""
    if len(values) < 2:
        raise ValueError(f"Expected at least 2 values for a t interval, but got {len(values)}.")
    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def welch_standard_error(sd_a: float, n_a: int, sd_b: float, n_b: int) -> tuple[float, float]:
    """Return the standard error of a difference of means and its Welch–Satterthwaite df.

    Welch (1947): se² = s_a²/n_a + s_b²/n_b, df = se⁴ / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1)).
    """
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se2 = va + vb
    return math.sqrt(se2), se2**2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))


def welch_test(
    new: list[float], baseline: list[float], confidence: float = CONFIDENCE
) -> Difference:
    """Return mean(new) − mean(baseline) with Welch's two-sided t-test p-value and CI.

    Args:
        new: One value per training seed of NEW.
        baseline: One value per training seed of the baseline.
        confidence: Level of the interval.
    """
    a, b = np.asarray(new, dtype=float), np.asarray(baseline, dtype=float)
    estimate = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Difference(estimate, None, None, None, "needs ≥ 2 seeds per side")
    if a.var() == 0 and b.var() == 0:
        return Difference(estimate, None, None, None, "no spread across seeds")
    se, df = welch_standard_error(a.std(ddof=1), len(a), b.std(ddof=1), len(b))
    p_value = 2 * stats.t.sf(abs(estimate) / se, df)
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    return Difference(
        estimate, estimate - half, estimate + half, float(p_value), f"Welch df={df:.1f}", df, se
    )


def minimum_detectable_difference(
    standard_error: float, df: float, *, alpha: float = ALPHA, power: float = POWER
) -> float:
    """Return the smallest true difference a two-sided t-test detects with probability `power`.

    Solves P(|T| > t_{1−α/2, df}) = power for δ, where T is noncentral t with noncentrality
    δ / se (the exact power of the t-test, e.g. Cohen 1988, Ch. 2). For large df it tends to
    (z_{1−α/2} + z_power) · se = 2.80 se at α = 0.05, power 0.8.

    Args:
        standard_error: Standard error of the difference of means, from the observed seed spread.
        df: Degrees of freedom of the test (Welch–Satterthwaite).
        alpha: Two-sided level of the test.
        power: Wanted probability of rejecting when the difference is δ.
    """
    if standard_error <= 0 or df <= 0:
        raise ValueError(
            f"Expected a positive standard error and df, but got {standard_error} and {df}."
        )
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(noncentrality: float) -> float:
        return t_test_power(noncentrality, df, critical) - power

    upper = critical + stats.norm.ppf(power) + 1.0
    while shortfall(upper) < 0:
        upper *= 2
    return float(optimize.brentq(shortfall, 0.0, upper, xtol=1e-10)) * standard_error


def t_test_power(noncentrality: float, df: float, critical: float) -> float:
    """Return P(|T| > critical) for T noncentral t(df, noncentrality).

    T = (Z + λ) / sqrt(V / df) with Z standard normal and V chi-square(df), so the power is
    E_V[Φ(λ − c sqrt(V/df)) + Φ(−λ − c sqrt(V/df))], integrated over the quantiles u of V (a
    bounded domain at any df); unlike `scipy.stats.nct` it stays finite for df near 1 and
    large λ.
    """

    shift = critical * np.sqrt(stats.chi2.ppf(_QUANTILES, df) / df)  # (Q,)
    tails = stats.norm.cdf(noncentrality - shift) + stats.norm.cdf(-noncentrality - shift)
    return float(tails @ _QUANTILE_WEIGHTS)


def paired_bootstrap_difference(
    new: np.ndarray, baseline: np.ndarray, *, num_resamples: int, seed: int
) -> Difference:
    """Return the mean paired difference with a bootstrap-over-examples 95% CI and p-value.

    For each seed s on both sides, d_i = new_i(s) − baseline_i(s) over the same examples; Δ is
    the mean over seeds and examples. Examples are resampled with replacement (the same indices
    for every seed); the CI is the percentile interval and the two-sided p-value is
    (1 + #{|Δ*_b − Δ| ≥ |Δ|}) / (B + 1), the bootstrap distribution shifted to the null.

    Args:
        new: Per-example values of NEW, shape ``(S, N)``: S seeds, N examples.
        baseline: The baseline's values on the same seeds and examples, shape ``(S, N)``.
        num_resamples: Bootstrap resamples B.
        seed: Seed of the numpy Generator that draws the resampled indices.
    """
    if new.shape != baseline.shape or new.ndim != 2:
        raise ValueError(
            f"Expected paired arrays of one shape (S, N), but got {new.shape} and {baseline.shape}."
        )
    if num_resamples < 1:
        raise ValueError(f"Expected `num_resamples` >= 1, but got {num_resamples}.")
    # NOTE: averaging over seeds first equals resampling the same example indices for every seed
    d = (np.asarray(new, dtype=float) - np.asarray(baseline, dtype=float)).mean(0)  # (N,)
    estimate = float(d.mean())
    resampled = _bootstrap_means(d, num_resamples, np.random.default_rng(seed))  # (B,)
    low, high = np.quantile(resampled, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    extreme = np.count_nonzero(np.abs(resampled - estimate) >= abs(estimate))
    p_value = (1 + extreme) / (num_resamples + 1)
    detail = f"B={num_resamples}, {new.shape[1]} examples × {new.shape[0]} seeds, seed {seed}"
    return Difference(estimate, float(low), float(high), float(p_value), detail)


def _bootstrap_means(d: np.ndarray, num_resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = len(d)
    rows = max(1, _BOOTSTRAP_CELLS // n)
    means = [
        d[rng.integers(0, n, size=(min(rows, num_resamples - start), n))].mean(1)
        for start in range(0, num_resamples, rows)
    ]  # each (rows, N) -> (rows,)
    return np.concatenate(means)


def holm_adjust(p_values: list[float]) -> list[float]:
    """Return Holm's step-down adjusted p-values (Holm 1979), in the input order.

    The i-th smallest p (1-based) becomes max over j ≤ i of min(1, (m − j + 1) p_(j)).
    """
    order = np.argsort(p_values, kind="stable")
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """Return Benjamini–Hochberg adjusted p-values (q-values, BH 1995), in the input order.

    The i-th smallest p (1-based) becomes min over j ≥ i of min(1, m p_(j) / j).
    """
    order = np.argsort(p_values, kind="stable")
    m = len(p_values)
    adjusted, running = [0.0] * m, 1.0
    for rank in range(m - 1, -1, -1):
        index = order[rank]
        running = min(running, m * p_values[index] / (rank + 1))
        adjusted[index] = running
    return adjusted
