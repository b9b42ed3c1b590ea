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

from benchmark.spec import (
    RunSpec,
    apply_overrides,
    check_run_name,
    check_seed,
    check_spec_keys,
    read_yaml,
    resolve_spec,
)
from registry._registry import unknown_name_error
from registry._typecheck import check_value, short_repr

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


@dataclass(frozen=True)
class Job:
    """One line of `suite --list`: a run of the suite, resolved unless its plugins were not."""

    name: str
    seed: int
    hash: str | None  # None: the run names plugins, which listing does not import


def load_suite(
    name_or_path: str,
    *,
    seeds: list[int] | None = None,
    overrides: list[str] = (),
    budget: float | None = None,
) -> Suite:
    """Read a suite and expand it to resolved runs, one per (run, seed), in file order.

    Resolving a run imports its ``plugins:``, which runs their code.

    Args:
        name_or_path: A shipped suite name or a YAML path.
        seeds: Replace the suite's seeds.
        overrides: ``dotted.key=value`` overrides applied to every run (they change hashes).
        budget: Run this fraction of each protocol run's budget: ``train.steps`` becomes
            ``round(budget * train.paper_steps)``, so the schedule is the protocol's, cut short.
    """
    suite_name, description, raw_runs, device = _expand(name_or_path, seeds, overrides)
    runs = (resolve_spec(raw) for raw in raw_runs)
    if budget is not None:
        runs = (with_budget(spec, budget) for spec in runs)
    return Suite(suite_name, description, tuple(runs), device)


def list_jobs(
    name_or_path: str, *, seeds: list[int] | None = None, overrides: list[str] = ()
) -> list[Job]:
    """Expand a suite to its jobs without importing any plugin (`suite --list`).

    A run without plugins is resolved in full, so its hash is the one its record will carry; a
    run with plugins is only checked up to its models, and its hash is left unknown.
    """
    _, _, raw_runs, _ = _expand(name_or_path, seeds, overrides)
    jobs = []
    for raw in raw_runs:
        if raw.get("plugins"):
            check_spec_keys(raw)
            jobs.append(Job(check_run_name(raw["name"]), check_seed("seed", raw["seed"]), None))
        else:
            spec = resolve_spec(raw)
            jobs.append(Job(spec.name, spec.seed, spec.hash))
    return jobs


def _expand(
    name_or_path: str, seeds: list[int] | None, overrides: list[str]
) -> tuple[str, str, list[dict[str, Any]], str | None]:
    """Return the suite's name, description, raw run specs (runs x seeds, merged), device."""
    raw = read_yaml(suite_path(name_or_path))
    _check_suite(raw, name_or_path)
    suite_name = raw.get("name", Path(name_or_path).stem)
    chosen = seeds if seeds is not None else raw.get("seeds", [0])
    seeds = check_value("seeds", chosen, tuple[int, ...])
    if not seeds:
        raise ValueError(f"Expected suite {name_or_path} to list at least one seed, but got none.")
    runs = []
    for seed in seeds:
        check_seed("seeds", seed)
        for run in raw["runs"]:
            merged = apply_overrides(_deep_merge(raw.get("defaults") or {}, run), list(overrides))
            runs.append({**merged, "seed": seed, "suite": suite_name})
    device = raw.get("device")
    if device is not None and not isinstance(device, str):
        raise TypeError(
            f"Expected suite key `device` to be a string like cuda, but got {short_repr(device)}."
        )
    return suite_name, raw.get("description", ""), runs, device


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


def _check_suite(raw: Any, where: str) -> None:
    """Raise one line naming the key and the fix unless `raw` has the shape of a suite."""
    if not isinstance(raw, dict) or not isinstance(raw.get("runs"), list) or not raw["runs"]:
        raise ValueError(
            f"Expected suite {where} to be a mapping with a non-empty `runs` list, but got "
            f"{short_repr(raw)}."
        )
    unknown = sorted(str(key) for key in set(raw) - set(SUITE_KEYS))
    if unknown:
        raise ValueError(
            f"Expected suite keys among {list(SUITE_KEYS)}, but got unknown {short_repr(unknown)}."
        )
    check_value("name", raw.get("name", ""), str)
    check_value("description", raw.get("description", ""), str)
    if not isinstance(raw.get("defaults") or {}, dict):
        raise ValueError(
            f"Expected `defaults` of suite {where} to be a mapping of spec keys merged under "
            f"every run, but got {short_repr(raw['defaults'])}; "
            f"e.g. `defaults: {{train: {{steps: 100}}}}`."
        )
    for index, run in enumerate(raw["runs"]):
        if not isinstance(run, dict):
            raise ValueError(
                f"Expected `runs[{index}]` of suite {where} to be a mapping (a run spec), but "
                f"got {short_repr(run)}; e.g. `- {{name: vae, model: {{name: vae}}}}`."
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
