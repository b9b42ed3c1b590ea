"""Tests for `metrics.posterior_collapse` and the ``posterior_collapse`` evaluator.

Oracle: a linear-Gaussian VAE with data drawn from its own marginal x ~ N(b, C), C = W Wᵀ + σ²I,
and a linear encoder q(z|x) = N(A x + c, S), S diagonal. The aggregate posterior is then exactly
Gaussian, q(z) = N(A b + c, A C Aᵀ + S), so (Hoffman & Johnson 2016)

    I(x; z) = h(q(z)) - E_x h(q(z|x)) = ½ log det(A C Aᵀ + S) - ½ log det S,
    KL(q(z) || p(z)) = ½[tr Σ + μᵀμ - d - log det Σ]  with μ = A b + c, Σ = A C Aᵀ + S.

With the exact posterior as encoder, S = M⁻¹ and A C Aᵀ + S = I, so I(x; z) = ½ log det M with
M = I + WᵀW/σ². The estimator uses N points, so it targets the empirical aggregate posterior:
it is at most log N and biased low; with I ≈ 3.3 nats and N = 2000 the bias measured about 0.02.
"""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Independent, MultivariateNormal, StudentT

from benchmark.datasets import create_dataset
from benchmark.evaluators import get_evaluator
from benchmark.evaluators.inference import PosteriorCollapseConfig
from metrics.estimate import Estimate, NotDefined
from metrics.posterior_collapse import kl_per_dimension, posterior_collapse
from registry import create_model, list_models
from registry.base import LikelihoodUndefined
from registry.linear_vae import LinearVAE

LATENT_DIM, DATA_DIM, NOISE_STD = 2, 5, 0.7
WEIGHT = [[1.0, 0.8], [0.5, 1.0], [1.0, 1.0], [0.2, -0.3], [0.7, 0.9]]


def linear_model(cls=LinearVAE, perturb: bool = True) -> LinearVAE:
    """Return a fixed linear VAE; `perturb` moves the encoder away from the optimal one."""
    model = cls((DATA_DIM,), LATENT_DIM, 1.0)
    with torch.no_grad():
        model.weight.copy_(torch.tensor(WEIGHT))
        model.bias.copy_(torch.linspace(-1, 1, DATA_DIM))
        model.log_noise_std.fill_(math.log(NOISE_STD))
    model.set_encoder_to_optimal_diagonal()
    if perturb:
        with torch.no_grad():
            model.encoder_weight.mul_(1.8)
            model.encoder_bias.add_(0.5)
            model.encoder_log_std.sub_(0.3)
    return model


def marginal_samples(model: LinearVAE, num: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.decode(model.prior().sample((num,))).sample()  # (num, DATA_DIM)


def aggregate_closed_form(model: LinearVAE) -> tuple[float, float]:
    """Return (I(x; z), KL(q(z) || p(z))) for the linear encoder under the model's marginal."""
    a, c = model.encoder_weight.double(), model.encoder_bias.double()
    s = torch.diag(model.encoder_log_std.double().exp() ** 2)
    w, b = model.weight.double(), model.bias.double()
    cov_x = w @ w.T + NOISE_STD**2 * torch.eye(DATA_DIM, dtype=torch.float64)
    mu, sigma = a @ b + c, a @ cov_x @ a.T + s
    mutual_information = 0.5 * (torch.logdet(sigma) - torch.logdet(s))
    marginal_kl = 0.5 * (torch.trace(sigma) + mu @ mu - LATENT_DIM - torch.logdet(sigma))
    return mutual_information.item(), marginal_kl.item()


@pytest.fixture(scope="module")
def collapse():
    model = linear_model()
    x = marginal_samples(model, 2000, seed=1)
    torch.manual_seed(2)
    return model, x, posterior_collapse(model, x, num_samples=4, batch_size=1000, chunk_size=256)


def test_mutual_information_matches_closed_form(collapse):
    """Closed-form reference: I(x; z) and KL(q(z) || p(z)) of a Gaussian aggregate posterior."""
    model, _, results = collapse
    expected_mi, expected_marginal_kl = aggregate_closed_form(model)
    assert expected_mi > 3.0 and expected_marginal_kl > 0.5
    assert results["mutual_information"].value == pytest.approx(expected_mi, abs=0.08)
    # NOTE: the empirical N-point mixture is lumpier than q(z), so its KL is biased up (~0.05 here).
    assert results["marginal_kl"].value == pytest.approx(expected_marginal_kl, abs=0.15)
    mutual_information = results["mutual_information"]
    assert mutual_information.kind == "lower_bound" and mutual_information.warning is None
    assert mutual_information.diagnostics["log_n"] == math.log(2000)
    assert mutual_information.diagnostics["upper_bound"] == results["rate"].value
    assert results["marginal_kl"].kind == "upper_bound"


def test_saturated_mutual_information_is_bracketed_and_flagged():
    """Closed-form reference: a Gaussian encoder on Gaussian data with I(x; z) = 12 nats, far
    above log N for N = 1000. The InfoNCE lower bound saturates below log N, the rate is above
    I, so the bracket holds the closed form; both collapse estimates carry the warning."""
    model = linear_model(perturb=False)
    with torch.no_grad():
        model.encoder_log_std.fill_(math.log(0.002))
    expected_mi, expected_marginal_kl = aggregate_closed_form(model)
    assert 11.5 < expected_mi < 13.0 and expected_mi > math.log(1000) + 4
    x = marginal_samples(model, 1000, seed=7)
    torch.manual_seed(8)
    results = posterior_collapse(model, x, num_samples=2, batch_size=1000, chunk_size=256)
    lower, rate = results["mutual_information"], results["rate"]
    assert lower.value <= math.log(1000) + 1e-9
    assert lower.value <= expected_mi <= rate.value - 2 * rate.stderr
    assert "saturated" in lower.warning and "log N = 6.91" in lower.warning
    assert not lower.reliable and results["marginal_kl"].warning == lower.warning
    # rate - I_NCE overstates KL(q(z) || p(z)) by I - I_NCE: an upper bound, labelled as one.
    assert results["marginal_kl"].value > expected_marginal_kl + 4


def test_elbo_surgery_decomposition_holds(collapse):
    """Property: E_x KL(q(z|x) || p(z)) = I(x; z) + KL(q(z) || p(z)) up to Monte Carlo error."""
    _, _, results = collapse
    parts = results["mutual_information"].value + results["marginal_kl"].value
    assert results["rate"].value == pytest.approx(parts, abs=0.02)


def test_rate_and_distortion_match_closed_form(collapse):
    """Closed-form reference: Gaussian KL to N(0, I) and E_q[-log p(x|z)] of a linear decoder."""
    model, x, results = collapse
    q = model.encode(x)
    loc, var = q.mean.double(), q.variance.double()
    rate = 0.5 * (var + loc**2 - 1 - var.log()).sum(-1)
    w, b = model.weight.double(), model.bias.double()
    residual = ((x.double() - loc @ w.T - b) ** 2).sum(-1) + (w**2 @ var.T).sum(0)
    distortion = (
        0.5 * residual / NOISE_STD**2
        + DATA_DIM * math.log(NOISE_STD)
        + 0.5 * DATA_DIM * math.log(2 * math.pi)
    )
    assert results["rate"].value == pytest.approx(rate.mean().item(), rel=1e-6)
    assert results["distortion"].value == pytest.approx(distortion.mean().item(), abs=0.03)
    assert results["distortion"].higher_is_better is False


def kl_to_standard_normal_by_quadrature(q_d) -> float:
    """Return KL(q_d || N(0, 1)) = ∫ q log(q / p) by adaptive quadrature (scipy)."""

    def integrand(z: float) -> float:
        return q_d.pdf(z) * (q_d.logpdf(z) - stats.norm.logpdf(z))

    value, _ = integrate.quad(integrand, -np.inf, np.inf)
    return value


def test_kl_per_dimension_sums_to_rate_and_matches_scipy(collapse):
    """scipy reference: per-dimension KL equals the numerical integral of q log(q / p)."""
    model, x, results = collapse
    kl, method = kl_per_dimension(model, x[:3], num_samples=1)
    assert method == "analytic"
    q = model.encode(x[:3])
    for i, d in [(0, 0), (1, 1), (2, 0)]:
        q_d = stats.norm(q.mean[i, d].item(), q.stddev[i, d].item())
        assert kl[i, d].item() == pytest.approx(kl_to_standard_normal_by_quadrature(q_d), rel=1e-5)
    per_dim = results["kl_per_dim"]
    assert sum(per_dim.diagnostics["per_dim"]) == pytest.approx(results["rate"].value, rel=1e-9)
    assert per_dim.diagnostics["method"] == "analytic"


class StudentTEncoder(LinearVAE):
    """A linear VAE whose posterior factors are Student-t: no registered KL to a Normal prior."""

    def encode(self, x):
        loc = x @ self.encoder_weight.T + self.encoder_bias  # (B, d)
        return Independent(StudentT(5.0, loc, self.encoder_log_std.exp().expand_as(loc)), 1)


def test_kl_per_dimension_falls_back_to_monte_carlo():
    """scipy reference: the Monte Carlo KL of Student-t factors matches numerical integration."""
    model = linear_model(StudentTEncoder)
    x = marginal_samples(model, 2, seed=3)
    torch.manual_seed(4)
    kl, method = kl_per_dimension(model, x, num_samples=40_000)
    assert method == "monte_carlo"
    q = model.encode(x)
    scale = model.encoder_log_std.exp()
    for i in range(2):
        for d in range(LATENT_DIM):
            q_d = stats.t(5.0, q.base_dist.loc[i, d].item(), scale[d].item())
            expected = kl_to_standard_normal_by_quadrature(q_d)
            assert kl[i, d].item() == pytest.approx(expected, abs=0.02)


class ExactPosteriorEncoder(LinearVAE):
    """A linear VAE whose encoder is the exact full-covariance posterior."""

    def encode(self, x):
        posterior = self.exact_posterior(x)
        return MultivariateNormal(posterior.loc.float(), posterior.covariance_matrix.float())


def test_mutual_information_of_the_exact_posterior_is_half_log_det_m():
    """Closed-form reference: with q(z|x) = p(z|x), I(x; z) = ½ log det(I + WᵀW/σ²)."""
    model = linear_model(ExactPosteriorEncoder, perturb=False)
    w = model.weight.double()
    expected = (
        0.5
        * torch.logdet(torch.eye(LATENT_DIM, dtype=torch.float64) + w.T @ w / NOISE_STD**2).item()
    )
    x = marginal_samples(model, 1000, seed=5)
    torch.manual_seed(6)
    results = posterior_collapse(model, x, num_samples=2, batch_size=1000, chunk_size=256)
    assert results["mutual_information"].value == pytest.approx(expected, abs=0.05)
    assert results["marginal_kl"].value < 0.03  # the aggregate of exact posteriors is the prior
    # A full-covariance posterior has no per-dimension KL: n/a with the reason, not a number.
    assert isinstance(results["kl_per_dim"], NotDefined)
    assert "not a product of univariate factors" in results["kl_per_dim"].reason
    with pytest.raises(TypeError, match="factorise"):
        kl_per_dimension(model, x[:2], num_samples=1)


def test_evaluator_is_seeded_and_records_settings():
    """Contract: the evaluator returns the five estimates, reproducibly for a given seed."""
    dataset = create_dataset(
        "linear_gaussian",
        data_dim=DATA_DIM,
        latent_dim=LATENT_DIM,
        num_train=10,
        num_valid=10,
        num_test=300,
    )
    model = linear_model()
    evaluator = get_evaluator("posterior_collapse")
    config = PosteriorCollapseConfig(num_examples=200, num_samples=2)
    first, again, other = (
        evaluator.function(model=model, dataset=dataset, config=config, seed=s) for s in (0, 0, 1)
    )
    assert set(first) == {"kl_per_dim", "rate", "distortion", "mutual_information", "marginal_kl"}
    assert first["mutual_information"] == again["mutual_information"]
    assert first["mutual_information"].value != other["mutual_information"].value
    assert first["rate"].n == 200 and first["rate"].params["seed"] == 0
    assert first["rate"].params["split"] == "test"


def small_model(name: str):
    """Build `name` on 8x8 images, or on 16-d vectors for vector-only models, in eval mode."""
    try:
        model = create_model(name, data_shape=(1, 8, 8))
    except ValueError:
        model = create_model(name, data_shape=(16,))
    return model.eval()


@pytest.mark.parametrize("name", list_models())
def test_every_model_gets_collapse_diagnostics(name):
    """Contract: every registered model yields finite diagnostics; KL per dim sums to the rate."""
    torch.manual_seed(0)
    model = small_model(name)
    x = torch.bernoulli(torch.full((12, *model.data_shape), 0.5))
    if not model.has_prior:  # the KL to a prior that does not exist
        with pytest.raises(LikelihoodUndefined):
            posterior_collapse(model, x, num_samples=2, batch_size=6, chunk_size=5)
        return
    results = posterior_collapse(model, x, num_samples=2, batch_size=6, chunk_size=5)
    assert set(results) == {"kl_per_dim", "rate", "distortion", "mutual_information", "marginal_kl"}
    estimates = [r for r in results.values() if isinstance(r, Estimate)]
    assert all(math.isfinite(r.value) and r.n == 12 for r in estimates)
    assert results["mutual_information"].value <= math.log(12) + 1e-9
    per_dim = results["kl_per_dim"]
    if isinstance(per_dim, NotDefined):
        with pytest.raises(TypeError, match="factorise"):
            kl_per_dimension(model, x[:2], num_samples=1)
    elif per_dim.diagnostics["method"] == "analytic":
        assert per_dim.value == pytest.approx(results["rate"].value, rel=1e-6)


def test_a_run_records_why_kl_per_dim_is_not_defined(tmp_path):
    """Integration: a VampPrior (mixture prior) run records its other collapse diagnostics and
    ``posterior_collapse/kl_per_dim`` under ``undefined_metrics`` with the reason."""
    from benchmark.runner import RunOptions, run_spec
    from benchmark.spec import resolve_spec

    spec = resolve_spec(
        {
            "name": "vamp",
            "model": {"name": "vamp_prior", "latent_dim": 2, "num_pseudo_inputs": 4},
            "dataset": {"name": "digits"},
            "train": {"steps": 5, "batch_size": 16},
            "eval": {"posterior_collapse": {"num_examples": 20, "num_samples": 2}},
        }
    )
    options = RunOptions(results_dir=tmp_path / "r", checkpoint_dir=tmp_path / "c", progress=False)
    record = run_spec(spec, options)
    assert record.status == "ok", record.failure
    assert "kl_per_dim" not in record.metrics["posterior_collapse"]
    assert {"rate", "mutual_information"} <= set(record.metrics["posterior_collapse"])
    assert "univariate" in record.undefined_metrics["posterior_collapse/kl_per_dim"]
