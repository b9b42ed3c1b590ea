"""Leaderboard: run records in; ``leaderboard.md``, ``.csv`` and figures out (never hand-edited).

One section per dataset, one table per metric family (the evaluator that produced it), one row
per configuration (runs that differ only by seed share a ``config_hash``). A cell is the mean
± std across seeds, then the 95% confidence interval of the mean: Student t with n − 1 degrees
of freedom across the n seeds. With a single seed (marked †) the ± is the estimator's own
standard error and the interval is the normal one, mean ± 1.96 stderr, which covers evaluation
noise only, not seed-to-seed variation. The best mean of each column with a direction is bold.

Metric versions: an evaluator may record ``Estimate.params["version"]`` (a string or integer,
bumped whenever its numbers stop being comparable with older records). Within a column, cells
whose records carry different versions (a missing version counts as ``unversioned``) are marked
⚠v… and a note names the versions. Figures (`benchmark.figures`) are embedded per dataset, and
the literature (`benchmark.literature`) closes the file. Output depends only on the records, so
regenerating from the same records reproduces the files byte for byte.
"""

import fnmatch
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev

import pandas as pd
from scipy import stats

from benchmark.records import RunRecord, atomic_write_text, load_records
from metrics.estimate import Estimate

REGENERATE = "vaebench leaderboard"
ARROWS = {True: "↑", False: "↓", None: ""}
VERSION_KEY = "version"  # Estimate.params key holding the metric version
UNVERSIONED = "unversioned"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Cell:
    """One aggregated metric of one configuration."""

    mean: float
    spread: float | None  # std across seeds, or the single seed's stderr
    seeds: int
    unit: str
    higher_is_better: bool | None
    interval: tuple[float, float] | None = None  # 95% CI of the mean (see the module docstring)
    versions: tuple[str, ...] = (UNVERSIONED,)  # metric versions of the seeds, sorted


def seed_interval(values: list[float], *, stderr: float | None) -> tuple[float, float] | None:
    """Return the 95% confidence interval of the mean of `values` (one per seed).

    Student t across seeds, mean ± t_{0.975, n-1} · std / sqrt(n), for n ≥ 2; for one seed the
    normal interval from the estimator's standard error, or None when it has none.
    """
    centre = mean(values)
    if len(values) > 1:
        half = (
            stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1)
            * stdev(values)
            / math.sqrt(len(values))
        )
    elif stderr is not None:
        half = stats.norm.ppf(0.5 + CONFIDENCE / 2) * stderr
    else:
        return None
    return centre - half, centre + half


def metric_version(estimate: Estimate) -> str:
    """Return the version an evaluator recorded in ``params["version"]``, or ``unversioned``."""
    version = estimate.params.get(VERSION_KEY)
    return UNVERSIONED if version is None else str(version)


def metric_rows(records: list[RunRecord]) -> pd.DataFrame:
    """Return one row per (record, metric) in long format, the basis of every table and the CSV."""
    rows = []
    for record in records:
        base = {
            "dataset": record.dataset["name"],
            "suite": record.spec.get("suite") or "",
            "run": record.spec["name"],
            "model": record.model["name"],
            # Likelihoods of a label-conditional model are of log p(x|y) (§ on the leaderboard).
            "conditional": bool(record.model.get("conditions_on_labels", False)),
            "config_hash": record.config_hash[:8],
            "seed": record.spec["seed"],
            "status": record.status,
            "commit": (record.git.get("commit") or "")[:7],
        }
        for family, metrics in sorted(record.metrics.items()):
            for name, estimate in sorted(metrics.items()):
                rows.append(
                    {
                        **base,
                        "family": family,
                        "metric": name,
                        "value": estimate.value,
                        "stderr": estimate.stderr,
                        "n": estimate.n,
                        "unit": estimate.unit,
                        "higher_is_better": estimate.higher_is_better,
                        "params": json.dumps(_shown_params(estimate.params), sort_keys=True),
                    }
                )
        if not record.metrics:
            rows.append({**base, "family": "", "metric": "", "value": None})
    return pd.DataFrame(rows)


def _shown_params(params: dict) -> dict:
    """Keep scalar parameters only: lists (e.g. per-example values) do not belong in a table."""
    return {k: v for k, v in params.items() if not isinstance(v, list | dict)}


def format_number(value: float | None) -> str:
    """Format with 4 significant digits in plain notation, or ``—`` for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if value == 0:
        return "0"
    digits = max(0, 3 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{min(digits, 6)}f}"


def aggregate(records: list[RunRecord]) -> dict[tuple[str, str, str], Cell]:
    """Aggregate records into cells keyed by (config key, family, metric)."""
    values: dict[tuple[str, str, str], list] = defaultdict(list)
    for record in records:
        if record.status != "ok":
            continue
        for family, metrics in record.metrics.items():
            for name, estimate in metrics.items():
                values[(config_key(record), family, name)].append(estimate)
    return {key: _cell(estimates) for key, estimates in values.items()}


def _cell(estimates: list[Estimate]) -> Cell:
    means = [e.value for e in estimates]
    first = estimates[0]
    spread = stdev(means) if len(means) > 1 else first.stderr
    versions = tuple(sorted({metric_version(e) for e in estimates}))
    return Cell(
        mean(means),
        spread,
        len(means),
        first.unit,
        first.higher_is_better,
        seed_interval(means, stderr=first.stderr),
        versions,
    )


def config_key(record: RunRecord) -> str:
    return f"{record.spec['name']}@{record.config_hash[:8]}"


def render_cell(cell: Cell | None, bold: bool, flag_version: bool = False) -> str:
    """Render ``mean ± spread [low, high]``, bold when best, ⚠v… when versions differ."""
    if cell is None:
        return "—"
    text = format_number(cell.mean)
    if cell.spread is not None:
        text += f" ± {format_number(cell.spread)}" + ("†" if cell.seeds == 1 else "")
    text = f"**{text}**" if bold else text
    if cell.interval is not None:
        text += f" [{format_number(cell.interval[0])}, {format_number(cell.interval[1])}]"
    return text + (f" ⚠v{'/'.join(cell.versions)}" if flag_version else "")


def version_mismatches(family: str, configs: list[str], cells: dict, metrics: list[str]) -> dict:
    """Return {metric: versions} for the columns whose cells carry more than one metric version."""
    mismatched = {}
    for metric in metrics:
        versions = {
            v
            for c in configs
            if (c, family, metric) in cells
            for v in cells[(c, family, metric)].versions
        }
        if len(versions) > 1:
            mismatched[metric] = sorted(versions)
    return mismatched


def _best(cells: list[Cell | None]) -> float | None:
    scored = [c for c in cells if c is not None and c.higher_is_better is not None]
    if len(scored) < 2:
        return None
    pick = max if scored[0].higher_is_better else min
    return pick(c.mean for c in scored)


def family_table(
    family: str,
    configs: list[str],
    cells: dict,
    metrics: list[str],
    undefined: dict[str | tuple[str, str], str] | None = None,
    flagged: set[str] | None = None,
    conditional: set[str] | None = None,
) -> list[str]:
    """Render one metric family's Markdown table, rows = configurations.

    Args:
        undefined: Why metrics are not defined ("n/a"): keyed by a config key for the whole
            family, or by (config key, metric) for one metric.
        flagged: Config keys of models not trained on a likelihood bound (marked ‡).
        conditional: Config keys of label-conditional models, scored on log p(x|y) (marked §).
    """
    undefined, flagged, conditional = undefined or {}, flagged or set(), conditional or set()
    header = ["model", "seeds"] + [_metric_header(family, m, cells, configs) for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # Conditional rows (§) answer another question, so they never take the bold best.
    comparable = [c for c in configs if c not in conditional]
    bests = {m: _best([cells.get((c, family, m)) for c in comparable]) for m in metrics}
    mismatched = version_mismatches(family, configs, cells, metrics)
    for config in configs:
        row_cells = [cells.get((config, family, m)) for m in metrics]
        seeds = max((c.seeds for c in row_cells if c is not None), default=0)
        rendered = [
            "n/a"
            if c is None and (config in undefined or (config, m) in undefined)
            else render_cell(c, c is not None and c.mean == bests[m], m in mismatched)
            for c, m in zip(row_cells, metrics, strict=True)
        ]
        name = config.split("@")[0] + (" ‡" if config in flagged else "")
        name += " §" if config in conditional else ""
        lines.append("| " + " | ".join([name, str(seeds), *rendered]) + " |")
    for key, reason in sorted(undefined.items(), key=lambda item: str(item[0])):
        config, metric = key if isinstance(key, tuple) else (key, None)
        which = f"{config.split('@')[0]}" + (f" ({metric})" if metric else "")
        lines += ["", f"n/a for {which}: {reason}"]
    if flagged:
        lines += [
            "",
            "‡ trained on an objective that is not a bound on log p(x); its likelihoods "
            "are computed from its distributions all the same.",
        ]
    if conditional:
        lines += [
            "",
            "§ a label-conditional model, scored given each example's true label: its "
            "likelihoods and bounds are of log p(x|y), not log p(x). Since log p(x|y) <= "
            "log p(x) - log p(y), its NLL may sit up to log(number of classes) nats (2.30 for "
            "10 balanced classes) below that of an unconditional model of the same p(x). It is "
            "never bolded as a column's best.",
        ]
    if mismatched:
        shown = "; ".join(f"`{m}`: {', '.join(v)}" for m, v in mismatched.items())
        lines += [
            "",
            f"⚠ Metric versions differ within a column ({shown}): cells marked ⚠v… "
            "come from different evaluator versions and may not be comparable.",
        ]
    return lines


def _undefined_by_family(records: list[RunRecord]) -> dict[str, dict]:
    """Return family -> {config key or (config key, metric): reason}, from the records'
    ``undefined_metrics`` (keys ``"family"`` or ``"family/metric"``)."""
    undefined: dict[str, dict] = defaultdict(dict)
    for record in records:
        for key, reason in record.undefined_metrics.items():
            family, _, metric = key.partition("/")
            config = config_key(record)
            undefined[family][(config, metric) if metric else config] = reason
    return dict(undefined)


def _metric_header(family: str, metric: str, cells: dict, configs: list[str]) -> str:
    cell = next((cells[(c, family, metric)] for c in configs if (c, family, metric) in cells), None)
    arrow = ARROWS[cell.higher_is_better] if cell else ""
    unit = f" ({cell.unit})" if cell and cell.unit else ""
    return f"{metric} {arrow}{unit}".replace("  ", " ").strip()


def dataset_section(
    dataset: str,
    records: list[RunRecord],
    figures_link: str | None = None,
    images_link: str | None = None,
) -> list[str]:
    """Render one dataset: provenance, one table per family, costs, then its figures."""
    cells = aggregate(records)
    configs = sorted({config_key(r) for r in records})
    lines = [f"## {dataset}", "", *_provenance(records), ""]
    undefined = _undefined_by_family(records)
    flagged = {config_key(r) for r in records if r.model.get("trains_on_likelihood_bound") is False}
    conditional = {config_key(r) for r in records if r.model.get("conditions_on_labels")}
    families = sorted({k[1] for k in cells} | set(undefined))
    for family in families:
        na = undefined.get(family, {})
        metrics = sorted(
            {k[2] for k in cells if k[1] == family} | {k[1] for k in na if isinstance(k, tuple)}
        )
        with_family = [
            c for c in configs if c in na or any((c, family, m) in cells for m in metrics)
        ]
        shown = set(with_family)
        table = family_table(
            family, with_family, cells, metrics, na, flagged & shown, conditional & shown
        )
        lines += [f"### {family}", "", *table]
        lines += ["", *_parameters_note(records, family), ""]
    lines += ["### cost and provenance", "", *_cost_table(records, configs, images_link), ""]
    if figures_link is not None:
        lines += _figure_lines(records, figures_link)
    return lines


def _figure_lines(records: list[RunRecord], figures_link: str) -> list[str]:
    # NOTE: imported on use so that tables alone never load matplotlib and seaborn
    from benchmark.figures import planned_figures

    figures = planned_figures(records)
    if not figures:
        return []
    lines = ["### figures", ""]
    for figure in figures:
        lines += [f"![{figure.title}]({figures_link}/{figure.filename})", ""]
    return lines


def _provenance(records: list[RunRecord]) -> list[str]:
    first = records[0].dataset
    suites = sorted({r.spec.get("suite") or "(single runs)" for r in records})
    checksum = str(first.get("checksum", ""))[:16]
    return [
        f"Suites: {', '.join(suites)} · preprocessing `{first.get('preprocessing')}` · "
        f"data checksum `{checksum}` · runs: {len(records)}."
    ]


def _parameters_note(records: list[RunRecord], family: str) -> list[str]:
    seen: dict[str, set] = defaultdict(set)
    for record in records:
        for estimate in record.metrics.get(family, {}).values():
            for key, value in _shown_params(estimate.params).items():
                seen[key].add(value if isinstance(value, str) else json.dumps(value))
    if not seen:
        return []
    shown = ", ".join(f"{k}={'/'.join(sorted(v))}" for k, v in sorted(seen.items()))
    return [f"Estimator parameters: {shown}."]


def _cost_table(records: list[RunRecord], configs: list[str], images_link: str | None) -> list[str]:
    header = (
        "| model | registry name | status | params | train s | train cost (TFLOP-eq) "
        "| eval s | config hash | commits | images |"
    )
    lines = [header, "|" + "---|" * 10]
    for config in configs:
        group = [r for r in records if config_key(r) == config]
        statuses = ", ".join(
            f"{s}×{sum(r.status == s for r in group)}" for s in sorted({r.status for r in group})
        )
        train = [r.timings.get("train") for r in group if r.timings.get("train") is not None]
        evals = [r.timings.get("eval") for r in group if r.timings.get("eval") is not None]
        costs = [c for c in (train_cost(r) for r in group) if c is not None]
        commits = ", ".join(sorted({_commit(r) for r in group}))
        cells = [
            config.split("@")[0],
            group[0].model["name"],
            statuses,
            str(group[0].model.get("num_parameters", "—")),
            format_number(mean(train)) if train else "—",
            format_number(mean(costs)) if costs else "—",
            format_number(mean(evals)) if evals else "—",
            f"`{config.split('@')[1]}`",
            commits,
            _image_links(group, images_link),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def train_cost(record: RunRecord) -> float | None:
    """Return training seconds x the machine's calibrated fp32 GEMM rate, in TFLOP-equivalents.

    The work this machine's GEMM peak could have done in the training time: a cost comparable
    across machines of different speed (benchmark/calibration.py measures the rate per process).
    """
    seconds = record.timings.get("train")
    calibration = record.environment.get("calibration") or {}
    if seconds is None or not calibration.get("gemm_gflops"):
        return None
    return seconds * calibration["gemm_gflops"] / 1000


def _image_links(group: list[RunRecord], images_link: str | None) -> str:
    with_images = [r for r in group if r.images]
    if images_link is None or not with_images:
        return "—"
    record = min(with_images, key=lambda r: r.spec["seed"])
    links = [f"[{kind}]({images_link}/{path})" for kind, path in sorted(record.images.items())]
    return " · ".join(links) + f" (seed {record.spec['seed']})"


def _commit(record: RunRecord) -> str:
    commit = (record.git.get("commit") or "")[:7]
    return f"{commit} (dirty)" if record.git.get("dirty") else commit


def filter_records(
    records: list[RunRecord], *, datasets: list[str] | None = None, models: list[str] | None = None
) -> list[RunRecord]:
    """Keep records whose dataset matches `datasets` and whose run or model name matches `models`.

    Patterns are shell wildcards (``*mnist``); None keeps everything.

    Raises:
        ValueError: when nothing is left, listing the datasets and models there are.
    """

    def hit(name: str, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    kept = [
        r
        for r in records
        if (datasets is None or hit(r.dataset["name"], datasets))
        and (models is None or hit(r.spec["name"], models) or hit(r.model["name"], models))
    ]
    if not kept:
        raise ValueError(
            f"Expected `--dataset` {datasets} and `--models` {models} to match some records, but "
            f"none matched; datasets: {sorted({r.dataset['name'] for r in records})}, runs: "
            f"{sorted({r.spec['name'] for r in records})}."
        )
    return kept


def _header(records: list[RunRecord], filters: str) -> list[str]:
    filtered = f" Filtered to {filters}." if filters else ""
    return [
        f"<!-- Generated by `{REGENERATE}` from the run records in results/runs; do not edit. -->",
        "# vaebench leaderboard",
        "",
        f"Generated from {len(records)} run records by `{REGENERATE}`, which also writes "
        f"`leaderboard.csv` and the figures.{filtered} Cells are mean ± std across seeds (the "
        "seeds column counts them), then [the 95% confidence interval of the mean]: Student t "
        "with n − 1 degrees of freedom across the n seeds. † marks a single seed, where ± is the "
        "estimator's standard error over examples and the interval is mean ± 1.96 stderr "
        "(evaluation noise only, not seed-to-seed variation). "
        "↑ higher is better, ↓ lower is better; the best mean of a column is bold. "
        '⚠vN marks a column mixing metric versions (`Estimate.params["version"]`). '
        "Likelihoods are in nats per example unless the unit says otherwise.",
        "",
    ]


def render_leaderboard(
    records: list[RunRecord],
    *,
    figures_link: str | None = None,
    images_link: str | None = None,
    literature: list | None = None,
    filters: str = "",
) -> str:
    """Return the whole leaderboard.md text for `records`.

    Args:
        records: The run records to tabulate (already filtered).
        figures_link: Folder of the figures relative to leaderboard.md; None embeds none.
        images_link: The results folder relative to leaderboard.md, under which the records'
            image paths lie; None links no per-run images.
        literature: Published results (`benchmark.literature.load_literature`); None omits them.
        filters: Human-readable description of the filters applied, for the header.
    """
    # NOTE: imported here because literature.py formats numbers with this module's helpers
    from benchmark.literature import literature_section

    lines = _header(records, filters)
    by_dataset: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        by_dataset[record.dataset["name"]].append(record)
    for dataset in sorted(by_dataset):
        lines += dataset_section(dataset, by_dataset[dataset], figures_link, images_link)
    if literature is not None:
        lines += literature_section(literature, records)
    return "\n".join(lines).rstrip() + "\n"


def write_leaderboard(
    results_dir: Path,
    output: Path,
    csv_output: Path,
    *,
    datasets: list[str] | None = None,
    models: list[str] | None = None,
    figures_dir: Path | None = None,
) -> list[RunRecord]:
    """Load and filter records, then write the Markdown, the CSV and the figures.

    Args:
        results_dir: Holds ``runs/`` and, if present, ``literature.yaml``.
        output: The Markdown file; figures are linked relative to its folder.
        csv_output: The long-format CSV, one row per (record, metric).
        datasets: Dataset name patterns to keep (None: all).
        models: Run or model name patterns to keep (None: all).
        figures_dir: Where the PNGs go; default ``figures/`` beside `output`.
    """
    from benchmark.figures import write_figures
    from benchmark.literature import load_literature

    records = load_records(results_dir)
    if not records:
        raise ValueError(
            f"Expected run records under {Path(results_dir) / 'runs'}, but found none; "
            f"run `vaebench suite quick` first."
        )
    records = filter_records(records, datasets=datasets, models=models)
    output = Path(output)
    figures_dir = Path(figures_dir) if figures_dir is not None else output.parent / "figures"
    write_figures(records, figures_dir)
    literature_file = Path(results_dir) / "literature.yaml"
    literature = load_literature(literature_file) if literature_file.is_file() else None
    filters = "; ".join(
        f"{k} {', '.join(v)}" for k, v in (("datasets", datasets), ("models", models)) if v
    )
    text = render_leaderboard(
        records,
        literature=literature,
        filters=filters,
        figures_link=Path(os.path.relpath(figures_dir, output.parent)).as_posix(),
        images_link=Path(os.path.relpath(results_dir, output.parent)).as_posix(),
    )
    atomic_write_text(output, text)
    atomic_write_text(
        Path(csv_output), metric_rows(records).to_csv(index=False, lineterminator="\n")
    )
    return records
