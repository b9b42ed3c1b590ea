"""The estimators every loss and every metric shares: log importance weights and the ELBO terms.

They exist once, here at the bottom of the stack: `registry/` models call them in their training
losses and `metrics/` calls them to evaluate, and neither has a copy. A model supplies densities
and samplers only: ``draw_latents`` (z ~ q(z|x) with log q, and whatever densities its sampler
computes on the way), ``log_prior`` and ``log_likelihood``. A hierarchy overrides those (one
fused top-down pass gives z, log q, log p(z), log p(x|z) and the per-group KLs at once), never
an estimator.

For a model with the base densities the weights are assembled blockwise, with three changes that
only affect speed: the decoder runs on blocks of `DECODE_ROWS` rows, so its activations stay in
cache; independent Bernoulli pixels are scored from their logits in one fused pass (`log_prob`);
and torch.distributions' argument validation runs on the first block only.
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent

if TYPE_CHECKING:
    from registry.base import LatentDraws, LatentVariableModel

# Decoder rows (samples x examples) per pass on the base-density path. 512 rows keep a 500-wide
# MLP's activations and 784 logits per row (1.6 MB) in a 2 MB L2 cache, so the elementwise passes
# (bias, activation, likelihood) do not go to memory, while each GEMM stays large enough to run at
# full speed. Measured with `python -m benchmark.perf nll`: 256-768 rows are best on 1-2 cores;
# without blocking (10^5 rows per pass) the throughput drops by a third.
DECODE_ROWS = 512


def log_importance_weights(
    model: "LatentVariableModel",
    x: Tensor,
    *,
    num_samples: int,
    chunk_size: int,
    decode_rows: int = DECODE_ROWS,
) -> Tensor:
    """Return log w = log p(x, z) - log q(z|x) for K = `num_samples` draws z ~ q(z|x).

    Burda et al. (2016), Eq. 8. The draws are i.i.d.; `chunk_size` only bounds memory.
    Differentiable through reparameterised draws (the IWAE loss calls it with grad enabled).

    Args:
        model: Any registered model.
        x: Batch of observations ``(B, *data_shape)``.
        num_samples: K, used exactly (the last chunk is smaller when K % chunk_size != 0).
        chunk_size: Samples drawn per pass; bounds memory at about ``chunk_size * B`` decodes.
        decode_rows: Decoder rows per pass within a chunk (`joint_log_density`).

    Returns:
        Tensor of shape ``(K, B)``, in the model's dtype.
    """
    chunks = iter_log_importance_weights(
        model, x, num_samples=num_samples, chunk_size=chunk_size, decode_rows=decode_rows
    )
    return _concatenated(list(chunks))  # (K, B)


def iter_log_importance_weights(
    model: "LatentVariableModel",
    x: Tensor,
    *,
    num_samples: int,
    chunk_size: int,
    decode_rows: int = DECODE_ROWS,
) -> Iterator[Tensor]:
    """Yield the K log weights of `log_importance_weights` chunk by chunk, ``(k, B)`` each.

    The same draws in the same order as `log_importance_weights`, so a caller that summarises
    each chunk (streaming log-mean-exp, ESS, k̂) holds one chunk in memory, whatever K is.
    """
    _check_positive_int("num_samples", num_samples)
    _check_positive_int("chunk_size", chunk_size)
    for start in range(0, num_samples, chunk_size):
        draws = model.draw_latents(x, min(chunk_size, num_samples - start))
        yield joint_log_density(model, x, draws, decode_rows=decode_rows) - draws.log_q  # (k, B)


def elbo_terms(
    model: "LatentVariableModel", x: Tensor, *, num_samples: int
) -> tuple[Tensor, Tensor]:
    """Return per-example (E_q[log p(x|z)], KL(q(z|x) || p(z))), each ``(B,)``.

    ELBO = reconstruction - KL (Kingma & Welling 2014, Eq. 3). The KL is analytic where the
    model's sampler provides it (a rule registered for q and p, or a hierarchy's per-group KLs,
    Vahdat & Kautz 2020, Eq. 2), else the Monte Carlo mean of log q - log p(z) over the draws.
    Differentiable through reparameterised draws.

    Args:
        model: Any registered model.
        x: Observations ``(B, *data_shape)``.
        num_samples: Posterior draws for the expectation (and for a Monte Carlo KL).
    """
    draws = model.draw_latents(x, num_samples)  # z (K, B, D)
    log_likelihood = draws.log_likelihood
    if log_likelihood is None:
        log_likelihood = model.log_likelihood(x, draws.z)  # (K, B)
    kl = draws.kl() if callable(draws.kl) else draws.kl
    if kl is None:
        log_prior = draws.log_prior if draws.log_prior is not None else model.log_prior(draws.z)
        kl = (draws.log_q - log_prior).mean(0)
    return log_likelihood.mean(0), kl


def expected_log_likelihood(model: "LatentVariableModel", x: Tensor, *, num_samples: int) -> Tensor:
    """Return the per-example reconstruction term E_q[log p(x|z)] alone, ``(B,)``.

    The first term of `elbo_terms`, for a model whose q(z|x) can be sampled but has no density,
    or that has no p(z) (the concrete autoencoder): it needs only draws z ~ q(z|x) and p(x|z).
    `elbo_terms` gives the same term (on its own draws) wherever the KL is defined as well.

    Args:
        model: Any registered model.
        x: Observations ``(B, *data_shape)``.
        num_samples: Posterior draws for the expectation.
    """
    _check_positive_int("num_samples", num_samples)
    z = model.encode(x).rsample((num_samples,))  # (K, B, D)
    return model.log_likelihood(x, z).mean(0)


def joint_log_density(
    model: "LatentVariableModel",
    x: Tensor,
    draws: "LatentDraws",
    *,
    decode_rows: int = DECODE_ROWS,
) -> Tensor:
    """Return log p(z) + log p(x|z) at the draws ``(k, B)``, reusing what the sampler computed.

    A model with the base ``log_likelihood`` is decoded in blocks of `decode_rows` rows, with the
    fused Bernoulli kernel (`log_prob`). A training loss passes all k x B rows: its backward pass
    keeps every block's activations anyway, so blocks would only split each layer's GEMMs (and
    add their weight gradients), about 3 % of an IWAE k = 50 step at batch 20.

    NOTE: torch.distributions' argument validation scans every parameter tensor (two passes over
    all logits, ~10% of the time). It runs as configured on the first block, where bad inputs or
    parameters raise exactly as on the generic path, and is off for the others: it cannot change
    their values, and non-finite weights are caught downstream (`check_finite_log_weights`).
    """
    log_prior = draws.log_prior if draws.log_prior is not None else model.log_prior(draws.z)
    if draws.log_likelihood is not None:
        return log_prior + draws.log_likelihood
    if not uses_base_likelihood(model):
        return log_prior + model.log_likelihood(x, draws.z)
    samples_per_block = max(1, decode_rows // max(1, len(x)))
    first, *others = draws.z.split(samples_per_block)  # (k_block, B, D) each
    log_likelihood = [log_prob(model.decode(first), x)]
    with argument_validation(False):
        log_likelihood += [log_prob(model.decode(z_block), x) for z_block in others]
    return log_prior + _concatenated(log_likelihood)  # (k, B)


def _concatenated(blocks: list[Tensor]) -> Tensor:
    """Return the blocks concatenated along dim 0; a single block as it is (a training step's)."""
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


def uses_base_likelihood(model: "LatentVariableModel") -> bool:
    """Return whether `model` keeps the base ``log_likelihood`` = ``decode(z).log_prob(x)``.

    Such a model's likelihood may be decoded blockwise here; any other model is asked for its
    own ``log_likelihood``.
    """
    from registry.base import LatentVariableModel

    return type(model).log_likelihood is LatentVariableModel.log_likelihood


@contextmanager
def argument_validation(enabled: bool) -> Iterator[None]:
    """Set torch.distributions' default argument validation within the block, then restore it."""
    previous = Distribution._validate_args
    Distribution.set_default_validate_args(enabled)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(previous)


def log_prob(p_x_given_z: Distribution, x: Tensor) -> Tensor:
    """Return ``p_x_given_z.log_prob(x)``, fusing independent Bernoulli pixels given by logits.

    Any other distribution is asked for its own ``log_prob``. The fused form is the same
    quantity, ``sum x * logits - softplus(logits)``, computed without probabilities in two passes
    over the logits instead of the dozen of ``binary_cross_entropy_with_logits`` on broadcast
    inputs.

    Args:
        p_x_given_z: p(x|z) with batch shape ``(..., B)`` and event shape ``data_shape``.
        x: Observations ``(B, *data_shape)``.

    Returns:
        log p(x|z) of shape ``(..., B)``.
    """
    base = p_x_given_z.base_dist if isinstance(p_x_given_z, Independent) else None
    # NOTE: `type(...) is Bernoulli` on purpose: a subclass may redefine log_prob.
    if type(base) is not Bernoulli or "logits" not in base.__dict__:
        return p_x_given_z.log_prob(x)
    event_dims = p_x_given_z.reinterpreted_batch_ndims
    if event_dims != x.dim() - 1:
        return p_x_given_z.log_prob(x)
    if base._validate_args:
        base._validate_sample(x)  # the same {0, 1} check the generic path makes
    return bernoulli_log_prob(base.logits, x, event_dims=event_dims)


def bernoulli_log_prob(logits: Tensor, x: Tensor, *, event_dims: int) -> Tensor:
    """Return sum over the last `event_dims` dims of ``x * logits - softplus(logits)``.

    This is log Bernoulli(x; sigmoid(logits)) without forming probabilities. Each term
    ``-(softplus(l) - x l)`` is formed before summing, so no large partial sums cancel.

    Args:
        logits: ``(..., B, *event)``.
        x: ``(B, *event)``, broadcast over the leading dims of `logits`.
        event_dims: Number of trailing event dims summed over.
    """
    if x.requires_grad:  # NOTE: `_BernoulliLogProb` differentiates in the logits only
        negative_terms = F.softplus(logits)  # (..., B, *event)
        return -negative_terms.addcmul_(logits, x, value=-1.0).sum(dim=tuple(range(-event_dims, 0)))
    return _BernoulliLogProb.apply(logits, x, event_dims)


class _BernoulliLogProb(torch.autograd.Function):
    """`bernoulli_log_prob` with a backward pass of two passes over the logits instead of four.

    NOTE: the backward computes what autograd computes through the forward's operations, in the
    same floating-point operations (softplus's derivative, then minus the upstream gradient
    times x), so the gradients are the same bits; it only skips autograd's intermediate tensors
    (x times -1, the gradient through ``addcmul_``, and their sum).
    """

    generate_vmap_rule = True  # torch.func transforms see plain torch operations

    @staticmethod
    def forward(logits: Tensor, x: Tensor, event_dims: int) -> Tensor:
        negative_terms = F.softplus(logits)  # (..., B, *event), written once and reused in place
        negative_terms.addcmul_(logits, x, value=-1.0)
        return -negative_terms.sum(dim=tuple(range(-event_dims, 0)))  # (..., B)

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, Tensor, int], output: Tensor) -> None:
        logits, x, ctx.event_dims = inputs
        ctx.save_for_backward(logits, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        logits, x = ctx.saved_tensors
        # d/dl of -(softplus(l) - l x) is -g softplus'(l) + g x, with g the upstream gradient
        minus_grad = (-grad).reshape(*grad.shape, *[1] * ctx.event_dims).expand_as(logits)
        grad_logits = torch.ops.aten.softplus_backward(minus_grad, logits, 1.0, 20.0)
        return grad_logits.addcmul_(minus_grad, x, value=-1.0), None, None


_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def normal_log_prob(z: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Return log N(z; loc, diag(scale^2)), summed over the last dim.

    The value of ``Independent(Normal(loc, scale), 1).log_prob(z)`` without building the
    distribution (the trainer's hot path draws from q(z|x) every step).

    NOTE: the operations of `torch.distributions.Normal.log_prob`, in its order, so values and
    gradients are the same bits as through the distribution.

    Args:
        z: Points ``(..., B, D)``.
        loc: Means ``(B, D)``, broadcast over the leading dims of `z`.
        scale: Standard deviations ``(B, D)``, positive.
    """
    var = scale**2
    return (-((z - loc) ** 2) / (2 * var) - scale.log() - _LOG_SQRT_2PI).sum(-1)  # (..., B)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """Return log N(z; 0, I), summed over the last dim: ``-z^2 / 2 - log sqrt(2 pi)`` per dim.

    NOTE: `normal_log_prob` at loc 0 and scale 1, whose terms then are exact no-ops (z - 0,
    division by 2 * 1, minus log 1), so the bits are those of the N(0, I) distribution's.
    """
    return (-(z**2) / 2 - _LOG_SQRT_2PI).sum(-1)  # (...,)


def normal_kl_to_standard_normal(loc: Tensor, scale: Tensor) -> Tensor:
    """Return KL(N(loc, diag(scale^2)) || N(0, I)), summed over the last dim.

    ``0.5 (scale^2 + loc^2 - 1 - log scale^2)`` per dim (Kingma & Welling 2014, Appendix B),
    in the operations of torch's registered Normal-Normal rule at a N(0, 1) second argument
    (same bits).

    Args:
        loc: Means ``(..., D)``.
        scale: Standard deviations ``(..., D)``, positive.
    """
    var_ratio = scale.pow(2)
    return (0.5 * (var_ratio + loc.pow(2) - 1 - var_ratio.log())).sum(-1)  # (...,)


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """Return log(mean(exp(log_w))) along `dim`, accumulated in float64."""
    log_w = log_w.double()
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def effective_sample_size(log_w: Tensor, dim: int = 0) -> Tensor:
    """Return Kish's ESS = (sum w)^2 / sum w^2 along `dim`, in [1, K] (float64)."""
    log_w = log_w.double()
    return torch.exp(2 * torch.logsumexp(log_w, dim=dim) - torch.logsumexp(2 * log_w, dim=dim))


def check_finite_log_weights(log_w: Tensor, *, first_example: int = 0) -> None:
    """Raise ValueError naming the first example whose log importance weights are not finite.

    Args:
        log_w: Log weights ``(K, B)``.
        first_example: Index of column 0 in the whole evaluation set, so the message names the
            example of the data set rather than of the batch.
    """
    bad = ~torch.isfinite(log_w)  # (K, B)
    if not bad.any():
        return
    column = int(bad.any(dim=0).nonzero()[0])
    row = int(bad[:, column].nonzero()[0])
    raise ValueError(
        f"Expected finite log importance weights, but example {first_example + column} has "
        f"log w = {log_w[row, column].item()} at sample {row} ({int(bad.sum())} non-finite in "
        f"total). Check the model's likelihood on this input (e.g. a Bernoulli decoder on "
        f"non-binary data, or a variance collapsing to zero)."
    )


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Expected `{name}` to be a positive int, but got {value!r}.")
