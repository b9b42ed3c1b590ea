"""Tests of `metrics.psis`: the generalized Pareto fit and the PSIS k̂ of importance weights."""

import numpy as np
import pytest
import scipy.stats
import torch

from metrics.psis import generalized_pareto_fit, pareto_k_hat, pareto_tail_size


@pytest.mark.parametrize("shape, scale", [(-0.2, 1.0), (0.3, 2.0), (0.8, 0.5)])
def test_generalized_pareto_fit_matches_scipy_mle(shape, scale):
    """Scipy reference: the Zhang-Stephens fit agrees with scipy's genpareto MLE on its samples.

    n = 2000 samples; the two estimators differ by far less than their sampling error (~0.03),
    and the fitted density is as likely as scipy's maximum-likelihood one up to 0.5 nats.
    """
    x = scipy.stats.genpareto.rvs(shape, scale=scale, size=2000, random_state=0)
    fitted_shape, fitted_scale = generalized_pareto_fit(torch.from_numpy(x))
    mle_shape, _, mle_scale = scipy.stats.genpareto.fit(x, floc=0)
    assert fitted_shape.item() == pytest.approx(mle_shape, abs=0.02)
    assert fitted_scale.item() == pytest.approx(mle_scale, rel=0.02)
    log_lik = scipy.stats.genpareto.logpdf(x, fitted_shape.item(), scale=fitted_scale.item()).sum()
    assert log_lik > scipy.stats.genpareto.logpdf(x, mle_shape, scale=mle_scale).sum() - 0.5


def test_generalized_pareto_fit_is_batched_and_order_free():
    """Property: a batch of samples gives the fits of each row, whatever the order within it."""
    rng = np.random.RandomState(1)
    rows = [scipy.stats.genpareto.rvs(c, size=300, random_state=rng) for c in (0.1, 0.6)]
    batch = torch.from_numpy(np.stack(rows))  # (2, 300)
    shape, scale = generalized_pareto_fit(batch.flip(-1))
    for i, row in enumerate(rows):
        single_shape, single_scale = generalized_pareto_fit(torch.from_numpy(row))
        assert shape[i].item() == pytest.approx(single_shape.item(), rel=1e-12)
        assert scale[i].item() == pytest.approx(single_scale.item(), rel=1e-12)


@pytest.mark.parametrize("proposal_std, expected", [(0.5, 0.75), (0.9, 0.19)])
def test_pareto_k_of_gaussian_proposals_matches_closed_form(proposal_std, expected):
    """Closed-form reference: target N(0, 1), proposal N(0, s^2), s < 1, has k = 1 - s^2.

    The weights are w ∝ exp(u^2 (1 - s^2) / 2) with u ~ N(0, 1), so P(w > t) ~ t^(-1/(1-s^2)).
    Mean k̂ over 20 independent sets of K = 5000 weights, whose spread is about 0.12 each.
    """
    torch.manual_seed(0)
    u = torch.randn(5000, 20, dtype=torch.float64)
    k_hat = pareto_k_hat(u.square() * (1 - proposal_std**2) / 2, dim=0)
    assert k_hat.shape == (20,)
    assert k_hat.mean().item() == pytest.approx(expected, abs=0.08)


def test_pareto_k_flags_bounded_and_heavy_tails():
    """Property: a wider proposal (bounded weights) gives k̂ < 0.5, a narrow one k̂ > 0.7."""
    torch.manual_seed(1)
    u = torch.randn(20, 2000, dtype=torch.float64)
    wide = pareto_k_hat(u.square() * (1 - 1.5**2) / 2, dim=1)
    narrow = pareto_k_hat(u.square() * (1 - 0.3**2) / 2, dim=1)
    assert (wide < 0.5).all()
    assert narrow.mean() > 0.7


def test_pareto_k_is_invariant_to_the_scale_of_the_weights():
    """Property: k̂ depends on normalised weights only, and huge log weights do not overflow."""
    torch.manual_seed(2)
    log_w = torch.randn(1000, 3, dtype=torch.float64) * 2
    torch.testing.assert_close(pareto_k_hat(log_w + 5000.0), pareto_k_hat(log_w))


def test_constant_weights_have_no_pareto_tail():
    """Property: equal top weights (a bounded tail) give k̂ = -inf instead of a NaN."""
    assert pareto_k_hat(torch.zeros(100, 2)).tolist() == [float("-inf")] * 2


@pytest.mark.parametrize("num_samples, tail", [(25, 5), (100, 20), (1000, 95), (5000, 213)])
def test_tail_size_follows_vehtari_et_al(num_samples, tail):
    """Closed-form reference: M = ceil(min(K / 5, 3 sqrt(K)))."""
    assert pareto_tail_size(num_samples) == tail


def test_too_few_samples_raise():
    """Bad input: K too small for a tail of 5 weights raises, naming the argument."""
    with pytest.raises(ValueError, match="Expected `num_samples` to be at least 21"):
        pareto_k_hat(torch.randn(20, 3))
