"""Observation likelihoods p(x|z): a decoder's raw output becomes a distribution over x.

Each likelihood is a small module with ``num_params`` outputs per data dimension and a
``forward(params) -> Distribution`` whose event shape is the data shape. The choice of
likelihood is what makes the reported NLL a true (negative log-) likelihood of the data:

- ``bernoulli``: binarized data in {0, 1}; log-probs come from logits, never probabilities.
- ``gaussian``: continuous data, learned per-dimension variance or a fixed standard deviation.
- ``discretized_logistic``: 8-bit data stored as k/255 in [0, 1]; a probability *mass* per pixel
  (Salimans et al. 2017, Eq. 2, with a single logistic component), so NLL is in nats of the
  discrete data and bits/dim are comparable with published 8-bit numbers.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, constraints


class BernoulliLikelihood(nn.Module):
    """Independent Bernoulli pixels parameterised by logits."""

    num_params = 1

    def __init__(self, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)

    def forward(self, params: Tensor) -> Distribution:
        logits = params.reshape(*params.shape[:-1], *self.data_shape)  # (..., B, *data_shape)
        return Independent(Bernoulli(logits=logits), len(self.data_shape))


class GaussianLikelihood(nn.Module):
    """Independent Gaussians; the standard deviation is learned per example or fixed.

    Args:
        data_shape: Shape of one observation.
        fixed_std: If given, the standard deviation of every dimension; else it is decoded.
        min_std: Floor on a learned standard deviation, to keep the density bounded.
    """

    def __init__(
        self, data_shape: tuple[int, ...], fixed_std: float | None = None, min_std: float = 1e-3
    ) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.fixed_std = fixed_std
        self.min_std = min_std
        self.num_params = 1 if fixed_std is not None else 2

    def forward(self, params: Tensor) -> Distribution:
        params = params.reshape(*params.shape[:-1], self.num_params, *self.data_shape)
        loc = params[..., 0, *([slice(None)] * len(self.data_shape))]  # (..., B, *data_shape)
        if self.fixed_std is not None:
            scale = torch.full_like(loc, self.fixed_std)
        else:
            raw = params[..., 1, *([slice(None)] * len(self.data_shape))]
            scale = F.softplus(raw) + self.min_std
        return Independent(Normal(loc, scale), len(self.data_shape))


class DiscretizedLogistic(Distribution):
    """A logistic density integrated over the 256 bins of 8-bit data scaled to [0, 1].

    Bin k covers [k/255 - 1/510, k/255 + 1/510]; the two edge bins extend to -inf and +inf so the
    masses sum to one. Salimans et al. (2017), Eq. 2, one mixture component.
    """

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    support = constraints.unit_interval
    has_rsample = False
    half_bin = 0.5 / 255.0

    def __init__(self, loc: Tensor, log_scale: Tensor, validate_args: bool | None = None) -> None:
        self.loc, self.log_scale = torch.broadcast_tensors(loc, log_scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def log_prob(self, value: Tensor) -> Tensor:
        inv_scale = torch.exp(-self.log_scale)
        centred = value - self.loc
        upper = inv_scale * (centred + self.half_bin)
        lower = inv_scale * (centred - self.half_bin)
        # log(sigmoid(u) - sigmoid(l)) = u - softplus(u) - softplus(l) + log(1 - exp(l - u)),
        # stable even when the bin is far in a tail where both sigmoids round to 0 or 1.
        log_cdf_upper = F.logsigmoid(upper)
        log_sf_lower = F.logsigmoid(-lower)
        mid = upper - F.softplus(upper) - F.softplus(lower) + _log1mexp(upper - lower)
        at_low_edge = value < self.half_bin
        at_high_edge = value > 1 - self.half_bin
        return torch.where(at_low_edge, log_cdf_upper, torch.where(at_high_edge, log_sf_lower, mid))

    @property
    def mean(self) -> Tensor:
        return self.loc.clamp(0, 1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, device=self.loc.device).clamp(1e-5, 1 - 1e-5)
        x = self.loc + torch.exp(self.log_scale) * (torch.log(u) - torch.log1p(-u))
        return (x.clamp(0, 1) * 255).round() / 255


def _log1mexp(a: Tensor) -> Tensor:
    """Return log(1 - exp(-a)) for a > 0, stably (Maechler 2012)."""
    a = a.clamp(min=1e-12)
    return torch.where(a > math.log(2), torch.log1p(-torch.exp(-a)), torch.log(-torch.expm1(-a)))


class DiscretizedLogisticLikelihood(nn.Module):
    """Per-pixel discretized logistic for 8-bit images stored as k/255."""

    num_params = 2

    def __init__(self, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)

    def forward(self, params: Tensor) -> Distribution:
        params = params.reshape(*params.shape[:-1], 2, *self.data_shape)
        index = [slice(None)] * len(self.data_shape)
        loc = torch.sigmoid(params[..., 0, *index])  # (..., B, *data_shape), in (0, 1)
        log_scale = params[..., 1, *index].clamp(min=-7.0)
        return Independent(DiscretizedLogistic(loc, log_scale), len(self.data_shape))


LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_fixed", "discretized_logistic")


def create_likelihood(name: str, data_shape: tuple[int, ...], fixed_std: float = 1.0) -> nn.Module:
    """Build the likelihood head called `name` (one of `LIKELIHOODS`)."""
    if name == "bernoulli":
        return BernoulliLikelihood(data_shape)
    if name == "gaussian":
        return GaussianLikelihood(data_shape)
    if name == "gaussian_fixed":
        return GaussianLikelihood(data_shape, fixed_std=fixed_std)
    if name == "discretized_logistic":
        return DiscretizedLogisticLikelihood(data_shape)
    raise ValueError(f"Expected `likelihood` to be one of {list(LIKELIHOODS)}, but got {name!r}.")
