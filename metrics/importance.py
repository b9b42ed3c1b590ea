"""Log importance weights and the importance-weighted bounds built on them.

Every likelihood estimator in vaebench starts from `log_importance_weights`, which calls the
model's own ``log_importance_weights`` (so hierarchical models are covered) in chunks over K,
so memory stays bounded at K = 5000 while the number of samples is exactly K.
"""

import math

import torch
from torch import Tensor

from registry.base import LatentVariableModel


@torch.no_grad()
def log_importance_weights(
    model: LatentVariableModel, x: Tensor, *, num_samples: int, chunk_size: int
) -> Tensor:
    """Return log w = log p(x, z) - log q(z|x) for K = `num_samples` draws z ~ q(z|x).

    Args:
        model: Any registered model.
        x: Batch of observations ``(B, *data_shape)``.
        num_samples: K, used exactly (the last chunk is smaller when K % chunk_size != 0).
        chunk_size: Samples per forward pass; bounds memory at ``chunk_size * B`` decodes.

    Returns:
        Tensor of shape ``(K, B)``.
    """
    if num_samples < 1 or chunk_size < 1:
        raise ValueError(
            f"Expected `num_samples` and `chunk_size` to be >= 1, but got {num_samples}, {chunk_size}."
        )
    chunks = []
    for start in range(0, num_samples, chunk_size):
        k = min(chunk_size, num_samples - start)
        chunks.append(model.log_importance_weights(x, num_samples=k))  # (k, B)
    return torch.cat(chunks, dim=0)  # (K, B)


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """Return log(mean(exp(log_w))) along `dim`, accumulated in float64."""
    log_w = log_w.double()
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def effective_sample_size(log_w: Tensor, dim: int = 0) -> Tensor:
    """Return Kish's ESS = (sum w)^2 / sum w^2 along `dim`, in [1, K] (float64)."""
    log_w = log_w.double()
    return torch.exp(2 * torch.logsumexp(log_w, dim=dim) - torch.logsumexp(2 * log_w, dim=dim))
