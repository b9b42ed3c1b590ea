"""Plugins: modules outside vaebench that register models, loaded by name or by file path.

A plugin is named in a spec (``plugins: [my_models.py]``) or on the command line
(``--plugin my_models.py``); installed packages can instead declare the entry-point group
``vaebench.models``. Importing the plugin runs its ``@register_model`` decorators.

NOTE: importing a plugin runs its code with your permissions. A spec or suite with ``plugins:``
is code: run only those you trust. ``suite --list`` imports no plugin.
"""

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_LOADED: dict[str, ModuleType] = {}


def import_plugin(plugin: str) -> ModuleType:
    """Import a plugin given as a dotted module name or a path to a ``.py`` file, once.

    Raises:
        ValueError: when the module or file cannot be found, naming what was tried.
    """
    key = str(Path(plugin).resolve()) if plugin.endswith(".py") else plugin
    if key in _LOADED:
        return _LOADED[key]
    module = _import_file(Path(plugin)) if plugin.endswith(".py") else _import_module(plugin)
    _LOADED[key] = module
    return module


def _import_module(name: str) -> ModuleType:
    if not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(
            f"Expected plugin {name[:100]!r} to be a dotted module name or a path to a .py file."
        )
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise ValueError(
            f"Expected plugin {name!r} to be an importable module or a path to a .py file, "
            f"but it could not be imported ({error})."
        ) from None
    except Exception as error:  # noqa: BLE001  the plugin's own code failed
        raise ValueError(_failure(name, error)) from None


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ValueError(f"Expected plugin file {path} to exist, but it does not.")
    name = f"vaebench_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # NOTE: needed so dataclasses and pickling can find the module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001  a syntax error or the plugin's own code failed
        sys.modules.pop(name, None)
        raise ValueError(_failure(str(path), error)) from None
    return module


def _failure(plugin: str, error: Exception) -> str:
    """Describe a plugin that failed to import, in one line with its file and line."""
    if isinstance(error, SyntaxError):
        where = f"line {error.lineno}: {error.msg}"
    else:
        first = (str(error).splitlines() or [""])[0][:200]
        where = f"{type(error).__name__}: {first}"
    return f"Expected plugin {plugin} to import cleanly, but it failed ({where}); fix the plugin."
