"""Metric modules: pure estimator functions named for the quantity they return.

Nothing here imports `benchmark`: metrics see only models (through the distributions of
`registry.base.LatentVariableModel`) and tensors.
"""
