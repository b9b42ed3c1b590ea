"""VQ-VAE-2 (Razavi et al. 2019): two code levels, a top-then-bottom prior, and its claim."""

import itertools
import math

import pytest
import torch

from benchmark.datasets import create_dataset
from benchmark.spec import TrainSpec
from benchmark.trainer import train
from registry import create_model, resolve_hyperparameters
from registry.base import LikelihoodUndefined, require_continuous_latents
from registry.estimators import log_importance_weights


def tiny_vq2(**settings):
    """A VQ-VAE-2 on 4x4 images: a 2x2 bottom grid of 2 codes under a 1x1 top grid of 3."""
    torch.manual_seed(0)
    return create_model(
        "vq_vae2",
        data_shape=(1, 4, 4),
        hidden_channels=8,
        codebook_sizes=(3, 2),
        embedding_dim=3,
        prior_hidden=(16,),
        **settings,
    )


def test_two_level_code_prior_is_normalised():
    """Closed form: P(k_top) P(k_bottom | k_top) sums to 1 over all 3 * 2^4 = 48 code pairs."""
    model = tiny_vq2()
    assert model.positions == (1, 4)
    grids = torch.tensor(list(itertools.product(range(3), *[range(2)] * 4)))  # (48, 5)
    with torch.no_grad():
        total = model.code_prior.log_prob(grids).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


def test_bottom_prior_is_conditioned_on_the_top_codes():
    """Property (Sec. 3.2): the same bottom grid has a different mass under different top codes,
    and the top prior does not look at the bottom codes."""
    model = tiny_vq2()
    bottom = torch.tensor([[0, 1, 1, 0]])
    with torch.no_grad():
        masses = [model.code_prior.bottom.log_prob(bottom, torch.tensor([[t]])) for t in range(3)]
        logits = model.code_prior.top.logits(torch.tensor([[2]]))
    assert torch.cat(masses).unique().numel() == 3
    assert logits.shape == (1, 1, 3)


def test_prior_samples_go_top_then_bottom_and_lie_on_the_code_lattice():
    """Property (Algorithm 2): prior draws are code vectors of both levels (the nearest codes
    reproduce them), their log-density is the log-mass of their codes, and they decode."""
    model = tiny_vq2()
    with torch.no_grad():
        z = model.prior().sample((5,))  # (5, D)
        codes = model.nearest_codes(z)
        torch.testing.assert_close(model.code_vectors(codes), z)
        torch.testing.assert_close(model.prior().log_prob(z), model.code_prior.log_prob(codes))
        assert model.decode(z).mean.shape == (5, 1, 4, 4)


def test_log_weights_are_reconstruction_plus_log_code_mass_for_every_sample():
    """Closed form: with a point-mass q, every log w equals log p(x|z_q) + log P(k(x))."""
    model = tiny_vq2()
    x = (torch.rand(6, 1, 4, 4) > 0.5).float()
    with torch.no_grad():
        log_w = log_importance_weights(model, x, num_samples=3, chunk_size=2)  # (3, 6)
        q_z = model.encode(x)
        expected = model.decode(q_z.mean).log_prob(x) + model.code_prior.log_prob(q_z.codes)
    torch.testing.assert_close(log_w, expected.expand(3, 6))


def test_discrete_codes_make_gradient_metrics_undefined_and_presets_share_a_schema():
    """Contract: AIS / local q* report n/a for VQ-VAE-2; small and paper presets differ only in
    their defaults; the paper preset has 512 codes per level; vectors are refused."""
    with pytest.raises(LikelihoodUndefined, match="discrete latent codes"):
        require_continuous_latents(tiny_vq2(), metric="AIS")
    small, paper = (
        resolve_hyperparameters("vq_vae2", {}),
        resolve_hyperparameters("vq_vae2_paper", {}),
    )
    assert small.keys() == paper.keys() and small != paper
    assert paper["codebook_sizes"] == (512, 512)
    with pytest.raises(ValueError, match="image dataset"):
        create_model("vq_vae2", data_shape=(16,))


def test_two_levels_reconstruct_better_than_one_level_at_equal_code_bits():
    """Property (Razavi et al. 2019, Sec. 3.1/4: a hierarchy of codes reconstructs better than a
    single level): at 24 code bits, a 4x4 bottom grid of 2 codes under a 2x2 top grid of 4 codes
    (16 + 8 bits) reconstructs the digits test split better than the registered one-level
    VQ-VAE on its 2x2 grid with 64 codes (4 x 6 bits), by more than 3 nats.

    Why it holds at this scale: at the one-level model's grid, every extra bit must come from a
    larger codebook, and a codebook is used only in part (after 300 steps, 2-14 of the 64 codes
    reach the test split), while the hierarchy spends the same bits on a finer bottom grid
    that every code reaches. Measured with these settings, seeds 0-2: -19.0, -17.3, -20.0 nats
    against -24.3, -25.5, -25.6. NOTE: the gain comes from the finer grid the hierarchy affords
    at a fixed code budget; a one-level model *at the bottom grid's resolution* with 8 codes
    (48 bits, 32 channels) beat the 48-bit two-level model (-11.5 against -12.4 nats, seed 0,
    measured with the trainer's earlier data order).
    """
    dataset = create_dataset("digits")
    x = dataset.evaluation_data("test")
    reconstruction = {}
    for name, settings in [
        ("vq_vae2", {"codebook_sizes": (4, 2), "num_downsamples": 1}),
        ("vq_vae", {"codebook_size": 64, "num_downsamples": 2}),
    ]:
        torch.manual_seed(0)
        model = create_model(name, data_shape=dataset.data_shape, hidden_channels=16, **settings)
        train(model, dataset, TrainSpec(steps=300, checkpoint_every=0), seed=0, progress=False)
        with torch.no_grad():
            q_z = model.encode(x)
            reconstruction[name] = model.log_likelihood(x, q_z.mean).mean().item()
        bits = (
            model.code_bits()
            if name == "vq_vae2"
            else q_z.codes.shape[-1] * math.log2(model.code_prior.codebook_size)
        )
        assert bits == 24
    assert reconstruction["vq_vae2"] > reconstruction["vq_vae"] + 3.0, reconstruction
