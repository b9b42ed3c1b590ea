"""Tests of `benchmark.stats` against scipy and reference definitions."""

import itertools

import numpy as np
import pytest
from scipy import stats

from benchmark.stats import (
    benjamini_hochberg,
    holm_adjust,
    mean_interval,
    minimum_detectable_difference,
    paired_bootstrap_difference,
    t_test_power,
    welch_standard_error,
    welch_test,
)

SAMPLES = [
    ([1.0, 2.0, 3.5, 2.2, 2.9], [0.5, 0.7, 1.9, 1.1, 0.2]),
    ([-80.1, -80.9], [-79.0, -79.6, -78.8]),
    ([10.0, 10.5, 9.0, 11.0, 10.2, 9.9], [12.0, 15.0, 9.0, 13.5, 14.0]),
]


@pytest.mark.parametrize(("a", "b"), SAMPLES)
def test_welch_test_matches_scipy(a, b):
    """Reference (scipy): p-value, df and CI equal `ttest_ind(equal_var=False)`'s."""
    ours = welch_test(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    interval = ref.confidence_interval(0.95)
    assert ours.estimate == pytest.approx(np.mean(a) - np.mean(b))
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert ours.df == pytest.approx(ref.df, rel=1e-10)
    assert (ours.low, ours.high) == pytest.approx((interval.low, interval.high), rel=1e-10)


def test_welch_test_needs_two_seeds_and_some_spread():
    """Property: one seed or no spread gives no p-value, with the reason."""
    assert welch_test([1.0], [2.0, 3.0]).p_value is None
    assert welch_test([1.0, 1.0], [2.0, 2.0]).detail == "no spread across seeds"


def test_mean_interval_matches_scipy():
    """Reference (scipy): Student-t interval of the mean."""
    values = [3.0, 2.0, 4.5, 4.0]
    expected = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert mean_interval(values) == pytest.approx(expected)


def test_minimum_detectable_difference_matches_published_power_table():
    """Reference (closed form): a two-sample t-test with 5 seeds per side, equal sd 1, α = 0.05,
    needs Cohen's d = 2.0244 for 80% power (G*Power; Cohen 1988 Table 2.4.1 gives ≈ 2.02)."""
    se, df = welch_standard_error(1.0, 5, 1.0, 5)
    assert df == pytest.approx(8.0)
    assert minimum_detectable_difference(se, df) == pytest.approx(2.0244, abs=2e-3)


def test_minimum_detectable_difference_tends_to_the_normal_formula_and_has_the_power():
    """Reference (scipy): for large df it is (z_0.975 + z_0.8) se; at any df a Monte Carlo
    t-test at that true difference rejects about 80% of the time."""
    normal = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * 0.5
    assert minimum_detectable_difference(0.5, 1e6) == pytest.approx(normal, rel=1e-3)
    rng = np.random.default_rng(0)
    delta = minimum_detectable_difference(*welch_standard_error(1.0, 5, 1.0, 5))
    a = rng.normal(delta, 1.0, size=(20_000, 5))
    b = rng.normal(0.0, 1.0, size=(20_000, 5))
    rejected = stats.ttest_ind(a, b, axis=1).pvalue < 0.05  # equal variances, df = 8
    assert rejected.mean() == pytest.approx(0.8, abs=0.015)


def _holm_by_closed_testing(p_values):
    """Holm's adjusted p as closed testing with Bonferroni: max over subsets holding i of
    min(1, |S| min_{j in S} p_j)."""
    m = len(p_values)
    adjusted = []
    for i in range(m):
        worst = 0.0
        for size in range(1, m + 1):
            for subset in itertools.combinations(range(m), size):
                if i in subset:
                    worst = max(worst, min(1.0, size * min(p_values[j] for j in subset)))
        adjusted.append(worst)
    return adjusted


@pytest.mark.parametrize(
    "p_values", [[0.01, 0.04, 0.03, 0.2], [0.001, 0.5, 0.0125, 0.013, 0.9], [0.3]]
)
def test_holm_matches_closed_testing_reference(p_values):
    """Reference (definition): Holm = closed testing of Bonferroni-tested intersections."""
    assert holm_adjust(p_values) == pytest.approx(_holm_by_closed_testing(p_values))


@pytest.mark.parametrize(
    "p_values", [[0.01, 0.04, 0.03, 0.2], [0.001, 0.5, 0.0125, 0.013, 0.9], [0.3, 0.3]]
)
def test_benjamini_hochberg_matches_scipy(p_values):
    """Reference (scipy): `false_discovery_control(method="bh")`."""
    assert benjamini_hochberg(p_values) == pytest.approx(
        stats.false_discovery_control(p_values, method="bh")
    )


def test_paired_bootstrap_interval_covers_the_paired_t_interval():
    """Reference (scipy): with many examples the bootstrap CI of the mean paired difference is
    close to the paired t interval (to its Monte Carlo error), and a shifted pair gives a small
    p-value."""
    rng = np.random.default_rng(1)
    base = rng.normal(80.0, 5.0, size=(1, 2000))
    new = base - 0.3 + rng.normal(0.0, 1.0, size=base.shape)
    result = paired_bootstrap_difference(new, base, num_resamples=4000, seed=0)
    d = (new - base)[0]
    expected = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert result.estimate == pytest.approx(d.mean())
    # NOTE: each bound's Monte Carlo error is about 0.001 here (B = 4000); a 90% interval
    # would sit 0.007 inside, so 0.003 tells the level apart.
    assert (result.low, result.high) == pytest.approx(expected, abs=0.003)
    assert result.p_value < 0.01


@pytest.mark.parametrize(("noncentrality", "df"), [(1.0, 8.0), (3.0, 4.3), (0.5, 30.0)])
def test_t_test_power_matches_scipy_noncentral_t(noncentrality, df):
    """Reference (scipy): P(|T| > c) under `scipy.stats.nct` where scipy is finite."""
    c = stats.t.ppf(0.975, df)
    expected = stats.nct.sf(c, df, noncentrality) + stats.nct.cdf(-c, df, noncentrality)
    assert t_test_power(noncentrality, df, c) == pytest.approx(expected, rel=1e-6)


def test_minimum_detectable_difference_is_finite_with_two_seeds_per_side():
    """Property: df = 1 (two seeds a side, one of them flat) still gives a finite answer,
    larger than with 5 seeds a side at the same spread."""
    two = minimum_detectable_difference(*welch_standard_error(1.0, 2, 1e-9, 2))
    five = minimum_detectable_difference(*welch_standard_error(1.0, 5, 1e-9, 5))
    assert np.isfinite(two) and two > five > 0
