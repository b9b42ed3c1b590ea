"""The dataset contract: fixed splits held in memory, a recorded checksum, recorded preprocessing.

A `Dataset` holds the *raw* splits (images as float32 k/255 in [0, 1]; vectors as float32) and
applies its preprocessing when batches are drawn (`benchmark.datasets.stream`), so that dynamic
binarization can resample every batch. Evaluation data is preprocessed deterministically with
`eval_seed`, so every model is scored on the same binarized test set (Burda et al. 2016 used
seed 123).
"""

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from benchmark.datasets.preprocessing import (
    EIGHT_BIT_PREPROCESSINGS,
    INTENSITY_PREPROCESSINGS,
    PREPROCESSINGS,
    Preprocessing,
    check_8bit_grid,
    check_intensities,
    derived_seed,
    preprocess_deterministically,
)

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
        binarization_seed: Seed of static binarization; split ``s`` is drawn with
            ``derived_seed(binarization_seed, s)``, so the three splits get independent draws.
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
    binarization_seed: int = 0
    # Preprocessed evaluation splits, filled on first use; `dataclasses.replace` starts a fresh one.
    _evaluation_cache: dict[str, Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Check the fields against the contract, so a malformed dataset fails when built."""
        if self.preprocessing not in PREPROCESSINGS:
            raise ValueError(
                f"Expected `preprocessing` to be one of {list(PREPROCESSINGS)}, "
                f"but got {self.preprocessing!r}."
            )
        if set(self.splits) != set(SPLITS):
            raise ValueError(
                f"Expected `splits` to have keys {list(SPLITS)}, but got {sorted(self.splits)}."
            )
        for split, x in self.splits.items():
            self._check_split(split, x)

    def _check_split(self, split: str, x: Tensor) -> None:
        if x.dtype != torch.float32 or tuple(x.shape[1:]) != tuple(self.data_shape):
            raise ValueError(
                f"Expected `splits[{split!r}]` to be float32 of shape "
                f"(N, *{tuple(self.data_shape)}), but got {x.dtype} of shape {tuple(x.shape)}."
            )
        if self.preprocessing in INTENSITY_PREPROCESSINGS:
            check_intensities(x, name=f"splits[{split!r}]")
        if self.preprocessing in EIGHT_BIT_PREPROCESSINGS:
            check_8bit_grid(x, name=f"splits[{split!r}]")

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

    def on(self, device: torch.device | str) -> "Dataset":
        """Return this dataset with its splits, labels and evaluation data on `device`.

        The evaluation data is preprocessed here first (its seeded draws are CPU generators'),
        then copied, so every device scores the same binarized test set. On the CPU it is self.
        """
        device = torch.device(device)
        if device.type == "cpu":
            return self
        moved = replace(
            self,
            splits={k: v.to(device) for k, v in self.splits.items()},
            labels={k: v.to(device) for k, v in self.labels.items()},
        )
        for split in SPLITS:
            moved._evaluation_cache[split] = self.evaluation_data(split).to(device)
        return moved

    def split_labels(self, split: str) -> Tensor:
        """Return the integer labels ``(N,)`` of a split, or raise if the dataset has none."""
        if split not in self.labels:
            raise ValueError(
                f"Dataset {self.name!r} has no labels for split {split!r}, but a label-conditional "
                f"model (e.g. `cvae`) needs them; use a labelled dataset such as `digits`, "
                f"`mnist` or `fashion_mnist`."
            )
        return self.labels[split].long()

    def evaluation_data(self, split: str) -> Tensor:
        """Return the whole split, preprocessed deterministically with `eval_seed`.

        Static binarization uses its own per-split seed instead, since the binarized split *is*
        the dataset. The result is cached: repeated calls return the same tensor.

        NOTE: the returned tensor is shared between callers; do not modify it in place.

        Args:
            split: One of ``train``, ``valid``, ``test``.

        Returns:
            ``(N, *data_shape)`` float32 model inputs.
        """
        if split not in SPLITS:
            raise ValueError(f"Expected `split` to be one of {list(SPLITS)}, but got {split!r}.")
        if split not in self._evaluation_cache:
            seed = self.eval_seed
            if self.preprocessing == "static_binarization":
                seed = derived_seed(self.binarization_seed, split)
            x = preprocess_deterministically(self.splits[split], self.preprocessing, seed=seed)
            self._evaluation_cache[split] = x
        return self._evaluation_cache[split]
