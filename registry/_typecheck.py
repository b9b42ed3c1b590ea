"""Check plain YAML values against type hints, so specs fail early with a precise message.

Only the types a spec can carry are supported: bool, int, float, str, None, `Literal[...]`,
`tuple[T, ...]`, `X | Y`, `dict[str, T]` and frozen dataclasses (from a mapping). Lists from
YAML become tuples so that resolved specs
are hashable and immutable.
"""

import dataclasses
import math
import reprlib
import types
import typing
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # torch seeds and sizes are int64

# NOTE: error messages print user values through this, so a huge or deeply nested value (a YAML
# alias bomb) yields a short message instead of an expansion of gigabytes.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 60, 60, 40
_SHORT.maxdict = _SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = 6


class OutOfRange(ValueError):
    """A number that JSON or int64 cannot hold (NaN, infinity, 2**63 and above)."""


def short_repr(value: Any) -> str:
    """Return a repr of `value` of at most about 100 characters, for error messages."""
    return _SHORT.repr(value)


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
            raise ValueError(
                f"Expected `{path}` to be one of {list(choices)}, but got {short_repr(value)}."
            )
        return value
    if origin is tuple:
        return _check_tuple(path, value, typing.get_args(annotation))
    if dataclasses.is_dataclass(annotation):
        return _check_dataclass(path, value, annotation)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"Expected `{path}` to be a mapping, but got {short_repr(value)}.")
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
        except OutOfRange:
            raise
        except (TypeError, ValueError) as error:
            errors.append(error)
    names = " or ".join(_describe(o) for o in options)
    raise TypeError(f"Expected `{path}` to be {names}, but got {short_repr(value)}.") from errors[
        -1
    ]


def _check_tuple(path: str, value: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"Expected `{path}` to be a list, but got {short_repr(value)}.")
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
            raise TypeError(f"Expected `{path}` to be null, but got {short_repr(value)}.")
        return None
    # NOTE: bool is a subclass of int; `latent_dim: true` must not pass as 1.
    if annotation in (int, float) and isinstance(value, bool):
        raise TypeError(
            f"Expected `{path}` to be {annotation.__name__}, but got {short_repr(value)}."
        )
    if annotation is float and isinstance(value, int):
        value = _float_from_int(path, value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads `1e-3` as a string; accept it as the number it plainly is.
            value = float(value)
        except ValueError:
            pass
    if not isinstance(value, annotation):
        raise TypeError(
            f"Expected `{path}` to be {_describe(annotation)}, but got {short_repr(value)} "
            f"({type(value).__name__})."
        )
    check_number(path, value)
    return value


def _float_from_int(path: str, value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        raise OutOfRange(
            f"Expected `{path}` to be a finite number, but got an integer of "
            f"{len(str(abs(value)))} digits; write a value below 1e308."
        ) from None


def check_number(path: str, value: Any) -> None:
    """Raise ValueError if `value` is a non-finite float or an int outside int64.

    JSON (records, hashes) has no NaN or infinity, and torch stores seeds and sizes as int64, so
    either would fail later with a message that names neither the setting nor the fix.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise OutOfRange(
            f"Expected `{path}` to be a finite number, but got {value}; write a finite value."
        )
    if isinstance(value, int) and not isinstance(value, bool):
        if not INT64_MIN <= value <= INT64_MAX:
            raise OutOfRange(
                f"Expected `{path}` to fit in 64 bits (below 2**63), but got "
                f"{short_repr(value)}; use a smaller integer."
            )


def _check_dataclass(path: str, value: Any, cls: type) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise TypeError(
            f"Expected `{path}` to be a mapping of {cls.__name__} fields, "
            f"but got {short_repr(value)}."
        )
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in set(value) - set(allowed))
    if unknown:
        raise ValueError(
            f"Expected keys of `{path}` to be among {allowed}, but got unknown "
            f"{short_repr(unknown)}."
        )
    checked = {k: check_value(f"{path}.{k}", v, hints[k]) for k, v in value.items()}
    try:
        return cls(**checked)
    except (ValueError, TypeError) as error:  # the dataclass's own check (`__post_init__`)
        if f"`{path}" in str(error):
            raise
        raise type(error)(f"{error} (in `{path}`)") from None


def check_sizes(path: str, value: Any, *, zero_allowed: typing.Collection[str] = ()) -> None:
    """Raise ValueError unless every count in `value` is >= 1 and every weight is >= 0.

    A size, count or rate of zero or below does not fail in torch: it builds a degenerate model
    (a zero-width layer), records an untrained one, or runs gradient ascent. So every integer
    setting must be >= 1 (>= 0 where its name is in `zero_allowed` or ends in ``seed``) and
    every float >= 0, recursively through mappings, lists and dataclasses.

    Args:
        path: Dotted location of `value` in the spec, for the message.
        value: A resolved setting.
        zero_allowed: Setting names whose integers may be 0 (e.g. ``num_residual_blocks``).
    """
    name = path.rsplit(".", 1)[-1].split("[", 1)[0]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        for key, item in value.items():
            check_sizes(f"{path}.{key}", item, zero_allowed=zero_allowed)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_sizes(f"{path}[{i}]", item, zero_allowed=zero_allowed)
    elif isinstance(value, int) and not isinstance(value, bool):
        least = 0 if name in zero_allowed or name.endswith("seed") else 1
        if value < least:
            raise ValueError(
                f"Expected `{path}` to be an integer >= {least}, but got {value}; "
                f"use {least} or more."
            )
    elif isinstance(value, float) and value < 0:
        raise ValueError(
            f"Expected `{path}` to be >= 0, but got {value}; use a non-negative value."
        )
