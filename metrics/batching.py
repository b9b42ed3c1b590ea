"""Blocks of rows: how metrics walk a dataset without losing row alignment.

Metrics process examples in blocks to bound memory. A model bound to per-row labels (a
`conditioned_on` CVAE) must see the labels of exactly the rows in the block, so a metric takes
each block's model with ``model.select(rows)`` and its data with ``x[rows]``, for the same slice.
"""

from collections.abc import Iterator


def row_blocks(num_rows: int, block_size: int) -> Iterator[slice]:
    """Yield consecutive slices of `block_size` rows covering ``range(num_rows)``; the last may be
    shorter."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"Expected the block size to be a positive int, but got {block_size!r}.")
    for start in range(0, num_rows, block_size):
        yield slice(start, min(start + block_size, num_rows))
