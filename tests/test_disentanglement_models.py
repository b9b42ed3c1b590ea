"""Tests of the disentanglement models: AnnealedVAE, FactorVAE, beta-TCVAE, DIP-VAE-I/II."""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm
from torch import nn
from torch.distributions import Independent, Normal

from benchmark.datasets import create_dataset
from benchmark.spec import TrainSpec
from benchmark.trainer import build_optimizers
from registry import create_model
from registry.base import kl_to_prior, standard_normal_prior
from registry.beta_tcvae import kl_decomposition, log_aggregate_posterior_mws
from registry.dip_vae import dip_covariance, dip_penalty
from registry.estimators import elbo_terms
from registry.factor_vae import discriminator_loss, permute_dims

MODELS = ("annealed_vae", "factor_vae", "beta_tcvae", "dip_vae_i", "dip_vae_ii")
SMALL_MLP = {"trunk": "mlp", "hidden": [64]}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def toy_images():
    return create_dataset("toy_factors").splits["train"]  # (600, 1, 16, 16)


def gaussian_posterior(loc: torch.Tensor, scale: torch.Tensor) -> Independent:
    return Independent(Normal(loc, scale), 1)


def correlated_codes(num: int, rho: float, generator: torch.Generator) -> torch.Tensor:
    cholesky = torch.linalg.cholesky(torch.tensor([[1.0, rho], [rho, 1.0]]))
    return torch.randn(num, 2, generator=generator) @ cholesky.T  # (num, 2)


def train_briefly(model, images: torch.Tensor, steps: int = 300) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        x = images[torch.randint(len(images), (64,), generator=generator)]
        output = model.loss(x, step)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()


# --- every model -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    "shape, overrides", [((1, 64, 64), {}), ((1, 8, 8), {"architecture": SMALL_MLP})]
)
def test_models_build_and_give_finite_losses_and_gradients(name, shape, overrides):
    """Contract: study conv on 64x64 by default, MLP override on 8x8; finite loss and gradients."""
    model = create_model(name, data_shape=shape, **overrides)
    x = torch.rand(6, *shape).round()
    output = model.loss(x, step=10)
    losses = [output.loss] + ([output.auxiliary_loss] if output.auxiliary_loss is not None else [])
    for loss in losses:
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) == len(list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(math.isfinite(v) for v in output.terms.values())


@pytest.mark.parametrize("name", MODELS)
def test_default_architecture_is_the_locatello_conv_net(name):
    """Contract: latent 10; 4x4 stride-2 convs 32-32-64-64, dense 256; decoder mirrors it."""
    model = create_model(name, data_shape=(1, 64, 64))
    assert model.latent_dim == 10
    convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (4, 4), (2, 2)),
        (32, (4, 4), (2, 2)),
        (64, (4, 4), (2, 2)),
        (64, (4, 4), (2, 2)),
    ]
    dense = [
        (m.in_features, m.out_features) for m in model.encoder.modules() if isinstance(m, nn.Linear)
    ]
    assert dense == [(4 * 4 * 64, 256), (256, 20)]
    deconvs = [m.out_channels for m in model.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert deconvs == [64, 32, 32, 1] and model.decoder.start == (64, 4, 4)
    assert model.decode(torch.zeros(2, 10)).event_shape == (1, 64, 64)


# --- AnnealedVAE (Burgess et al. 2018) --------------------------------------------------------


def test_capacity_rises_linearly_then_holds():
    """Closed form: C(step) = min(C_max, C_max * step / capacity_steps)."""
    model = create_model(
        "annealed_vae",
        data_shape=(1, 8, 8),
        architecture=SMALL_MLP,
        c_max=25.0,
        capacity_steps=1000,
    )
    assert [model.capacity(s) for s in (0, 250, 500, 1000, 5000)] == [0.0, 6.25, 12.5, 25.0, 25.0]
    fixed = create_model(
        "annealed_vae", data_shape=(1, 8, 8), architecture=SMALL_MLP, c_max=5.0, capacity_steps=0
    )
    assert fixed.capacity(0) == 5.0


def test_annealed_loss_is_reconstruction_plus_gamma_abs_kl_gap():
    """Closed form: loss = -E log p(x|z) + gamma |mean KL - C| on the same samples."""
    model = create_model(
        "annealed_vae",
        data_shape=(1, 8, 8),
        architecture=SMALL_MLP,
        gamma=7.0,
        c_max=40.0,
        capacity_steps=100,
    )
    x = torch.rand(5, 1, 8, 8).round()
    output = model.loss(x, step=50)
    terms = output.terms
    expected = -terms["reconstruction"] + 7.0 * abs(terms["kl"] - 20.0)
    assert terms["capacity"] == 20.0
    assert output.loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("capacity", [2.0, 6.0])
def test_annealed_vae_kl_tracks_the_capacity(capacity, toy_images):
    """Property (Burgess et al. Sec. 5): training drives the KL to the target capacity C."""
    model = create_model(
        "annealed_vae",
        data_shape=(1, 16, 16),
        latent_dim=4,
        architecture=SMALL_MLP,
        gamma=50.0,
        c_max=capacity,
        capacity_steps=0,
    )
    train_briefly(model, toy_images)
    with torch.no_grad():
        _, kl = elbo_terms(model, toy_images, num_samples=1)
    assert abs(kl.mean().item() - capacity) < 0.75


# --- FactorVAE (Kim & Mnih 2018) ---------------------------------------------------------------


def test_permute_dims_keeps_marginals_and_breaks_dependence():
    """Property: each column is a permutation of itself; the cross-column correlation vanishes."""
    z = correlated_codes(4000, 0.9, torch.Generator().manual_seed(1))
    shuffled = permute_dims(z)
    assert torch.equal(shuffled.sort(0).values, z.sort(0).values)
    assert abs(np.corrcoef(shuffled.T.numpy())[0, 1]) < 0.05 < np.corrcoef(z.T.numpy())[0, 1]


@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_discriminator_detects_correlated_codes_and_estimates_tc(rho):
    """Closed form: trained D beats chance only on dependent codes; E[logit ratio] ~ TC."""
    model = create_model(
        "factor_vae",
        data_shape=(1, 8, 8),
        latent_dim=2,
        architecture=SMALL_MLP,
        discriminator_hidden=(64, 64),
        discriminator_lr=1e-3,
    )
    optimizer = torch.optim.Adam(model.auxiliary_parameters(), **model.auxiliary_optimizer)
    generator = torch.Generator().manual_seed(0)
    for _ in range(400):
        loss, _ = discriminator_loss(model.discriminator, correlated_codes(256, rho, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    z = correlated_codes(4000, rho, generator)
    with torch.no_grad():
        _, accuracy = discriminator_loss(model.discriminator, z)
        tc = model.total_correlation(z).item()
    gaussian_tc = -0.5 * math.log(1 - rho**2)  # KL(N(0, Sigma) || N(0, diag Sigma))
    assert (accuracy.item() > 0.65) if rho else (abs(accuracy.item() - 0.5) < 0.05)
    assert abs(tc - gaussian_tc) < 0.2


def test_each_factor_vae_loss_reaches_only_its_own_parameters():
    """Contract: the TC term never trains D; D's loss never trains the VAE."""
    model = create_model(
        "factor_vae", data_shape=(1, 8, 8), architecture=SMALL_MLP, discriminator_hidden=(32,)
    )
    output = model.loss(torch.rand(8, 1, 8, 8).round(), step=0)
    output.loss.backward(retain_graph=True)
    assert all(p.grad is None for p in model.auxiliary_parameters())
    assert model.encoder[1][0].weight.grad is not None
    model.zero_grad(set_to_none=True)
    output.auxiliary_loss.backward()
    assert all(p.grad is not None for p in model.auxiliary_parameters())
    assert all(p.grad is None for p in model.encoder.parameters())
    gamma = model.gamma
    assert output.loss.item() == pytest.approx(
        -output.terms["elbo"] + gamma * output.terms["total_correlation"], rel=1e-5
    )


def test_trainer_gives_the_discriminator_its_own_adam():
    """Contract: Adam(lr 1e-4, betas (0.5, 0.9)) over exactly the discriminator's parameters."""
    model = create_model("factor_vae", data_shape=(1, 8, 8), architecture=SMALL_MLP)
    main, auxiliary = build_optimizers(model, TrainSpec())
    group = auxiliary.param_groups[0]
    assert group["lr"] == 1e-4 and tuple(group["betas"]) == (0.5, 0.9)
    assert {id(p) for p in group["params"]} == {id(p) for p in model.discriminator.parameters()}
    assert not {id(p) for p in main.param_groups[0]["params"]} & {id(p) for p in group["params"]}
    hidden = [m for m in model.discriminator if isinstance(m, nn.Linear)]
    assert [m.out_features for m in hidden] == [1000] * 6 + [2]


# --- beta-TCVAE (Chen et al. 2018) -------------------------------------------------------------


def test_mws_matches_a_scipy_computation():
    """Reference (scipy): log q(z_i) = logsumexp_j sum_d log N(z_id; mu_jd, s_jd) - log(N M)."""
    loc, scale = torch.randn(6, 3, dtype=torch.float64), torch.rand(6, 3, dtype=torch.float64) + 0.3
    z = torch.randn(6, 3, dtype=torch.float64)
    log_q_z, log_q_product = log_aggregate_posterior_mws(
        z, gaussian_posterior(loc, scale), dataset_size=1000
    )
    pairs = norm.logpdf(z.numpy()[:, None], loc.numpy()[None], scale.numpy()[None])  # (i, j, d)
    log_norm = math.log(1000 * 6)
    np.testing.assert_allclose(log_q_z.numpy(), logsumexp(pairs.sum(2), axis=1) - log_norm)
    np.testing.assert_allclose(log_q_product.numpy(), (logsumexp(pairs, axis=1) - log_norm).sum(1))


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_mws_total_correlation_recovers_the_gaussian_tc(rho):
    """Closed form: for a large batch, TC_MWS - (D-1) log N -> the aggregate posterior's TC.

    Posterior means ~ N(0, [[1, rho], [rho, 1]]) with noise 0.3 give q(z) = N(0, Sigma + 0.09 I),
    whose TC is -1/2 log(1 - r^2), r = rho / 1.09. MWS adds exactly (D - 1) log N.
    """
    generator = torch.Generator().manual_seed(0)
    loc = correlated_codes(1000, rho, generator)
    q_z = gaussian_posterior(loc, torch.full_like(loc, 0.3))
    z = loc + 0.3 * torch.randn(loc.shape, generator=generator)
    log_q_z, log_q_product = log_aggregate_posterior_mws(z, q_z, dataset_size=10**6)
    tc = (log_q_z - log_q_product).mean().item() - math.log(10**6)
    r = rho / 1.09
    assert abs(tc - (-0.5 * math.log(1 - r**2))) < 0.05


def test_kl_decomposition_sums_to_the_analytic_kl_in_expectation():
    """Closed form: E[MI + TC + dimension-wise KL] = KL(q(z|x) || p(z)), per-sample identity too."""
    loc, scale = torch.randn(32, 3), torch.rand(32, 3) + 0.2
    q_z, p_z = gaussian_posterior(loc, scale), standard_normal_prior(3, like=loc)
    totals = []
    for _ in range(400):
        z = q_z.sample()  # (32, 3)
        parts = kl_decomposition(z, q_z, p_z, dataset_size=500)
        total = sum(parts.values())
        torch.testing.assert_close(total, q_z.log_prob(z) - p_z.log_prob(z))
        totals.append(total)
    totals = torch.stack(totals)  # (400, 32)
    stderr = totals.mean(1).std() / math.sqrt(len(totals))
    kl = kl_to_prior(q_z, p_z).mean()
    assert abs(totals.mean() - kl) < 4 * stderr


def test_beta_tcvae_loss_is_elbo_plus_weighted_tc():
    """Closed form: loss = -ELBO + (beta - 1) TC_MWS; at beta = 1 it is the VAE's loss."""
    x = torch.rand(8, 1, 8, 8).round()
    for beta in (1.0, 4.0):
        torch.manual_seed(3)
        model = create_model(
            "beta_tcvae", data_shape=(1, 8, 8), architecture=SMALL_MLP, beta=beta, dataset_size=1000
        )
        output = model.loss(x, step=0)
        expected = -output.terms["elbo"] + (beta - 1) * output.terms["total_correlation"]
        assert output.loss.item() == pytest.approx(expected, rel=1e-5)
    torch.manual_seed(3)
    vae = create_model("vae", data_shape=(1, 8, 8), latent_dim=10, architecture=SMALL_MLP)
    torch.manual_seed(3)
    tcvae = create_model("beta_tcvae", data_shape=(1, 8, 8), architecture=SMALL_MLP, beta=1.0)
    torch.manual_seed(4)
    vae_loss = vae.loss(x, step=0).loss
    torch.manual_seed(4)
    assert tcvae.loss(x, step=0).loss.item() == pytest.approx(vae_loss.item(), rel=1e-6)


# --- DIP-VAE (Kumar et al. 2018) ---------------------------------------------------------------


def test_dip_covariances_match_numpy():
    """Reference (numpy): DIP-I is cov(mu) (ddof 0); DIP-II adds the mean posterior variance."""
    loc, scale = torch.randn(50, 4, dtype=torch.float64), torch.rand(50, 4, dtype=torch.float64)
    q_z = gaussian_posterior(loc, scale)
    cov_mu = np.cov(loc.numpy().T, ddof=0)
    np.testing.assert_allclose(dip_covariance(q_z, "i").numpy(), cov_mu)
    np.testing.assert_allclose(
        dip_covariance(q_z, "ii").numpy(), cov_mu + np.diag((scale.numpy() ** 2).mean(0))
    )


def test_dip_penalty_is_zero_at_identity_and_closed_form_otherwise():
    """Closed form: 0 at I; lambda_od * sum_{i!=j} C_ij^2 + lambda_d * sum (C_ii - 1)^2 else."""
    assert dip_penalty(torch.eye(3), lambda_od=5.0, lambda_d=50.0).item() == 0.0
    covariance = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    assert dip_penalty(covariance, lambda_od=3.0, lambda_d=7.0).item() == pytest.approx(
        3.0 * 0.5 + 7.0 * 1.0
    )


def test_dip_lambda_d_follows_the_locatello_grid():
    """Contract: DIP-VAE-I lambda_d = 10 lambda_od; DIP-VAE-II lambda_d = lambda_od."""
    one = create_model("dip_vae_i", data_shape=(1, 8, 8), architecture=SMALL_MLP, lambda_od=2.0)
    two = create_model("dip_vae_ii", data_shape=(1, 8, 8), architecture=SMALL_MLP, lambda_od=2.0)
    assert (one.kind, one.lambda_od, one.lambda_d) == ("i", 2.0, 20.0)
    assert (two.kind, two.lambda_od, two.lambda_d) == ("ii", 2.0, 2.0)


def test_dip_training_decorrelates_its_target_covariance(toy_images):
    """Property (Kumar et al. Sec. 3): each DIP variant drives its covariance towards I."""

    def distances_to_identity(name: str, **overrides) -> dict[str, float]:
        torch.manual_seed(0)
        model = create_model(
            name, data_shape=(1, 16, 16), latent_dim=4, architecture=SMALL_MLP, **overrides
        )
        train_briefly(model, toy_images)
        with torch.no_grad():
            q_z = model.encode(toy_images)
        return {
            kind: dip_penalty(dip_covariance(q_z, kind), lambda_od=1.0, lambda_d=1.0).item()
            for kind in ("i", "ii")
        }

    vae = distances_to_identity("vae")
    assert distances_to_identity("dip_vae_i", lambda_od=10.0)["i"] < 0.1 * vae["i"]
    assert distances_to_identity("dip_vae_ii", lambda_od=10.0)["ii"] < 0.1 * vae["ii"]
