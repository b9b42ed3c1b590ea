"""Registries of named factories, after timm's `_registry.py`: decorator, create, list.

A factory is a function with keyword-only, type-annotated parameters. Its signature *is* the
schema of its spec block (``model:`` or ``dataset:``): `Registry.resolve` checks names and types
and fills in defaults, so a resolved spec (and its hash) lists every setting. Models and datasets
use the same machinery; metrics are not registered, they are plain functions.
"""

import difflib
import fnmatch
import functools
import inspect
import re
import typing
from collections.abc import Callable
from typing import Any

from registry._typecheck import check_sizes, check_value, short_repr


class Registry:
    """Named factories of one kind (``model`` or ``dataset``).

    Args:
        kind: What is registered, used in messages and spec paths.
        injected: Factory arguments supplied by the harness, not the spec (e.g. ``data_shape``).
        zero_allowed: Setting names whose integers may be 0; every other integer setting must
            be >= 1 (`check_sizes`). None: every integer may be 0 (but none negative).
    """

    def __init__(
        self,
        kind: str,
        injected: tuple[str, ...] = (),
        zero_allowed: tuple[str, ...] | None = None,
    ) -> None:
        self.kind = kind
        self.injected = injected
        self.zero_allowed = zero_allowed
        self._factories: dict[str, Callable[..., Any]] = {}
        self.before_lookup: Callable[[], None] = lambda: None

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Return a decorator registering a factory under `name`; a duplicate name raises."""
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"Expected {self.kind} name to be snake_case, but got {name!r}.")

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories:
                existing = self._factories[name]
                raise ValueError(
                    f"{self.kind.capitalize()} {name!r} is already registered by "
                    f"{existing.__module__}.{existing.__qualname__}; pick another name."
                )
            self._check_signature(name, factory)
            self._factories[name] = factory
            return factory

        return decorator

    def register_preset(self, name: str, *, base: str, doc: str, **defaults: Any) -> None:
        """Register `name` as factory `base` with other defaults (e.g. a paper's configuration).

        The preset's signature is the base's with `defaults` replaced, so specs, resolution and
        hashing treat it like any factory; an unknown default name raises.

        Args:
            name: Registry name of the preset, e.g. ``"wae_mmd_paper"``.
            base: A registered name whose factory builds the object.
            doc: One line saying what the preset reproduces.
            **defaults: Parameter defaults that differ from the base factory's.
        """
        factory = self._factories[base]
        signature = inspect.signature(factory)
        unknown = sorted(set(defaults) - set(signature.parameters))
        if unknown:
            raise ValueError(f"Preset {name!r}: {unknown} are not parameters of {base!r}.")

        @functools.wraps(factory)
        def preset(**settings: Any) -> Any:
            return factory(**settings)

        preset.__signature__ = signature.replace(
            parameters=[
                p.replace(default=defaults.get(p.name, p.default))
                for p in signature.parameters.values()
            ]
        )
        preset.__doc__ = doc
        preset.__qualname__ = preset.__name__ = name
        self.register(name)(preset)

    def _check_signature(self, name: str, factory: Callable[..., Any]) -> None:
        for param in inspect.signature(factory).parameters.values():
            if param.kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(
                    f"{self.kind} {name!r}: parameter {param.name!r} must be keyword-only."
                )
            if param.annotation is inspect.Parameter.empty:
                raise TypeError(
                    f"{self.kind} {name!r}: parameter {param.name!r} needs a type hint."
                )

    def names(self, pattern: str = "*") -> list[str]:
        """Return registered names matching a shell-style wildcard, in natural sort order."""
        self.before_lookup()
        matches = (n for n in self._factories if fnmatch.fnmatch(n, pattern))
        return sorted(matches, key=_natural_key)

    def get(self, name: str) -> Callable[..., Any]:
        """Return the factory registered under `name`, or raise with close-match suggestions."""
        self.before_lookup()
        if not isinstance(name, str):
            raise TypeError(
                f"Expected `{self.kind}.name` to be a {self.kind} name (a string), but got "
                f"{short_repr(name)}; run `vaebench list {self.kind}s` to see them all."
            )
        if name not in self._factories:
            raise unknown_name_error(self.kind, name, list(self._factories))
        return self._factories[name]

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """Return the spec-settable parameters of a factory, with resolved type hints."""
        factory = self.get(name)
        hints = typing.get_type_hints(factory)
        params = inspect.signature(factory).parameters.values()
        return {
            p.name: p.replace(annotation=hints[p.name])
            for p in params
            if p.name not in self.injected
        }

    def resolve(self, name: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Check `settings` against the factory signature and fill in every default.

        Raises:
            ValueError: on an unknown key (listing the allowed ones) or a missing required key.
            TypeError: on a value of the wrong type.
        """
        params = self.parameters(name)
        unknown = sorted(str(key) for key in set(settings) - set(params))
        if unknown:
            raise ValueError(
                f"Expected settings of {self.kind} {name!r} to be among {sorted(params)}, "
                f"but got unknown {short_repr(unknown)}."
            )
        resolved = {}
        for key, param in params.items():
            if key in settings:
                resolved[key] = check_value(f"{self.kind}.{key}", settings[key], param.annotation)
            elif param.default is inspect.Parameter.empty:
                raise ValueError(
                    f"Expected `{self.kind}.{key}` to be set for {name!r}, but it is missing."
                )
            else:
                resolved[key] = param.default
        zero_allowed = set(params) if self.zero_allowed is None else set(self.zero_allowed)
        check_sizes(self.kind, resolved, zero_allowed=zero_allowed)
        return resolved

    def create(self, name: str, **settings: Any) -> Any:
        """Build the object registered under `name` from validated settings plus injected args."""
        injected = {k: settings.pop(k) for k in self.injected if k in settings}
        return self.get(name)(**injected, **self.resolve(name, settings))


def _natural_key(text: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def unknown_name_error(kind: str, name: str, known: list[str]) -> ValueError:
    """Build the error for an unknown registry name, with close-match suggestions."""
    close = (
        difflib.get_close_matches(str(name), known, n=3, cutoff=0.5) if len(str(name)) < 200 else []
    )
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"Expected `{kind}` to be a registered {kind} name, but got {short_repr(name)}.{hint} "
        f"Run `vaebench list {kind}s` to see them all."
    )


# Model settings that count optional parts, so 0 means "none"; every other count must be >= 1.
MODEL_ZERO_ALLOWED = (
    "num_residual_blocks",
    "cells_per_group",
    "preprocess_downsamples",
    "capacity_steps",
    "num_flows",
    "context_dim",
    "max_shift",
    "anneal_steps",
)
MODELS = Registry("model", injected=("data_shape",), zero_allowed=MODEL_ZERO_ALLOWED)


def _load_model_plugins() -> None:
    """Import `vaebench.models` entry points once, so installed plugins are listed."""
    MODELS.before_lookup = lambda: None
    from importlib.metadata import entry_points

    for entry_point in entry_points(group="vaebench.models"):
        entry_point.load()


MODELS.before_lookup = _load_model_plugins


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a model factory under `name`; a duplicate name raises ValueError."""
    return MODELS.register(name)


def register_model_preset(name: str, *, base: str, doc: str, **defaults: Any) -> None:
    """Register model `name` as model `base` with other defaults (`Registry.register_preset`)."""
    MODELS.register_preset(name, base=base, doc=doc, **defaults)


def create_model(name: str, **hyperparameters: Any) -> Any:
    """Build the model registered under `name`; ``data_shape`` plus typed hyperparameters."""
    return MODELS.create(name, **hyperparameters)


def list_models(pattern: str = "*") -> list[str]:
    """List registered model names matching a wildcard, e.g. ``list_models("*vae")``."""
    return MODELS.names(pattern)


def resolve_hyperparameters(name: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Return the full hyperparameters of model `name`: validated overrides plus defaults."""
    return MODELS.resolve(name, hyperparameters)
