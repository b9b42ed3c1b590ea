"""Evaluators: the one metric contract between a run's ``eval:`` spec section and `metrics/`.

Each file in this folder registers one evaluator per metric family with `@register_evaluator`,
which is where the family's contract lives (the torchmetrics idea, adapted):

- **Outputs, declared once.** ``outputs=(Output("nll", "nats", False), ...)``: each output's
  name, unit, direction and kind (an estimate, a lower or upper bound, or a diagnostic). Every
  returned `Estimate` is stamped with its declaration, so no metric repeats them per call.
- **Settings.** The ``config`` annotation of the function is a frozen dataclass, and that
  dataclass *is* the schema of the spec key of the same name (``eval: {nll: {k: 5000}}``); an
  evaluator whose metric has a settings dataclass subclasses it rather than copying its fields.
- **One return type.** ``dict[str, Estimate | NotDefined]``, checked against the declaration.
- **One seeding rule.** The evaluator runs under ``torch.random.fork_rng`` seeded with the run's
  seed, in eval mode and without gradients (a metric that needs gradients, such as HMC or the
  local q* fit, enables them itself). Randomness outside torch's global generator (NumPy
  classifiers, explicit generators) is derived from the same ``seed`` argument.
- **Reliability.** Each `Estimate` carries ``warning``: None when the metric's own diagnostics
  trust it, else the reason; the contract test checks it is a non-empty sentence or None.

Files here are imported automatically, so a new metric family needs exactly one new file, and
the contract test (``tests/test_evaluator_contract.py``) then covers it.
"""

import dataclasses
import functools
import importlib
import pkgutil
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from metrics.estimate import ESTIMATE_KINDS, Estimate, EstimateKind, NotDefined
from registry._registry import unknown_name_error
from registry.base import LatentVariableModel

Results = dict[str, Estimate | NotDefined]


@dataclass(frozen=True)
class Output:
    """One declared output of an evaluator.

    Attributes:
        name: Record name. With ``keyed``, the returned name is `name` followed by a key, e.g.
            ``fid[lenet-…]`` (the feature network it depends on) or ``active_units_group2``.
        unit: Unit of the value (``nats``, ``fraction``, ...).
        higher_is_better: Direction for reports; None for a diagnostic.
        kind: What the value is (`metrics.estimate.EstimateKind`).
        other_kinds: Kinds a model may turn it into, e.g. an NLL that is only an upper bound
            (-ELBO) when q(z|x) is a point mass. The metric then sets that kind itself.
        keyed: Whether the returned name carries a key after `name`.
    """

    name: str
    unit: str
    higher_is_better: bool | None
    kind: EstimateKind = "estimate"
    other_kinds: tuple[EstimateKind, ...] = ()
    keyed: bool = False

    def __post_init__(self) -> None:
        for kind in (self.kind, *self.other_kinds):
            if kind not in ESTIMATE_KINDS:
                raise ValueError(
                    f"Expected `kind` to be one of {ESTIMATE_KINDS}, but got {kind!r}."
                )


@dataclass(frozen=True)
class Evaluator:
    """A registered evaluator: its contracted function, settings dataclass and outputs."""

    name: str
    function: Callable[..., Results]
    config_type: type
    outputs: tuple[Output, ...]
    version: int

    def output(self, returned_name: str) -> Output:
        """Return the declaration of a returned name, or raise naming the declared ones."""
        for output in self.outputs:
            if output.name == returned_name and not output.keyed:
                return output
        for output in self.outputs:
            if output.keyed and returned_name.startswith(output.name):
                return output
        raise TypeError(
            f"Expected evaluator {self.name!r} to return only its declared outputs "
            f"{[o.name for o in self.outputs]}, but got {returned_name!r}."
        )


_EVALUATORS: dict[str, Evaluator] = {}


def register_evaluator(
    name: str, *, outputs: tuple[Output, ...], version: int = 1
) -> Callable[[Callable[..., Results]], Callable[..., Results]]:
    """Register an evaluator under the spec key `name` with its declared `outputs`.

    The decorated function ``(*, model, dataset, config, seed) -> dict`` computes the results;
    the returned (and registered) function runs it under the contract: seeded, in eval mode,
    without gradients, its results checked against `outputs` and stamped with their unit,
    direction, kind, the settings, the seed and `version` (bump it when numbers stop being
    comparable with older records). Duplicate names raise.
    """

    def decorator(compute: Callable[..., Results]) -> Callable[..., Results]:
        if name in _EVALUATORS:
            raise ValueError(f"Evaluator {name!r} is already registered; pick another name.")
        config_type = typing.get_type_hints(compute)["config"]

        @functools.wraps(compute)
        def run(*, model: LatentVariableModel, dataset: Any, config: Any, seed: int) -> Results:
            with _seeded_evaluation(model, seed):
                results = compute(model=model, dataset=dataset, config=config, seed=seed)
            return _conform(_EVALUATORS[name], results, config, dataset, seed)

        _EVALUATORS[name] = Evaluator(name, run, config_type, tuple(outputs), version)
        return run

    return decorator


@contextmanager
def _seeded_evaluation(model: LatentVariableModel, seed: int) -> Iterator[None]:
    """Fork torch's generators, seed them, and run `model` in eval mode without gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(seed)
            yield
    finally:
        model.train(was_training)


def _conform(
    evaluator: Evaluator, results: Results, config: Any, dataset: Any, seed: int
) -> Results:
    """Check `results` against the declaration and stamp each estimate with it."""
    if not isinstance(results, dict):
        raise TypeError(
            f"Expected evaluator {evaluator.name!r} to return a dict of Estimate | NotDefined, "
            f"but got {type(results).__name__}."
        )
    context = {
        **dataclasses.asdict(config),
        "seed": seed,
        "preprocessing": getattr(dataset, "preprocessing", None),
        "version": evaluator.version,
    }
    return {name: _stamp(evaluator, name, value, context) for name, value in results.items()}


def _stamp(
    evaluator: Evaluator, name: str, value: Estimate | NotDefined, context: dict[str, Any]
) -> Estimate | NotDefined:
    output = evaluator.output(name)
    if isinstance(value, NotDefined):
        return value
    if not isinstance(value, Estimate):
        raise TypeError(
            f"Expected {evaluator.name}/{name} to be an Estimate or NotDefined, but got "
            f"{type(value).__name__}."
        )
    kind = output.kind if value.kind == "estimate" else value.kind
    if kind not in (output.kind, *output.other_kinds):
        raise TypeError(
            f"Expected {evaluator.name}/{name} to be of kind {output.kind!r} (or one of "
            f"{output.other_kinds}), but got {value.kind!r}."
        )
    return dataclasses.replace(
        value,
        unit=output.unit,
        higher_is_better=output.higher_is_better,
        kind=kind,
        params={**context, **value.params},
    )


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def get_evaluator(name: str) -> Evaluator:
    """Return the evaluator for spec key `name`, or raise with close-match suggestions."""
    _import_all()
    if name not in _EVALUATORS:
        raise unknown_name_error("metric", name, list(_EVALUATORS))
    return _EVALUATORS[name]


def list_evaluators() -> list[str]:
    """Return the spec keys of all registered evaluators, sorted."""
    _import_all()
    return sorted(_EVALUATORS)
