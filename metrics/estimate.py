"""`Estimate`: a metric value that carries its uncertainty and the parameters that produced it.

A stochastic estimate is never a bare float: every metric a run records is an `Estimate` with
``{value, stderr, n, unit, higher_is_better, params, diagnostics}``. ``stderr`` is the standard
error of the mean over the ``n`` evaluated items (examples, points, chains), or None for a
deterministic quantity (a parameter count, a wall time).

Each estimate also says what it is (``kind``: an estimate, a lower or upper bound on the quantity
it is named after, or a diagnostic) and whether the metric's own diagnostics trust it
(``warning``: None when they do, else the reason, e.g. "83% of examples have PSIS k-hat > 0.7").
"""

import math
import typing
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

EstimateKind = Literal["estimate", "lower_bound", "upper_bound", "diagnostic"]
ESTIMATE_KINDS: tuple[str, ...] = typing.get_args(EstimateKind)


@dataclass(frozen=True)
class Estimate:
    """A recorded metric value.

    Attributes:
        value: The estimate, e.g. a mean over examples.
        stderr: Standard error of ``value`` (sd / sqrt(n), ddof 1), or None if not stochastic.
        n: Number of items averaged (1 for a single number).
        unit: ``nats``, ``bits/dim``, ``s``, ``count``, ``fraction`` ...
        higher_is_better: Direction for reports; None when neither is better (a diagnostic).
        params: Everything that produced the number (K, seed, split, ...).
        diagnostics: Side information (ESS, acceptance rates, per-unit vectors, ...).
        kind: What ``value`` is: an unbiased or consistent ``estimate``, a ``lower_bound`` or
            ``upper_bound`` on the named quantity, or a ``diagnostic`` with no target value.
        warning: None when the metric's own diagnostics trust the value; otherwise the reason
            they do not, shown beside the number in every report.
    """

    value: float
    stderr: float | None
    n: int
    unit: str
    higher_is_better: bool | None
    params: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    kind: EstimateKind = "estimate"
    warning: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ESTIMATE_KINDS:
            raise ValueError(
                f"Expected `kind` to be one of {ESTIMATE_KINDS}, but got {self.kind!r}."
            )

    @property
    def reliable(self) -> bool:
        """Whether the metric's own diagnostics trust the value (no warning)."""
        return self.warning is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Estimate":
        return cls(**data)


@dataclass(frozen=True)
class NotDefined:
    """A metric of a family that is not defined for this model, in place of its `Estimate`.

    Reports show it as "n/a" with the reason (e.g. the KL per dimension of a posterior that does
    not factorise over dimensions), never as a number that means nothing.
    """

    reason: str


def mean_estimate(
    values: Tensor,
    *,
    unit: str,
    higher_is_better: bool | None,
    params: dict[str, Any] | None = None,
    diagnostics: dict[str, Any] | None = None,
) -> Estimate:
    """Summarise per-item values as their mean with standard error sd / sqrt(n).

    Args:
        values: Per-item values, shape ``(N,)``; accumulated in float64.
        unit: Unit of the values.
        higher_is_better: Direction for reports.
        params: Parameters that produced the values.
        diagnostics: Extra information to keep.

    Raises:
        ValueError: if any value is not finite, naming the first offending index.
    """
    values = values.detach().double().flatten()
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        raise ValueError(
            f"Expected finite per-example values, but example {bad[0].item()} is "
            f"{values[bad[0]].item()} ({len(bad)} non-finite in total)."
        )
    n = values.numel()
    stderr = values.std(correction=1).item() / math.sqrt(n) if n > 1 else None
    return Estimate(
        values.mean().item(),
        stderr,
        n,
        unit,
        higher_is_better,
        dict(params or {}),
        dict(diagnostics or {}),
    )


def exact_value(
    value: float, *, unit: str, higher_is_better: bool | None, params: dict[str, Any] | None = None
) -> Estimate:
    """Wrap a deterministic number (a count, a wall time) as an `Estimate` with no stderr."""
    return Estimate(float(value), None, 1, unit, higher_is_better, dict(params or {}))
