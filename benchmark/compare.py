"""``vaebench compare NEW --against A,B --suite S``: judge a new variant against baselines.

Selection. NEW and each baseline name a run of the suite (its ``name:``), or else a model
registry name used by exactly one run of the suite. NEW may also be a registered model that no
run of the suite uses (typically one a plugin registers): it then runs with the first baseline's
settings: dataset, training budget, evaluators, seeds, and those model hyperparameters that
NEW's factory accepts (the others are dropped and listed in the report).

Running. Every selected spec goes through `run_spec`, which reuses an existing ok record with
the same spec hash, so a repeated compare trains nothing and only re-renders the report.

Statistics, for every metric with a direction (↑/↓) that both sides recorded:

- across seeds: Δ = mean(NEW) − mean(baseline) over training seeds, with Welch's t-test
  (unequal variances; `scipy.stats.ttest_ind(equal_var=False)`) and its Welch–Satterthwaite
  95% CI; it needs two seeds per side;
- for NLL (evaluator ``nll``, metric ``nll``) also a paired bootstrap across test examples,
  from the per-example values the evaluator saves in ``diagnostics["per_example"]``. For each
  seed s run on both sides, d_i = nll_i(NEW, s) − nll_i(baseline, s) over the same examples in
  the same order; Δ is the mean of d over seeds and examples. Examples are resampled with
  replacement (the same indices for every seed) with a seeded numpy Generator; the CI is the
  percentile interval and the two-sided p-value is (1 + #{|Δ*_b − Δ| ≥ |Δ|}) / (B + 1), the
  bootstrap distribution shifted to the null. It covers the spread over test examples (and
  estimator noise), not over training seeds: the Welch test covers that;
- Holm's step-down correction (Holm 1979) adjusts all the p-values of a report together; a
  difference is called significant when its adjusted p is below α = 0.05.
"""

import argparse
import difflib
import fnmatch
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats

from benchmark.atomic import safe_file_stem
from benchmark.leaderboard import format_number
from benchmark.records import RunRecord, atomic_write_text
from benchmark.runner import RunOptions, run_spec
from benchmark.spec import RunSpec, resolve_spec
from benchmark.suite import Suite, load_suite
from registry._registry import MODELS

CONFIDENCE = 0.95
ALPHA = 0.05
NLL = ("nll", "nll")
# Estimator parameters that must agree before per-example values can be paired.
PAIRING_KEYS = ("split", "num_examples", "seed", "eval_seed", "preprocessing", "k")
_BOOTSTRAP_CELLS = 2_000_000  # resample indices drawn per chunk, to bound memory


@dataclass(frozen=True)
class Difference:
    """A difference NEW − baseline with its 95% CI and two-sided p-value (None if undefined)."""

    estimate: float
    low: float | None
    high: float | None
    p_value: float | None
    detail: str  # what produced it, e.g. "Welch df=2.6" or "B=10000, 360 examples x 2 seeds"


@dataclass(frozen=True)
class Comparison:
    """One test of NEW against one baseline on one metric."""

    baseline: str
    family: str
    metric: str
    unit: str
    higher_is_better: bool
    method: str  # "welch" or "paired bootstrap"
    new_values: tuple[float, ...]
    baseline_values: tuple[float, ...]
    difference: Difference
    p_holm: float | None = None


def welch_difference(new: list[float], baseline: list[float]) -> Difference:
    """Return mean(new) − mean(baseline) with Welch's t-test p-value and 95% CI.

    Welch (1947): t = Δ / sqrt(s_a²/n_a + s_b²/n_b) with Welch–Satterthwaite degrees of freedom.
    """
    a, b = np.asarray(new, dtype=float), np.asarray(baseline, dtype=float)
    estimate = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Difference(estimate, None, None, None, "needs ≥ 2 seeds per side")
    if a.var() == 0 and b.var() == 0:
        return Difference(estimate, None, None, None, "no spread across seeds")
    result = stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    return Difference(
        estimate,
        float(interval.low),
        float(interval.high),
        float(result.pvalue),
        f"Welch df={float(result.df):.1f}",
    )


def paired_bootstrap_difference(
    new: np.ndarray, baseline: np.ndarray, *, num_resamples: int, seed: int
) -> Difference:
    """Return the mean paired difference with a bootstrap-over-examples 95% CI and p-value.

    Args:
        new: Per-example values of NEW, shape ``(S, N)``: S seeds, N examples.
        baseline: The baseline's values on the same seeds and examples, shape ``(S, N)``.
        num_resamples: Bootstrap resamples B.
        seed: Seed of the numpy Generator that draws the resampled indices.
    """
    if new.shape != baseline.shape or new.ndim != 2:
        raise ValueError(
            f"Expected paired arrays of one shape (S, N), but got {new.shape} and {baseline.shape}."
        )
    if num_resamples < 1:
        raise ValueError(f"Expected `num_resamples` >= 1, but got {num_resamples}.")
    # NOTE: averaging over seeds first equals resampling the same example indices for every seed
    d = (np.asarray(new, dtype=float) - np.asarray(baseline, dtype=float)).mean(0)  # (N,)
    estimate = float(d.mean())
    resampled = _bootstrap_means(d, num_resamples, np.random.default_rng(seed))  # (B,)
    low, high = np.quantile(resampled, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    extreme = np.count_nonzero(np.abs(resampled - estimate) >= abs(estimate))
    p_value = (1 + extreme) / (num_resamples + 1)
    detail = f"B={num_resamples}, {new.shape[1]} examples × {new.shape[0]} seeds, seed {seed}"
    return Difference(estimate, float(low), float(high), float(p_value), detail)


def _bootstrap_means(d: np.ndarray, num_resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = len(d)
    rows = max(1, _BOOTSTRAP_CELLS // n)
    means = [
        d[rng.integers(0, n, size=(min(rows, num_resamples - start), n))].mean(1)
        for start in range(0, num_resamples, rows)
    ]  # each (rows, N) -> (rows,)
    return np.concatenate(means)


def holm_adjust(p_values: list[float]) -> list[float]:
    """Return Holm's step-down adjusted p-values (Holm 1979), in the input order.

    The i-th smallest p (1-based) becomes max over j ≤ i of min(1, (m − j + 1) p_(j)).
    """
    order = np.argsort(p_values, kind="stable")
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


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
    by_seed = [{r.spec["seed"]: r for r in side} for side in (new, baseline)]
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
    checksums = [r.dataset.get("checksum") for r in (new, baseline)]
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


def directed_metrics(records: list[RunRecord]) -> dict[tuple[str, str], tuple[str, bool]]:
    """Return {(family, metric): (unit, higher_is_better)} for every metric with a direction."""
    return {
        (family, name): (e.unit, e.higher_is_better)
        for r in records
        for family, metrics in r.metrics.items()
        for name, e in metrics.items()
        if e.higher_is_better is not None
    }


def compare_records(
    new: list[RunRecord],
    baselines: dict[str, list[RunRecord]],
    *,
    bootstrap: bool = True,
    num_resamples: int = 10_000,
    bootstrap_seed: int = 0,
    metrics: list[str] | None = None,
) -> list[Comparison]:
    """Compare NEW's ok records with each baseline's, then Holm-adjust every p-value together.

    Args:
        new: NEW's records, one per seed.
        baselines: Baseline name -> its records.
        bootstrap: Add the paired bootstrap of the NLL where both sides have one.
        num_resamples: Bootstrap resamples B.
        bootstrap_seed: Seed of the bootstrap's numpy Generator.
        metrics: ``family/metric`` wildcards to test (e.g. ``nll/nll``, ``elbo/*``); None tests
            every metric with a direction. Fewer tests give Holm's correction more power.
    """
    comparisons, new_ok = [], _ok(new)
    for name, records in baselines.items():
        ok = _ok(records)
        comparisons += _welch_comparisons(name, new_ok, ok, metrics)
        tested = _chosen(NLL, metrics) and NLL in directed_metrics(new_ok)
        if bootstrap and tested and NLL in directed_metrics(ok):
            x, y, _ = paired_per_example(new_ok, ok)  # (S, N) each
            difference = paired_bootstrap_difference(
                x, y, num_resamples=num_resamples, seed=bootstrap_seed
            )
            unit, higher = directed_metrics(new_ok)[NLL]
            comparisons.append(
                Comparison(
                    name,
                    *NLL,
                    unit,
                    higher,
                    "paired bootstrap",
                    tuple(x.mean(1)),
                    tuple(y.mean(1)),
                    difference,
                )
            )
    return _with_holm(comparisons)


def _chosen(key: tuple[str, str], patterns: list[str] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase("/".join(key), p) for p in patterns)


def _welch_comparisons(
    name: str, new: list[RunRecord], baseline: list[RunRecord], metrics: list[str] | None
) -> list[Comparison]:
    shared = directed_metrics(new)
    comparisons = []
    keys = shared.keys() & directed_metrics(baseline).keys()
    for key in sorted(k for k in keys if _chosen(k, metrics)):
        a = tuple(r.metric(*key).value for r in new if r.metric(*key) is not None)
        b = tuple(r.metric(*key).value for r in baseline if r.metric(*key) is not None)
        comparisons.append(
            Comparison(name, *key, *shared[key], "welch", a, b, welch_difference(list(a), list(b)))
        )
    return comparisons


def _with_holm(comparisons: list[Comparison]) -> list[Comparison]:
    tested = [i for i, c in enumerate(comparisons) if c.difference.p_value is not None]
    adjusted = holm_adjust([comparisons[i].difference.p_value for i in tested])
    result = list(comparisons)
    for i, p in zip(tested, adjusted, strict=True):
        result[i] = replace(result[i], p_holm=p)
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


def run_selection(selection: Selection, options: RunOptions) -> dict[str, list[RunRecord]]:
    """Run (or reuse) every selected spec; return records by name, NEW first."""
    groups = {selection.new: selection.new_specs, **selection.baselines}
    total = sum(len(specs) for specs in groups.values())
    records, done = {}, 0
    for name, specs in groups.items():
        records[name] = []
        for spec in specs:
            done += 1
            print(f"[{done}/{total}] {name} seed={spec.seed}", file=sys.stderr)
            records[name].append(run_spec(spec, options))
    return records


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def verdict(c: Comparison, alpha: float = ALPHA) -> str:
    """Say which side is better when the Holm-adjusted p-value is below `alpha`."""
    if c.p_holm is None:
        return "not tested"
    if c.p_holm >= alpha:
        return "no significant difference"
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


def _table(comparisons: list[Comparison], new: str) -> list[str]:
    lines = [
        f"| metric | baseline | {new} | baseline value | Δ = {new} − baseline [95% CI] "
        "| p | p (Holm) | verdict | detail |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        arrow = "↑" if c.higher_is_better else "↓"
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{c.family}/{c.metric} {arrow} ({c.unit})",
                    c.baseline,
                    _side(c.new_values),
                    _side(c.baseline_values),
                    _difference(c.difference),
                    _p(c.difference.p_value),
                    _p(c.p_holm),
                    verdict(c),
                    c.difference.detail,
                ]
            )
            + " |"
        )
    return lines


def _runs_table(records: dict[str, list[RunRecord]]) -> list[str]:
    lines = ["| side | run | seed | status | spec hash | commit |", "|---|---|---|---|---|---|"]
    for name, group in records.items():
        for r in group:
            commit = (r.git.get("commit") or "")[:7] + (" (dirty)" if r.git.get("dirty") else "")
            lines.append(
                f"| {name} | {r.spec['name']} | {r.spec['seed']} | {r.status} "
                f"| `{r.spec_hash[:12]}` | {commit} |"
            )
    return lines


def render_report(
    selection: Selection,
    records: dict[str, list[RunRecord]],
    comparisons: list[Comparison],
    *,
    command: str,
    suite: str,
) -> str:
    """Return the Markdown report of a comparison."""
    new = selection.new
    welch = [c for c in comparisons if c.method == "welch"]
    boot = [c for c in comparisons if c.method == "paired bootstrap"]
    lines = [
        f"<!-- Generated by `{command}`; do not edit. -->",
        f"# {new} vs {', '.join(selection.baselines)} · suite {suite}",
        "",
        f"{len(comparisons)} comparisons; p-values are Holm-adjusted together; a difference "
        f"is significant when the adjusted p < {ALPHA}. Δ > 0 means {new} scored higher; "
        f"whether that is better follows the metric's arrow. Seeds: {_seeds(records)}.",
        "",
    ]
    if selection.derived_from:
        dropped = ", ".join(selection.dropped) or "none"
        lines += [
            f"`{new}` is not a run of the suite: it ran with the settings of "
            f"`{selection.derived_from}` (hyperparameters dropped: {dropped}).",
            "",
        ]
    lines += ["## Across training seeds (Welch's t-test)", "", *_table(welch, new), ""]
    if boot:
        lines += [
            "## Across test examples (paired bootstrap of the NLL)",
            "",
            "Per-seed means over the same test examples; the test pairs examples, so it "
            "measures the spread over examples, not over training seeds.",
            "",
            *_table(boot, new),
            "",
        ]
    else:
        lines += [
            "No paired bootstrap: the runs have no `nll` metric (add `eval: {nll: {}}`) "
            "or it was switched off.",
            "",
        ]
    lines += ["## Runs", "", *_runs_table(records), ""]
    return "\n".join(lines).rstrip() + "\n"


def _seeds(records: dict[str, list[RunRecord]]) -> str:
    return ", ".join(str(s) for s in sorted({r.spec["seed"] for g in records.values() for r in g}))


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


def cmd_compare(args: argparse.Namespace) -> int:
    """Handle ``vaebench compare``: select, run or reuse, test, write and print the report."""
    suite = load_suite(args.suite, seeds=args.seeds, overrides=args.overrides)
    selection = select_runs(suite, args.new, args.against, plugins=tuple(args.plugin or ()))
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
    records = run_selection(selection, options)
    baselines = {name: records[name] for name in selection.baselines}
    comparisons = compare_records(
        records[selection.new],
        baselines,
        bootstrap=not args.no_bootstrap,
        num_resamples=args.bootstrap_resamples,
        bootstrap_seed=args.bootstrap_seed,
        metrics=args.metrics,
    )
    text = render_report(selection, records, comparisons, command=_command(args), suite=suite.name)
    output = args.output or default_output(args.results, args.new, args.against)
    atomic_write_text(Path(output), text)
    print(text)
    print(f"wrote {output}", file=sys.stderr)
    return 0
