"""``vaebench compare NEW --against A,B --suite S``: judge a new variant against baselines.

Selection. NEW and each baseline name a run of the suite (its ``name:``), or else a model
registry name used by exactly one run of the suite. NEW may also be a registered model that no
run of the suite uses (typically one a plugin registers): it then runs with the first baseline's
settings: dataset, training budget, evaluators, seeds, and those model hyperparameters that
NEW's factory accepts (the others are dropped and listed in the report).

Running. The selected specs, 5 training seeds per side unless ``--seeds`` says otherwise, go
through an executor exactly as a suite's runs do (`benchmark.executors`: a local process pool by
default, ``--executor serial|ray``), which reuses an existing ok record with the same spec hash,
so a repeated compare trains nothing and only re-renders the report.

Endpoints, declared before anything runs (`Endpoints`). The **primary** endpoint is the test NLL
(``nll/nll``) unless ``--metrics`` names others; **secondary** endpoints (ELBO, active units,
FID) are reported as exploratory. Statistics (`benchmark.stats`), per endpoint and baseline:

- across training seeds: Δ = mean(NEW) − mean(baseline), Welch's t-test and its 95% CI, and the
  smallest difference detectable at 80% power given the observed seed spread (a Δ below it may
  be real but missed: run more seeds);
- for a primary metric whose evaluator keeps per-example values (the NLL), a paired bootstrap
  over test examples, which measures evaluation noise, not seed-to-seed variation;
- multiplicity: Holm's step-down correction within the primary family only (the Welch tests of
  the primary endpoints against every baseline; the bootstrap rows form their own Holm family),
  and Benjamini–Hochberg q-values for the secondary endpoints. A difference is called
  significant when its adjusted p is below α = 0.05.
"""

import argparse
import difflib
import fnmatch
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmark.atomic import safe_file_stem
from benchmark.leaderboard import format_number
from benchmark.records import RunRecord, atomic_write_text
from benchmark.runner import RunOptions
from benchmark.spec import RunSpec, resolve_spec
from benchmark.stats import (
    ALPHA,
    POWER,
    Difference,
    benjamini_hochberg,
    holm_adjust,
    minimum_detectable_difference,
    paired_bootstrap_difference,
    welch_test,
)
from benchmark.suite import Suite, load_suite
from registry._registry import MODELS

if TYPE_CHECKING:
    from benchmark.executors import Executor

__all__ = ["Difference", "holm_adjust", "paired_bootstrap_difference", "welch_difference"]

NLL = ("nll", "nll")
DEFAULT_SEEDS = (0, 1, 2, 3, 4)  # 5 training seeds per side: Welch with about 8 df
PRIMARY = ("nll/nll",)
# fid* matches every feature network's FID, e.g. fid[lenet-ab89def4f8ce]
SECONDARY = ("elbo/elbo", "active_units/active_units", "sample_quality/fid*")
# Estimator parameters that must agree before per-example values can be paired.
PAIRING_KEYS = ("split", "num_examples", "seed", "eval_seed", "preprocessing", "k")
welch_difference = welch_test  # the name earlier versions exported


@dataclass(frozen=True)
class Endpoints:
    """The endpoints of a comparison, declared before anything runs: ``family/metric`` patterns."""

    primary: tuple[str, ...] = PRIMARY
    secondary: tuple[str, ...] = SECONDARY

    @classmethod
    def declare(cls, metrics: list[str] | None) -> "Endpoints":
        """Return the default endpoints, or `metrics` as the primary family (``--metrics``)."""
        primary = tuple(metrics) if metrics else PRIMARY
        return cls(primary, tuple(p for p in SECONDARY if p not in primary))

    def role(self, key: tuple[str, str]) -> str | None:
        """Return ``primary``, ``secondary`` or None for a (family, metric)."""
        name = "/".join(key)
        for role, patterns in (("primary", self.primary), ("secondary", self.secondary)):
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                return role
        return None


@dataclass(frozen=True)
class Comparison:
    """One test of NEW against one baseline on one metric."""

    baseline: str
    family: str
    metric: str
    unit: str
    higher_is_better: bool | None
    method: str  # "welch" or "paired bootstrap"
    new_values: tuple[float, ...]
    baseline_values: tuple[float, ...]
    difference: Difference
    endpoint: str = "primary"  # or "secondary"
    p_adjusted: float | None = None  # Holm (primary, bootstrap) or Benjamini–Hochberg (secondary)
    detectable: float | None = None  # smallest |Δ| found with 80% power, from the seed spread

    @property
    def family_of_tests(self) -> str:
        """Return the multiplicity family: primary Welch, primary bootstrap, or secondary."""
        return "secondary" if self.endpoint == "secondary" else f"primary {self.method}"


def detectable_difference(difference: Difference) -> float | None:
    """Return the smallest difference Welch's test detects at 80% power, or None without one."""
    if difference.standard_error is None or difference.df is None:
        return None
    return minimum_detectable_difference(difference.standard_error, difference.df, power=POWER)


def paired_per_example(
    new: list[RunRecord], baseline: list[RunRecord], *, metric: tuple[str, str] = NLL
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Return the per-example values of both sides on their common seeds, checked to be paired.

    Returns:
        ``(new (S, N), baseline (S, N), seeds)``.

    Raises:
        ValueError: when a record lacks per-example values, when the seeds do not overlap, or when
            the two sides were evaluated on different examples (length, split, seed, data).
    """
    by_seed = [{r.seed: r for r in side} for side in (new, baseline)]
    seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
    if not seeds:
        raise ValueError(
            f"Expected NEW and the baseline to share seeds for pairing, but got "
            f"{sorted(by_seed[0])} and {sorted(by_seed[1])}."
        )
    pairs = [_paired_values(by_seed[0][s], by_seed[1][s], metric) for s in seeds]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), seeds


def _paired_values(
    new: RunRecord, baseline: RunRecord, metric: tuple[str, str]
) -> tuple[list[float], list[float]]:
    values = [_per_example(r, metric) for r in (new, baseline)]
    if len(values[0]) != len(values[1]):
        raise ValueError(
            f"Expected per-example {metric[1]} of equal length to pair them, but "
            f"{_who(new)} has {len(values[0])} and {_who(baseline)} {len(values[1])}."
        )
    params = [r.metric(*metric).params for r in (new, baseline)]
    for key in PAIRING_KEYS:
        if params[0].get(key) != params[1].get(key):
            raise ValueError(
                f"Expected both sides evaluated with the same `{key}` to pair examples, "
                f"but got {params[0].get(key)!r} and {params[1].get(key)!r}."
            )
    checksums = [r.dataset.checksum for r in (new, baseline)]
    if checksums[0] != checksums[1]:
        raise ValueError(
            f"Expected both sides on the same data, but the checksums differ: {checksums}."
        )
    return values[0], values[1]


def _per_example(record: RunRecord, metric: tuple[str, str]) -> list[float]:
    values = record.metric(*metric).diagnostics.get("per_example")
    if values is None:
        raise ValueError(
            f"Expected per-example values in diagnostics['per_example'] of `{metric[1]}` in "
            f"{_who(record)} for the paired bootstrap, but there are none (the nll evaluator keeps "
            f"them for at most 10,000 examples). Re-run with --force, or pass --no-bootstrap."
        )
    return values


def _who(record: RunRecord) -> str:
    return f"run {record.spec['name']!r} seed {record.spec['seed']}"


def _ok(records: list[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.status == "ok"]


def recorded_metrics(records: list[RunRecord]) -> dict[tuple[str, str], tuple[str, bool | None]]:
    """Return {(family, metric): (unit, higher_is_better)} for every metric the records hold."""
    return {
        (family, name): (e.unit, e.higher_is_better)
        for r in records
        for family, metrics in r.metrics.items()
        for name, e in metrics.items()
    }


def compare_records(
    new: list[RunRecord],
    baselines: dict[str, list[RunRecord]],
    *,
    endpoints: Endpoints | None = None,
    bootstrap: bool = True,
    num_resamples: int = 10_000,
    bootstrap_seed: int = 0,
    metrics: list[str] | None = None,
) -> list[Comparison]:
    """Compare NEW's ok records with each baseline's on the declared endpoints.

    Args:
        new: NEW's records, one per seed.
        baselines: Baseline name -> its records.
        endpoints: The primary and secondary endpoints; default `Endpoints.declare(metrics)`.
        bootstrap: Add the paired bootstrap of each primary metric with per-example values.
        num_resamples: Bootstrap resamples B.
        bootstrap_seed: Seed of the bootstrap's numpy Generator.
        metrics: ``family/metric`` patterns making up the primary endpoint (``--metrics``).

    Returns:
        Per baseline: primary Welch rows, primary bootstrap rows, then secondary Welch rows;
        p-values adjusted within their family (Holm for each primary family, BH for secondary).
    """
    endpoints = endpoints or Endpoints.declare(metrics)
    comparisons, new_ok = [], _ok(new)
    for name, records in baselines.items():
        ok = _ok(records)
        shared = recorded_metrics(new_ok).keys() & recorded_metrics(ok).keys()
        primary = sorted(k for k in shared if endpoints.role(k) == "primary")
        secondary = sorted(k for k in shared if endpoints.role(k) == "secondary")
        comparisons += [_welch(name, new_ok, ok, key, "primary") for key in primary]
        if bootstrap:
            comparisons += [
                _bootstrap(name, new_ok, ok, key, num_resamples, bootstrap_seed)
                for key in primary
                if _has_per_example(new_ok + ok, key)
            ]
        comparisons += [_welch(name, new_ok, ok, key, "secondary") for key in secondary]
    return adjust_p_values(comparisons)


def _has_per_example(records: list[RunRecord], key: tuple[str, str]) -> bool:
    # NOTE: only the NLL's per-example values are known to be paired by example order.
    return key == NLL and all(r.metric(*key) is not None for r in records)


def _welch(
    name: str, new: list[RunRecord], baseline: list[RunRecord], key: tuple[str, str], role: str
) -> Comparison:
    a = tuple(r.metric(*key).value for r in new if r.metric(*key) is not None)
    b = tuple(r.metric(*key).value for r in baseline if r.metric(*key) is not None)
    unit, higher = recorded_metrics(new)[key]
    difference = welch_test(list(a), list(b))
    return Comparison(
        name, *key, unit, higher, "welch", a, b, difference, role,
        detectable=detectable_difference(difference),
    )  # fmt: skip


def _bootstrap(
    name: str,
    new: list[RunRecord],
    baseline: list[RunRecord],
    key: tuple[str, str],
    num_resamples: int,
    seed: int,
) -> Comparison:
    x, y, _ = paired_per_example(new, baseline, metric=key)  # (S, N) each
    difference = paired_bootstrap_difference(x, y, num_resamples=num_resamples, seed=seed)
    unit, higher = recorded_metrics(new)[key]
    return Comparison(
        name, *key, unit, higher, "paired bootstrap", tuple(x.mean(1)), tuple(y.mean(1)),
        difference, "primary",
    )  # fmt: skip


def adjust_p_values(comparisons: list[Comparison]) -> list[Comparison]:
    """Adjust p-values within each family of tests: Holm for the primary Welch tests, Holm for
    the primary bootstrap tests, Benjamini–Hochberg for the secondary (exploratory) ones."""
    result = list(comparisons)
    for family in {c.family_of_tests for c in comparisons}:
        tested = [
            i
            for i, c in enumerate(comparisons)
            if c.family_of_tests == family and c.difference.p_value is not None
        ]
        adjust = benjamini_hochberg if family == "secondary" else holm_adjust
        adjusted = adjust([comparisons[i].difference.p_value for i in tested])
        for i, p in zip(tested, adjusted, strict=True):
            result[i] = replace(result[i], p_adjusted=p)
    return result


@dataclass(frozen=True)
class Selection:
    """The specs to compare: NEW's and each baseline's, one per seed, and how NEW was chosen."""

    new: str
    new_specs: tuple[RunSpec, ...]
    baselines: dict[str, tuple[RunSpec, ...]]
    derived_from: str | None = None  # the baseline whose settings a suite-less NEW model borrowed
    dropped: tuple[str, ...] = ()  # that baseline's hyperparameters NEW's factory does not accept


def suite_runs(suite: Suite, name: str) -> tuple[RunSpec, ...]:
    """Return the specs of run `name` of the suite, or of the one run using model `name`.

    Raises:
        ValueError: when the model is used by several runs (name the run instead).
    """
    by_run = tuple(s for s in suite.runs if s.name == name)
    if by_run:
        return by_run
    by_model = tuple(s for s in suite.runs if s.model["name"] == name)
    runs = sorted({s.name for s in by_model})
    if len(runs) > 1:
        raise ValueError(
            f"Expected `{name}` to name one run of suite {suite.name!r}, but model "
            f"{name!r} is used by runs {runs}; name the run instead."
        )
    return by_model


def derived_runs(
    name: str, template: tuple[RunSpec, ...], plugins: tuple[str, ...]
) -> tuple[tuple[RunSpec, ...], tuple[str, ...]]:
    """Return specs running model `name` with the settings of `template`, and the dropped keys."""
    accepted = set(MODELS.parameters(name))
    dropped = tuple(sorted(k for k in template[0].model if k != "name" and k not in accepted))
    specs = []
    for spec in template:
        raw = spec.to_dict()
        kept = {k: v for k, v in raw["model"].items() if k in accepted}
        raw.update(
            name=name, model={"name": name, **kept}, plugins=sorted({*spec.plugins, *plugins})
        )
        specs.append(resolve_spec(raw))
    return tuple(specs), dropped


def select_runs(
    suite: Suite, new: str, against: list[str], *, plugins: tuple[str, ...] = ()
) -> Selection:
    """Apply the selection rule of the module docstring."""
    if not against:
        raise ValueError("Expected `--against` to name at least one baseline, but got none.")
    if new in against:
        raise ValueError(f"Expected NEW to differ from the baselines, but {new!r} is both.")
    baselines = {}
    for name in against:
        baselines[name] = suite_runs(suite, name)
        if not baselines[name]:
            raise _unknown_run(suite, name)
    new_specs = suite_runs(suite, new)
    if new_specs:
        return Selection(new, new_specs, baselines)
    if new not in MODELS.names():
        raise _unknown_run(suite, new)
    specs, dropped = derived_runs(new, baselines[against[0]], plugins)
    return Selection(new, specs, baselines, against[0], dropped)


def _unknown_run(suite: Suite, name: str) -> ValueError:
    known = sorted({s.name for s in suite.runs} | {s.model["name"] for s in suite.runs})
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"Expected {name[:100]!r} to be a run or model of suite {suite.name!r}, but it is "
        f"neither.{hint} Its runs and models: {known}; `vaebench suite {suite.name} --list` "
        f"lists its runs, and NEW may also be any model of `vaebench list models`."
    )


def run_selection(
    selection: Selection, options: RunOptions, executor: "Executor | None" = None
) -> dict[str, list[RunRecord]]:
    """Run (or reuse) every selected spec through `executor`, as a suite does; return records
    by name, NEW first, in seed order."""
    from benchmark.executors import SerialExecutor
    from benchmark.executors.progress import SuiteProgress

    groups = {selection.new: selection.new_specs, **selection.baselines}
    specs = [spec for group in groups.values() for spec in group]
    progress = SuiteProgress(len(specs), bar=options.progress)
    # NOTE: per-run training bars would interleave across workers; the suite bar replaces them.
    records = iter(
        (executor or SerialExecutor()).map_runs(
            specs, replace(options, progress=False), on_event=progress
        )
    )
    progress.close()
    return {name: [next(records) for _ in group] for name, group in groups.items()}


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def verdict(c: Comparison, alpha: float = ALPHA) -> str:
    """Say which side is better (or higher) when the adjusted p-value is below `alpha`."""
    if c.p_adjusted is None:
        return "not tested"
    if c.p_adjusted >= alpha:
        return "no significant difference"
    if c.higher_is_better is None:
        return "NEW higher" if c.difference.estimate > 0 else "NEW lower"
    return "NEW better" if (c.difference.estimate > 0) == c.higher_is_better else "NEW worse"


def _side(values: tuple[float, ...]) -> str:
    spread = f" ± {format_number(float(np.std(values, ddof=1)))}" if len(values) > 1 else ""
    return f"{format_number(float(np.mean(values)))}{spread} (n={len(values)})"


def _difference(d: Difference) -> str:
    interval = (
        f" [{format_number(d.low)}, {format_number(d.high)}]" if d.low is not None else " [—]"
    )
    sign = "+" if d.estimate > 0 else ""
    return f"{sign}{format_number(d.estimate)}{interval}"


def _table(comparisons: list[Comparison], new: str, *, adjusted: str, power: bool) -> list[str]:
    header = (
        f"| metric | baseline | {new} | baseline value | Δ = {new} − baseline [95% CI] "
        + ("| detectable at 80% power " if power else "")
        + f"| p | p ({adjusted}) | verdict | detail |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for c in comparisons:
        cells = [
            f"{c.family}/{c.metric} {ARROWS[c.higher_is_better]} ({c.unit})".replace("  ", " "),
            c.baseline,
            _side(c.new_values),
            _side(c.baseline_values),
            _difference(c.difference),
            *([f"±{format_number(c.detectable)}" if c.detectable else "—"] if power else []),
            _p(c.difference.p_value),
            _p(c.p_adjusted),
            verdict(c),
            c.difference.detail,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


ARROWS = {True: "↑", False: "↓", None: ""}


def _runs_table(records: dict[str, list[RunRecord]]) -> list[str]:
    lines = ["| side | run | seed | status | spec hash | commit |", "|---|---|---|---|---|---|"]
    for name, group in records.items():
        for r in group:
            lines.append(
                f"| {name} | {r.name} | {r.seed} | {r.status} "
                f"| `{r.spec_hash[:12]}` | {r.git.short} |"
            )
    return lines


def _intro(
    selection: Selection, records: dict[str, list[RunRecord]], endpoints: Endpoints
) -> list[str]:
    new = selection.new
    seeds = {name: len(group) for name, group in records.items()}
    lines = [
        f"**Primary endpoint**: {', '.join(f'`{p}`' for p in endpoints.primary)} (declared "
        "before the runs; `--metrics` changes it). Its Welch tests against every baseline are "
        f"Holm-adjusted together, and only with each other; a difference is significant when "
        f"the adjusted p < {ALPHA}. **Secondary** (exploratory): "
        f"{', '.join(f'`{p}`' for p in endpoints.secondary) or 'none'}, with "
        "Benjamini–Hochberg q-values. Δ > 0 means "
        f"{new} scored higher; whether that is better follows the metric's arrow.",
        "",
        f"Training seeds per side: {', '.join(f'{k} {v}' for k, v in seeds.items())} "
        f'(seeds {_seeds(records)}). "detectable at 80% power" is the smallest true |Δ| that '
        "Welch's test finds 4 times in 5 at α = 0.05, given the spread observed across seeds; "
        "a real difference smaller than it is likely to be reported as no significant "
        "difference.",
        "",
    ]
    if selection.derived_from:
        dropped = ", ".join(selection.dropped) or "none"
        lines += [
            f"`{new}` is not a run of the suite: it ran with the settings of "
            f"`{selection.derived_from}` (hyperparameters dropped: {dropped}).",
            "",
        ]
    return lines


def render_report(
    selection: Selection,
    records: dict[str, list[RunRecord]],
    comparisons: list[Comparison],
    *,
    command: str,
    suite: str,
    endpoints: Endpoints | None = None,
) -> str:
    """Return the Markdown report of a comparison: endpoints, tests per family, runs."""
    endpoints = endpoints or Endpoints()
    new = selection.new
    family = {k: [c for c in comparisons if c.family_of_tests == k] for k in _FAMILIES}
    lines = [
        f"<!-- Generated by `{command}`; do not edit. -->",
        f"# {new} vs {', '.join(selection.baselines)} · suite {suite}",
        "",
        *_intro(selection, records, endpoints),
        "## Primary endpoint across training seeds (Welch's t-test)",
        "",
        *_table(family["primary welch"], new, adjusted="Holm", power=True),
        "",
    ]
    if family["primary paired bootstrap"]:
        lines += [
            "## Primary endpoint across test examples (paired bootstrap)",
            "",
            "Per-seed means over the same test examples; the test pairs examples, so it "
            "measures the spread over examples (evaluation noise), not over training seeds.",
            "",
            *_table(family["primary paired bootstrap"], new, adjusted="Holm", power=False),
            "",
        ]
    if family["secondary"]:
        lines += [
            "## Secondary endpoints (exploratory)",
            "",
            *_table(family["secondary"], new, adjusted="BH", power=True),
            "",
        ]
    lines += ["## Runs", "", *_runs_table(records), ""]
    return "\n".join(lines).rstrip() + "\n"


_FAMILIES = ("primary welch", "primary paired bootstrap", "secondary")


def _seeds(records: dict[str, list[RunRecord]]) -> str:
    return ", ".join(str(s) for s in sorted({r.seed for g in records.values() for r in g}))


def _command(args: argparse.Namespace) -> str:
    plugins = "".join(f"--plugin {p} " for p in args.plugin or ())
    seeds = f" --seeds {','.join(map(str, args.seeds))}" if args.seeds is not None else ""
    chosen = f" --metrics {','.join(args.metrics)}" if args.metrics else ""
    chosen += "".join(f" --set {o}" for o in args.overrides)
    return (
        f"vaebench {plugins}compare {args.new} --against {','.join(args.against)} "
        f"--suite {args.suite}{seeds}{chosen}"
    )


def default_output(results_dir: Path, new: str, against: list[str]) -> Path:
    stem = safe_file_stem(f"{new}-vs-{'-'.join(against)}")
    return Path(results_dir) / "compare" / f"{stem}.md"


def _compare_executor(args: argparse.Namespace) -> "Executor":
    from benchmark.executors import create_executor

    settings = {}
    if getattr(args, "workers", None) is not None:
        settings["workers"] = args.workers
    if args.executor in ("local", "ray"):  # NOTE: fresh worker processes re-import --plugin
        settings["plugins"] = tuple(args.plugin or ())
    try:
        return create_executor(args.executor, **settings)
    except ImportError as error:  # Ray not installed: a one-line message naming the extra
        raise ValueError(str(error)) from None


def cmd_compare(args: argparse.Namespace) -> int:
    """Handle ``vaebench compare``: declare, select, run or reuse, test, write and print."""
    endpoints = Endpoints.declare(args.metrics)
    seeds = args.seeds if args.seeds is not None else list(DEFAULT_SEEDS)
    suite = load_suite(args.suite, seeds=seeds, overrides=args.overrides)
    selection = select_runs(suite, args.new, args.against, plugins=tuple(args.plugin or ()))
    print(
        f"primary endpoint: {', '.join(endpoints.primary)}; secondary: "
        f"{', '.join(endpoints.secondary) or 'none'}; seeds {','.join(map(str, seeds))}",
        file=sys.stderr,
    )
    options = RunOptions(
        results_dir=args.results,
        checkpoint_dir=args.checkpoints,
        data_root=args.data_root,
        force=args.force,
        rerun_failed=args.rerun_failed,
        catch_failures=True,
        progress=not args.no_progress,
        device=args.device or "auto",
    )
    records = run_selection(selection, options, _compare_executor(args))
    comparisons = compare_records(
        records[selection.new],
        {name: records[name] for name in selection.baselines},
        endpoints=endpoints,
        bootstrap=not args.no_bootstrap,
        num_resamples=args.bootstrap_resamples,
        bootstrap_seed=args.bootstrap_seed,
    )
    text = render_report(
        selection, records, comparisons, command=_command(args), suite=suite.name,
        endpoints=endpoints,
    )  # fmt: skip
    output = args.output or default_output(args.results, args.new, args.against)
    atomic_write_text(Path(output), text)
    print(text)
    print(f"wrote {output}", file=sys.stderr)
    return 0
