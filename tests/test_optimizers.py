"""Tests of the named optimizers and schedules against the IWAE release and its protocol."""

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmark.optimizers import (
    BurdaAdam,
    burda_learning_rate,
    burda_pass_starts,
    learning_rate,
    schedule_boundaries,
)


def burda_adam_reference(theta, grads, *, lr, beta1, beta2):
    """Reference: a transcription of yburda/iwae optimizers.py (gradient of the loss, descent)."""
    m, v = np.zeros_like(theta), np.ones_like(theta)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        alpha = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
        theta = theta - alpha * m / (np.sqrt(v) + 1e-4)
    return theta


def test_burda_adam_matches_the_released_update():
    """Reference: five steps equal the transcription of the released Theano code."""
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) * 10 ** rng.uniform(-3, 1) for _ in range(5)]
    p = torch.nn.Parameter(torch.tensor(theta0))
    optimizer = BurdaAdam([p], lr=1e-3, betas=(0.99, 0.999), eps=1e-4)
    for g in grads:
        p.grad = torch.tensor(g)
        optimizer.step()
    expected = burda_adam_reference(theta0, grads, lr=1e-3, beta1=0.99, beta2=0.999)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-12, atol=1e-15)


def test_burda_adam_state_survives_a_round_trip():
    """Contract: the state dict restores the same next step (checkpoints resume exactly)."""
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = BurdaAdam([p], lr=1e-3, betas=(0.99, 0.999), eps=1e-4)
    p.grad = torch.tensor([1.0, -2.0, 3.0])
    optimizer.step()
    q = torch.nn.Parameter(p.detach().clone())
    restored = BurdaAdam([q], lr=1e-3, betas=(0.99, 0.999), eps=1e-4)
    buffer = io.BytesIO()  # through bytes, as a checkpoint goes: no tensors shared
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    p.grad = q.grad = torch.tensor([0.5, 0.5, -1.0])
    optimizer.step()
    restored.step()
    assert torch.equal(p, q)


def _protocol_text() -> str:
    entries = yaml.safe_load(Path("results/literature.yaml").read_text())
    return next(e["value"] for e in entries if e["id"] == "iwae-protocol-training")


def test_the_schedule_is_the_protocol_entry():
    """Reference: literature.yaml `iwae-protocol-training`: pass i = 0..7 lasts 3^i epochs at
    lr 1e-4 * round(10 ** (1 - i / 7), 1), 3,280 epochs in all."""
    text = _protocol_text()
    assert "3^i epochs (3,280 epochs in total)" in text
    assert "1e-4*round(10**(1-i/7),1)" in text
    assert [burda_learning_rate(i) for i in range(8)] == [
        1e-4 * round(10 ** (1 - i / 7), 1) for i in range(8)
    ]
    assert burda_learning_rate(0) == pytest.approx(1e-3) and burda_learning_rate(7) == 1e-4
    starts = burda_pass_starts(2980)
    assert starts == [2980 * sum(3**j for j in range(i)) for i in range(8)]
    assert starts[-1] + 3**7 * 2980 == 3280 * 2980
    assert learning_rate("burda2016", 1.0, starts[3] - 1, 2980) == burda_learning_rate(2)
    assert learning_rate("burda2016", 1.0, starts[3], 2980) == burda_learning_rate(3)
    assert learning_rate("constant", 0.5, 10**7, 2980) == 0.5
    assert schedule_boundaries("burda2016", 2980, 3280 * 2980) == starts[1:] + [3280 * 2980]
    assert schedule_boundaries("burda2016", 2980, 5000) == [2980, 5000]
    assert math.isclose(sum(3**i for i in range(8)), 3280)
