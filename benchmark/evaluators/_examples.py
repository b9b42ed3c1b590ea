"""The examples an evaluator scores, and the model that scores them.

Evaluators score "the first N evaluation examples of a split". A label-conditional model
(``conditions_on_labels``, the CVAE) is a model of p(x|y), so it is returned bound to the labels
of exactly those examples; metric code then sees one model per row (taking each block's model
with ``select``) and needs no special case. Every other model is returned as it is.
"""

import torch
from torch import Tensor

from benchmark.datasets.base import Dataset
from registry.base import LatentVariableModel


def evaluation_examples(
    model: LatentVariableModel, dataset: Dataset, split: str, num_examples: int | None
) -> tuple[LatentVariableModel, Tensor]:
    """Return the model that scores them, and the first `num_examples` examples of `split`.

    The examples are on the model's device; None takes the whole split.
    """
    x = dataset.evaluation_data(split)
    if num_examples is not None and not 1 <= num_examples <= len(x):
        raise ValueError(
            f"Expected `num_examples` to be between 1 and the {len(x)} examples of split "
            f"{split!r}, or null for all, but got {num_examples}."
        )
    x = x[:num_examples].to(next(model.parameters()).device)
    return bind_labels(model, dataset, split, len(x)), x


def bind_labels(
    model: LatentVariableModel, dataset: Dataset, split: str, num_rows: int
) -> LatentVariableModel:
    """Bind a label-conditional `model` to the labels of the first `num_rows` examples of `split`.

    Past the end of the split the labels repeat from its start (so 10,000 generated images get
    the test set's class frequencies). Models that do not condition on labels are returned as is.
    """
    if not model.conditions_on_labels:
        return model
    labels = dataset.split_labels(split)
    rows = torch.arange(num_rows) % len(labels)  # (num_rows,)
    return model.conditioned_on(labels[rows].to(next(model.parameters()).device))
