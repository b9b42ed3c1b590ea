"""Improved precision and recall for generative models (Kynkäänniemi et al., NeurIPS 2019).

Each feature set defines a manifold estimate: the union of balls centred on its points, each
with radius the distance to that point's k-th nearest neighbour within the set (Eq. 2, k = 3 in
the paper). Precision is the fraction of generated points inside the real manifold (Eq. 3);
recall is the fraction of real points inside the generated manifold (Eq. 4).

Distances are Euclidean, computed in float64 with `torch.cdist` in row blocks so memory stays at
``batch_size x N``. A point on a ball's boundary counts as inside (``<=``), as in the reference
implementation.
"""

import torch
from torch import Tensor

from metrics.estimate import Estimate, mean_estimate
from metrics.fid import check_features


@torch.no_grad()
def manifold_radii(features: Tensor, *, k: int, batch_size: int) -> Tensor:
    """Return each point's distance to its k-th nearest other point in the set, shape ``(N,)``.

    Kynkäänniemi et al. (2019), Eq. 2 (NND_k).

    Args:
        features: ``(N, F)``, with N > k.
        k: Neighbourhood size.
        batch_size: Rows per distance block.
    """
    features = features.double()
    radii = []
    for block in features.split(batch_size):
        distances = torch.cdist(block, features)  # (b, N)
        # The point itself is its own nearest neighbour at distance 0, hence k + 1.
        radii.append(distances.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)  # (N,)


@torch.no_grad()
def inside_manifold(query: Tensor, support: Tensor, radii: Tensor, *, batch_size: int) -> Tensor:
    """Return whether each query point lies in at least one ball of the support set, ``(M,)`` bool.

    Kynkäänniemi et al. (2019), Eq. 1 (f(phi, Phi)).

    Args:
        query: ``(M, F)``.
        support: ``(N, F)``, the ball centres.
        radii: ``(N,)``, the ball radii.
        batch_size: Query rows per distance block.
    """
    support = support.double()
    inside = [
        (torch.cdist(block.double(), support) <= radii).any(dim=1)  # (b, N) -> (b,)
        for block in query.split(batch_size)
    ]
    return torch.cat(inside)  # (M,)


def precision(
    real_features: Tensor, generated_features: Tensor, *, k: int = 3, batch_size: int = 1024
) -> Estimate:
    """Estimate improved precision: the fraction of generated samples on the real manifold.

    Kynkäänniemi et al. (2019), Eq. 3. The stderr is over generated samples, given the real set.

    Args:
        real_features: ``(N_r, F)``, N_r > k.
        generated_features: ``(N_g, F)``.
        k: Neighbourhood size of the manifold estimate.
        batch_size: Rows per distance block (memory only).
    """
    check_features(real_features, generated_features, minimum=1)
    return _coverage(
        generated_features,
        real_features,
        k=k,
        batch_size=batch_size,
        params={"num_real": len(real_features), "num_generated": len(generated_features)},
    )


def recall(
    real_features: Tensor, generated_features: Tensor, *, k: int = 3, batch_size: int = 1024
) -> Estimate:
    """Estimate improved recall: the fraction of real samples on the generated manifold.

    Kynkäänniemi et al. (2019), Eq. 4. The stderr is over real samples, given the generated set.

    Args:
        real_features: ``(N_r, F)``.
        generated_features: ``(N_g, F)``, N_g > k.
        k: Neighbourhood size of the manifold estimate.
        batch_size: Rows per distance block (memory only).
    """
    check_features(real_features, generated_features, minimum=1)
    return _coverage(
        real_features,
        generated_features,
        k=k,
        batch_size=batch_size,
        params={"num_real": len(real_features), "num_generated": len(generated_features)},
    )


def _coverage(
    query: Tensor, support: Tensor, *, k: int, batch_size: int, params: dict[str, int]
) -> Estimate:
    if not 1 <= k < len(support):
        raise ValueError(
            f"Expected `k` to be in [1, {len(support) - 1}] (fewer than the "
            f"manifold's {len(support)} points), but got {k}."
        )
    if batch_size < 1:
        raise ValueError(f"Expected `batch_size` to be >= 1, but got {batch_size}.")
    radii = manifold_radii(support, k=k, batch_size=batch_size)
    inside = inside_manifold(query, support, radii, batch_size=batch_size)
    return mean_estimate(
        inside.double(),
        unit="fraction",
        higher_is_better=True,
        params={**params, "k": k},
        diagnostics={"median_radius": radii.median().item()},
    )
