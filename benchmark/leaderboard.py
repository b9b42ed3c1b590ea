"""Leaderboard: run records in; ``leaderboard.md``, ``.csv``, figures (and HTML) out.

Each dataset section opens with one **headline table**: a row per configuration (runs that
differ only by seed share a `ConfigKey`), with its parameters, test NLL (with its K), ELBO, KL
(the rate), active units, FID, training budget and seeds, sorted by the first of these the
section has. A cell is the mean across seeds to 3 significant figures; the 95% interval of the
sorting column is shown only where it overlaps a neighbour's, i.e. where it matters for the
order. Across seeds the interval is Student t with n − 1 degrees of freedom; with a single seed
(marked †) it is mean ± 1.96 stderr, which covers evaluation noise only.

Per-family **detail tables** follow, folded in ``<details>``: every metric an evaluator recorded,
as mean ± std across seeds (± the estimator's stderr for one seed), except the duplicates of
`SAME_AS`, which are one quantity under a second name (they stay in the CSV with a ``same_as``
column). Marks come from the records, generically: an `Estimate` whose ``kind`` is a bound is
prefixed ≤ (upper bound) or ≥ (lower bound); one with a ``warning`` carries ⚠ and a numbered
note giving the reason. Notes (warnings, n/a reasons, †, ‡, §, mixed metric versions) appear
once per section, under the headline table, one per distinct reason: warnings that differ only
in their figures (one per seed, metric and run) share a note listing the runs and metrics it
applies to with each run's figures (`Footnotes`); a cell's own text is in its HTML hover.

Metric versions: an evaluator may record ``Estimate.params["version"]``; a column whose cells
carry different versions marks them ⚠v… . Output depends only on the records, so regenerating
from the same records reproduces the files byte for byte.
"""

import fnmatch
import json
import logging
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev

import pandas as pd
from scipy import stats

from benchmark.records import ConfigKey, RunRecord, atomic_write_text, load_records
from metrics.estimate import Estimate

REGENERATE = "vaebench leaderboard"
ARROWS = {True: "↑", False: "↓", None: ""}
VERSION_KEY = "version"  # Estimate.params key holding the metric version
UNVERSIONED = "unversioned"
CONFIDENCE = 0.95
BOUND_PREFIX = {"upper_bound": "≤ ", "lower_bound": "≥ "}
SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
log = logging.getLogger(__name__)

# Metrics that are another name for a quantity shown elsewhere: hidden from the tables, kept in
# the CSV with this as their ``same_as``.
SAME_AS: dict[tuple[str, str], str] = {
    ("ais", "ais_log_likelihood"): "−ais/ais_nll",
    ("nll", "iwae_bound"): "−nll/nll",
    ("nll", "elbo"): "elbo/elbo (the nll evaluator's own sample)",
    ("nll", "nll_bits_per_dim"): "nll/nll / (D ln 2), in bits per dimension",
    ("posterior_collapse", "rate"): "elbo/kl",
    ("posterior_collapse", "kl_per_dim"): "elbo/kl (per dimension in its diagnostics)",
    ("posterior_collapse", "distortion"): "−elbo/reconstruction",
}

NOTE_SINGLE_SEED = (
    "† one seed: ± is the estimator's standard error over examples and the interval is "
    "mean ± 1.96 stderr (evaluation noise only, not seed-to-seed variation)."
)
NOTE_NOT_BOUND = (
    "‡ trained on an objective that is not a bound on log p(x); its likelihoods are computed "
    "from its distributions all the same."
)
NOTE_CONDITIONAL = (
    "§ a label-conditional model, scored given each example's true label: its likelihoods and "
    "bounds are of log p(x|y), not log p(x). Since log p(x|y) <= log p(x) - log p(y), its NLL "
    "may sit up to log(number of classes) nats (2.30 for 10 balanced classes) below that of an "
    "unconditional model of the same p(x). It is never bolded as a column's best."
)
NOTE_BOUNDS = "≤ / ≥: the value is an upper / lower bound on the named quantity."


@dataclass(frozen=True)
class Quantity:
    """A headline column: a label and the recorded metric it shows (a wildcard pattern)."""

    label: str
    family: str
    metric: str
    shows_k: bool = False  # label the column with its importance-sample count K


HEADLINE = (
    Quantity("test NLL", "nll", "nll", shows_k=True),
    Quantity("ELBO", "elbo", "elbo"),
    Quantity("KL (rate)", "elbo", "kl"),
    Quantity("active units", "active_units", "active_units"),
    Quantity("FID", "sample_quality", "fid[*"),
)


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
    kind: str = "estimate"  # the seeds' Estimate.kind, "mixed" when they differ
    warnings: tuple[str, ...] = ()  # the seeds' distinct Estimate.warning texts
    params: dict[str, str] = field(default_factory=dict)  # scalar params, "/"-joined over seeds


@dataclass(frozen=True)
class TableCell:
    """A rendered cell: `value` (bolded when best), then `suffix` (marks, interval)."""

    value: str
    suffix: str = ""
    bold: bool = False
    sort: float | str | None = None  # what the HTML page sorts by
    title: str = ""  # hover text in the HTML page
    links: tuple[tuple[str, str], ...] = ()  # (label, path) pairs, e.g. image grids

    def markdown(self) -> str:
        value = f"**{self.value}**" if self.bold and self.value else self.value
        links = " · ".join(f"[{label}]({path})" for label, path in self.links)
        return f"{value}{links}{self.suffix}"


@dataclass(frozen=True)
class Table:
    """A table of one section: header labels and rows of cells, one row per configuration."""

    header: tuple[str, ...]
    rows: tuple[tuple[TableCell, ...], ...]
    row_keys: tuple[ConfigKey, ...] = ()  # the configuration of each row

    def markdown(self) -> list[str]:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        return lines + ["| " + " | ".join(c.markdown() for c in row) + " |" for row in self.rows]


@dataclass(frozen=True)
class Detail:
    """One metric family's folded table and its estimator parameters."""

    family: str
    table: Table
    parameters: str


@dataclass(frozen=True)
class Grid:
    """The image grids of one configuration (its lowest seed): kind -> path under results."""

    config: ConfigKey
    seed: int
    images: dict[str, str]


@dataclass(frozen=True)
class DatasetSection:
    """Everything one dataset's part of the leaderboard shows, for Markdown and HTML alike."""

    dataset: str
    provenance: str
    headline: Table
    notes: tuple[str, ...]
    details: tuple[Detail, ...]
    cost: Table
    grids: tuple[Grid, ...]


_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?!\w)")  # a figure inside a note's text


@dataclass(frozen=True)
class NoteUse:
    """One cell a note applies to: the run, the metric (or family), and the note's own text."""

    run: str
    label: str  # "family/metric" or "family"
    text: str


class Footnotes:
    """The notes of one section: each distinct reason gets one numbered mark, listed once.

    Texts that differ only in their figures (e.g. "only 6% of q* stopped ..." for one seed and
    "only 42% ..." for another) are one reason: the note prints the figures that vary as … and
    lists the runs and metrics it applies to, with each run's figures in parentheses.
    """

    def __init__(self) -> None:
        self.numbered: dict[str, str] = {}  # reason (text with its figures blanked) -> mark
        self.uses: dict[str, list[NoteUse]] = defaultdict(list)
        self.fixed: set[str] = set()

    def mark(self, text: str, *, run: str | None = None, label: str = "") -> str:
        """Return the superscript number of `text`'s reason, adding it if new.

        Args:
            text: The note; a `run`'s figures in it may differ from another run's.
            run: The run the marked cell belongs to, listed in the note; None for a note
                that names what it applies to itself (its figures are then never blanked).
            label: What of the run is marked: ``family/metric`` or ``family``.
        """
        reason = _NUMBER.sub("…", text) if run is not None else text
        if reason not in self.numbered:
            self.numbered[reason] = str(len(self.numbered) + 1).translate(SUPERSCRIPTS)
        if run is not None:
            self.uses[reason].append(NoteUse(run, label, text))
        return self.numbered[reason]

    def lines(self) -> list[str]:
        order = [NOTE_SINGLE_SEED, NOTE_BOUNDS, NOTE_NOT_BOUND, NOTE_CONDITIONAL]
        fixed = [f"- {text}" for text in order if text in self.fixed]
        numbered = [
            f"- {mark} {_grouped_note(self.uses[reason]) if self.uses[reason] else reason}"
            for reason, mark in self.numbered.items()
        ]
        return fixed + numbered


def _grouped_note(uses: list[NoteUse]) -> str:
    """Return one reason's note: its text with the varying figures as …, then where it applies.

    E.g. "only …% of q* stopped ... — inference_gaps/amortization_gap, elbo_q_star of iwae-k5
    (2), vae (18, 42)": runs sharing the same marked metrics are listed together.
    """
    texts = [_NUMBER.split(use.text) for use in uses]  # [text, figure, text, figure, ..., text]
    varying = {i for i in range(1, len(texts[0]), 2) if len({t[i] for t in texts}) > 1}
    template = "".join("…" if i in varying else part for i, part in enumerate(texts[0]))
    labels: dict[str, list[str]] = defaultdict(list)
    figures: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for use, parts in zip(uses, texts, strict=True):
        if use.label not in labels[use.run]:
            labels[use.run].append(use.label)
        figures[use.run].add(tuple(parts[i] for i in sorted(varying)))
    runs_by_labels: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for run in sorted(labels):
        runs_by_labels[tuple(sorted(labels[run]))].append(run + _figures(figures[run]))
    where = "; ".join(
        f"{_compact_labels(list(shared))} of {', '.join(runs)}"
        for shared, runs in runs_by_labels.items()
    )
    return f"{template.rstrip(' .')} — {where}."


def _figures(tuples: set[tuple[str, ...]]) -> str:
    """Return a run's varying figures, e.g. " (18, 42)" or " (6.90, 19.4 / 6.88, 15.8)"."""
    ordered = sorted((t for t in tuples if t), key=lambda t: [float(x) for x in t])
    if not ordered:
        return ""
    separator = " / " if len(ordered[0]) > 1 else ", "
    return f" ({separator.join(', '.join(t) for t in ordered)})"


def _compact_labels(labels: list[str]) -> str:
    """Return sorted labels, each family named once: "ais/is_nll, nll/ess, nll"."""
    shown, family = [], None
    for label in sorted(labels):
        head, _, metric = label.partition("/")
        shown.append(metric if head == family and metric else label)
        family = head
    return ", ".join(shown)


def seed_interval(values: list[float], *, stderr: float | None) -> tuple[float, float] | None:
    """Return the 95% confidence interval of the mean of `values` (one per seed).

    Student t across seeds, mean ± t_{0.975, n-1} · std / sqrt(n), for n ≥ 2; for one seed the
    normal interval from the estimator's standard error, or None when it has none.
    """
    from benchmark.stats import mean_interval

    if len(values) > 1:
        return mean_interval(values, CONFIDENCE)
    if stderr is None:
        return None
    half = stats.norm.ppf(0.5 + CONFIDENCE / 2) * stderr
    return values[0] - half, values[0] + half


def metric_version(estimate: Estimate) -> str:
    """Return the version an evaluator recorded in ``params["version"]``, or ``unversioned``."""
    version = estimate.params.get(VERSION_KEY)
    return UNVERSIONED if version is None else str(version)


def metric_rows(records: list[RunRecord]) -> pd.DataFrame:
    """Return one row per (record, metric) in long format, the basis of the CSV."""
    rows = []
    for record in records:
        base = {
            "dataset": record.dataset.name,
            "suite": record.spec.get("suite") or "",
            "run": record.name,
            "model": record.model.name,
            # Likelihoods of a label-conditional model are of log p(x|y) (§ on the leaderboard).
            "conditional": record.model.conditions_on_labels,
            "config_hash": record.config_key.config_hash,
            "seed": record.seed,
            "status": record.status,
            "commit": (record.git.commit or "")[:7],
        }
        for family, metrics in sorted(record.metrics.items()):
            rows += [_metric_row(base, family, name, e) for name, e in sorted(metrics.items())]
        if not record.metrics:
            rows.append({**base, "family": "", "metric": "", "value": None})
    return pd.DataFrame(rows)


def _metric_row(base: dict, family: str, name: str, estimate: Estimate) -> dict:
    return {
        **base,
        "family": family,
        "metric": name,
        "value": estimate.value,
        "stderr": estimate.stderr,
        "n": estimate.n,
        "unit": estimate.unit,
        "higher_is_better": estimate.higher_is_better,
        "kind": estimate.kind,
        "warning": estimate.warning or "",
        "same_as": SAME_AS.get((family, name), ""),
        "params": json.dumps(_shown_params(estimate.params), sort_keys=True),
    }


def _shown_params(params: dict) -> dict:
    """Keep scalar parameters only: lists (e.g. per-example values) do not belong in a table."""
    return {k: v for k, v in params.items() if not isinstance(v, list | dict)}


def format_number(value: float | None, digits: int = 3) -> str:
    """Format with `digits` significant digits in plain notation, or ``—`` for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if value == 0:
        return "0"
    exponent = int(math.floor(math.log10(abs(value))))
    decimals = digits - 1 - exponent
    if decimals <= 0:
        return f"{round(value, decimals):.0f}"
    return f"{value:.{min(decimals, 6)}f}"


def format_count(value: float | None) -> str:
    """Format a large count compactly: 52816 -> 52.8k, 1234567 -> 1.23M."""
    if value is None:
        return "—"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            text = format_number(value / scale)
            return (text.rstrip("0").rstrip(".") if "." in text else text) + suffix
    return format_number(value)


def aggregate(records: list[RunRecord]) -> dict[tuple[ConfigKey, str, str], Cell]:
    """Aggregate ok records into cells keyed by (config key, family, metric)."""
    values: dict[tuple[ConfigKey, str, str], list[Estimate]] = defaultdict(list)
    for record in records:
        if record.status != "ok":
            continue
        for family, metrics in record.metrics.items():
            for name, estimate in metrics.items():
                values[(record.config_key, family, name)].append(estimate)
    return {key: _cell(estimates) for key, estimates in values.items()}


def _cell(estimates: list[Estimate]) -> Cell:
    means = [e.value for e in estimates]
    first = estimates[0]
    kinds = {e.kind for e in estimates}
    params: dict[str, set[str]] = defaultdict(set)
    for estimate in estimates:
        for key, value in _shown_params(estimate.params).items():
            params[key].add(value if isinstance(value, str) else json.dumps(value))
    return Cell(
        mean(means),
        stdev(means) if len(means) > 1 else first.stderr,
        len(means),
        first.unit,
        first.higher_is_better,
        seed_interval(means, stderr=first.stderr),
        tuple(sorted({metric_version(e) for e in estimates})),
        kinds.pop() if len(kinds) == 1 else "mixed",
        tuple(sorted({e.warning for e in estimates if e.warning})),
        {k: "/".join(sorted(v)) for k, v in sorted(params.items())},
    )


def config_key(record: RunRecord) -> ConfigKey:
    """Return the configuration key of a record (`RunRecord.config_key`)."""
    return record.config_key


def version_mismatches(
    family: str, configs: list[ConfigKey], cells: dict, metrics: list[str]
) -> dict[str, list[str]]:
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


@dataclass
class SectionContext:
    """What the tables of one dataset section share: cells, row marks, and its notes."""

    records: list[RunRecord]
    cells: dict[tuple[ConfigKey, str, str], Cell]
    configs: list[ConfigKey]
    undefined: dict[tuple[ConfigKey, str, str | None], str]  # (config, family, metric) -> why
    not_bound: set[ConfigKey]
    conditional: set[ConfigKey]
    notes: Footnotes = field(default_factory=Footnotes)

    @classmethod
    def of(cls, records: list[RunRecord]) -> "SectionContext":
        undefined = {}
        for record in records:
            for key, reason in record.undefined_metrics.items():
                family, _, metric = key.partition("/")
                undefined[(record.config_key, family, metric or None)] = reason
        return cls(
            records,
            aggregate(records),
            sorted({r.config_key for r in records}),
            undefined,
            {r.config_key for r in records if not r.model.trains_on_likelihood_bound},
            {r.config_key for r in records if r.model.conditions_on_labels},
        )

    def group(self, config: ConfigKey) -> list[RunRecord]:
        return [r for r in self.records if r.config_key == config]

    def why_undefined(self, config: ConfigKey, family: str, metric: str) -> str | None:
        return self.undefined.get((config, family, metric)) or self.undefined.get(
            (config, family, None)
        )

    def row_name(self, config: ConfigKey) -> str:
        """Return the run name with ‡ and § marks (noting them once in the section)."""
        name = config.run
        if config in self.not_bound:
            self.notes.fixed.add(NOTE_NOT_BOUND)
            name += " ‡"
        if config in self.conditional:
            self.notes.fixed.add(NOTE_CONDITIONAL)
            name += " §"
        return name


def _marks(cell: Cell, notes: Footnotes, *, run: str, label: str) -> str:
    """Return the marks after a value: † one seed, ⚠ + note per warning."""
    text = ""
    if cell.seeds == 1 and cell.spread is not None:
        notes.fixed.add(NOTE_SINGLE_SEED)
        text += "†"
    marks = [notes.mark(warning, run=run, label=label) for warning in cell.warnings]
    for mark in dict.fromkeys(marks):  # seeds whose warnings differ only in figures: one mark
        text += " ⚠" + mark
    return text


def _value(cell: Cell, notes: Footnotes) -> str:
    prefix = BOUND_PREFIX.get(cell.kind, "")
    if prefix:
        notes.fixed.add(NOTE_BOUNDS)
    return prefix + format_number(cell.mean)


def _hover(cell: Cell, family: str, metric: str, group: list[RunRecord]) -> str:
    """Return the hover text of a cell: estimator, parameters, and each seed's provenance."""
    params = ", ".join(f"{k}={v}" for k, v in cell.params.items())
    runs = "; ".join(
        f"seed {r.seed}: spec {r.spec_hash[:12]}, commit {r.git.short or '?'}"
        for r in sorted(group, key=lambda r: r.seed)
    )
    spread = f" ± {format_number(cell.spread, 2)}" if cell.spread is not None else ""
    interval = (
        f", 95% CI [{format_number(cell.interval[0])}, {format_number(cell.interval[1])}]"
        if cell.interval
        else ""
    )
    warnings = "".join(f" Warning: {w}." for w in cell.warnings)  # the figures the note blanks
    return (
        f"{family}/{metric} ({cell.kind}, {cell.unit}): {format_number(cell.mean)}{spread}"
        f"{interval}, {cell.seeds} seed(s). Parameters: {params or 'none'}. Runs: {runs}."
        f"{warnings}"
    )


def dataset_section(records: list[RunRecord]) -> DatasetSection:
    """Build one dataset's section: headline, notes, folded family details, costs, grids."""
    context = SectionContext.of(records)
    headline = headline_table(context)
    details = tuple(detail_tables(context))
    cost = cost_table(context)
    grids = tuple(g for g in (_grid(context.group(c)) for c in context.configs) if g)
    return DatasetSection(
        records[0].dataset.name,
        _provenance(records),
        headline,
        tuple(context.notes.lines()),
        details,
        cost,
        grids,
    )


def _headline_metric(context: SectionContext, quantity: Quantity) -> str | None:
    """Return the first metric name of the section matching the quantity's pattern."""
    names = sorted(
        {m for (_, f, m) in context.cells if f == quantity.family}
        | {m for (_, f, m) in context.undefined if f == quantity.family and m}
    )
    return next((m for m in names if fnmatch.fnmatchcase(m, quantity.metric)), None)


def headline_table(context: SectionContext) -> Table:
    """Render the headline table: one row per configuration, sorted by the first quantity."""
    columns = [(q, _headline_metric(context, q)) for q in HEADLINE]
    columns = [(q, m) for q, m in columns if m is not None]
    order = _headline_order(context, columns[0] if columns else None)
    labels = [_headline_header(context, q, m) for q, m in columns]
    header = ["model", "params", *labels, "budget", "seeds"]
    comparable = [c for c in order if c not in context.conditional]
    rows = []
    for index, config in enumerate(order):
        cells = [_headline_cell(context, config, q, m, comparable) for q, m in columns]
        if columns:
            cells[0] = _with_interval(context, order, index, columns[0], cells[0])
        rows.append(
            (
                TableCell(context.row_name(config), sort=config.run),
                _parameters_cell(context.group(config)),
                *cells,
                _budget_cell(context.group(config)),
                _seeds_cell(context.group(config)),
            )
        )
    return Table(tuple(header), tuple(rows), tuple(order))


def _headline_header(context: SectionContext, quantity: Quantity, metric: str) -> str:
    cell = next(
        (context.cells[k] for k in sorted(context.cells) if k[1:] == (quantity.family, metric)),
        None,
    )
    label = quantity.label
    if "[" in metric:  # the feature network's id, e.g. fid[lenet-ab89def4f8ce]
        label += metric[metric.index("[") :]
    k = _column_k(context, quantity.family, metric) if quantity.shows_k else None
    if k is not None:
        label += f" (K={k})"
    if cell is None:
        return label
    arrow = ARROWS[cell.higher_is_better]
    return f"{label} {arrow}".strip() + (f" ({cell.unit})" if cell.unit else "")


def _column_k(context: SectionContext, family: str, metric: str) -> str | None:
    """Return the most common K of a column (shown in its header), or None if it has none."""
    ks = [
        c.params["k"]
        for key, c in context.cells.items()
        if key[1:] == (family, metric) and "k" in c.params
    ]
    return max(sorted(set(ks)), key=ks.count) if ks else None


def _headline_order(context: SectionContext, first: tuple[Quantity, str] | None) -> list[ConfigKey]:
    """Order rows: unconditional before conditional, by the first quantity's direction, then
    name; rows without that quantity last."""

    def key(config: ConfigKey) -> tuple:
        cell = context.cells.get((config, first[0].family, first[1])) if first else None
        if cell is None:
            return (config in context.conditional, 1, 0.0, config.run, config.config_hash)
        sign = -1.0 if cell.higher_is_better else 1.0
        return (config in context.conditional, 0, sign * cell.mean, config.run, config.config_hash)

    return sorted(context.configs, key=key)


def _headline_cell(
    context: SectionContext,
    config: ConfigKey,
    quantity: Quantity,
    metric: str,
    comparable: list[ConfigKey],
) -> TableCell:
    """Render a headline cell; a K other than the column's is shown in the cell."""
    cell = context.cells.get((config, quantity.family, metric))
    if cell is None:
        return _missing_cell(context, config, quantity.family, metric)
    best = _best([context.cells.get((c, quantity.family, metric)) for c in comparable])
    k = cell.params.get("k") if quantity.shows_k else None
    shown_k = "" if k in (None, _column_k(context, quantity.family, metric)) else f" (K={k})"
    return TableCell(
        _value(cell, context.notes),
        _marks(cell, context.notes, run=config.run, label=f"{quantity.family}/{metric}") + shown_k,
        bold=config in comparable and cell.mean == best,
        sort=cell.mean,
        title=_hover(cell, quantity.family, metric, context.group(config)),
    )


def _missing_cell(
    context: SectionContext, config: ConfigKey, family: str, metric: str
) -> TableCell:
    reason = context.undefined.get((config, family, metric))
    what = f"{family}/{metric}"
    if reason is None:
        reason, what = context.undefined.get((config, family, None)), family
    if reason is None:
        return TableCell("—")
    mark = context.notes.mark(f"n/a: {reason}", run=config.run, label=what)
    return TableCell("n/a", mark, title=reason)


def _with_interval(
    context: SectionContext,
    order: list[ConfigKey],
    index: int,
    column: tuple[Quantity, str],
    rendered: TableCell,
) -> TableCell:
    """Add the 95% interval to a sorting-column cell whose interval overlaps a neighbour's."""
    quantity, metric = column

    def interval(i: int) -> tuple[float, float] | None:
        if not 0 <= i < len(order):
            return None
        cell = context.cells.get((order[i], quantity.family, metric))
        return cell.interval if cell else None

    own = interval(index)
    neighbours = [iv for iv in (interval(index - 1), interval(index + 1)) if iv is not None]
    if own is None or not any(own[0] <= high and low <= own[1] for low, high in neighbours):
        return rendered
    shown = f" [{format_number(own[0])}, {format_number(own[1])}]"
    return TableCell(
        rendered.value, rendered.suffix + shown, rendered.bold, rendered.sort, rendered.title
    )


def _parameters_cell(group: list[RunRecord]) -> TableCell:
    count = group[0].model.num_parameters
    return TableCell(format_count(count), sort=count, title=f"{count} parameters")


def _budget_cell(group: list[RunRecord]) -> TableCell:
    train = group[0].spec.get("train") or {}
    steps, batch = train.get("steps"), train.get("batch_size")
    if steps is None:
        return TableCell("—")
    title = f"{steps} steps of batch {batch}" if batch else f"{steps} steps"
    return TableCell(f"{format_count(steps)} steps", sort=steps, title=title)


def _seeds_cell(group: list[RunRecord]) -> TableCell:
    ok = sum(r.status == "ok" for r in group)
    others = sorted({r.status for r in group} - {"ok"})
    extra = "".join(f" (+{sum(r.status == s for r in group)} {s})" for s in others)
    seeds = ", ".join(str(r.seed) for r in sorted(group, key=lambda r: r.seed))
    return TableCell(f"{ok}{extra}", sort=ok, title=f"seeds {seeds}")


def detail_tables(context: SectionContext) -> list[Detail]:
    """Render one folded table per metric family, duplicates (`SAME_AS`) left out."""
    families = sorted({k[1] for k in context.cells} | {k[1] for k in context.undefined})
    details = []
    for family in families:
        metrics = sorted(
            {m for (_, f, m) in context.cells if f == family}
            | {m for (_, f, m) in context.undefined if f == family and m}
        )
        metrics = [m for m in metrics if (family, m) not in SAME_AS]
        # NOTE: a configuration whose every metric of the family is n/a (a `NotDefined` per
        # metric, e.g. the CVAE's linear probe) keeps its row, so the reason is shown.
        configs = [
            c
            for c in context.configs
            if any(
                (c, family, m) in context.cells or (c, family, m) in context.undefined
                for m in metrics
            )
            or context.why_undefined(c, family, "") is not None
        ]
        if metrics and configs:
            table = family_table(context, family, configs, metrics)
            details.append(Detail(family, table, _parameters_note(context.records, family)))
    return details


def family_table(
    context: SectionContext, family: str, configs: list[ConfigKey], metrics: list[str]
) -> Table:
    """Render one metric family: rows = configurations, cells = mean ± spread with marks."""
    header = ["model", "seeds"] + [_metric_header(context, family, m) for m in metrics]
    comparable = [c for c in configs if c not in context.conditional]
    bests = {m: _best([context.cells.get((c, family, m)) for c in comparable]) for m in metrics}
    mismatched = version_mismatches(family, configs, context.cells, metrics)
    rows = []
    for config in configs:
        cells = [context.cells.get((config, family, m)) for m in metrics]
        seeds = max((c.seeds for c in cells if c is not None), default=0)
        rendered = [
            _detail_cell(
                context,
                config,
                family,
                m,
                c,
                c is not None and config in comparable and c.mean == bests[m],
                mismatched.get(m),
            )
            for c, m in zip(cells, metrics, strict=True)
        ]
        name = TableCell(context.row_name(config), sort=config.run)
        rows.append((name, TableCell(str(seeds), sort=seeds), *rendered))
    return Table(tuple(header), tuple(rows), tuple(configs))


def _detail_cell(
    context: SectionContext,
    config: ConfigKey,
    family: str,
    metric: str,
    cell: Cell | None,
    bold: bool,
    versions: list[str] | None,
) -> TableCell:
    if cell is None:
        return _missing_cell(context, config, family, metric)
    spread = f" ± {format_number(cell.spread, 2)}" if cell.spread is not None else ""
    suffix = spread + _marks(cell, context.notes, run=config.run, label=f"{family}/{metric}")
    if versions:
        mark = context.notes.mark(
            f"`{family}/{metric}` mixes metric versions {', '.join(versions)} "
            f'(`Estimate.params["version"]`): cells marked ⚠v… may not be comparable.'
        )
        suffix += f" ⚠v{'/'.join(cell.versions)}{mark}"
    return TableCell(
        _value(cell, context.notes),
        suffix,
        bold,
        cell.mean,
        _hover(cell, family, metric, context.group(config)),
    )


def _metric_header(context: SectionContext, family: str, metric: str) -> str:
    cell = next(
        (
            context.cells[(c, family, metric)]
            for c in context.configs
            if (c, family, metric) in context.cells
        ),
        None,
    )
    arrow = ARROWS[cell.higher_is_better] if cell else ""
    unit = f" ({cell.unit})" if cell and cell.unit else ""
    return f"{metric} {arrow}{unit}".replace("  ", " ").strip()


def _provenance(records: list[RunRecord]) -> str:
    first = records[0].dataset
    suites = sorted({r.spec.get("suite") or "(single runs)" for r in records})
    checksum = str(first.checksum or "")[:16]
    return (
        f"Suites: {', '.join(suites)} · preprocessing `{first.preprocessing}` · "
        f"data checksum `{checksum}` · runs: {len(records)}."
    )


def _parameters_note(records: list[RunRecord], family: str) -> str:
    seen: dict[str, set] = defaultdict(set)
    for record in records:
        for estimate in record.metrics.get(family, {}).values():
            for key, value in _shown_params(estimate.params).items():
                seen[key].add(value if isinstance(value, str) else json.dumps(value))
    if not seen:
        return ""
    shown = ", ".join(f"{k}={'/'.join(sorted(v))}" for k, v in sorted(seen.items()))
    return f"Estimator parameters: {shown}."


def cost_table(context: SectionContext) -> Table:
    """Render costs and provenance: status, size, seconds, TFLOP-eq, memory, hash, commits."""
    header = (
        "model",
        "registry name",
        "status",
        "params",
        "train s",
        "train cost (TFLOP-eq)",
        "eval s",
        "peak RSS MiB",
        "config hash",
        "commits",
        "images",
    )
    rows = tuple(_cost_row(c, context.group(c)) for c in context.configs)
    return Table(header, rows, tuple(context.configs))


def _cost_row(config: ConfigKey, group: list[RunRecord]) -> tuple[TableCell, ...]:
    statuses = ", ".join(
        f"{s}×{sum(r.status == s for r in group)}" for s in sorted({r.status for r in group})
    )
    numbers = [
        [v for v in values if v is not None]
        for values in (
            [r.timings.train for r in group],
            [train_cost(r) for r in group],
            [r.timings.eval for r in group],
            [r.resources.peak_rss_mb for r in group],
        )
    ]
    averaged = [
        TableCell(format_number(mean(v)) if v else "—", sort=mean(v) if v else None)
        for v in numbers
    ]
    grid = _grid(group)
    links = tuple((kind, path) for kind, path in sorted(grid.images.items())) if grid else ()
    return (
        TableCell(config.run, sort=config.run),
        TableCell(group[0].model.name),
        TableCell(statuses),
        _parameters_cell(group),
        *averaged,
        TableCell(f"`{config.config_hash}`"),
        TableCell(", ".join(sorted({r.git.short for r in group}))),
        TableCell("" if grid else "—", f" (seed {grid.seed})" if grid else "", links=links),
    )


def train_cost(record: RunRecord) -> float | None:
    """Return training seconds x the machine's calibrated fp32 GEMM rate, in TFLOP-equivalents.

    The work this machine's GEMM peak could have done in the training time: a cost comparable
    across machines of different speed (benchmark/calibration.py measures the rate per process).
    """
    seconds, rate = record.timings.train, record.environment.gemm_gflops
    return None if seconds is None or not rate else seconds * rate / 1000


def _grid(group: list[RunRecord]) -> Grid | None:
    with_images = [r for r in group if r.images]
    if not with_images:
        return None
    record = min(with_images, key=lambda r: r.seed)
    return Grid(record.config_key, record.seed, dict(sorted(record.images.items())))


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
        if (datasets is None or hit(r.dataset.name, datasets))
        and (models is None or hit(r.name, models) or hit(r.model.name, models))
    ]
    if not kept:
        raise ValueError(
            f"Expected `--dataset` {datasets} and `--models` {models} to match some records, but "
            f"none matched; datasets: {sorted({r.dataset.name for r in records})}, runs: "
            f"{sorted({r.name for r in records})}."
        )
    return kept


def dataset_sections(records: list[RunRecord]) -> list[DatasetSection]:
    """Return one section per dataset, sorted by dataset name."""
    by_dataset: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        by_dataset[record.dataset.name].append(record)
    return [dataset_section(by_dataset[name]) for name in sorted(by_dataset)]


def _header(records: list[RunRecord], filters: str) -> list[str]:
    filtered = f" Filtered to {filters}." if filters else ""
    return [
        f"<!-- Generated by `{REGENERATE}` from the run records in results/runs; do not edit. -->",
        "# vaebench leaderboard",
        "",
        f"Generated from {len(records)} run records by `{REGENERATE}`, which also writes "
        f"`leaderboard.csv` and the figures (`{REGENERATE} --html` writes a browsable page)."
        f"{filtered} Each dataset opens with its headline table: the mean across seeds to 3 "
        "significant figures, rows sorted by the first column after params, and that column's "
        "95% interval shown only where it overlaps a neighbour's (Student t across seeds). "
        "↑ higher is better, ↓ lower is better; the best mean of a column is bold. Notes follow "
        "the table; every metric of every evaluator is in the folded details (mean ± std across "
        "seeds) and in the CSV. Likelihoods are in nats per example unless the unit says "
        "otherwise.",
        "",
    ]


def section_markdown(
    section: DatasetSection, figures: list, figures_link: str | None, images_link: str | None
) -> list[str]:
    """Render one dataset section as Markdown."""
    lines = [f"## {section.dataset}", "", section.provenance, "", *section.headline.markdown(), ""]
    if section.notes:
        lines += [*section.notes, ""]
    for detail in section.details:
        lines += [f"<details><summary>{detail.family}</summary>", "", *detail.table.markdown(), ""]
        lines += (
            [detail.parameters, "", "</details>", ""] if detail.parameters else ["</details>", ""]
        )
    cost = _linked(section.cost, images_link)
    lines += [
        "<details><summary>cost and provenance</summary>",
        "",
        *cost.markdown(),
        "",
        "</details>",
        "",
    ]
    for figure in figures if figures_link is not None else []:
        lines += [f"![{figure.title}]({figures_link}/{figure.filename})", ""]
    return lines


def _linked(table: Table, images_link: str | None) -> Table:
    """Prefix image paths with the results folder's link, or drop them when there is none."""
    rows = []
    for row in table.rows:
        last = row[-1]
        links = tuple((k, f"{images_link}/{p}") for k, p in last.links) if images_link else ()
        shown = TableCell("" if links else "—", last.suffix if links else "", links=links)
        rows.append((*row[:-1], shown))
    return Table(table.header, tuple(rows), table.row_keys)


def render_leaderboard(
    records: list[RunRecord],
    *,
    figures_link: str | None = None,
    images_link: str | None = None,
    literature: list | None = None,
    filters: str = "",
    progress: tuple | list = (),
) -> str:
    """Return the whole leaderboard.md text for `records`.

    Args:
        records: The run records to tabulate (already filtered).
        figures_link: Folder of the figures relative to leaderboard.md; None embeds none.
        images_link: The results folder relative to leaderboard.md, under which the records'
            image paths lie; None links no per-run images.
        literature: Published results (`benchmark.literature.load_literature`); None omits them.
        filters: Human-readable description of the filters applied, for the header.
        progress: Snapshots of unfinished runs (`benchmark.progress`), shown as in progress.
    """
    # NOTE: imported here because literature.py formats numbers with this module's helpers
    from benchmark.figures import planned_figures
    from benchmark.literature import literature_section

    lines = _header(records, filters)
    figures = planned_figures(records, progress) if figures_link is not None else []
    # NOTE: learning curves go under "Paper vs reproduced", where their dashed paper line
    # belongs, and they also cover datasets that only have runs in progress.
    curves = [f for f in figures if f.kind == "learning-curve"]
    for section in dataset_sections(records):
        shown = [f for f in figures if f.dataset == section.dataset and f not in curves]
        lines += section_markdown(section, shown, figures_link, images_link)
    if literature is not None:
        links = [f"![{f.dataset}: {f.title}]({figures_link}/{f.filename})" for f in curves]
        lines += literature_section(literature, records, progress, figure_links=links)
    return "\n".join(lines).rstrip() + "\n"


def load_literature_or_warn(results_dir: Path, *, strict: bool) -> list | None:
    """Return the entries of ``results_dir/literature.yaml``; None when absent or (unless
    `strict`) unreadable, with one warning line naming the file."""
    import yaml

    from benchmark.literature import load_literature

    path = Path(results_dir) / "literature.yaml"
    if not path.is_file():
        return None
    try:
        return load_literature(path)
    except (ValueError, TypeError, KeyError, AttributeError, OSError, yaml.YAMLError) as error:
        if strict:
            raise ValueError(
                f"Expected {path} to be a valid literature file, but: {error}"
            ) from None
        log.warning(
            "skipped %s: %s (use --strict to fail instead)", path, str(error).splitlines()[0]
        )
        return None


COMMITTED_RESULTS = Path("results")  # the repository's records, tabulated in ./leaderboard.md


@dataclass(frozen=True)
class LeaderboardPaths:
    """Where a leaderboard's files go."""

    markdown: Path
    csv: Path
    figures: Path
    html: Path | None = None


def leaderboard_paths(
    results_dir: Path | None,
    *,
    output: Path | None = None,
    csv: Path | None = None,
    html: bool | Path = False,
    filtered: bool = False,
) -> LeaderboardPaths:
    """Decide where a leaderboard goes: the committed files only for the repository's results.

    The committed ``leaderboard.md``, ``.csv`` and ``figures/`` (in the working folder) are
    written only for the default results folder with no filters. Any other results folder, or a
    filtered view, goes beside its records (``DIR/leaderboard.md`` ...), so a suite run into a
    scratch folder never overwrites the repository's tables. An explicit `output` wins; its CSV
    and figures then go beside it.

    Args:
        results_dir: The records' folder; None means the repository's ``results``.
        output: The Markdown file, if given.
        csv: The CSV file, if given.
        html: True for ``leaderboard.html`` beside the Markdown, or a path.
        filtered: Whether dataset or model filters apply.
    """
    results = Path(results_dir) if results_dir is not None else COMMITTED_RESULTS
    committed = results.resolve() == COMMITTED_RESULTS.resolve() and not filtered
    root = Path(".") if committed else results
    markdown = Path(output) if output is not None else root / "leaderboard.md"
    page = Path(html) if isinstance(html, Path) else markdown.with_suffix(".html") if html else None
    return LeaderboardPaths(
        markdown,
        Path(csv) if csv is not None else markdown.with_suffix(".csv"),
        markdown.parent / "figures",
        page,
    )


def write_leaderboard(
    results_dir: Path,
    output: Path,
    csv_output: Path,
    *,
    datasets: list[str] | None = None,
    models: list[str] | None = None,
    figures_dir: Path | None = None,
    html_output: Path | None = None,
    strict: bool = False,
) -> list[RunRecord]:
    """Load and filter records, then write the Markdown, the CSV, the figures (and the HTML).

    Args:
        results_dir: Holds ``runs/`` and, if present, ``literature.yaml`` and ``progress/``.
        output: The Markdown file; figures are linked relative to its folder.
        csv_output: The long-format CSV, one row per (record, metric).
        datasets: Dataset name patterns to keep (None: all).
        models: Run or model name patterns to keep (None: all).
        figures_dir: Where the PNGs go; default ``figures/`` beside `output`.
        html_output: Also write the self-contained HTML page there (`benchmark.report_html`).
        strict: Fail on a bad record or literature file instead of skipping it with a warning.
    """
    from benchmark.figures import write_figures
    from benchmark.progress import filter_snapshots, load_progress

    records = load_records(results_dir, strict=strict)
    if not records:
        raise ValueError(
            f"Expected run records under {Path(results_dir) / 'runs'}, but found none; "
            f"run `vaebench suite quick` first."
        )
    records = filter_records(records, datasets=datasets, models=models)
    output = Path(output)
    figures_dir = Path(figures_dir) if figures_dir is not None else output.parent / "figures"
    progress = filter_snapshots(
        load_progress(results_dir, strict=strict), datasets=datasets, models=models
    )
    write_figures(records, figures_dir, progress)
    literature = load_literature_or_warn(results_dir, strict=strict)
    filters = "; ".join(
        f"{k} {', '.join(v)}" for k, v in (("datasets", datasets), ("models", models)) if v
    )
    text = render_leaderboard(
        records,
        literature=literature,
        filters=filters,
        figures_link=Path(os.path.relpath(figures_dir, output.parent)).as_posix(),
        images_link=Path(os.path.relpath(results_dir, output.parent)).as_posix(),
        progress=progress,
    )
    atomic_write_text(output, text)
    atomic_write_text(
        Path(csv_output), metric_rows(records).to_csv(index=False, lineterminator="\n")
    )
    if html_output is not None:
        from benchmark.report_html import render_html

        page = render_html(
            records, figures_dir=figures_dir, results_dir=results_dir, filters=filters
        )
        atomic_write_text(Path(html_output), page)
    return records
