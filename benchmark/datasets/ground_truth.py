"""Ground-truth datasets: images rendered from known, discrete factors of variation.

The interface is disentanglement_lib's `GroundTruthData` (Locatello et al. 2019), with the
factor space made explicit so that any image has a flat index:

- ``factor_names``, ``factor_sizes``: the latent factors the metrics score, in index order;
- ``observation_shape``: one observation, channels first, e.g. ``(1, 64, 64)``;
- ``sample_factors(num, rng)``: integer classes ``(num, K)``, uniform per factor;
- ``sample_observations_from_factors(factors, rng)``: float32 images ``(num, *observation_shape)``;
- ``index_to_factors(index)`` / ``factors_to_index(factors)``: mixed-radix conversion, the last
  factor varying fastest (dSprites' original file order).

Factors are always 0-based integer classes, never physical values (a scale class, not 0.7).
`FactorDataset` is the registry's `Dataset` for such data: fixed train/valid/test splits for the
likelihood metrics, plus the `ground_truth` sampler that the disentanglement scores draw from.
"""

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmark.datasets.base import Dataset


class GroundTruthDataset:
    """Discrete factors of variation and a deterministic renderer from factors to observations.

    Subclasses implement `render`; everything else (sampling, validation, index conversion) is
    shared. Mirrors disentanglement_lib's `GroundTruthData`, channels first.

    Attributes:
        factor_names: Names of the K latent factors, in index order.
        factor_sizes: Number of classes of each factor.
        observation_shape: Shape of one observation, ``(C, H, W)``.
    """

    def __init__(
        self,
        factor_names: tuple[str, ...],
        factor_sizes: tuple[int, ...],
        observation_shape: tuple[int, ...],
    ) -> None:
        if len(factor_names) != len(factor_sizes) or min(factor_sizes, default=0) < 1:
            raise ValueError(
                f"Expected one size >= 1 per factor name, but got names {factor_names} and "
                f"sizes {factor_sizes}."
            )
        self.factor_names = tuple(factor_names)
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.observation_shape = tuple(observation_shape)

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def num_combinations(self) -> int:
        """Return the number of distinct factor combinations (the size of the full dataset)."""
        return math.prod(self.factor_sizes)

    @property
    def factor_bases(self) -> np.ndarray:
        """Return the mixed-radix bases, ``index = sum_k class_k * base_k``; shape ``(K,)``."""
        return np.array(
            [math.prod(self.factor_sizes[k + 1 :]) for k in range(self.num_factors)], dtype=np.int64
        )

    def sample_factors(self, num: int, rng: np.random.RandomState) -> np.ndarray:
        """Draw ``num`` factor rows uniformly, shape ``(num, K)`` int64.

        One ``rng.randint(size, size=num)`` per factor in factor order: disentanglement_lib's
        call sequence, so a seeded `RandomState` gives the reference's factors.
        """
        _check_rng(rng)
        if not isinstance(num, int | np.integer) or num < 0:
            raise ValueError(f"Expected `num` to be an integer >= 0, but got {num!r}.")
        columns = [rng.randint(size, size=num) for size in self.factor_sizes]
        return np.stack(columns, axis=1).astype(np.int64)  # (num, K)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.RandomState
    ) -> np.ndarray:
        """Render observations from factor classes.

        Args:
            factors: Integer classes, shape ``(N, K)``.
            rng: Random state for renderers with nuisance randomness (unused by deterministic
                ones, which then consume no random numbers).

        Returns:
            float32 observations of shape ``(N, *observation_shape)``.
        """
        _check_rng(rng)
        return self.render(self.check_factors(factors), rng)

    def sample(self, num: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(factors (num, K), observations (num, *observation_shape))``."""
        factors = self.sample_factors(num, rng)
        return factors, self.sample_observations_from_factors(factors, rng)

    def index_to_factors(self, index: np.ndarray) -> np.ndarray:
        """Return the factor classes ``(N, K)`` of flat indices ``(N,)``."""
        index = np.asarray(index)
        if not np.issubdtype(index.dtype, np.integer) or index.ndim != 1:
            raise ValueError(
                f"Expected `index` to be a 1-d integer array, but got {_describe(index)}."
            )
        if index.size and (index.min() < 0 or index.max() >= self.num_combinations):
            raise ValueError(
                f"Expected `index` to lie in [0, {self.num_combinations}), but got values in "
                f"[{index.min()}, {index.max()}]."
            )
        # (N, 1) // (K,) % (K,) -> (N, K): one digit per factor, most significant first.
        return index.astype(np.int64)[:, None] // self.factor_bases % np.array(self.factor_sizes)

    def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
        """Return the flat indices ``(N,)`` of factor classes ``(N, K)``."""
        return self.check_factors(factors) @ self.factor_bases

    def check_factors(self, factors: np.ndarray) -> np.ndarray:
        """Return `factors` as int64 ``(N, K)``, or raise if they are not valid classes."""
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise ValueError(
                f"Expected `factors` to have shape (N, {self.num_factors}), but got "
                f"{_describe(factors)}."
            )
        if not np.issubdtype(factors.dtype, np.integer):
            raise TypeError(f"Expected `factors` to hold integer classes, but got {factors.dtype}.")
        sizes = np.array(self.factor_sizes)
        if factors.size and ((factors < 0).any() or (factors >= sizes).any()):
            raise ValueError(
                f"Expected factor classes in [0, size) for sizes {self.factor_sizes}, but got "
                f"columns ranging {factors.min(0).tolist()} .. {factors.max(0).tolist()}."
            )
        return factors.astype(np.int64)

    def render(self, factors: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        """Render validated factors ``(N, K)`` as float32 observations (subclasses implement it)."""
        raise NotImplementedError


def _check_rng(rng: object) -> None:
    if not isinstance(rng, np.random.RandomState):
        raise TypeError(
            f"Expected `rng` to be a numpy.random.RandomState, but got {type(rng).__name__}. "
            "Use np.random.RandomState(seed), as disentanglement_lib does."
        )


def _describe(array: np.ndarray) -> str:
    return f"shape {array.shape} and dtype {array.dtype}"


@dataclass(frozen=True)
class FactorDataset(Dataset):
    """A `Dataset` whose splits were rendered from ground-truth factors.

    ``labels[split]`` holds each image's flat factor index ``(N,)``;
    ``ground_truth.index_to_factors`` turns it into classes. The disentanglement evaluator
    samples fresh observations from `ground_truth`, not from the splits.

    Attributes:
        ground_truth: The factor space and renderer the splits came from.
    """

    ground_truth: GroundTruthDataset = field(kw_only=True)


def sample_split_indices(
    num_combinations: int, sizes: dict[str, int], seed: int
) -> dict[str, np.ndarray]:
    """Draw disjoint flat indices per split, without replacement, from a seeded RandomState.

    Args:
        num_combinations: Size of the factor space.
        sizes: Number of images per split, e.g. ``{"train": 20000, "valid": 2000, ...}``.
        seed: Seed of the `np.random.RandomState` drawing the indices.
    """
    for split, size in sizes.items():
        if size < 1:
            raise ValueError(f"Expected `num_{split}` to be >= 1, but got {size}.")
    total = sum(sizes.values())
    if total > num_combinations:
        raise ValueError(
            f"Expected the splits to need at most {num_combinations} distinct images, but got "
            f"{total} ({sizes}). Lower the split sizes."
        )
    drawn = np.random.RandomState(seed).choice(num_combinations, size=total, replace=False)
    ends = np.cumsum(list(sizes.values()))
    return dict(zip(sizes, np.split(drawn.astype(np.int64), ends[:-1]), strict=True))


def build_factor_dataset(
    name: str,
    ground_truth: GroundTruthDataset,
    sizes: dict[str, int],
    *,
    seed: int,
    source: str,
    info: dict[str, object],
) -> FactorDataset:
    """Render seeded, disjoint splits of a binary ground-truth dataset into a `FactorDataset`.

    The checksum is the sha256 of the rendered split images and their indices, so a renderer
    change (or a different platform rounding a boundary pixel) shows up in every record.
    """
    indices = sample_split_indices(ground_truth.num_combinations, sizes, seed)
    rng = np.random.RandomState(seed)
    digest = hashlib.sha256()
    splits, labels = {}, {}
    for split, index in indices.items():
        images = ground_truth.sample_observations_from_factors(
            ground_truth.index_to_factors(index), rng
        )
        digest.update(np.ascontiguousarray(index))
        digest.update(np.ascontiguousarray(images))
        splits[split], labels[split] = torch.from_numpy(images), torch.from_numpy(index)
    info = {
        "split_seed": seed,
        "sizes": dict(sizes),
        "factor_names": list(ground_truth.factor_names),
        "factor_sizes": list(ground_truth.factor_sizes),
        **info,
    }
    return FactorDataset(
        name=name,
        data_shape=ground_truth.observation_shape,
        splits=splits,
        labels=labels,
        preprocessing="threshold",
        checksum=digest.hexdigest(),
        source=source,
        info=info,
        ground_truth=ground_truth,
    )
