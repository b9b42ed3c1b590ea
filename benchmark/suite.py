"""Suites: a named list of run specs, expanded to runs x seeds before anything runs.

A suite file (``benchmark/suites/NAME.yaml``, or any path) looks like:

```yaml
name: quick
description: three models on digits, two seeds
seeds: [0, 1]
defaults:                    # deep-merged under every run
  dataset: {name: digits}
  train: {steps: 3000}
  eval: {elbo: {}, nll: {k: 1000}}
runs:                        # a `null` drops a default key, e.g. `eval: {nll: null}`
  - {name: vae, model: {name: vae, latent_dim: 8}}
  - {name: iwae-k5, model: {name: iwae, latent_dim: 8, num_samples: 5}}
```
"""

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.spec import RunSpec, apply_overrides, read_yaml, resolve_spec
from registry._registry import unknown_name_error

SUITES_DIR = Path(__file__).parent / "suites"
SUITE_KEYS = ("name", "description", "seeds", "device", "defaults", "runs")


@dataclass(frozen=True)
class Suite:
    """An expanded suite: its name, description and resolved runs (runs x seeds)."""

    name: str
    description: str
    runs: tuple[RunSpec, ...]
    device: str | None = None  # where its runs go by default; `--device` wins; not hashed


def list_suites() -> list[str]:
    """Return the names of the suites shipped in `benchmark/suites/`."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def suite_path(name_or_path: str) -> Path:
    """Resolve a suite name (``quick``) or a file path to the suite file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"Expected a suite file at {path}, but there is none.")
        return path
    if name_or_path not in list_suites():
        raise unknown_name_error("suite", name_or_path, list_suites())
    return SUITES_DIR / f"{name_or_path}.yaml"


def load_suite(
    name_or_path: str,
    *,
    seeds: list[int] | None = None,
    overrides: list[str] = (),
    budget: float | None = None,
) -> Suite:
    """Read a suite and expand it to resolved runs, one per (run, seed), in file order.

    Args:
        name_or_path: A shipped suite name or a YAML path.
        seeds: Replace the suite's seeds.
        overrides: ``dotted.key=value`` overrides applied to every run (they change hashes).
        budget: Run this fraction of each protocol run's budget: ``train.steps`` becomes
            ``round(budget * train.paper_steps)``, so the schedule is the protocol's, cut short.
    """
    raw = read_yaml(suite_path(name_or_path))
    _check_suite_keys(raw, name_or_path)
    suite_name = raw.get("name", Path(name_or_path).stem)
    runs = []
    for seed in seeds if seeds is not None else raw.get("seeds", [0]):
        for run in raw["runs"]:
            merged = _deep_merge(raw.get("defaults", {}), run)
            merged = apply_overrides(merged, list(overrides))
            spec = resolve_spec({**merged, "seed": seed, "suite": suite_name})
            runs.append(spec if budget is None else with_budget(spec, budget))
    device = raw.get("device")
    if device is not None and not isinstance(device, str):
        raise TypeError(
            f"Expected suite key `device` to be a string like cuda, but got {device!r}."
        )
    return Suite(suite_name, raw.get("description", ""), tuple(runs), device)


def with_budget(spec: RunSpec, budget: float) -> RunSpec:
    """Return `spec` trained for `budget` of its protocol's steps (``train.paper_steps``)."""
    if not 0 < budget <= 1:
        raise ValueError(f"Expected `--budget` to be a fraction in (0, 1], but got {budget!r}.")
    paper_steps = spec.train.paper_steps
    if paper_steps is None:
        raise ValueError(
            f"Expected run {spec.name!r} to state its protocol's budget (`train.paper_steps`) "
            f"for `--budget`, but it has none; set `train.steps` with `--set` instead."
        )
    raw = spec.to_dict()
    raw["train"]["steps"] = max(1, round(budget * paper_steps))
    return resolve_spec(raw)


def _check_suite_keys(raw: Any, where: str) -> None:
    if not isinstance(raw, dict) or not isinstance(raw.get("runs"), list) or not raw["runs"]:
        raise ValueError(f"Expected suite {where} to be a mapping with a non-empty `runs` list.")
    unknown = sorted(set(raw) - set(SUITE_KEYS))
    if unknown:
        raise ValueError(
            f"Expected suite keys among {list(SUITE_KEYS)}, but got unknown {unknown}."
        )


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Return `base` updated by `top`, merging nested mappings key by key.

    A ``null`` in `top` removes the key, so a run can drop a default (e.g. a metric). A mapping
    whose ``name`` differs (another model or dataset) replaces the default instead of merging,
    since settings of one dataset mean nothing to another.
    """
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if value is None:
            merged.pop(key, None)
        elif (
            isinstance(value, dict)
            and isinstance(merged.get(key), dict)
            and value.get("name", merged[key].get("name")) == merged[key].get("name")
        ):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
