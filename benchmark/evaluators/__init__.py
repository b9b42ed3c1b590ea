"""Evaluators: the glue from a run's ``eval:`` spec section to the metric functions in `metrics/`.

Each file in this folder registers one evaluator per metric family with `@register_evaluator`.
An evaluator is a keyword-only function ``(model, dataset, config, seed) -> dict[str, Estimate]``
whose ``config`` annotation is a frozen dataclass: that dataclass is the schema of the spec key
of the same name (``eval: {nll: {k: 5000}}``). The maths lives in `metrics/`; an evaluator only
picks the data split, seeds the estimator and names the results.

Files here are imported automatically, so a new metric family needs exactly one new file.
"""

import importlib
import pkgutil
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from registry._registry import unknown_name_error


@dataclass(frozen=True)
class Evaluator:
    """A registered evaluator: its function and the dataclass of its spec section."""

    name: str
    function: Callable[..., dict[str, Any]]
    config_type: type


_EVALUATORS: dict[str, Evaluator] = {}


def register_evaluator(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an evaluator function under the spec key `name`; duplicates raise."""

    def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
        if name in _EVALUATORS:
            raise ValueError(f"Evaluator {name!r} is already registered; pick another name.")
        config_type = typing.get_type_hints(function)["config"]
        _EVALUATORS[name] = Evaluator(name, function, config_type)
        return function

    return decorator


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
