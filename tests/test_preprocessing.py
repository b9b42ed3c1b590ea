"""Tests of the preprocessing functions and of how `Dataset` applies them to batches and splits."""

import dataclasses

import numpy as np
import pytest
import scipy.stats
import torch

from benchmark.datasets.base import Dataset
from benchmark.datasets.preprocessing import (
    check_8bit_grid,
    dequantize,
    derived_seed,
    dynamic_binarization,
    static_binarization,
    threshold_binarization,
)
from benchmark.datasets.stream import TrainingStream


def make_dataset(
    preprocessing: str, train: torch.Tensor, test: torch.Tensor | None = None, **fields
) -> Dataset:
    """A hand-built dataset of vectors; valid and test default to copies of `train`."""
    test = train.clone() if test is None else test
    splits = {"train": train, "valid": train.clone(), "test": test}
    return Dataset(
        name="toy",
        data_shape=tuple(train.shape[1:]),
        splits=splits,
        labels={},
        preprocessing=preprocessing,
        checksum="0" * 64,
        source="test",
        **fields,
    )


def random_intensities(n: int, d: int = 32, seed: int = 0, levels: bool = True) -> torch.Tensor:
    """Random 8-bit intensities k/255, ``(n, d)`` float32."""
    k = torch.randint(0, 256, (n, d), generator=torch.Generator().manual_seed(seed))
    return (k.float() / 255) if levels else torch.rand(n, d)


def sorted_rows(x: torch.Tensor) -> list[bytes]:
    return sorted(row.numpy().tobytes() for row in x.flatten(1))


def batches(dataset: Dataset, batch_size: int, seed: int, index: int = 0) -> list[torch.Tensor]:
    """Return the batches of epoch `index` of the training stream of `seed`."""
    stream = TrainingStream(dataset, batch_size=batch_size, seed=seed)
    first = index * stream.batches_per_epoch
    return [stream.batch(step) for step in range(first, first + stream.batches_per_epoch)]


def epoch(dataset: Dataset, batch_size: int, seed: int, index: int = 0) -> torch.Tensor:
    return torch.cat(batches(dataset, batch_size, seed, index))


# --- the pure functions ---------------------------------------------------------------------


def test_dynamic_binarization_mean_matches_intensity():
    """Closed-form reference: E[Bernoulli(p)] = p, within 5 binomial standard errors."""
    p = torch.linspace(0, 1, 11)
    n = 20000
    x = p.repeat(n, 1)  # (n, 11): n draws of each intensity
    sample = dynamic_binarization(x, torch.Generator().manual_seed(0))
    assert set(sample.unique().tolist()) <= {0.0, 1.0}
    stderr = torch.sqrt(p * (1 - p) / n)
    assert torch.all((sample.mean(0) - p).abs() <= 5 * stderr + 1e-12)
    assert sample[:, 0].sum() == 0 and sample[:, -1].sum() == n  # p = 0 and 1 are exact


def test_dynamic_binarization_is_seeded_and_resampled():
    """Property: the same seed repeats a draw, a second draw or another seed differs."""
    x = torch.full((50, 40), 0.5)
    generator = torch.Generator().manual_seed(3)
    first, second = dynamic_binarization(x, generator), dynamic_binarization(x, generator)
    assert not torch.equal(first, second)
    assert torch.equal(first, dynamic_binarization(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, dynamic_binarization(x, torch.Generator().manual_seed(4)))


def test_static_binarization_is_fixed_by_its_seed():
    """Property: static binarization is the same across calls, and differs between seeds."""
    x = torch.full((50, 40), 0.5)
    assert torch.equal(static_binarization(x, seed=1), static_binarization(x, seed=1))
    assert not torch.equal(static_binarization(x, seed=1), static_binarization(x, seed=2))


def test_derived_seeds_differ_per_key_and_are_stable():
    """Property: split seeds are distinct, deterministic, and valid torch seeds."""
    seeds = [derived_seed(0, split) for split in ("train", "valid", "test")]
    assert len(set(seeds)) == 3 and seeds == [
        derived_seed(0, s) for s in ("train", "valid", "test")
    ]
    assert derived_seed(0, "train") != derived_seed(1, "train")
    assert all(0 <= s < 2**63 for s in seeds)
    torch.Generator().manual_seed(seeds[0])


def test_threshold_binarization_matches_numpy():
    """Scipy-sklearn reference: numpy's (x > 0.5), with 0.5 itself mapping to 0."""
    x = torch.tensor([0.0, 0.25, 0.5, 0.5001, 1.0])
    expected = (x.numpy() > 0.5).astype(np.float32)
    np.testing.assert_array_equal(threshold_binarization(x).numpy(), expected)
    assert threshold_binarization(x).tolist() == [0, 0, 0, 1, 1]


def test_dequantize_keeps_the_level_and_adds_uniform_noise():
    """Scipy-sklearn reference: (k + u)/256 stays in level k and u passes a KS test vs U[0, 1)."""
    x = random_intensities(200, 50)
    y = dequantize(x, torch.Generator().manual_seed(0))
    k = torch.round(x * 255)
    assert torch.equal(torch.floor(y * 256), k)
    u = (y * 256 - k).flatten().numpy()
    assert u.min() >= 0 and u.max() < 1
    assert scipy.stats.kstest(u, "uniform").pvalue > 1e-3
    assert not torch.equal(y, dequantize(x, torch.Generator().manual_seed(1)))


def test_check_8bit_grid():
    """Contract: every k/255 passes; off-grid values or values outside [0, 1] raise ValueError."""
    check_8bit_grid(torch.arange(256, dtype=torch.float32) / 255, name="x")
    with pytest.raises(ValueError, match="Expected `x` to hold 8-bit values"):
        check_8bit_grid(torch.tensor([0.5 / 255]), name="x")
    with pytest.raises(ValueError, match="8-bit"):
        check_8bit_grid(torch.tensor([256 / 255]), name="x")


# --- TrainingStream / Dataset.evaluation_data -----------------------------------------


@pytest.mark.parametrize(
    "preprocessing",
    [
        "dynamic_binarization",
        "static_binarization",
        "threshold",
        "continuous",
        "8bit",
        "dequantized",
    ],
)
def test_train_batches_cover_each_example_once(preprocessing):
    """Contract: one epoch yields every training example exactly once, in batches of the size."""
    x = random_intensities(23, 8)
    dataset = make_dataset("continuous", x)
    raw = batches(dataset, 5, seed=0)
    assert [len(b) for b in raw] == [5, 5, 5, 5, 3]
    assert sorted_rows(torch.cat(raw)) == sorted_rows(x)
    processed = dataclasses.replace(dataset, preprocessing=preprocessing)
    once = epoch(processed, 5, seed=0)
    assert once.shape == x.shape
    assert torch.equal(once, epoch(processed, 5, seed=0))


def test_dynamic_binarization_resamples_every_epoch():
    """Property: identical examples get fresh binarizations in each epoch, with mean ~ intensity."""
    dataset = make_dataset("dynamic_binarization", torch.full((40, 25), 0.3))
    first, second = epoch(dataset, 16, seed=0), epoch(dataset, 16, seed=0, index=1)
    assert not torch.equal(first, second)
    both = torch.cat([first, second])
    assert abs(both.mean().item() - 0.3) < 5 * (0.3 * 0.7 / both.numel()) ** 0.5


def test_static_binarization_is_the_same_every_epoch():
    """Property: static binarization yields the same binary examples in every epoch."""
    dataset = make_dataset("static_binarization", random_intensities(30, 64, levels=False))
    first, second = epoch(dataset, 7, seed=0), epoch(dataset, 7, seed=0, index=1)
    assert not torch.equal(first, second)  # shuffled differently ...
    assert sorted_rows(first) == sorted_rows(second)  # ... but the same binary images
    assert sorted_rows(first) == sorted_rows(dataset.evaluation_data("train"))


def test_static_binarization_differs_per_split_and_seed():
    """Property: the splits get independent draws; another binarization_seed gives another one."""
    x = random_intensities(30, 64, levels=False)
    dataset = make_dataset("static_binarization", x, test=x.clone())
    assert not torch.equal(dataset.evaluation_data("train"), dataset.evaluation_data("test"))
    again = make_dataset("static_binarization", x, test=x.clone())
    assert torch.equal(dataset.evaluation_data("test"), again.evaluation_data("test"))
    other = make_dataset("static_binarization", x, test=x.clone(), binarization_seed=1)
    assert not torch.equal(dataset.evaluation_data("test"), other.evaluation_data("test"))


def test_dynamic_evaluation_data_is_the_seeded_burda_protocol():
    """Closed-form reference: evaluation data = Bernoulli(x) drawn with Generator(eval_seed)."""
    x = random_intensities(30, 64, levels=False)
    dataset = make_dataset("dynamic_binarization", x)
    expected = torch.bernoulli(x, generator=torch.Generator().manual_seed(123))
    assert torch.equal(dataset.evaluation_data("test"), expected)
    assert dataset.evaluation_data("test") is dataset.evaluation_data("test")  # cached
    other = make_dataset("dynamic_binarization", x, eval_seed=7)
    assert not torch.equal(other.evaluation_data("test"), expected)


def test_dequantized_dataset_resamples_training_noise_but_not_evaluation():
    """Property: training noise is fresh each epoch; evaluation noise is fixed by eval_seed."""
    x = random_intensities(20, 16)
    dataset = make_dataset("dequantized", x)
    assert sorted_rows(epoch(dataset, 20, seed=0)) != sorted_rows(epoch(dataset, 20, 0, index=1))
    fresh = make_dataset("dequantized", x)
    assert torch.equal(dataset.evaluation_data("valid"), fresh.evaluation_data("valid"))
    assert torch.equal(torch.floor(dataset.evaluation_data("valid") * 256), torch.round(x * 255))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"preprocessing": "binarize"}, ValueError, "preprocessing"),
        ({"splits": {"train": torch.zeros(2, 3), "test": torch.zeros(2, 3)}}, ValueError, "keys"),
        (
            {
                "splits": {
                    s: torch.zeros(2, 3, dtype=torch.float64) for s in ("train", "valid", "test")
                }
            },
            ValueError,
            "float32",
        ),
        ({"data_shape": (4,)}, ValueError, "shape"),
        (
            {"splits": {s: torch.full((2, 3), 2.0) for s in ("train", "valid", "test")}},
            ValueError,
            r"intensities in \[0, 1\]",
        ),
    ],
)
def test_dataset_rejects_malformed_fields(change, error, message):
    """Contract: a Dataset with a bad preprocessing, split set, dtype, shape or range raises."""
    fields = {
        "name": "toy",
        "data_shape": (3,),
        "labels": {},
        "preprocessing": "threshold",
        "checksum": "0" * 64,
        "source": "test",
        "splits": {s: torch.zeros(2, 3) for s in ("train", "valid", "test")},
    }
    with pytest.raises(error, match=message):
        Dataset(**{**fields, **change})


def test_8bit_dataset_rejects_off_grid_values():
    """Contract: 8bit and dequantized preprocessing need data on the k/255 grid."""
    with pytest.raises(ValueError, match="8-bit"):
        make_dataset("8bit", torch.rand(5, 4))


@pytest.mark.parametrize("batch_size", [0, True, 2.5])
def test_training_stream_rejects_bad_batch_sizes(batch_size):
    """Contract: a non-positive or non-int batch size raises, naming the argument."""
    dataset = make_dataset("continuous", torch.zeros(4, 2))
    with pytest.raises(ValueError, match="Expected `batch_size`"):
        TrainingStream(dataset, batch_size=batch_size, seed=0)


def test_evaluation_data_rejects_unknown_split():
    """Contract: an unknown split name raises ValueError listing the splits."""
    with pytest.raises(ValueError, match=r"one of \['train', 'valid', 'test'\]"):
        make_dataset("continuous", torch.zeros(4, 2)).evaluation_data("tset")
