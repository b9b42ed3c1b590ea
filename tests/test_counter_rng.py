"""Tests of the counter-based random numbers behind the training stream."""

import numpy as np
import pytest
import torch
from scipy import stats

from benchmark.datasets import counter_rng


def lowbias32_reference(x: int) -> int:
    """Reference: Chris Wellons' lowbias32, in unbounded Python ints reduced mod 2^32."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_the_tensor_hash_equals_the_reference_on_edge_and_random_values():
    """Reference: the split 16-bit int64 multiplication computes lowbias32 exactly."""
    values = [0, 1, 2, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    values += np.random.default_rng(0).integers(0, 2**32, 1000).tolist()
    hashed = counter_rng.hash32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert hashed == [lowbias32_reference(v) for v in values]
    assert [counter_rng.hash32(v) for v in values[:8]] == hashed[:8]  # host ints agree


def test_uniforms_pass_a_kolmogorov_smirnov_test_and_keys_decorrelate():
    """scipy reference: 200k uniforms are U[0, 1) by KS; neighbouring keys are uncorrelated."""
    u = counter_rng.uniform(counter_rng.stream_key(0, 2, 7), (200_000,))
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3
    v = counter_rng.uniform(counter_rng.stream_key(0, 2, 8), (200_000,))
    assert abs(np.corrcoef(u.numpy(), v.numpy())[0, 1]) < 0.01  # 4.5 sd at n = 200k


@pytest.mark.parametrize("n", [1, 7, 1000])
def test_permutations_are_permutations_and_differ_by_key(n):
    """Property: a permutation of range(n), a pure function of the key."""
    key = counter_rng.stream_key(3, 1, 0)
    order = counter_rng.permutation(key, n)
    assert sorted(order.tolist()) == list(range(n))
    assert torch.equal(order, counter_rng.permutation(key, n))
    if n > 7:
        assert not torch.equal(order, counter_rng.permutation(counter_rng.stream_key(3, 1, 1), n))


def test_stream_keys_depend_on_the_order_of_their_words():
    """Property: (seed, 1, 2) and (seed, 2, 1) are different streams; seeds above 2^32 fold."""
    assert counter_rng.stream_key(0, 1, 2) != counter_rng.stream_key(0, 2, 1)
    assert counter_rng.stream_key(2**40, 1) != counter_rng.stream_key(0, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_draws_are_uniforms_below_the_probabilities(dtype):
    """Reference definition: counter_rng.bernoulli(key, p) is (uniform(key) < p), bit for bit,
    also at probabilities on the 24-bit grid of the uniforms and next to it."""
    key = counter_rng.stream_key(7, 2, 11)
    u = counter_rng.uniform(key, (4000,)).to(dtype)
    probs = u.clone()  # [:1000] p equal to its draw: never below it
    probs[1000:2000] = torch.nextafter(u[1000:2000], torch.ones(1000, dtype=dtype))  # just above
    probs[2000:3998] = torch.rand(1998, dtype=dtype)
    probs[3998:] = torch.tensor([0.0, 1.0], dtype=dtype)
    draws = counter_rng.bernoulli(key, probs)
    assert draws.dtype == dtype
    assert torch.equal(draws, (u < probs).to(dtype))
    assert draws[:1000].sum() == 0 and draws[1000:2000].all()
    assert torch.equal(counter_rng.bernoulli(key, probs), draws)  # the cached counters are intact
