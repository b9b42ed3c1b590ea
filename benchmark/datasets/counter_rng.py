"""Counter-based random numbers: the same bits on every device, as a pure function of a key.

Training draws its batch order and its binarization noise from here rather than from a stateful
`torch.Generator`, for two reasons:

- a CPU and a CUDA generator seeded alike give different streams, while these integer hashes
  give the same bits on any device, so a run's data stream does not depend on where it runs;
- the draw of step t needs no state but (seed, t), so a resumed run reads exactly the batches an
  uninterrupted one reads, and no generator state has to be checkpointed.

The mixing function is Chris Wellons' ``lowbias32`` 32-bit integer hash. Every operand stays in
[0, 2^32) and each multiplier is taken as its representative in (-2^31, 2^31), so every product
lies within ±2^63: int64 tensor arithmetic computes it exactly, with no overflow, on every
backend, and ``& 0xFFFFFFFF`` reduces it mod 2^32 (two's complement makes that right for
negative products too).
"""

import functools
import math

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
# lowbias32's multipliers 0x7FEB352D and 0x846CA68B, the second as 0x846CA68B - 2^32.
_MULTIPLIERS = (0x7FEB352D, 0x846CA68B - 2**32)


def hash32(x: Tensor | int) -> Tensor | int:
    """Return lowbias32(x), elementwise for an int64 tensor, for values in [0, 2^32).

    The same operators serve Python ints, so keys are computed on the host without tensors.
    """
    return _lowbias32_(x.clone() if isinstance(x, Tensor) else x)


def _lowbias32_(x: Tensor | int) -> Tensor | int:
    """Return lowbias32(x), overwriting a tensor `x` (one buffer instead of one per operation)."""
    x ^= x >> 16
    x *= _MULTIPLIERS[0]
    x &= _MASK32  # NOTE: |x * multiplier| < 2^63, exact in int64; this reduces it mod 2^32
    x ^= x >> 15
    x *= _MULTIPLIERS[1]
    x &= _MASK32
    x ^= x >> 16
    return x


def stream_key(seed: int, *words: int) -> int:
    """Return a 32-bit key for `seed` and a sequence of non-negative ints (stream ids, counters).

    Each word is folded in with one hash round, so (seed, 1, 2) and (seed, 2, 1) differ.
    """
    key = (seed ^ (seed >> 32)) & _MASK32
    for word in words:
        key = hash32(key ^ hash32((word ^ (word >> 32)) & _MASK32))
    return key


def random_bits(key: int, count: int, device: torch.device | str = "cpu") -> Tensor:
    """Return `count` pseudo-random 32-bit values (int64) for `key`, computed on `device`.

    Value i is lowbias32((key + i) mod 2^32): one hash round per value, since the key itself
    is already a hash of the seed and the counters (`stream_key`).
    """
    x = _counters(count, torch.device(device)) + key  # (count,), a fresh buffer to hash in place
    x &= _MASK32
    return _lowbias32_(x)


@functools.lru_cache(maxsize=4)
def _counters(count: int, device: torch.device) -> Tensor:
    """Return ``arange(count)`` (int64) on `device`, kept: every batch of a run hashes the same."""
    return torch.arange(count, dtype=torch.int64, device=device)


def uniform(key: int, shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """Return float32 uniforms in [0, 1) of `shape`: 24 random bits each, exact in float32."""
    bits = random_bits(key, math.prod(shape), device) >> 8  # (count,) 24-bit integers
    return (bits.to(torch.float32) * 2.0**-24).reshape(shape)  # (*shape)


def bernoulli(key: int, probs: Tensor) -> Tensor:
    """Return ``(uniform(key, probs.shape) < probs)`` as 0/1 in the dtype of `probs`.

    Bernoulli(probs) draws, the same bits as comparing with `uniform`, in fewer passes: the
    24-bit integer m is compared with probs x 2^24 (m 2^-24 < p exactly when m < p 2^24, as both
    scalings by a power of two are exact), so the uniforms are never formed.

    Args:
        key: The draw's key (`stream_key`).
        probs: Probabilities in [0, 1], any shape, float32 or float64.
    """
    bits = random_bits(key, probs.numel(), probs.device)
    bits >>= 8  # (count,) 24-bit integers, exact in float32
    # NOTE: int64 < float compares in the float's dtype, where m < 2^24 is exact.
    return (bits.view(probs.shape) < probs * 2.0**24).to(probs.dtype)


def permutation(key: int, n: int, device: torch.device | str = "cpu") -> Tensor:
    """Return a permutation of range(n) for `key`: the stable argsort of n hashed counters."""
    return torch.argsort(random_bits(key, n, device), stable=True)
