"""Synthetic data from a known linear-Gaussian model, whose log p(x) is available in closed form.

    z ~ N(0, I_L),    x = W z + b + sigma * eps,    eps ~ N(0, I_D),
    so  p(x) = N(x; b, W W^T + sigma^2 I_D)       (probabilistic PCA; Tipping & Bishop 1999, Eq. 6)

This is the test oracle of the likelihood estimators: an importance-sampled log p(x) must approach
`true_marginal(dataset).log_prob(x)` as the number of samples grows.
"""

import hashlib
import math

import numpy as np
import torch
from torch.distributions import MultivariateNormal

from benchmark.datasets import register_dataset
from benchmark.datasets.base import SPLITS, Dataset
from benchmark.datasets.preprocessing import Preprocessing, check_preprocessing_allowed

# Independent RandomState streams [seed, stream]: resizing one split leaves the others unchanged.
_STREAMS = {"parameters": 0, "train": 1, "valid": 2, "test": 3}


@register_dataset("linear_gaussian")
def linear_gaussian(
    *,
    data_dim: int = 16,
    latent_dim: int = 4,
    noise_std: float = 0.5,
    num_train: int = 2000,
    num_valid: int = 500,
    num_test: int = 1000,
    seed: int = 0,
    preprocessing: Preprocessing = "continuous",
) -> Dataset:
    """Draw a ground-truth linear-Gaussian model and its train/valid/test data.

    W has i.i.d. N(0, 1/latent_dim) entries (so each row of W W^T sums to about 1) and b i.i.d.
    N(0, 1), both from ``np.random.RandomState([seed, 0])``; split s is drawn from
    ``RandomState([seed, k_s])`` with k = 1, 2, 3 for train, valid, test. W (``info["W"]``), b
    (``info["b"]``) and `noise_std` are recorded so that log p(x) can be computed exactly.

    Args:
        data_dim: D, the observed dimension; data_shape is ``(D,)``.
        latent_dim: L, the latent dimension.
        noise_std: sigma > 0, the observation noise standard deviation.
        num_train: Training examples.
        num_valid: Validation examples.
        num_test: Test examples.
        seed: Seed in [0, 2**32) of every draw.
        preprocessing: Must be ``continuous``: the data are real-valued vectors.
    """
    reason = "the data are real-valued vectors, not pixel intensities or 8-bit levels."
    check_preprocessing_allowed(
        "linear_gaussian", preprocessing, allowed=("continuous",), reason=reason
    )
    sizes = {"train": num_train, "valid": num_valid, "test": num_test}
    _check_settings(data_dim, latent_dim, noise_std, sizes, seed)
    W, b = _draw_parameters(data_dim, latent_dim, seed)
    splits = {s: _draw_split(W, b, noise_std, sizes[s], seed, _STREAMS[s]) for s in SPLITS}
    return Dataset(
        name="linear_gaussian",
        data_shape=(data_dim,),
        splits=splits,
        labels={},
        preprocessing=preprocessing,
        checksum=_checksum(W, b, splits),
        source="generated",
        info=_info(W, b, noise_std, sizes, seed),
    )


def true_marginal(dataset: Dataset) -> MultivariateNormal:
    """Return the exact marginal p(x) = N(b, W W^T + sigma^2 I) of a `linear_gaussian` dataset."""
    if dataset.name != "linear_gaussian":
        raise ValueError(f"Expected `dataset` to be linear_gaussian, but got {dataset.name!r}.")
    W = torch.tensor(dataset.info["W"], dtype=torch.float64)  # (D, L)
    b = torch.tensor(dataset.info["b"], dtype=torch.float64)  # (D,)
    noise_var = float(dataset.info["noise_std"]) ** 2
    covariance = W @ W.T + noise_var * torch.eye(len(b), dtype=torch.float64)  # (D, D)
    return MultivariateNormal(b, covariance_matrix=covariance)


def _check_settings(
    data_dim: int, latent_dim: int, noise_std: float, sizes: dict[str, int], seed: int
) -> None:
    for key, value in {"data_dim": data_dim, "latent_dim": latent_dim}.items():
        if value < 1:
            raise ValueError(f"Expected `{key}` to be >= 1, but got {value}.")
    for split, size in sizes.items():
        if size < 1:
            raise ValueError(f"Expected `num_{split}` to be >= 1, but got {size}.")
    if not (math.isfinite(noise_std) and noise_std > 0):
        raise ValueError(f"Expected `noise_std` to be a positive number, but got {noise_std}.")
    if not 0 <= seed < 2**32:
        raise ValueError(f"Expected `seed` to be in [0, 2**32), but got {seed}.")


def _draw_parameters(data_dim: int, latent_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState([seed, _STREAMS["parameters"]])
    W = rng.standard_normal((data_dim, latent_dim)) / math.sqrt(latent_dim)  # (D, L)
    b = rng.standard_normal(data_dim)  # (D,)
    return W, b


def _draw_split(
    W: np.ndarray, b: np.ndarray, noise_std: float, size: int, seed: int, stream: int
) -> torch.Tensor:
    rng = np.random.RandomState([seed, stream])
    z = rng.standard_normal((size, W.shape[1]))  # (N, L)
    eps = rng.standard_normal((size, W.shape[0]))  # (N, D)
    x = z @ W.T + b + noise_std * eps  # (N, D); b broadcasts over N
    return torch.from_numpy(x.astype(np.float32))


def _checksum(W: np.ndarray, b: np.ndarray, splits: dict[str, torch.Tensor]) -> str:
    """sha256 of W and b (little-endian float64) then each split (little-endian float32)."""
    digest = hashlib.sha256(W.astype("<f8").tobytes())
    digest.update(b.astype("<f8").tobytes())
    for split in SPLITS:
        digest.update(splits[split].numpy().astype("<f4").tobytes())
    return digest.hexdigest()


def _info(
    W: np.ndarray, b: np.ndarray, noise_std: float, sizes: dict[str, int], seed: int
) -> dict[str, object]:
    return {
        "model": "z ~ N(0, I_L); x = W z + b + noise_std * eps, eps ~ N(0, I_D)",
        "marginal": "x ~ N(b, W W^T + noise_std^2 I_D)",
        "W": W.tolist(),
        "b": b.tolist(),
        "noise_std": noise_std,
        "latent_dim": W.shape[1],
        "seed": seed,
        "split_rule": "split s drawn from RandomState([seed, k]), k = 1, 2, 3 for train, valid, "
        "test; W and b from RandomState([seed, 0])",
        "sizes": dict(sizes),
    }
