"""Counter-based random numbers: the same bits on every device, as a pure function of a key.

Training draws its batch order and its binarization noise from here rather than from a stateful
`torch.Generator`, for two reasons:

- a CPU and a CUDA generator seeded alike give different streams, while these integer hashes
  give the same bits on any device, so a run's data stream does not depend on where it runs;
- the draw of step t needs no state but (seed, t), so a resumed run reads exactly the batches an
  uninterrupted one reads, and no generator state has to be checkpointed.

The mixing function is Chris Wellons' ``lowbias32`` 32-bit integer hash. Every value stays below
2^32 and every product below 2^63 (the 32-bit multiplications are split into 16-bit halves), so
int64 tensor arithmetic computes it exactly, with no overflow, on every backend.
"""

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)


def _multiply_mod_2_32(x: Tensor | int, constant: int) -> Tensor | int:
    """Return (x * constant) mod 2^32 for x in [0, 2^32), without int64 overflow."""
    low, high = x & 0xFFFF, x >> 16  # each < 2^16, so each product below is < 2^48
    return (low * constant + (((high * constant) & 0xFFFF) << 16)) & _MASK32


def hash32(x: Tensor | int) -> Tensor | int:
    """Return lowbias32(x), elementwise for an int64 tensor, for values in [0, 2^32).

    The same operators serve Python ints, so keys are computed on the host without tensors.
    """
    x = x ^ (x >> 16)
    x = _multiply_mod_2_32(x, _MULTIPLIERS[0])
    x = x ^ (x >> 15)
    x = _multiply_mod_2_32(x, _MULTIPLIERS[1])
    return x ^ (x >> 16)


def stream_key(seed: int, *words: int) -> int:
    """Return a 32-bit key for `seed` and a sequence of non-negative ints (stream ids, counters).

    Each word is folded in with one hash round, so (seed, 1, 2) and (seed, 2, 1) differ.
    """
    key = (seed ^ (seed >> 32)) & _MASK32
    for word in words:
        key = hash32(key ^ hash32((word ^ (word >> 32)) & _MASK32))
    return key


def random_bits(key: int, count: int, device: torch.device | str = "cpu") -> Tensor:
    """Return `count` pseudo-random 32-bit values (int64) for `key`, computed on `device`."""
    index = torch.arange(count, dtype=torch.int64, device=device)
    return hash32(hash32(index ^ key) ^ (key >> 1))


def uniform(key: int, shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """Return float32 uniforms in [0, 1) of `shape`: 24 random bits each, exact in float32."""
    count = 1
    for side in shape:
        count *= side
    bits = random_bits(key, count, device) >> 8  # (count,) 24-bit integers
    return (bits.to(torch.float32) * 2.0**-24).reshape(shape)  # (*shape)


def permutation(key: int, n: int, device: torch.device | str = "cpu") -> Tensor:
    """Return a permutation of range(n) for `key`: the stable argsort of n hashed counters."""
    return torch.argsort(random_bits(key, n, device), stable=True)
