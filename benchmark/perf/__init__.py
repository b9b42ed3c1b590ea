"""Benchmark scripts: one module per measured target; see `__main__.py`."""
