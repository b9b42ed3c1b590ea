"""Ground-truth data, representations, and the sampler every disentanglement score draws from.

A ground-truth dataset renders observations from integer factor classes (dSprites: shape, scale,
orientation, posX, posY). A representation maps a batch of observations to codes. Scores see
codes ``(N, D)`` and factors ``(N, K)``: one row per point, the transpose of disentanglement_lib's
``(D, N)``/``(K, N)`` layout.

Randomness follows disentanglement_lib (Locatello et al. 2019): one legacy
``np.random.RandomState`` per score, consumed batch by batch in the order "sample factors, then
render", so a dataset whose rendering draws noise or colours stays in step with the reference.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # NOTE: no runtime torch import, so classifier workers start without it
    from torch import Tensor

Representation = Callable[[np.ndarray], np.ndarray]  # (N, *observation_shape) -> (N, D)

# Observations handed to the representation in one call; large calls amortise an encoder's
# per-call cost, and the numpy random stream does not depend on this (encoding draws nothing).
ENCODE_CHUNK_SIZE = 1024


@runtime_checkable
class Restartable(Protocol):
    """A stateful representation (e.g. sampled codes) that can rewind to its first draw."""

    def restart(self) -> None: ...


@runtime_checkable
class GroundTruthData(Protocol):
    """A dataset whose observations are rendered from known, discrete factors of variation.

    Attributes:
        factor_names: One name per latent factor, e.g. ``("shape", "scale", ...)``.
        factor_sizes: Number of classes of each latent factor, each >= 2. Leave out factors with
            a single value (dSprites' colour), as disentanglement_lib's ``dsprites_full`` does.
        observation_shape: Shape of one observation, e.g. ``(1, 64, 64)``.
    """

    @property
    def factor_names(self) -> tuple[str, ...]: ...

    @property
    def factor_sizes(self) -> tuple[int, ...]: ...

    @property
    def observation_shape(self) -> tuple[int, ...]: ...

    def sample_factors(self, num: int, rng: np.random.RandomState) -> np.ndarray:
        """Return ``(num, K)`` int factor classes, each column uniform on ``0 .. size - 1``."""
        ...

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.RandomState
    ) -> "np.ndarray | Tensor":
        """Render ``(num, K)`` factor classes as ``(num, *observation_shape)`` float32."""
        ...


def check_ground_truth(data: object) -> None:
    """Raise unless `data` implements `GroundTruthData` with factors of at least two classes."""
    if not isinstance(data, GroundTruthData):
        raise TypeError(
            "Expected `data` to implement GroundTruthData (factor_names, factor_sizes, "
            "observation_shape, sample_factors, sample_observations_from_factors), but got "
            f"{type(data).__name__}."
        )
    sizes, names = tuple(data.factor_sizes), tuple(data.factor_names)
    if not sizes or any(not isinstance(s, int | np.integer) or s < 2 for s in sizes):
        raise ValueError(
            f"Expected `data.factor_sizes` to be a non-empty tuple of ints >= 2, but got {sizes}. "
            "Leave single-valued factors (such as dSprites' colour) out of the latent factors."
        )
    if len(names) != len(sizes):
        raise ValueError(
            f"Expected one factor name per factor size, but got {len(names)} names for "
            f"{len(sizes)} sizes."
        )


def render(data: GroundTruthData, factors: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Return the observations of `factors` as a float32 array ``(n, *observation_shape)``."""
    x = data.sample_observations_from_factors(factors, rng)
    x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)  # a torch Tensor
    expected = (len(factors), *tuple(data.observation_shape))
    if x.shape != expected:
        raise ValueError(
            f"Expected `sample_observations_from_factors` to return shape {expected}, "
            f"but got {x.shape}."
        )
    return x.astype(np.float32, copy=False)


def encode_batches(
    representation: Representation,
    batches: Iterable[np.ndarray],
    *,
    chunk_size: int = ENCODE_CHUNK_SIZE,
) -> Iterator[np.ndarray]:
    """Yield the float64 codes ``(n_b, D)`` of each observation batch, encoding several at once.

    Batches are drawn lazily, so the numpy random stream advances exactly as if each batch were
    encoded on its own; only the number of representation calls changes.
    """
    buffer: list[np.ndarray] = []
    for batch in batches:
        buffer.append(batch)
        if sum(len(b) for b in buffer) >= chunk_size:
            yield from _encode_buffer(representation, buffer)
            buffer = []
    if buffer:
        yield from _encode_buffer(representation, buffer)


def _encode_buffer(representation: Representation, buffer: list[np.ndarray]) -> list[np.ndarray]:
    x = np.concatenate(buffer)  # (sum n_b, *observation_shape)
    codes = np.asarray(representation(x), dtype=np.float64)
    if codes.ndim != 2 or len(codes) != len(x):
        raise ValueError(
            f"Expected `representation` to return codes of shape ({len(x)}, D), "
            f"but got {codes.shape}."
        )
    if not np.isfinite(codes).all():
        raise ValueError("Expected `representation` to return finite codes, but got NaN or inf.")
    return np.split(codes, np.cumsum([len(b) for b in buffer[:-1]]))


def sample_codes_and_factors(
    data: GroundTruthData,
    representation: Representation,
    *,
    num_points: int,
    rng: np.random.RandomState,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw `num_points` factor rows, render and encode them (dlib ``generate_batch_factor_code``).

    Args:
        data: The ground-truth dataset.
        representation: Observations ``(n, *observation_shape)`` to codes ``(n, D)``.
        num_points: N, the number of points returned.
        rng: Consumed per batch of `batch_size`: factors first, then any rendering noise.
        batch_size: Points per sampling batch (16 in the study).

    Returns:
        Codes ``(N, D)`` float64 and factor classes ``(N, K)`` int64.
    """
    factors: list[np.ndarray] = []

    def observation_batches() -> Iterator[np.ndarray]:
        for start in range(0, num_points, batch_size):
            factors.append(data.sample_factors(min(batch_size, num_points - start), rng))
            yield render(data, factors[-1], rng)

    codes = list(encode_batches(representation, observation_batches()))
    return np.concatenate(codes), np.concatenate(factors).astype(np.int64)


def check_codes_and_factors(
    codes: np.ndarray, factors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return codes as float64 ``(N, D)`` and factors as int64 ``(N, K)``, or raise on bad input.

    Every factor must take at least two values in the sample: a constant factor has zero entropy
    (MIG would divide by it) and no classifier can be fitted to it.
    """
    codes, factors = np.asarray(codes), np.asarray(factors)
    shapes_ok = codes.ndim == 2 and factors.ndim == 2 and len(codes) == len(factors)
    if not shapes_ok or len(codes) < 2 or 0 in (codes.shape[1], factors.shape[1]):
        raise ValueError(
            "Expected `codes` (N, D) and `factors` (N, K) with the same N >= 2 and D, K >= 1, "
            f"but got shapes {codes.shape} and {factors.shape}."
        )
    if not np.isfinite(codes).all():
        raise ValueError("Expected `codes` to be finite, but got NaN or inf.")
    if not np.array_equal(factors, np.round(factors)):
        raise ValueError("Expected `factors` to hold integer classes, but got fractional values.")
    constant = [j for j in range(factors.shape[1]) if np.all(factors[:, j] == factors[0, j])]
    if constant:
        raise ValueError(
            f"Expected every factor to vary in the sample, but factors {constant} are constant. "
            "Drop single-valued factors, or sample more points."
        )
    return codes.astype(np.float64), factors.astype(np.int64)


def check_train_test(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return `check_codes_and_factors` of both splits, which must have the same D and K."""
    codes_train, factors_train = check_codes_and_factors(codes_train, factors_train)
    codes_test, factors_test = check_codes_and_factors(codes_test, factors_test)
    if (
        codes_train.shape[1] != codes_test.shape[1]
        or factors_train.shape[1] != factors_test.shape[1]
    ):
        raise ValueError(
            "Expected train and test splits with the same numbers of codes and factors, but got "
            f"{codes_train.shape[1]}, {factors_train.shape[1]} and "
            f"{codes_test.shape[1]}, {factors_test.shape[1]}."
        )
    return codes_train, factors_train, codes_test, factors_test
