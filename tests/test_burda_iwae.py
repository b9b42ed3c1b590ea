"""Tests of the Burda et al. (2016) models and of the `iwae_table1` protocol suite."""

import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from benchmark.suite import load_suite
from registry import create_model
from registry.estimators import log_importance_weights

PAPER_STEPS = 3280 * 2980  # 3,280 epochs of 59,600 images at batch 20


def _literature(entry_id: str) -> str:
    entries = yaml.safe_load(Path("results/literature.yaml").read_text())
    return next(e for e in entries if e["id"] == entry_id)


def _chain(layers: list[nn.Linear]) -> list[int]:
    return [layers[0].in_features] + [layer.out_features for layer in layers]


def _q_chain(model) -> list[int]:
    """Widths of q: each Gaussian layer's trunk, then its mean output."""
    linears = []
    for layer in model.q_layers:
        linears += [m for m in layer.trunk if isinstance(m, nn.Linear)] + [layer.mean]
    return _chain(linears)


def _p_chain(model) -> list[int]:
    linears = []
    for layer in model.p_latent:
        linears += [m for m in layer.trunk if isinstance(m, nn.Linear)] + [layer.mean]
    return _chain(linears + [m for m in model.p_x.modules() if isinstance(m, nn.Linear)])


@pytest.mark.parametrize("layers", [1, 2])
def test_architectures_are_the_protocol_entry(layers):
    """Reference: literature.yaml `iwae-protocol-data` gives each architecture's widths."""
    text = _literature("iwae-protocol-data")["value"]
    clause = text.split("1 layer")[1] if layers == 1 else text.split("2 layers")[1]
    q_text, p_text = re.search(r"q ([\d\-()z]+), p ([\d\-()z]+)", clause).groups()
    widths = lambda s: [int(w) for w in re.sub(r"\(z\d\)", "", s).split("-")]  # noqa: E731
    model = create_model("burda_iwae", data_shape=(1, 28, 28), stochastic_layers=layers)
    assert _q_chain(model) == widths(q_text)
    assert _p_chain(model) == widths(p_text)
    assert all(isinstance(m, nn.Tanh) for m in model.q_layers[0].trunk[1::2])


def test_the_suite_resolves_to_the_protocol():
    """Reference: every iwae_table1 job carries the training, data and evaluation protocol of
    literature.yaml (`iwae-protocol-training`, `-data`, `-active-units`), for 12 configurations."""
    training = _literature("iwae-protocol-training")["value"]
    for fact in ("batch 20", "beta_1=0.99", "beta_2=0.999", "eps=1e-4", "initialised to ones",
                 "k=5000", "3,280 epochs"):  # fmt: skip
        assert fact in training, fact
    runs = load_suite("iwae_table1", seeds=[0]).runs
    configurations = {
        (r.model["stochastic_layers"], r.model["objective"], r.model["num_samples"]) for r in runs
    }
    assert configurations == {
        (n, o, k) for n in (1, 2) for o in ("vae", "iwae") for k in (1, 5, 50)
    }
    for run in runs:
        train = run.train
        assert (train.batch_size, train.steps, train.paper_steps) == (20, PAPER_STEPS, PAPER_STEPS)
        assert train.optimizer == "adam_burda2016" and train.lr_schedule == "burda2016"
        assert train.adam_betas == (0.99, 0.999) and train.adam_eps == 1e-4
        assert train.kl_warmup_steps == 0
        assert run.dataset["name"] == "mnist" and run.dataset["valid_size"] == 400
        assert run.dataset["preprocessing"] == "dynamic_binarization"
        nll = run.eval["nll"]
        assert (nll.k, nll.split, nll.num_examples) == (5000, "test", None)
        units = run.eval["active_units"]
        assert (units.split, units.num_examples, units.threshold) == ("train", 500, 0.01)
    assert "500 training images" in _literature("iwae-protocol-active-units")["estimator"]
    # The one addition to the protocol: AIS beside IS (k = 5000, the same images) on L1-vae-k1.
    checked = [r for r in runs if "ais" in r.eval]
    assert [r.name for r in checked] == ["L1-vae-k1"]
    ais = checked[0].eval["ais"]
    assert (ais.split, ais.is_k, ais.init, ais.num_examples) == ("test", 5000, "encoder", 100)


def test_a_budget_fraction_cuts_only_the_schedule():
    """Contract: `--budget 0.01` keeps the protocol and runs 1% of its steps."""
    full = load_suite("iwae_table1", seeds=[0]).runs[0]
    cut = load_suite("iwae_table1", seeds=[0], budget=0.01).runs[0]
    assert cut.train.steps == round(0.01 * PAPER_STEPS) and cut.train.paper_steps == PAPER_STEPS
    assert {**cut.to_dict()["train"], "steps": full.train.steps} == full.to_dict()["train"]
    with pytest.raises(ValueError, match="fraction in"):
        load_suite("iwae_table1", seeds=[0], budget=1.5)


def test_vae_and_iwae_are_one_objective_at_k_1():
    """Paper claim (Sec. 3): at k = 1 the IWAE bound is the ELBO, so the losses are equal."""
    x = (torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    losses = []
    for objective in ("vae", "iwae"):
        torch.manual_seed(0)
        model = create_model("burda_iwae", data_shape=(1, 28, 28), objective=objective)
        losses.append(model.loss(x, 0).loss)
    assert torch.equal(losses[0], losses[1])


@pytest.mark.parametrize("layers", [1, 2])
def test_the_bound_tightens_with_k(layers):
    """Paper claim (Theorem 1): L_1 <= L_5 <= L_50 <= log p(x), here by more than 3 stderr each
    on 64 binarized digits; it holds for any weights, trained or not, so a fresh model shows it."""
    torch.manual_seed(1)
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images[:64] / 16, dtype=torch.float32)
    x = (images > 0.5).float().unsqueeze(1)  # (64, 1, 8, 8)
    model = create_model("burda_iwae", data_shape=(1, 8, 8), stochastic_layers=layers)
    model.initialize_from_data(x)
    with torch.no_grad():
        log_w = log_importance_weights(model, x, num_samples=5000, chunk_size=5000).double()
    bounds = []
    for k in (1, 5, 50):
        groups = log_w.reshape(5000 // k, k, -1)  # (G, k, 64)
        per_group = torch.logsumexp(groups, 1) - math.log(k)  # (G, 64)
        bounds.append(per_group.mean(0))  # (64,) each example's L_k estimate
    for lower, upper in zip(bounds[:-1], bounds[1:], strict=True):
        difference = upper - lower
        assert difference.mean() > 3 * difference.std() / math.sqrt(len(difference))


def test_the_two_layer_posterior_density_is_its_sampler():
    """Contract: encode(x).log_prob of sampled z equals the log q the sampler returns."""
    torch.manual_seed(0)
    model = create_model("burda_iwae", data_shape=(1, 8, 8), stochastic_layers=2)
    x = (torch.rand(5, 1, 8, 8) < 0.4).float()
    z, log_q = model.sample_posterior(x, 3)
    torch.testing.assert_close(model.encode(x).log_prob(z), log_q)
    assert z.shape == (3, 5, 150)


def test_the_output_bias_starts_at_the_logit_of_the_training_mean():
    """Protocol: the decoder's output bias is logit(clip(mean, 1e-3, 1 - 1e-3))."""
    model = create_model("burda_iwae", data_shape=(1, 2, 2))
    x = torch.tensor([[0.0, 0.5, 1.0, 0.25]]).repeat(3, 1).reshape(3, 1, 2, 2)
    model.initialize_from_data(x)
    expected = torch.logit(torch.tensor([1e-3, 0.5, 1 - 1e-3, 0.25]))
    torch.testing.assert_close(model.p_x[-1].bias.detach(), expected)


@pytest.mark.parametrize("layers", [1, 2])
def test_the_fast_draws_are_the_distributions_bits(layers):
    """Contract: without argument validation the sampler skips the distribution objects and
    gives the same z, log q, log p(z), KL and loss gradients, bit for bit, as with them."""
    from torch.distributions import Distribution

    torch.manual_seed(0)
    model = create_model("burda_iwae", data_shape=(1, 28, 28), stochastic_layers=layers,
                         objective="iwae", num_samples=3)  # fmt: skip
    x = torch.rand(4, 1, 28, 28).round()
    previous = Distribution._validate_args
    results = {}
    try:
        for validate in (True, False):
            Distribution.set_default_validate_args(validate)
            torch.manual_seed(1)
            draws = model.draw_latents(x, 3)
            model.zero_grad()
            model.loss(x, 0).loss.backward()
            grads = [p.grad.clone() for p in model.parameters()]
            kl = draws.kl() if callable(draws.kl) else draws.kl
            results[validate] = (draws, kl, grads)
    finally:
        Distribution.set_default_validate_args(previous)
    (slow, slow_kl, slow_grads), (fast, fast_kl, fast_grads) = results[True], results[False]
    assert slow.log_prior is None and fast.log_prior is not None
    assert torch.equal(fast.z, slow.z) and torch.equal(fast.log_q, slow.log_q)
    assert torch.equal(fast.log_prior, model.log_prior(slow.z))
    assert (fast_kl is None) == (slow_kl is None) == (layers == 2)
    if layers == 1:
        assert torch.equal(fast_kl, slow_kl)
    assert all(torch.equal(a, b) for a, b in zip(fast_grads, slow_grads, strict=True))
