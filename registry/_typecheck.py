"""Check plain YAML values against type hints, so specs fail early with a precise message.

Only the types a spec can carry are supported: bool, int, float, str, None, `Literal[...]`,
`tuple[T, ...]`, `X | Y`, `dict[str, T]` and frozen dataclasses (from a mapping). Lists from
YAML become tuples so that resolved specs
are hashable and immutable.
"""

import dataclasses
import types
import typing
from typing import Any


def _describe(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def check_value(path: str, value: Any, annotation: Any) -> Any:
    """Return `value` converted to `annotation`, or raise TypeError naming `path`.

    Args:
        path: Dotted location in the spec, used in the error message (e.g. ``model.latent_dim``).
        value: The value read from YAML or the command line.
        annotation: The declared type.
    """
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _check_union(path, value, typing.get_args(annotation))
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ValueError(f"Expected `{path}` to be one of {list(choices)}, but got {value!r}.")
        return value
    if origin is tuple:
        return _check_tuple(path, value, typing.get_args(annotation))
    if dataclasses.is_dataclass(annotation):
        return _check_dataclass(path, value, annotation)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"Expected `{path}` to be a mapping, but got {value!r}.")
        _, value_type = typing.get_args(annotation)
        return {str(k): check_value(f"{path}.{k}", v, value_type) for k, v in value.items()}
    return _check_scalar(path, value, annotation)


def _check_union(path: str, value: Any, options: tuple[Any, ...]) -> Any:
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return check_value(path, value, option)
        except (TypeError, ValueError) as error:
            errors.append(error)
    names = " or ".join(_describe(o) for o in options)
    raise TypeError(f"Expected `{path}` to be {names}, but got {value!r}.") from errors[-1]


def _check_tuple(path: str, value: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"Expected `{path}` to be a list, but got {value!r}.")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(check_value(f"{path}[{i}]", v, args[0]) for i, v in enumerate(value))
    if len(args) != len(value):
        raise ValueError(f"Expected `{path}` to have {len(args)} items, but got {len(value)}.")
    return tuple(
        check_value(f"{path}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args, strict=True))
    )


def _check_scalar(path: str, value: Any, annotation: Any) -> Any:
    if annotation is type(None):
        if value is not None:
            raise TypeError(f"Expected `{path}` to be null, but got {value!r}.")
        return None
    # NOTE: bool is a subclass of int; `latent_dim: true` must not pass as 1.
    if annotation in (int, float) and isinstance(value, bool):
        raise TypeError(f"Expected `{path}` to be {annotation.__name__}, but got {value!r}.")
    if annotation is float and isinstance(value, int):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads `1e-3` as a string; accept it as the number it plainly is.
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, annotation):
        raise TypeError(
            f"Expected `{path}` to be {_describe(annotation)}, but got {value!r} "
            f"({type(value).__name__})."
        )
    return value


def _check_dataclass(path: str, value: Any, cls: type) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise TypeError(
            f"Expected `{path}` to be a mapping of {cls.__name__} fields, but got {value!r}."
        )
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValueError(
            f"Expected keys of `{path}` to be among {allowed}, but got unknown {unknown}."
        )
    return cls(**{k: check_value(f"{path}.{k}", v, hints[k]) for k, v in value.items()})
