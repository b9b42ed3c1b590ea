"""Where the scores' classifiers are fitted: in this process, or in a pool of worker processes.

The fits (one gradient-boosted tree model per factor for DCI, one linear SVM per code and factor
for SAP, one logistic regression per factor for explicitness, ...) are independent of each other
and each is seeded by an integer, so running them in other processes, in any order, returns the
very same numbers. Workers come from loky's reusable pool (scikit-learn's own, through joblib):
they start once per Python process, run one BLAS/OpenMP thread each so that N workers use N
cores, and never import torch (this package loads it only in `representation`).
"""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, Protocol

import sklearn
from joblib.externals.loky import get_reusable_executor

# One thread per worker: the fits are many and small, so processes, not threads, use the cores.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WORKER_IDLE_TIMEOUT_S = 300  # a pool idle this long exits; the next call starts a fresh one


class Submit(Protocol):
    """Schedule ``fn(*args, **kwargs)``; return a future of ``(result, cpu_seconds)``."""

    def __call__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future: ...


def timed_call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Return ``fn(*args, **kwargs)`` and the CPU seconds the calling process spent on it.

    scikit-learn's parameter and finiteness checks are skipped: the scores check their codes
    once, and DCI's tree models would otherwise repeat both for each of their thousands of
    trees. Neither check changes a value.
    """
    start = time.process_time()
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
        result = fn(*args, **kwargs)
    return result, time.process_time() - start


def _run_now(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
    future: Future = Future()
    future.set_result(timed_call(fn, *args, **kwargs))
    return future


@contextmanager
def task_pool(workers: int) -> Iterator[Submit]:
    """Yield a `Submit` that runs tasks in this process (``workers == 1``) or in a worker pool.

    Tasks run in submission order as workers free up, so submitting the longest first keeps the
    workers evenly loaded. On an error, tasks not yet started are cancelled.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"Expected `workers` to be an int >= 1, but got {workers!r}.")
    if workers == 1:
        yield _run_now
        return
    executor = get_reusable_executor(
        max_workers=workers, timeout=WORKER_IDLE_TIMEOUT_S, env=WORKER_ENV
    )
    futures: list[Future] = []

    def submit(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        futures.append(executor.submit(timed_call, fn, *args, **kwargs))
        return futures[-1]

    try:
        yield submit
    finally:
        for future in futures:
            future.cancel()  # no-op for finished or running tasks
