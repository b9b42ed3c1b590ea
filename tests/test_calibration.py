"""Sanity tests of `benchmark.calibration` and a smoke run of `python -m benchmark.perf nll`.

No timing is asserted: speed targets live in the benchmark scripts, not in unit tests.
"""

import math

import pytest

from benchmark.calibration import best_time, gemm_gflops, memory_bandwidth_gbs
from benchmark.perf import nll as perf_nll


def test_gemm_and_bandwidth_are_positive_finite_numbers():
    """Property: both calibrations return a positive, finite rate on tiny, short runs."""
    for rate in (
        gemm_gflops(size=64, seconds=0.01),
        memory_bandwidth_gbs(megabytes=4, seconds=0.01),
    ):
        assert isinstance(rate, float) and math.isfinite(rate) and rate > 0


def test_best_time_calls_at_least_the_minimum_and_keeps_the_fastest():
    """Property: a warm-up plus at least `min_repeats` calls, and the minimum of their times."""
    calls = []
    seconds = best_time(lambda: calls.append(1), seconds=0.0, min_repeats=4)
    assert len(calls) == 5 and 0 <= seconds < 0.1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_sizes_must_be_positive_ints(bad):
    """Bad input: sizes are positive ints, named in the error."""
    with pytest.raises(ValueError, match="Expected `size`"):
        gemm_gflops(size=bad, seconds=0.01)
    with pytest.raises(ValueError, match="Expected `megabytes`"):
        memory_bandwidth_gbs(megabytes=bad, seconds=0.01)


def test_decoder_flop_count_of_the_benchmark_model():
    """Closed-form reference: 2 (50*500 + 500*500 + 500*784) = 1,334,000 FLOPs per sample."""
    assert perf_nll.decoder_flops_per_sample(perf_nll.benchmark_model("relu")) == 1_334_000


def test_nll_benchmark_runs_and_prints_the_ratio(capsys):
    """Contract: the benchmark prints GEMM, IS-NLL throughput, their ratio and a wall time."""
    perf_nll.main(
        [
            "--k",
            "30",
            "--chunk",
            "30",
            "--batch-size",
            "4",
            "--examples",
            "8",
            "--rounds",
            "1",
            "--data",
            "random",
        ]
    )
    out = capsys.readouterr().out
    for text in ("fp32 GEMM", "IS-NLL decoder, K=30", "ratio IS-NLL / GEMM", "wall time, K=30"):
        assert text in out
