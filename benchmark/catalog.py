"""The model catalogue of ``vaebench list models``: family, paper, size and preset status.

Everything is read from the registry: the family is the module that registers the factory
(``registry/beta_vae.py`` -> ``beta_vae``), the paper is the citation in parentheses on that
module docstring's first lines, a preset is a factory registered with `register_model_preset`
(it wraps its base's), and the parameter count is that of the model built with every default,
on 1×28×28 images (or 784-dimensional vectors, for a model that takes only vectors).
"""

import inspect
import re
import sys
from dataclasses import dataclass

from registry._registry import MODELS, create_model

DATA_SHAPES = ((1, 28, 28), (784,))  # tried in order; the first a model accepts is reported
_CITATION = re.compile(r"\(([^()]*\b(?:19|20)\d\d[a-z]?)\)")


@dataclass(frozen=True)
class ModelEntry:
    """One row of the catalogue."""

    name: str
    family: str
    paper: str
    preset_of: str | None  # the base model of a preset, else None
    num_parameters: int | None  # at default settings on `data_shape`; None if it cannot be built
    data_shape: tuple[int, ...] | None


def model_paper(factory: object) -> str:
    """Return the citation in parentheses in the factory's module docstring (the first one with a
    year), italic titles removed and 3+ authors shortened (``Kingma & Welling, ICLR 2014``)."""
    module = sys.modules.get(getattr(factory, "__module__", ""), None)
    doc = (inspect.getdoc(module) or "").replace("\n", " ")
    first = doc.split("  ")[0]
    match = _CITATION.search(first) or _CITATION.search(doc)
    if match is None:
        return "—"
    citation = re.sub(r"\s*\*[^*]*\*,?", "", match.group(1)).strip(" ,")
    authors, comma, venue = citation.rpartition(", ")
    if "," in authors:  # three or more authors: the first one, et al.
        return f"{authors.split(',')[0]} et al., {venue}"
    return citation


def _parameters(name: str) -> tuple[int | None, tuple[int, ...] | None]:
    for shape in DATA_SHAPES:
        try:
            model = create_model(name, data_shape=shape)
        except (ValueError, TypeError):
            continue
        return sum(p.numel() for p in model.parameters()), shape
    return None, None


def _base_name(factory: object) -> str | None:
    wrapped = getattr(factory, "__wrapped__", None)
    if wrapped is None:
        return None
    return next((n for n in MODELS.names() if MODELS.get(n) is wrapped), None)


def model_catalog(pattern: str = "*") -> list[ModelEntry]:
    """Return a `ModelEntry` per registered model matching `pattern`, in natural sort order."""
    entries = []
    for name in MODELS.names(pattern):
        factory = MODELS.get(name)
        count, shape = _parameters(name)
        family = getattr(factory, "__module__", "").rpartition(".")[2]
        entries.append(
            ModelEntry(name, family, model_paper(factory), _base_name(factory), count, shape)
        )
    return entries


def catalog_lines(entries: list[ModelEntry]) -> list[str]:
    """Render the catalogue as aligned text columns: name, family, preset, parameters, paper."""
    rows = [("name", "family", "preset of", "params (1×28×28)", "paper")]
    for e in entries:
        shape = "" if e.data_shape in (None, DATA_SHAPES[0]) else f" on {e.data_shape}"
        count = "—" if e.num_parameters is None else f"{e.num_parameters:,}{shape}"
        rows.append((e.name, e.family, e.preset_of or "—", count, e.paper))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
