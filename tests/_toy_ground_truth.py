"""The toy ground truth of the reference notes (§6.1) and the representations scored on it.

Five independent, uniform factors with sizes (3, 6, 10, 16, 16), observed as
``factor / (size - 1)``. Factors are drawn like disentanglement_lib's ``SplitDiscreteStateSpace``
(one ``randint`` per factor, in factor order) and rendering draws nothing, so a seeded
`RandomState` reproduces the reference's factors.
"""

import numpy as np

from metrics.disentanglement import sample_codes_and_factors

TOY_SIZES = (3, 6, 10, 16, 16)


class ToyGroundTruth:
    """Observation = each factor class scaled to [0, 1]."""

    def __init__(self, factor_sizes: tuple[int, ...] = TOY_SIZES) -> None:
        self.factor_sizes = tuple(factor_sizes)
        self.factor_names = tuple(f"factor_{k}" for k in range(len(factor_sizes)))
        self.observation_shape = (len(factor_sizes),)

    def sample_factors(self, num: int, rng: np.random.RandomState) -> np.ndarray:
        return np.stack([rng.randint(size, size=num) for size in self.factor_sizes], axis=1)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.RandomState
    ) -> np.ndarray:
        return (factors / (np.array(self.factor_sizes) - 1)).astype(np.float32)  # (N, K)


def identity(x: np.ndarray) -> np.ndarray:
    return x


def rotation(num_codes: int = 5, seed: int = 0):
    """Return x -> (x - 0.5) Q for a fixed random orthogonal Q (num_codes x num_codes)."""
    q, _ = np.linalg.qr(np.random.RandomState(seed).randn(num_codes, num_codes))
    return lambda x: (x - 0.5) @ q


class Noise:
    """N(0, 1) codes independent of x, from a private, restartable RandomState."""

    def __init__(self, num_codes: int = 5, seed: int = 1) -> None:
        self.num_codes, self.seed = num_codes, seed
        self.restart()

    def restart(self) -> None:
        self.rng = np.random.RandomState(self.seed)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.rng.randn(len(x), self.num_codes)


def duplicated(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, x], axis=1)  # (N, 2K)


def with_zeros(x: np.ndarray) -> np.ndarray:
    """Identity plus five collapsed (all-zero) codes."""
    return np.concatenate([x, np.zeros_like(x)], axis=1)  # (N, 2K)


def constant(x: np.ndarray) -> np.ndarray:
    """A wholly constant representation of five codes."""
    return np.full((len(x), 5), 0.3)


def toy_sample(
    representation, num_points: int, seed: int = 0, sizes: tuple[int, ...] = TOY_SIZES
) -> tuple[np.ndarray, np.ndarray]:
    """Return codes (N, D) and factors (N, K) of the toy, drawn as dlib does (batches of 16)."""
    rng = np.random.RandomState(seed)
    return sample_codes_and_factors(
        ToyGroundTruth(sizes), representation, num_points=num_points, rng=rng, batch_size=16
    )


def toy_splits(
    representation,
    num_train: int = 10_000,
    num_test: int = 5_000,
    sizes: tuple[int, ...] = TOY_SIZES,
):
    """Return train then test (codes, factors) drawn from one RandomState(0), as the driver does."""
    rng = np.random.RandomState(0)
    splits = [
        sample_codes_and_factors(
            ToyGroundTruth(sizes), representation, num_points=num, rng=rng, batch_size=16
        )
        for num in (num_train, num_test)
    ]
    return (*splits[0], *splits[1])
