"""The dataset contract: fixed splits held in memory, a recorded checksum, recorded preprocessing.

A `Dataset` holds the *raw* splits (images as float32 k/255 in [0, 1]; vectors as float32) and
applies its preprocessing when batches are drawn, so that dynamic binarization can resample
every epoch. Evaluation data is preprocessed deterministically with `eval_seed`, so every model
is scored on the same binarized test set (Burda et al. 2016 used seed 123).
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

Preprocessing = Literal[
    "dynamic_binarization",  # Bernoulli(pixel) resampled for every training batch
    "static_binarization",  # Bernoulli(pixel) drawn once per split with a fixed seed
    "threshold",  # pixel > 0.5 (Cremer et al. 2018 for Fashion-MNIST)
    "continuous",  # raw floats, for Gaussian likelihoods
    "8bit",  # exact k/255 values, for the discretized logistic likelihood
    "dequantized",  # (k + u) / 256 with u ~ U[0, 1); densities need the -D log 256 offset
]
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Dataset:
    """A standardized dataset with fixed train/valid/test splits.

    Attributes:
        name: Registry name.
        data_shape: Shape of one observation, e.g. ``(1, 28, 28)``.
        splits: Raw data per split, ``(N, *data_shape)`` float32.
        labels: Integer labels per split ``(N,)``, where the dataset has them.
        preprocessing: How raw values become model inputs (see `Preprocessing`).
        checksum: sha256 of the raw source (files or generated arrays), recorded with every run.
        source: Where the data came from (a path, or ``generated``/``scikit-learn``).
        eval_seed: Seed of the deterministic evaluation-time preprocessing.
        info: Documented facts about the splits (which images are held out, sizes, seeds).
    """

    name: str
    data_shape: tuple[int, ...]
    splits: dict[str, Tensor]
    labels: dict[str, Tensor]
    preprocessing: Preprocessing
    checksum: str
    source: str
    eval_seed: int = 123
    info: dict[str, object] = field(default_factory=dict)

    @property
    def num_dims(self) -> int:
        return math.prod(self.data_shape)

    @property
    def is_discrete(self) -> bool:
        """Whether model inputs are discrete, so log-likelihoods are log-probabilities (<= 0)."""
        return self.preprocessing not in ("continuous", "dequantized")

    @property
    def log_likelihood_offset(self) -> float:
        """Nats to add to a density on dequantized inputs to lower-bound the 8-bit log-probability.

        log P(k) >= E_u log p((k + u) / 256) - D log 256 (Theis et al. 2016, Sec. 3.1).
        """
        return -self.num_dims * math.log(256) if self.preprocessing == "dequantized" else 0.0

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
        """Yield one shuffled epoch of preprocessed training batches (the last may be smaller)."""
        raise NotImplementedError  # implemented in benchmark/datasets/preprocessing.py

    def evaluation_data(self, split: str) -> Tensor:
        """Return the whole split, preprocessed deterministically with `eval_seed`."""
        raise NotImplementedError  # implemented in benchmark/datasets/preprocessing.py
