"""Run a benchmark script: ``python -m benchmark.perf NAME [args]``.

Each benchmark is a module ``benchmark/perf/NAME.py`` with a ``main(argv: list[str]) -> None``.
Benchmarks print ratios measured in one run (e.g. against this machine's fp32 GEMM throughput);
speed targets never live in timed unit tests.
"""

import importlib
import pkgutil
import sys

import benchmark.perf as perf_package


def main() -> None:
    names = sorted(m.name for m in pkgutil.iter_modules(perf_package.__path__) if m.name[0] != "_")
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        sys.exit(f"usage: python -m benchmark.perf {{{','.join(names)}}} [args]")
    importlib.import_module(f"benchmark.perf.{sys.argv[1]}").main(sys.argv[2:])


if __name__ == "__main__":
    main()
