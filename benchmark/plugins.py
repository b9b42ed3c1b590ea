"""Plugins: modules outside vaebench that register models, loaded by name or by file path.

A plugin is named in a spec (``plugins: [my_models.py]``) or on the command line
(``--plugin my_models.py``); installed packages can instead declare the entry-point group
``vaebench.models``. Importing the plugin runs its ``@register_model`` decorators.
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
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise ValueError(
            f"Expected plugin {name!r} to be an importable module or a path to a .py file, "
            f"but it could not be imported ({error})."
        ) from None


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ValueError(f"Expected plugin file {path} to exist, but it does not.")
    name = f"vaebench_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # NOTE: needed so dataclasses and pickling can find the module
    spec.loader.exec_module(module)
    return module
