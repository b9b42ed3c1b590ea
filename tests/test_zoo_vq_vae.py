"""VQ-VAE (van den Oord et al. 2017): a bound defined through the code prior, and only that."""

import itertools
import math

import pytest
import torch

from benchmark.datasets import create_dataset
from benchmark.spec import TrainSpec
from benchmark.trainer import train
from registry import create_model
from registry.base import LikelihoodUndefined, require_continuous_latents
from registry.estimators import log_importance_weights, log_mean_exp


def small_vq(**settings):
    torch.manual_seed(0)
    return create_model(
        "vq_vae",
        data_shape=(1, 8, 8),
        hidden_channels=8,
        codebook_size=4,
        embedding_dim=3,
        **settings,
    )


def test_uniform_prior_bound_is_reconstruction_minus_p_log_n():
    """Closed form (Sec. 3.1: the KL is the constant log N per position): with the uniform
    prior, every log w equals log p(x|z_q(x)) - P log N, for every one of the K samples."""
    model = small_vq(prior="uniform")
    x = (torch.rand(5, 1, 8, 8) > 0.5).float()
    with torch.no_grad():
        log_w = log_importance_weights(model, x, num_samples=4, chunk_size=3)  # (4, 5)
        q_z = model.encode(x)
        expected = model.decode(q_z.mean).log_prob(x) - q_z.codes.shape[-1] * math.log(4)
    torch.testing.assert_close(log_w, expected.expand(4, 5))
    torch.testing.assert_close(log_mean_exp(log_w).float(), expected)


def test_autoregressive_code_prior_is_normalised():
    """Closed form: P(k) of the autoregressive prior sums to 1 over all N^P = 4^4 code grids."""
    model = small_vq(prior="autoregressive")
    grids = torch.tensor(list(itertools.product(range(4), repeat=4)))  # (256, P)
    with torch.no_grad():
        total = model.code_prior.log_prob(grids).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


def test_densities_are_taken_on_code_cells():
    """Property: q puts all its mass on x's cell (log q = 0 there, -inf elsewhere); the prior's
    log-density of any z is the log-mass of the codes of the cell z falls in."""
    model = small_vq(prior="uniform")
    x = (torch.rand(3, 1, 8, 8) > 0.5).float()
    q_z = model.encode(x)
    z = q_z.rsample((2,))  # (2, 3, D)
    assert (q_z.log_prob(z) == 0).all()
    assert (q_z.log_prob(z + 10.0) == -math.inf).all()
    off_lattice = model.prior().log_prob(torch.randn(7, model.latent_dim))
    torch.testing.assert_close(off_lattice, torch.full((7,), -4 * math.log(4)))


def test_straight_through_gradient_reaches_the_encoder_and_codebook():
    """Contract (Eq. 3): the loss trains encoder, decoder and codebook; the codebook only
    through the codebook term, whose value equals the commitment term's."""
    model = small_vq(prior="autoregressive")
    x = (torch.rand(6, 1, 8, 8) > 0.5).float()
    output = model.loss(x, 0)
    output.loss.backward()
    for part in (model.encoder, model.decoder, model.code_prior):
        assert sum(p.grad.abs().sum() for p in part.parameters()) > 0
    assert model.codebook.grad.abs().sum() > 0
    assert output.terms["codebook"] == pytest.approx(output.terms["commitment"])
    assert output.terms["elbo"] == pytest.approx(
        output.terms["reconstruction"] - output.terms["kl"]
    )


def test_gradient_based_likelihood_metrics_are_undefined_for_discrete_codes():
    """Contract: AIS / local-q* metrics raise LikelihoodUndefined with a reason, for VQ-VAE only."""
    with pytest.raises(LikelihoodUndefined, match="discrete latent codes") as error:
        require_continuous_latents(small_vq(), metric="AIS")
    assert "VQVAE" in error.value.reason
    require_continuous_latents(create_model("vae", data_shape=(1, 8, 8)), metric="AIS")
    with pytest.raises(ValueError, match="image dataset"):
        create_model("vq_vae", data_shape=(16,))


def test_learned_code_prior_beats_the_uniform_prior():
    """Property (van den Oord et al. 2017, Sec. 3.2: fitting a prior over the codes after
    training improves on the uniform one): after 300 steps the learned autoregressive prior
    gives the test codes a higher log-mass than the uniform N^-P, so a tighter bound (measured
    -5.0 to -6.3 nats against -11.1, seeds 0-2)."""
    dataset = create_dataset("digits")
    torch.manual_seed(0)
    model = create_model("vq_vae", data_shape=dataset.data_shape, hidden_channels=16)
    train(model, dataset, TrainSpec(steps=300, checkpoint_every=0), seed=0, progress=False)
    x = dataset.evaluation_data("test")
    with torch.no_grad():
        codes = model.encode(x).codes  # (B, P)
        learned = model.code_prior.log_prob(codes).mean().item()
    uniform = -codes.shape[-1] * math.log(model.code_prior.codebook_size)
    assert learned > uniform + 1.0, (learned, uniform)
