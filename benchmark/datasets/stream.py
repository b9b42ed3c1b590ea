"""The training stream: batch t of a run is a pure function of (seed, t), on any device.

An epoch is a permutation of the training split drawn from (seed, epoch); batch t takes the next
`batch_size` rows of its epoch's permutation (the last batch of an epoch may be smaller), and a
preprocessing resampled per batch (dynamic binarization, dequantization) draws its noise from
(seed, t). All draws come from `benchmark.datasets.counter_rng`, so the stream is the same bits
whichever device holds the data, and a resumed run needs only its step to continue exactly.
"""

import math

import torch
from torch import Tensor

from benchmark.datasets import counter_rng
from benchmark.datasets.base import Dataset
from benchmark.datasets.preprocessing import RESAMPLED_PER_BATCH, preprocess_batch

# Stream ids fold into the key, so the order and the noise of a seed are independent draws.
_ORDER, _NOISE = 1, 2


class TrainingStream:
    """Training batches of `dataset` for one seed, with the split held on `device` as one tensor.

    Args:
        dataset: Its training split is copied to `device` once.
        batch_size: Rows per batch.
        seed: The run's seed.
        device: Where the data and the batches live.
        with_labels: Return ``(x, y)`` with the integer labels ``y (B,)`` of the batch's rows.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        seed: int,
        device: torch.device | str = "cpu",
        with_labels: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Expected `batch_size` to be a positive int, but got {batch_size!r}.")
        self.preprocessing = dataset.preprocessing
        self.resampled = dataset.preprocessing in RESAMPLED_PER_BATCH
        # A fixed preprocessing is applied once; a resampled one per batch, to the raw split.
        data = dataset.splits["train"] if self.resampled else dataset.evaluation_data("train")
        self.data = data.to(device)  # (N, *data_shape)
        self.labels = dataset.split_labels("train").to(device) if with_labels else None
        self.batch_size, self.seed, self.device = batch_size, seed, torch.device(device)
        self.batches_per_epoch = math.ceil(len(self.data) / batch_size)
        self._epoch, self._order = -1, torch.empty(0)

    def order(self, epoch: int) -> Tensor:
        """Return the permutation of the training rows for `epoch`, shape ``(N,)``."""
        if epoch != self._epoch:
            key = counter_rng.stream_key(self.seed, _ORDER, epoch)
            self._epoch, self._order = (
                epoch,
                counter_rng.permutation(key, len(self.data), self.device),
            )
        return self._order

    def rows(self, step: int) -> Tensor:
        """Return the indices of the training rows in batch `step`, shape ``(B,)``."""
        epoch, position = divmod(step, self.batches_per_epoch)
        start = position * self.batch_size
        return self.order(epoch)[start : start + self.batch_size]

    def batch(self, step: int) -> Tensor | tuple[Tensor, Tensor]:
        """Return batch `step`: x ``(B, *data_shape)``, or ``(x, y)`` with labels."""
        rows = self.rows(step)
        x = self.data[rows]  # (B, *data_shape)
        if self.resampled:
            key = counter_rng.stream_key(self.seed, _NOISE, step)
            if self.preprocessing == "dynamic_binarization":
                # NOTE: `preprocess_batch`'s ``uniform < x``, without forming the uniforms
                x = counter_rng.bernoulli(key, x)
            else:
                x = preprocess_batch(
                    x, self.preprocessing, counter_rng.uniform(key, x.shape, x.device)
                )
        return (x, self.labels[rows]) if self.labels is not None else x
