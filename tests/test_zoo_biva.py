"""BIVA (Maaløe et al. 2019): bidirectional inference over a top-down generative hierarchy."""

import pytest
import torch
from torch.distributions import Independent, Normal

from benchmark.datasets import create_dataset
from benchmark.spec import TrainSpec
from benchmark.trainer import train
from metrics.local_posterior import require_local_posterior_family
from registry import create_model, resolve_hyperparameters
from registry.base import LikelihoodUndefined


def tiny_biva(**settings):
    """BIVA on 4-d vectors with one latent per variable: z = (z_2, z_1^BU, z_1^TD), D = 3."""
    torch.manual_seed(0)
    return create_model(
        "biva", data_shape=(4,), latent_dims=(1, 1), hidden=(8, 8), **settings
    ).eval()


def integral_of_density(log_density, dim: int, n: int = 200_000) -> float:
    """Return the importance-sampled integral of exp(log_density) from a broad N(0, 3^2 I)."""
    proposal = Independent(Normal(torch.zeros(dim), 3 * torch.ones(dim)), 1)
    torch.manual_seed(1)
    z = proposal.sample((n,))  # (n, D)
    return (log_density(z) - proposal.log_prob(z)).exp().mean().item()


def test_prior_and_posterior_densities_integrate_to_one():
    """Property: p(z) (top-down over both variables of a layer) and q(z|x) (bottom-up, then
    top-down) are normalised densities over the flattened z, so importance-weighted sums give
    the same log p(x) whatever the factorisation order."""
    model = tiny_biva()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    with torch.no_grad():
        assert integral_of_density(model.prior().log_prob, 3) == pytest.approx(1.0, abs=0.03)
        q_z = model.encode(x)
        assert integral_of_density(lambda z: q_z.log_prob(z[:, None])[:, 0], 3) == pytest.approx(
            1.0, abs=0.03
        )


def test_fused_log_weights_equal_the_three_densities():
    """Property: the fused pass gives log p(z) + log p(x|z) - log q(z|x) of its own samples, and
    the groups are listed in generative order (top first)."""
    model = tiny_biva()
    assert model.group_sizes == (1, 1, 1)
    x = (torch.rand(5, 4) > 0.5).float()
    with torch.no_grad():
        torch.manual_seed(2)
        log_w = model.log_importance_weights(x, num_samples=3)  # (3, 5)
        torch.manual_seed(2)
        z, log_q = model.sample_posterior(x, 3)
        composed = model.log_prior(z) + model.log_likelihood(x, z) - model.encode(x).log_prob(z)
    torch.testing.assert_close(log_w, composed)
    torch.testing.assert_close(log_q, model.encode(x).log_prob(z))


def test_bottom_up_variables_do_not_depend_on_the_top_down_ones():
    """Property (the bidirectional q): q(z_1^BU | x) is inferred in the bottom-up pass, so
    changing z_1^TD leaves its conditional, and z_2's, unchanged; the TD factor does change."""
    model = tiny_biva()
    x = torch.ones(1, 4)
    z = torch.tensor([[0.3, -0.2, 0.5]])
    with torch.no_grad():
        _, values, log_q_bottom_up = model.bottom_up(x, torch.Size([1]), model._given(z), False)
        other = z.clone()
        other[0, 2] = -1.5
        _, _, log_q_other = model.bottom_up(x, torch.Size([1]), model._given(other), False)
        full, full_other = model.encode(x).log_prob(z), model.encode(x).log_prob(other)
    torch.testing.assert_close(log_q_bottom_up, log_q_other)
    assert not torch.allclose(full, full_other)


def test_gaps_are_undefined_and_presets_share_a_schema():
    """Contract: no local q* family contains BIVA's chained q (gaps n/a, like the ladder);
    small and paper presets share a schema, the paper's has 6 stochastic layers."""
    with pytest.raises(LikelihoodUndefined, match="amortization gap"):
        require_local_posterior_family(tiny_biva(), torch.ones(1, 4), "ffg")
    small, paper = resolve_hyperparameters("biva", {}), resolve_hyperparameters("biva_paper", {})
    assert small.keys() == paper.keys() and small != paper
    assert len(paper["latent_dims"]) == 6
    with pytest.raises(ValueError, match="layer below the top"):
        create_model("biva", data_shape=(4,), latent_dims=(4,), hidden=(8,))


def test_top_layer_stays_active_where_a_bottom_up_hierarchy_collapses():
    """Property (Maaløe et al. 2019, Sec. 4: BIVA uses all its stochastic layers, where deep
    bottom-up hierarchies leave the top ones inactive): after 500 steps on the digits with the
    KL warmed up over the first 250, at least 3 of the 4 units of BIVA's top layer are active
    (Burda et al.'s variance over x of E_q[z] > 0.01), and none of the plain bottom-up
    hierarchy's with the same latent sizes (measured, seeds 0-2: 4, 3 and 4 of 4 against 0 of
    4 each time; the bottom-up model's middle layer keeps 7-8 of 8 units, BIVA's BU variable
    7-8 of 8).

    Why it holds at this scale: BIVA infers z_L bottom-up from x and the observation model reads
    z_L directly (the skip connection), so z_L pays for itself in reconstruction from the first
    steps; in the bottom-up hierarchy z_3 reaches x only through z_2 and z_1, and the KL term
    switches it off before that path is learned. Without the warm-up BIVA's top layer survived
    in 2 of 3 seeds (with the trainer's earlier data order), so the test keeps it.
    """
    dataset = create_dataset("digits")
    x = dataset.evaluation_data("test")
    active = {}
    bottom_up = {"inference": "bottom_up", "block_depth": 1}
    for name, settings in [("biva", {}), ("ladder_vae", bottom_up)]:
        torch.manual_seed(0)
        model = create_model(
            name,
            data_shape=dataset.data_shape,
            latent_dims=(16, 8, 4),
            hidden=(128, 64, 32),
            **settings,
        )
        spec = TrainSpec(steps=500, kl_warmup_steps=250, checkpoint_every=0)
        train(model, dataset, spec, seed=0, progress=False)
        with torch.no_grad():
            top = model.encode(x).mean[:, :4]  # (N, 4): the top layer comes first
        active[name] = int((top.var(0) > 0.01).sum())
    assert active["biva"] >= 3 and active["ladder_vae"] == 0, active


def test_free_bits_floor_each_variables_kl_in_the_objective_only():
    """Closed form (free bits, Kingma et al. 2016): with a floor above every variable's KL, the
    objective is -reconstruction + floor x (number of variables: z_L, then BU and TD per lower
    layer), while the logged ELBO stays the plain one."""
    model = tiny_biva(free_bits=50.0)
    x = (torch.rand(6, 4) > 0.5).float()
    torch.manual_seed(3)
    output = model.loss(x, step=0)
    expected = -output.terms["reconstruction"] + 50.0 * 3
    assert output.loss.item() == pytest.approx(expected, rel=1e-5)
    assert output.terms["elbo"] == pytest.approx(
        output.terms["reconstruction"] - output.terms["kl"]
    )
    assert 0 < output.terms["kl"] < 50.0
