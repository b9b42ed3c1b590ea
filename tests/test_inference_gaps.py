"""Tests for `metrics.local_posterior` and `metrics.inference_gaps` (Cremer et al. 2018).

The oracle is a linear-Gaussian VAE (pPCA decoder) built so that its posterior precision is a
chosen matrix Λ = c·R (R an equicorrelation matrix). Its posterior N(m(x), Λ⁻¹) is exact, and the
best fully factorised Gaussian keeps the mean and takes variances 1/Λ_ii, so the approximation
gap is a closed form independent of x:

    KL(N(m, diag(1/Λ_ii)) || N(m, Λ⁻¹))
        = ½[tr(Λ diag(1/Λ_ii)) - d + log det Λ⁻¹ - log det diag(1/Λ_ii)]
        = ½[d - d - log det Λ + Σ_i log Λ_ii] = ½[Σ_i log Λ_ii - log det Λ].

Precision correlation 0.4 < 0.5 keeps the importance weights of the diagonal proposal at finite
variance (2Λ - diag Λ is positive definite), so IS at K = 5000 is close to exact there.
"""

import math
from dataclasses import replace

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from benchmark.datasets import create_dataset
from benchmark.evaluators import get_evaluator
from metrics.inference_gaps import LOG_PX_ESTIMATOR, inference_gaps
from metrics.local_posterior import (
    CouplingFlow,
    FactorizedGaussian,
    LocalOptimization,
    MaskedAdam,
    PlateauStopping,
    encoder_moments,
    families_containing,
    minimize_per_datapoint,
    optimal_local_posterior,
)
from metrics.psis import pareto_k_hat
from registry import create_model, list_models
from registry._typecheck import check_value
from registry.base import LikelihoodUndefined
from registry.estimators import log_importance_weights, log_mean_exp

LATENT_DIM, DATA_DIM, NOISE_STD, CORRELATION, SCALE = 3, 6, 0.5, 0.4, 4.0
FAST = LocalOptimization(lr=1e-2)  # the paper's rule at 10x the paper's lr, to keep tests short


def precision_matrix() -> torch.Tensor:
    r = torch.full((LATENT_DIM, LATENT_DIM), CORRELATION, dtype=torch.float64)
    return SCALE * r.fill_diagonal_(1.0)


def linear_model(precision: torch.Tensor):
    """Return a linear VAE with posterior precision I + WᵀW/σ² = `precision`, optimal encoder."""
    generator = torch.Generator().manual_seed(0)
    model = create_model("linear_vae", data_shape=(DATA_DIM,), latent_dim=LATENT_DIM)
    basis, _ = torch.linalg.qr(
        torch.randn(DATA_DIM, LATENT_DIM, generator=generator, dtype=torch.float64)
    )  # orthonormal columns
    evals, evecs = torch.linalg.eigh(precision - torch.eye(LATENT_DIM, dtype=torch.float64))
    root = evecs @ torch.diag(evals.sqrt()) @ evecs.T  # (Λ - I)^{1/2}
    with torch.no_grad():
        model.weight.copy_(NOISE_STD * basis @ root)
        model.bias.copy_(torch.linspace(-1, 1, DATA_DIM))
        model.log_noise_std.fill_(math.log(NOISE_STD))
    model.set_encoder_to_optimal_diagonal()
    return model


def diagonal_gap_closed_form(precision: torch.Tensor) -> float:
    return 0.5 * (torch.diagonal(precision).log().sum() - torch.logdet(precision)).item()


def encoder_kl_to_exact_posterior(model, x) -> torch.Tensor:
    """Return KL(q(z|x) || p(z|x)) per example for the linear VAE, in closed form (float64)."""
    q = model.encode(x)
    q_full = MultivariateNormal(q.mean.double(), torch.diag_embed(q.variance.double()))
    return kl_divergence(q_full, model.exact_posterior(x))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = linear_model(precision_matrix())
    with torch.no_grad():
        x = model.decode(model.prior().sample((12,))).sample()  # (12, DATA_DIM)
    return model, x


@pytest.fixture(scope="module")
def optimal_encoder_gaps(setup):
    model, x = setup
    torch.manual_seed(1)
    return inference_gaps(
        model,
        x,
        optimization=FAST,
        is_samples=5000,
        elbo_samples=5000,
        batch_size=12,
        chunk_size=5000,
        log_px=model.exact_log_marginal(x),
    )


def test_approximation_gap_equals_closed_form(optimal_encoder_gaps):
    """Closed-form reference: the FFG approximation gap is ½[Σ log Λ_ii - log det Λ]."""
    expected = diagonal_gap_closed_form(precision_matrix())
    gap = optimal_encoder_gaps["approximation_gap"]
    assert expected > 0.2
    assert gap.value == pytest.approx(expected, abs=0.015)
    assert gap.diagnostics["converged_fraction"] == 1.0
    assert gap.params["log_px_estimator"] == "given"


def test_amortization_gap_vanishes_for_the_optimal_encoder(optimal_encoder_gaps):
    """Closed-form reference: the encoder is the best diagonal Gaussian, so L[q*] = L[q]."""
    gap = optimal_encoder_gaps["amortization_gap"]
    assert abs(gap.value) < 0.015
    total = optimal_encoder_gaps["inference_gap"].value
    parts = optimal_encoder_gaps["approximation_gap"].value + gap.value
    assert total == pytest.approx(parts, abs=1e-9)


def test_pooled_log_px_of_a_heavy_tailed_encoder_matches_the_closed_forms(setup):
    """Closed-form reference: with an encoder 2.7x too narrow, IS with q alone has heavy-tailed
    weights (k̂ > 0.7) and is ~0.5 nats low. log p(x) pooled over ½ q + ½ q* is not, so both
    gaps match their closed forms within 3 stderr: approximation ½[Σ log Λ_ii - log det Λ],
    amortization KL(q || p(z|x)) - that."""
    model, x = setup
    x = x[:8]
    narrow = linear_model(precision_matrix())
    with torch.no_grad():
        narrow.encoder_log_std.sub_(1.0)
        log_w = log_importance_weights(narrow, x, num_samples=1000, chunk_size=1000)
    # The encoder alone is an unreliable proposal: most k̂ > 0.7, and IS with it is far too low.
    assert (pareto_k_hat(log_w) > 0.7).double().mean() > 0.5
    exact = narrow.exact_log_marginal(x).mean().item()
    assert log_mean_exp(log_w).mean().item() < exact - 0.2
    approximation = diagonal_gap_closed_form(precision_matrix())
    amortization = (encoder_kl_to_exact_posterior(narrow, x).mean() - approximation).item()
    torch.manual_seed(4)
    gaps = inference_gaps(
        narrow,
        x,
        optimization=replace(FAST, init="encoder"),
        is_samples=1000,
        elbo_samples=1000,
        batch_size=8,
        chunk_size=1000,
    )
    for name, expected in (
        ("approximation_gap", approximation),
        ("amortization_gap", amortization),
    ):
        gap = gaps[name]
        assert abs(gap.value - expected) < 3 * gap.stderr, (name, gap.value, expected, gap.stderr)
        assert gap.warning is None
    assert gaps["q_star_converged"].value == 1.0
    assert gaps["log_px"].params["log_px_estimator"] == LOG_PX_ESTIMATOR


def test_local_flow_density_inverts_its_sampler():
    """Property: the coupling flow's log q*(z) at its own draws equals the sampler's log q*."""
    torch.manual_seed(0)
    flow = CouplingFlow(4, num_layers=3, hidden=5)
    params = flow.initial_parameters(2, like=torch.zeros(1, dtype=torch.float64))
    params = [p + 0.3 * torch.randn_like(p) for p in params]  # away from the identity
    z, log_q = flow.sample(params, torch.randn(6, 2, 4, dtype=torch.float64))
    torch.testing.assert_close(flow.log_prob(params, z), log_q)
    gaussian = FactorizedGaussian(4)
    z, log_q = gaussian.sample(params[:2], torch.randn(6, 2, 4, dtype=torch.float64))
    torch.testing.assert_close(gaussian.log_prob(params[:2], z), log_q)


def test_amortization_gap_of_a_perturbed_encoder_matches_closed_form(setup):
    """Closed-form reference: L[q*] - L[q] = KL(q || p(z|x)) - KL(q* || p(z|x)) > 0."""
    model, x = setup
    perturbed = linear_model(precision_matrix())
    with torch.no_grad():
        perturbed.encoder_weight.add_(
            0.1 * torch.randn(LATENT_DIM, DATA_DIM, generator=torch.Generator().manual_seed(3))
        )
        perturbed.encoder_log_std.add_(0.3)
    expected = (
        encoder_kl_to_exact_posterior(perturbed, x).mean()
        - diagonal_gap_closed_form(precision_matrix())
    ).item()
    torch.manual_seed(2)
    gaps = inference_gaps(
        perturbed,
        x,
        optimization=FAST,
        is_samples=2000,
        elbo_samples=2000,
        batch_size=12,
        chunk_size=2000,
    )
    assert expected > 0.3
    assert gaps["amortization_gap"].value == pytest.approx(expected, abs=0.03)
    assert gaps["approximation_gap"].value == pytest.approx(
        diagonal_gap_closed_form(precision_matrix()), abs=0.03
    )
    assert gaps["log_px"].params["log_px_estimator"] == LOG_PX_ESTIMATOR


def test_flow_family_closes_most_of_the_approximation_gap(setup):
    """Property: two coupling layers fit a correlated Gaussian, so L[q*_flow] nears log p(x)."""
    model, x = setup
    torch.manual_seed(4)
    flow = LocalOptimization(family="flow", flow_hidden=8, lr=1e-2, max_steps=500)
    gaps = inference_gaps(
        model,
        x[:4],
        optimization=flow,
        is_samples=1000,
        elbo_samples=1000,
        batch_size=4,
        chunk_size=1000,
        log_px=model.exact_log_marginal(x[:4]),
    )
    assert gaps["approximation_gap"].value < 0.3 * diagonal_gap_closed_form(precision_matrix())
    assert gaps["approximation_gap"].value > -0.02


def test_points_are_optimised_independently(setup):
    """Property: perturbing one datapoint leaves every other point's q* unchanged."""
    model, x = setup
    settings = LocalOptimization(lr=1e-2, check_every=20, patience=2, max_steps=400)
    x_changed = x[:4].clone()
    x_changed[0] += 3.0
    fits = []
    for data in (x[:4], x_changed):
        torch.manual_seed(5)
        fits.append(optimal_local_posterior(model, data, optimization=settings))
    for before, after in zip(fits[0].params, fits[1].params, strict=True):
        torch.testing.assert_close(before[1:], after[1:], rtol=0, atol=1e-6)
        assert not torch.allclose(before[0], after[0])
    torch.testing.assert_close(fits[0].steps[1:], fits[1].steps[1:])


def test_stopping_rule_counts_checks_without_improvement():
    """Property: a point stops at the (patience + 1)-th consecutive non-improving check."""
    rule = PlateauStopping(2, patience=2)
    index = torch.arange(2)
    # Point 0 improves at every check; point 1 improves once, then ties (not an improvement).
    history = [rule.check(torch.tensor([5.0 - c, 1.0]), index).tolist() for c in range(4)]
    assert history == [[False, False], [False, False], [False, False], [False, True]]
    rule = PlateauStopping(1, patience=1)
    stops = [
        rule.check(torch.tensor([v]), torch.arange(1)).item() for v in (3.0, 4.0, 2.0, 4.0, 4.0)
    ]
    assert stops == [False, False, False, False, True]  # the improvement at 2.0 resets the count


def test_minimize_per_datapoint_freezes_stopped_points():
    """Property: with a flat loss a point stops after check_every·(patience + 2) steps and freezes.

    Point 0's loss decreases forever; point 1's value is constant while its gradient is 1, so
    Adam keeps moving it by lr per step until the rule freezes it.
    """
    theta = torch.zeros(2, 1)

    def loss_fn(params, index):
        value = params[0][:, 0]
        flat = value - value.detach() + 1.0
        return torch.where(index == 1, flat, value)

    settings = LocalOptimization(lr=1e-3, check_every=100, patience=10, max_steps=2000)
    steps, converged = minimize_per_datapoint(loss_fn, [theta], optimization=settings)
    assert steps.tolist() == [2000, 1200]
    assert converged.tolist() == [False, True]
    torch.testing.assert_close(theta[:, 0], torch.tensor([-2.0, -1.2]), rtol=1e-4, atol=0)


def test_masked_adam_matches_torch_adam():
    """Reference (torch.optim.Adam): the row-masked Adam reproduces Adam's trajectory."""
    target = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    ours, reference = torch.zeros(2, 2), torch.zeros(2, 2, requires_grad=True)
    adam, torch_adam = MaskedAdam([ours], lr=0.05), torch.optim.Adam([reference], lr=0.05)
    for step in range(1, 51):
        adam.step([2 * (ours - target)], torch.arange(2), step)
        torch_adam.zero_grad()
        ((reference - target) ** 2).sum().backward()
        torch_adam.step()
    torch.testing.assert_close(ours, reference.detach())


def test_invalid_settings_raise():
    """Contract: bad settings and a mis-shaped log p(x) raise ValueError, not assert."""
    with pytest.raises(ValueError, match="samples_per_step"):
        LocalOptimization(samples_per_step=0)
    with pytest.raises(ValueError, match="family"):
        LocalOptimization(family="iaf")
    model = linear_model(precision_matrix())
    with pytest.raises(ValueError, match="log_px"):
        inference_gaps(
            model,
            torch.zeros(3, DATA_DIM),
            optimization=FAST,
            is_samples=10,
            elbo_samples=10,
            batch_size=3,
            chunk_size=10,
            log_px=torch.zeros(2),
        )


def test_evaluator_reports_named_estimates_with_settings():
    """Contract: the evaluator parses its spec block and returns the six seeded estimates."""
    evaluator = get_evaluator("inference_gaps")
    config = check_value(
        "eval.inference_gaps",
        {
            "num_examples": 4,
            "is_k": 50,
            "elbo_k": 80,
            "max_steps": 200,
            "check_every": 50,
            "lr": 0.01,
        },
        evaluator.config_type,
    )
    dataset = create_dataset(
        "linear_gaussian",
        data_dim=DATA_DIM,
        latent_dim=LATENT_DIM,
        num_train=20,
        num_valid=10,
        num_test=10,
    )
    model = linear_model(precision_matrix())
    first, again = (
        evaluator.function(model=model, dataset=dataset, config=config, seed=3) for _ in range(2)
    )
    assert set(first) == {
        "log_px",
        "elbo_q",
        "elbo_q_star",
        "approximation_gap",
        "amortization_gap",
        "inference_gap",
        "q_star_converged",
    }
    assert first == again
    # 200 steps cannot reach the rule's 12 checks of 50 steps: every q* hit the cap, and every
    # number resting on L[q*] says so.
    assert first["q_star_converged"].value == 0.0 and first["q_star_converged"].kind == "diagnostic"
    for name in ("elbo_q_star", "approximation_gap", "amortization_gap"):
        assert "0% of q* stopped by the stopping rule" in first[name].warning
    assert first["elbo_q"].warning is None and first["log_px"].warning is None
    gap = first["approximation_gap"]
    assert gap.n == 4 and gap.unit == "nats" and gap.higher_is_better is False
    assert gap.params["seed"] == 3 and gap.params["split"] == "train"
    assert gap.params["is_samples"] == 50 and gap.params["elbo_samples"] == 80
    assert gap.diagnostics["steps_max"] <= 200


@pytest.mark.parametrize("name", list_models())
def test_every_model_gets_inference_gaps(name):
    """Contract: for every q* family that contains the model's q(z|x), a model with continuous
    latents yields finite bounds and gaps that add up, from both starts; any other family, and
    any model with discrete codes, is refused with `LikelihoodUndefined` and its reason."""
    torch.manual_seed(0)
    try:
        model = create_model(name, data_shape=(1, 8, 8))
    except ValueError:
        model = create_model(name, data_shape=(16,))
    x = torch.bernoulli(torch.full((3, *model.data_shape), 0.5))
    short = LocalOptimization(samples_per_step=4, check_every=5, max_steps=10)
    settings = {"is_samples": 8, "elbo_samples": 8, "batch_size": 3, "chunk_size": 4}
    if not model.continuous_latents:
        with pytest.raises(LikelihoodUndefined, match="discrete latent codes"):
            inference_gaps(model.eval(), x, optimization=short, **settings)
        return
    for family in ("ffg", "flow"):
        if family not in families_containing(model.encode(x[:1])):
            with pytest.raises(LikelihoodUndefined, match="family of the encoder"):
                inference_gaps(
                    model.eval(), x, optimization=replace(short, family=family), **settings
                )
            continue
        # Both starts: N(0, I), and q(z|x), whose moments a flow q has no closed form of.
        for init in ("standard_normal", "encoder"):
            optimization = replace(short, family=family, init=init)
            gaps = inference_gaps(model.eval(), x, optimization=optimization, **settings)
            assert all(math.isfinite(g.value) for g in gaps.values()), (family, init)
            parts = gaps["approximation_gap"].value + gaps["amortization_gap"].value
            assert gaps["inference_gap"].value == pytest.approx(parts, abs=1e-9)
            assert gaps["log_px"].value >= gaps["elbo_q"].value - 1.0


def test_encoder_moments_of_a_flow_posterior_are_its_sample_moments():
    """Independent reference: an IAF posterior has no closed-form moments, so q* starts at the
    moments of 1,000 draws; they agree with those of 100,000 fresh draws within 5 standard
    errors, and for a Gaussian encoder they are the analytic moments exactly."""
    torch.manual_seed(0)
    model = create_model("iaf_vae", data_shape=(1, 8, 8), latent_dim=4).eval()
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.5))
    with torch.no_grad():
        mean, variance = encoder_moments(model, x)  # (5, 4) each
        z, _ = model.sample_posterior(x, 100_000)  # (S, 5, 4)
    assert mean.shape == variance.shape == (5, 4)
    assert ((mean - z.mean(0)).abs() <= 5 * (z.var(0) / 1000).sqrt()).all()
    torch.testing.assert_close(variance, z.var(0), rtol=0.25, atol=0)
    gaussian = create_model("vae", data_shape=(1, 8, 8), latent_dim=4).eval()
    with torch.no_grad():
        q_z = gaussian.encode(x)
        mean, variance = encoder_moments(gaussian, x)
    torch.testing.assert_close(mean, q_z.mean, rtol=0, atol=0)
    torch.testing.assert_close(variance, q_z.variance, rtol=0, atol=0)


def test_encoder_initialisation_starts_at_q_and_reaches_the_same_optimum(setup):
    """Closed-form reference: started from q(z|x), q* begins at the encoder's mean and
    variance and still converges to the best diagonal Gaussian (approximation gap closed form)."""
    model, x = setup
    perturbed = linear_model(precision_matrix())
    with torch.no_grad():
        perturbed.encoder_log_std.add_(0.3)
    start = optimal_local_posterior(
        perturbed, x, optimization=LocalOptimization(init="encoder", max_steps=1, check_every=1)
    )
    q_z = perturbed.encode(x)
    torch.testing.assert_close(start.params[0], q_z.mean, atol=1e-2, rtol=0)
    torch.manual_seed(4)
    gaps = inference_gaps(
        perturbed,
        x,
        optimization=replace(FAST, init="encoder"),
        is_samples=2000,
        elbo_samples=2000,
        batch_size=12,
        chunk_size=2000,
        log_px=perturbed.exact_log_marginal(x),
    )
    assert gaps["approximation_gap"].value == pytest.approx(
        diagonal_gap_closed_form(precision_matrix()), abs=0.03
    )
    assert gaps["amortization_gap"].value > 0.05


@pytest.mark.parametrize(
    "name, families",
    [("vae", ("ffg", "flow")), ("iaf_vae", ("flow",)), ("ladder_vae", ()), ("vq_vae", ())],
)
def test_local_families_are_read_from_the_encoders_distribution(name, families):
    """Contract: which q* families contain q(z|x) follows from the distribution encode returns
    (factorised Gaussian, IAF flow, a hierarchy's ancestral q, a point mass), not a model flag."""
    model = create_model(name, data_shape=(1, 8, 8))
    x = torch.bernoulli(torch.full((2, 1, 8, 8), 0.5))
    assert families_containing(model.encode(x)) == families
