"""This machine's reference speeds: fp32 GEMM throughput and memory bandwidth.

Benchmarks report their throughput as a ratio to these numbers measured in the same run, so a
speed target means the same thing on a laptop and on a server; run records keep them as context
for timings. Each is the best of repeated timings over a short window, because on a shared
machine the best run is the one least disturbed by other processes.
"""

import time
from collections.abc import Callable

import torch


def gemm_gflops(size: int = 1024, seconds: float = 1.0) -> float:
    """Return this machine's fp32 matrix-multiply throughput in GFLOP/s with `torch.matmul`.

    Times ``(size, size) @ (size, size)`` products (2 size^3 flops each) on the CPU with the
    current number of torch threads, repeatedly for about `seconds`, and keeps the fastest.

    Args:
        size: Side of the square matrices.
        seconds: Length of the timing window.
    """
    _check_positive("size", size, int)
    _check_positive("seconds", seconds, float)
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    best = best_time(lambda: torch.matmul(a, b, out=out), seconds=seconds)
    return 2 * size**3 / best / 1e9


def memory_bandwidth_gbs(megabytes: int = 256, seconds: float = 1.0) -> float:
    """Return this machine's memory bandwidth in GB/s, from copying a float32 buffer.

    Counts the bytes read plus the bytes written of ``dst.copy_(src)`` over a buffer of
    `megabytes` MB (much larger than the caches), keeping the fastest of repeated copies.

    Args:
        megabytes: Size of the copied buffer.
        seconds: Length of the timing window.
    """
    _check_positive("megabytes", megabytes, int)
    _check_positive("seconds", seconds, float)
    numel = megabytes * 2**20 // 4
    src, dst = torch.ones(numel), torch.empty(numel)
    best = best_time(lambda: dst.copy_(src), seconds=seconds)
    return 2 * numel * 4 / best / 1e9


def best_time(function: Callable[[], object], *, seconds: float, min_repeats: int = 3) -> float:
    """Return the fastest wall time of `function` in seconds, after one warm-up call.

    Calls it until `seconds` have passed and at least `min_repeats` times.
    """
    function()
    best, started, repeats = float("inf"), time.perf_counter(), 0
    while repeats < min_repeats or time.perf_counter() - started < seconds:
        tic = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - tic)
        repeats += 1
    return best


def _check_positive(name: str, value: object, kind: type) -> None:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not numeric or (kind is int and not isinstance(value, int)) or value <= 0:
        raise ValueError(f"Expected `{name}` to be a positive {kind.__name__}, but got {value!r}.")
