"""Scipy-reference tests of the observation likelihoods."""

import numpy as np
import pytest
import torch
from scipy import stats

from registry.likelihoods import (
    BernoulliLikelihood,
    DiscretizedLogistic,
    GaussianLikelihood,
    create_likelihood,
)


def test_bernoulli_matches_scipy_and_is_stable_for_large_logits():
    """Scipy reference: summed Bernoulli log-pmf from logits, finite even for |logit| = 80."""
    torch.manual_seed(0)
    logits = torch.randn(5, 6).double() * 3
    x = torch.rand(5, 6).round().double()
    got = BernoulliLikelihood((6,))(logits).log_prob(x)
    p = torch.sigmoid(logits).numpy()
    expected = stats.bernoulli(p).logpmf(x.numpy()).sum(-1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    extreme = BernoulliLikelihood((1,))(torch.tensor([[80.0]])).log_prob(torch.tensor([[0.0]]))
    assert torch.isfinite(extreme) and extreme.item() == pytest.approx(-80.0)


def test_gaussian_learned_and_fixed_match_scipy():
    """Scipy reference: Gaussian log-density with decoded scale and with a fixed scale."""
    torch.manual_seed(1)
    params = torch.randn(3, 2 * 4).double()
    x = torch.randn(3, 4).double()
    dist = GaussianLikelihood((4,))(params)
    loc, scale = dist.base_dist.loc.numpy(), dist.base_dist.scale.numpy()
    np.testing.assert_allclose(
        dist.log_prob(x).numpy(), stats.norm(loc, scale).logpdf(x.numpy()).sum(-1), rtol=1e-10
    )
    fixed = GaussianLikelihood((4,), fixed_std=0.5)(params[:, :4])
    expected = stats.norm(params[:, :4].numpy(), 0.5).logpdf(x.numpy()).sum(-1)
    np.testing.assert_allclose(fixed.log_prob(x).numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize(("loc", "log_scale"), [(0.3, -2.0), (0.0, -5.0), (0.97, -7.0), (0.5, 1.0)])
def test_discretized_logistic_matches_scipy_bin_masses(loc, log_scale):
    """Scipy reference: bin masses are logistic CDF differences and sum to one over 256 bins."""
    x = torch.arange(256, dtype=torch.float64) / 255
    dist = DiscretizedLogistic(
        torch.tensor(loc, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64)
    )
    got = dist.log_prob(x).exp().numpy()
    edges = np.concatenate([[-np.inf], (np.arange(255) + 0.5) / 255, [np.inf]])
    expected = np.diff(stats.logistic(loc, np.exp(log_scale)).cdf(edges))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
    assert got.sum() == pytest.approx(1.0, abs=1e-9)


def test_unknown_likelihood_lists_choices():
    """Property: an unknown likelihood name lists the valid ones."""
    with pytest.raises(ValueError, match="bernoulli"):
        create_likelihood("bce", (4,))
