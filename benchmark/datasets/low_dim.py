"""Data on a low-dimensional subspace or manifold of R^D (after Koehler, Mehta, Zhou & Risteski,
ICLR 2022, "Variational autoencoders in the presence of low-dimensional data").

``linear_subspace``: x = U z + sigma eps with z ~ N(0, I_d), U a random (D, d) matrix with
orthonormal columns, and eps ~ N(0, I_D): Gaussian data on a d-dimensional linear subspace, blurred
by isotropic noise of standard deviation sigma. Koehler et al. show that a linear VAE with more
latent dimensions than d recovers the subspace, with exactly d latent units active.

``nonlinear_manifold``: x = Q [z ; sin(A z + c)] + sigma eps, the graph of a smooth function of
z ~ N(0, I_d), embedded in R^D by a random (D, d + m) matrix Q with orthonormal columns. The graph
of a function is a d-dimensional manifold without self-intersections, so the intrinsic dimension
is exactly d, while no linear subspace of dimension less than d + m contains it. The curvature
grows with the scale of A (``frequency``).

Both draw their parameters from ``RandomState([seed, 0])`` and split s from
``RandomState([seed, k_s])`` (k = 1, 2, 3 for train, valid, test), and record the basis (and the
manifold's A, c) in ``info``, so tests can compare what a model learned with the truth.
"""

import hashlib
from collections.abc import Callable

import numpy as np
import torch

from benchmark.datasets import register_dataset
from benchmark.datasets.base import SPLITS, Dataset
from benchmark.datasets.preprocessing import Preprocessing, check_preprocessing_allowed

_STREAMS = {"parameters": 0, "train": 1, "valid": 2, "test": 3}
_REASON = "the data are real-valued vectors, not pixel intensities or 8-bit levels."


@register_dataset("linear_subspace")
def linear_subspace(
    *,
    intrinsic_dim: int = 2,
    data_dim: int = 10,
    noise_std: float = 0.05,
    num_train: int = 2000,
    num_valid: int = 500,
    num_test: int = 1000,
    seed: int = 0,
    preprocessing: Preprocessing = "continuous",
) -> Dataset:
    """Draw Gaussian data on a random d-dimensional subspace of R^D, plus isotropic noise.

    Args:
        intrinsic_dim: d, the dimension of the subspace.
        data_dim: D > d, the observed dimension; data_shape is ``(D,)``.
        noise_std: sigma >= 0, the standard deviation of the noise in every direction.
        num_train: Training examples.
        num_valid: Validation examples.
        num_test: Test examples.
        seed: Seed in [0, 2**32) of every draw.
        preprocessing: Must be ``continuous``.
    """
    sizes = _check(intrinsic_dim, data_dim, noise_std, num_train, num_valid, num_test, seed)
    check_preprocessing_allowed(
        "linear_subspace", preprocessing, allowed=("continuous",), reason=_REASON
    )
    basis = _orthonormal(data_dim, intrinsic_dim, np.random.RandomState([seed, 0]))  # (D, d)
    splits = {
        s: _draw(lambda z: z @ basis.T, intrinsic_dim, noise_std, sizes[s], seed, s) for s in SPLITS
    }
    info = {"basis": basis.tolist(), "model": "z ~ N(0, I_d); x = U z + noise_std * eps"}
    return _dataset("linear_subspace", splits, basis, info, intrinsic_dim, noise_std, sizes, seed)


@register_dataset("nonlinear_manifold")
def nonlinear_manifold(
    *,
    intrinsic_dim: int = 2,
    data_dim: int = 10,
    curved_dims: int = 4,
    frequency: float = 1.5,
    noise_std: float = 0.05,
    num_train: int = 2000,
    num_valid: int = 500,
    num_test: int = 1000,
    seed: int = 0,
    preprocessing: Preprocessing = "continuous",
) -> Dataset:
    """Draw data on the graph of z -> sin(A z + c), a curved d-manifold embedded in R^D.

    Args:
        intrinsic_dim: d, the dimension of the manifold.
        data_dim: D >= d + m, the observed dimension; data_shape is ``(D,)``.
        curved_dims: m, the number of sine coordinates of the graph.
        frequency: Standard deviation of the entries of A: the manifold's curvature.
        noise_std: sigma >= 0, the standard deviation of the noise in every direction.
        num_train: Training examples.
        num_valid: Validation examples.
        num_test: Test examples.
        seed: Seed in [0, 2**32) of every draw.
        preprocessing: Must be ``continuous``.
    """
    sizes = _check(
        intrinsic_dim, data_dim - curved_dims, noise_std, num_train, num_valid, num_test, seed
    )
    if curved_dims < 1 or frequency <= 0:
        raise ValueError(
            f"Expected `curved_dims` >= 1 and `frequency` > 0, but got {curved_dims} and "
            f"{frequency}."
        )
    check_preprocessing_allowed(
        "nonlinear_manifold", preprocessing, allowed=("continuous",), reason=_REASON
    )
    rng = np.random.RandomState([seed, 0])
    basis = _orthonormal(data_dim, intrinsic_dim + curved_dims, rng)  # (D, d + m)
    a = frequency * rng.standard_normal((curved_dims, intrinsic_dim))  # (m, d)
    c = rng.uniform(0, 2 * np.pi, curved_dims)  # (m,)

    def embed(z: np.ndarray) -> np.ndarray:
        graph = np.concatenate([z, np.sin(z @ a.T + c)], axis=1)  # (N, d + m)
        return graph @ basis.T  # (N, D)

    splits = {s: _draw(embed, intrinsic_dim, noise_std, sizes[s], seed, s) for s in SPLITS}
    info = {
        "basis": basis.tolist(),
        "A": a.tolist(),
        "c": c.tolist(),
        "model": "z ~ N(0, I_d); x = Q [z; sin(A z + c)] + noise_std * eps",
    }
    return _dataset(
        "nonlinear_manifold", splits, basis, info, intrinsic_dim, noise_std, sizes, seed
    )


def _check(
    intrinsic_dim: int,
    room: int,
    noise_std: float,
    num_train: int,
    num_valid: int,
    num_test: int,
    seed: int,
) -> dict[str, int]:
    if not 1 <= intrinsic_dim < room:
        raise ValueError(
            f"Expected 1 <= `intrinsic_dim` < the dimensions available for it ({room}), but got "
            f"{intrinsic_dim}; raise `data_dim`."
        )
    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"Expected `noise_std` >= 0, but got {noise_std}.")
    sizes = {"train": num_train, "valid": num_valid, "test": num_test}
    if min(sizes.values()) < 1 or not 0 <= seed < 2**32:
        raise ValueError(
            f"Expected split sizes >= 1 and `seed` in [0, 2**32), but got {sizes} and {seed}."
        )
    return sizes


def _orthonormal(rows: int, columns: int, rng: np.random.RandomState) -> np.ndarray:
    """Return a random ``(rows, columns)`` matrix with orthonormal columns (QR of a Gaussian)."""
    q, r = np.linalg.qr(rng.standard_normal((rows, columns)))
    return q * np.sign(np.diag(r))  # the sign fix makes Q Haar-distributed


def _draw(
    embed: Callable[[np.ndarray], np.ndarray],
    intrinsic_dim: int,
    noise_std: float,
    size: int,
    seed: int,
    split: str,
) -> torch.Tensor:
    rng = np.random.RandomState([seed, _STREAMS[split]])
    z = rng.standard_normal((size, intrinsic_dim))  # (N, d)
    x = embed(z)  # (N, D)
    x = x + noise_std * rng.standard_normal(x.shape)
    return torch.from_numpy(x.astype(np.float32))


def _dataset(
    name: str,
    splits: dict[str, torch.Tensor],
    basis: np.ndarray,
    info: dict[str, object],
    intrinsic_dim: int,
    noise_std: float,
    sizes: dict[str, int],
    seed: int,
) -> Dataset:
    digest = hashlib.sha256(np.asarray(basis).astype("<f8").tobytes())
    for split in SPLITS:
        digest.update(splits[split].numpy().astype("<f4").tobytes())
    info = {**info, "intrinsic_dim": intrinsic_dim, "noise_std": noise_std, "seed": seed}
    return Dataset(
        name=name,
        data_shape=tuple(splits["train"].shape[1:]),
        splits=splits,
        labels={},
        preprocessing="continuous",
        checksum=digest.hexdigest(),
        source="generated",
        info={**info, "sizes": dict(sizes)},
    )
