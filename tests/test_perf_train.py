"""Tests of the ``train`` benchmark script: its FLOP count, its plain loop, and a smoke run.

Speeds are never asserted (they belong to the benchmark's printout); what is tested is that the
figures it prints are computed right: the analytic FLOPs against hand counts, the plain loop's
loss against torch.distributions, and that the plain loop and vaebench train the same network.
"""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from benchmark.datasets import locations
from benchmark.perf import train as perf_train
from registry import create_model

IWAE_ENCODER = 2 * (784 * 200 + 200 * 200 + 200 * 100)  # 784-200-200-2x50, per example
IWAE_DECODER = 2 * (50 * 200 + 200 * 200 + 200 * 784)  # 50-200-200-784, per sample
# Locatello conv VAE on 64x64, per example: conv = 2 x out positions x C_out x C_in x 16;
# transposed conv = 2 x in positions x C_in x C_out x 16 (its adjoint); then the FC layers.
CONVS = 2 * 16 * (32 * 32 * 32 * 1 + 16 * 16 * 32 * 32 + 8 * 8 * 64 * 32 + 4 * 4 * 64 * 64)
LOCATELLO_ENCODER = CONVS + 2 * (1024 * 256 + 256 * 20)
LOCATELLO_DECODER = CONVS + 2 * (10 * 256 + 256 * 1024)


@pytest.mark.parametrize("k", [1, 5, 50])
def test_iwae_flops_match_the_hand_count(k):
    """Closed form: 3 x (B x encoder + k x B x decoder), 2 x in x out per linear layer."""
    row = perf_train.ROWS[f"iwae-k{k}"]
    assert row.batch_size == 20 and row.paper_steps == 3280 * 59_600 // 20 == 9_774_400
    assert perf_train.train_flops_per_step(row) == 3 * 20 * (IWAE_ENCODER + k * IWAE_DECODER)


def test_locatello_flops_match_the_hand_count():
    """Closed form: the conv stack of Locatello et al. counted layer by layer, batch 64."""
    row = perf_train.ROWS["locatello"]
    assert (row.batch_size, row.paper_steps) == (64, 300_000)
    expected = 3 * 64 * (LOCATELLO_ENCODER + LOCATELLO_DECODER)
    assert perf_train.train_flops_per_step(row) == expected


@pytest.mark.parametrize("name", ["iwae-k5", "locatello"])
def test_plain_loop_trains_the_same_network_as_vaebench(name):
    """Property: the plain model and vaebench's registered model have the same parameter count
    and the same counted FLOPs per loss, so their rates are comparable."""
    row = perf_train.ROWS[name]
    shape = (1, 64, 64) if row.dataset == "dsprites" else (1, 28, 28)
    plain = perf_train.plain_model(row)
    ours = create_model(**row.model, data_shape=shape)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in ours.parameters())
    x = torch.bernoulli(torch.full((row.batch_size, *shape), 0.5))
    assert perf_train.forward_flops(ours, lambda: ours.loss(x, 0)) == perf_train.forward_flops(
        plain, lambda: plain.loss(x)
    )


def test_plain_iwae_loss_matches_torch_distributions():
    """Reference: the plain loop's k-sample bound from the same draws, written with
    torch.distributions (Normal prior and posterior, Bernoulli from logits)."""
    torch.manual_seed(0)
    model = perf_train.PlainIWAE(num_samples=5)
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3))
    torch.manual_seed(1)
    loss = model.loss(x)
    torch.manual_seed(1)
    flat = x.flatten(1)
    mu, logvar = model.encoder(flat).chunk(2, dim=-1)
    eps = torch.randn(5, *mu.shape)
    q_z = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    z = mu + torch.exp(0.5 * logvar) * eps  # (5, 3, 50)
    p_z = Independent(Normal(torch.zeros(50), torch.ones(50)), 1)
    p_x_given_z = Independent(Bernoulli(logits=model.decoder(z)), 1)
    log_w = p_x_given_z.log_prob(flat) + p_z.log_prob(z) - q_z.log_prob(z)  # (5, 3)
    expected = -(torch.logsumexp(log_w, 0) - math.log(5)).mean()
    torch.testing.assert_close(loss, expected)


def test_durations_are_formatted_in_readable_units():
    """Closed form: the paper budget at 1 ms per step is 9,774.4 s = 2.72 h."""
    assert perf_train.format_duration(9_774_400 * 1e-3) == "2.72 h"
    assert perf_train.format_duration(90.0) == "90 s"
    assert perf_train.format_duration(3 * 86_400) == "3 days"


def test_unknown_row_is_rejected():
    with pytest.raises(SystemExit):
        perf_train.parse_args(["--rows", "iwae-k2"])


def test_smoke_run_prints_the_table_on_random_data(tmp_path, monkeypatch, capsys):
    """Property: a 2-step run without MNIST files falls back to random data and prints every
    method of the row, the GEMM rate, the paper budget and the targets."""
    for sub in ("env", "system", "cache"):
        (tmp_path / sub).mkdir()
    monkeypatch.setenv(locations.DATA_ROOT_ENV, str(tmp_path / "env"))
    monkeypatch.setattr(locations, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setattr(locations, "CACHE_DIR", tmp_path / "cache")
    # NOTE: a compiled train() can leave argument validation off (reported to the trainer);
    # restore it after this test so later tests in the process see torch's default.
    monkeypatch.setattr(Distribution, "_validate_args", Distribution._validate_args)
    small = perf_train.random_mnist
    monkeypatch.setattr(perf_train, "random_mnist", lambda: small(num_train=200))
    perf_train.main(["--device", "cpu", "--quick", "--steps", "2", "--rows", "iwae-k1"])
    out = capsys.readouterr().out
    assert "random intensities of MNIST's shape" in out
    assert "fp32 GEMM:" in out and "9,774,400 steps" in out
    for method in ("plain loop", "vaebench", "vaebench + compile"):
        assert method in out
    assert "vaebench >= plain loop, iwae-k1:" in out
