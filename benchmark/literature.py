"""The literature side by side: published numbers, and "paper vs reproduced" from our records.

``results/literature.yaml`` holds published reference numbers, each with its source and status:
``primary`` (the authors' own repository or abstract) or ``secondary`` (a third party quoting the
paper). Both are shown, always with their status; a pythae row also carries the number pythae
quotes from the original paper (``reference_value``), which is secondary.

Matching rule. A published number is compared with our records only through an explicit row of
`CORRESPONDENCES` below; nothing is matched by guessing from names. A record matches a row when
all five agree:

| literature (yaml)                    | ours (record)                                       |
|--------------------------------------|-----------------------------------------------------|
| dataset ``MNIST``                    | ``dataset.name == "mnist"``                         |
| preprocessing "dynamic binarization" | ``dataset.preprocessing == "dynamic_binarization"`` |
| preprocessing "fixed (static) …"     | ``dataset.preprocessing == "static_binarization"``  |
| Table 1 "VAE/IWAE trained with k=K"| ``burda_iwae`` with ``objective`` vae/iwae,        |
|  and its stochastic layers (1 or 2)  |  ``num_samples == K`` and ``stochastic_layers``     |
| static "IWAE trained with k=K"       | model ``iwae`` with ``num_samples == K``            |
| metric "test NLL", unit nats         | evaluator ``nll``, metric ``nll``, unit ``nats``    |
| estimator "IWAE bound, …, test set"  | the ``nll`` estimate's ``params["split"] == "test"`` |

The importance-sample count K is shown for both sides and flagged when it differs, but does not
prevent a match: a reduced-budget run may use fewer samples, and the bound L_K rises with K
(Burda et al. 2016), so a smaller K over-states the NLL. Architecture and training budget are
not part of the match either (the paper trained for 3,280 epochs); the "ours" column names the
run so the reader can look its settings up. Published numbers without a row here (other
datasets, models vaebench does not have, "Binary MNIST" rows whose binarization is not stated)
are listed in the published-numbers table only.

A configuration with no ok record but a progress snapshot (`benchmark.progress`: a run still
training across sessions) matches by the same keys, read from the snapshot's resolved spec (the
``eval`` settings of the evaluator stand for the estimate's params). Its row is ``in progress``,
with the share of the paper's budget done and, as ours, the last pass-end probe: IS-NLL on a
fixed test subset with the probe's k, not comparable with the paper's final estimate, so no
difference is shown.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from statistics import mean, stdev
from typing import Any, Literal

import yaml

from benchmark.progress import ProgressSnapshot, format_percent, unfinished
from benchmark.records import RunRecord

LITERATURE_FILE = Path(__file__).resolve().parents[1] / "results" / "literature.yaml"
Status = Literal["primary", "secondary"]
STATUSES = ("primary", "secondary")


@dataclass(frozen=True)
class PublishedResult:
    """One entry of ``results/literature.yaml`` (see the file header for the meaning of fields)."""

    id: str
    paper: str
    year: int
    venue: str
    table_or_file: str
    dataset: str
    preprocessing: str | None
    model: str | None
    metric: str
    value: float | str
    unit: str | None
    estimator: str | None
    k: int | None
    source: str
    status: Status
    architecture: str | None = None
    value_sd: float | None = None
    notes: str | None = None
    reference_value: str | None = None  # the number pythae quotes from the paper (secondary)
    reference_source: str | None = None

    @property
    def is_number(self) -> bool:
        """False for protocol descriptions and notes, which are text, not results."""
        return not self.metric.startswith(("protocol:", "note:"))

    @property
    def short_paper(self) -> str:
        """Return the authors and year, e.g. ``Burda, Grosse & Salakhutdinov 2016``."""
        return f"{self.paper.split(' - ')[0]} {self.year}"


@dataclass(frozen=True)
class Correspondence:
    """How one published number maps onto our records (one row of the matching table)."""

    literature_id: str
    dataset: str  # our dataset registry name
    preprocessing: str  # our preprocessing name
    model: str  # our model registry name
    model_settings: dict[str, Any] = field(default_factory=dict)  # hyperparameters that must equal
    family: str = "nll"  # our evaluator (metric family)
    metric: str = "nll"
    estimator: dict[str, Any] = field(default_factory=lambda: {"split": "test"})


def _iwae_table1(layers: int, objective: str, k: int) -> Correspondence:
    settings = {"stochastic_layers": layers, "objective": objective, "num_samples": k}
    return Correspondence(
        f"iwae-t1-mnist-L{layers}-{objective}-k{k}",
        "mnist",
        "dynamic_binarization",
        "burda_iwae",
        settings,
    )


# Table 1 maps onto `burda_iwae`, the released architecture; the static-binarization rows onto
# the generic `iwae` family, for which no protocol suite exists yet.
CORRESPONDENCES: tuple[Correspondence, ...] = (
    *(
        _iwae_table1(layers, objective, k)
        for layers in (1, 2)
        for objective in ("vae", "iwae")
        for k in (1, 5, 50)
    ),
    Correspondence(
        "iwae-static-mnist-L1-iwae-k1", "mnist", "static_binarization", "iwae", {"num_samples": 1}
    ),
    Correspondence(
        "iwae-static-mnist-L1-iwae-k5", "mnist", "static_binarization", "iwae", {"num_samples": 5}
    ),
    Correspondence(
        "iwae-static-mnist-L1-iwae-k50", "mnist", "static_binarization", "iwae", {"num_samples": 50}
    ),
)
REPRODUCED_WITHIN = 0.3  # nats: "reproduced" means |ours - paper| <= max(this, the paper's spread)
Verdict = Literal[
    "reproduced", "differs", "inconclusive", "reduced budget", "in progress", "not run"
]


def load_literature(path: str | Path = LITERATURE_FILE) -> list[PublishedResult]:
    """Read and validate the literature file: known keys, a status per entry, unique ids.

    Raises:
        ValueError: on unknown or missing keys, an unknown status or a duplicate id.
    """
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, list):
        raise ValueError(
            f"Expected {path} to hold a list of entries, but got {type(raw).__name__}."
        )
    entries = [_entry(item, path) for item in raw]
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"Expected unique ids in {path}, but got duplicates {duplicates}.")
    return entries


def _entry(item: dict[str, Any], path: str | Path) -> PublishedResult:
    names = {f.name for f in fields(PublishedResult)}
    unknown = sorted(set(item) - names)
    if unknown:
        raise ValueError(
            f"Expected keys of {path} among {sorted(names)}, but got unknown {unknown}."
        )
    if item.get("status") not in STATUSES:
        raise ValueError(
            f"Expected `status` of {item.get('id')!r} to be one of {list(STATUSES)}, "
            f"but got {item.get('status')!r}."
        )
    try:
        return PublishedResult(**item)
    except TypeError as error:  # a required key is missing
        raise ValueError(
            f"Expected entry {item.get('id')!r} of {path} to be complete: {error}"
        ) from None


def _text(value: Any, limit: int = 60) -> str:
    """Return a table-safe short form: first clause, no pipes, at most `limit` characters."""
    if value is None:
        return "—"
    text = str(value).split(";")[0].replace("|", "\\|").replace("\n", " ").strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def literature_table(entries: list[PublishedResult]) -> list[str]:
    """Render every published number with its status (pythae's quotes on rows of their own)."""
    lines = [
        "| id | paper | dataset | preprocessing | model | metric | value | unit | K | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in (e for e in entries if e.is_number):
        shown = f"{entry.value} ± {entry.value_sd}" if entry.value_sd is not None else entry.value
        lines.append(_row(entry, entry.id, shown, entry.status))
        if entry.reference_value is not None:
            quoted = f"{entry.reference_value} (as quoted by pythae from {entry.reference_source})"
            lines.append(_row(entry, f"↳ {entry.id}", quoted, "secondary"))
    return lines


def _row(entry: PublishedResult, label: str, value: Any, status: str) -> str:
    cells = [
        label,
        entry.short_paper,
        entry.dataset,
        _text(entry.preprocessing),
        _text(entry.model),
        _text(entry.metric),
        _text(value, 80),
        _text(entry.unit),
        _text(entry.k),
        status,
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def matches(correspondence: Correspondence, record: RunRecord, unit: str | None) -> bool:
    """Return whether `record` is a reproduction of the published number of `correspondence`."""
    c = correspondence
    model, dataset = record.spec.get("model", {}), record.dataset
    preprocessing = dataset.preprocessing or record.spec.get("dataset", {}).get("preprocessing")
    estimate = record.metric(c.family, c.metric)
    return (
        record.status == "ok"
        and estimate is not None
        and dataset.name == c.dataset
        and preprocessing == c.preprocessing
        and model.get("name") == c.model
        and all(model.get(k) == v for k, v in c.model_settings.items())
        and all(estimate.params.get(k) == v for k, v in c.estimator.items())
        and estimate.unit == unit
    )


@dataclass(frozen=True)
class Reproduction:
    """Our runs of one configuration set beside one published number."""

    published: PublishedResult
    correspondence: Correspondence
    run: str | None  # our run name, or None when no record matches yet
    values: tuple[float, ...] = ()  # one per seed
    k: tuple[int | None, ...] = ()  # our importance-sample counts
    stderrs: tuple[float | None, ...] = ()  # each seed's standard error over test examples
    budget_fraction: float | None = None  # the smallest share of the paper's budget among seeds
    in_progress: tuple[ProgressSnapshot, ...] = ()  # unfinished seeds, when no record matches
    warnings: tuple[str, ...] = ()  # what the estimates' own diagnostics say against them

    @property
    def caveat(self) -> str:
        """Return `` ⚠ reason; reason`` when a seed's estimate is not trusted by its own
        diagnostics (e.g. PSIS k-hat), else an empty string: a number is never shown without it."""
        return f" ⚠ {'; '.join(self.warnings)}" if self.warnings else ""

    @property
    def difference(self) -> float | None:
        """Return ours − paper, using the mean across seeds."""
        return mean(self.values) - float(self.published.value) if self.values else None

    @property
    def difference_interval(self) -> tuple[float, float] | None:
        """Return the 95% CI of ours − paper: across seeds, or one seed's over test examples."""
        from benchmark.leaderboard import seed_interval

        if not self.values:
            return None
        interval = seed_interval(
            list(self.values), stderr=self.stderrs[0] if self.stderrs else None
        )
        if interval is None:
            return None
        return interval[0] - float(self.published.value), interval[1] - float(self.published.value)

    @property
    def verdict(self) -> Verdict:
        """Judge the row: see `reproduction_verdict`."""
        return reproduction_verdict(
            self.difference,
            self.difference_interval,
            self.budget_fraction,
            tolerance=max(REPRODUCED_WITHIN, self.published.value_sd or 0.0),
            in_progress=bool(self.in_progress),
        )


def reproduction_verdict(
    difference: float | None,
    interval: tuple[float, float] | None,
    budget_fraction: float | None,
    *,
    tolerance: float,
    in_progress: bool = False,
) -> Verdict:
    """Return the verdict of one reproduced number.

    - ``in progress``: no record, but a run still training (a progress snapshot);
    - ``not run``: no record and no run in progress;
    - ``reduced budget``: trained for less than the paper's budget (or with no protocol budget),
      so not yet comparable;
    - ``reproduced``: at full budget, |ours − paper| <= `tolerance` and the 95% CI of the
      difference reaches into [−tolerance, tolerance];
    - ``differs``: at full budget, the CI lies wholly outside that band;
    - ``inconclusive``: at full budget, neither (e.g. the mean is off but the CI is wide).

    Args:
        difference: ours − paper (mean over seeds), or None when not run.
        interval: The 95% CI of the difference, or None when it cannot be formed.
        budget_fraction: The smallest fraction of the paper's budget among our seeds.
        tolerance: Nats: 0.3, or the paper's own reported spread where that is larger.
        in_progress: Whether an unfinished run of the configuration has a progress snapshot.
    """
    if difference is None:
        return "in progress" if in_progress else "not run"
    if budget_fraction is None or budget_fraction < 1:
        return "reduced budget"
    low, high = interval if interval is not None else (difference, difference)
    if abs(difference) <= tolerance and low <= tolerance and high >= -tolerance:
        return "reproduced"
    if low > tolerance or high < -tolerance:
        return "differs"
    return "inconclusive"


def reproductions(
    entries: list[PublishedResult],
    records: list[RunRecord],
    progress: Sequence[ProgressSnapshot] = (),
) -> list[Reproduction]:
    """Pair every row of `CORRESPONDENCES` with the matching records, one item per configuration,
    and with the matching unfinished runs of `progress`, one item per configuration that has no
    record yet (a full-protocol run still training beside finished reduced-budget runs of the
    same model); a row that neither matches is ``not run``."""
    by_id = {e.id: e for e in entries}
    progress = unfinished(list(progress), records)
    rows = []
    for c in CORRESPONDENCES:
        published = by_id.get(c.literature_id)
        if published is None:  # a subset of the literature was given
            continue
        groups: dict[tuple[str, str], list[RunRecord]] = {}
        for record in records:
            if matches(c, record, published.unit):
                groups.setdefault((record.spec["name"], record.config_hash), []).append(record)
        rows += [
            _reproduction(published, c, run, group) for (run, _), group in sorted(groups.items())
        ]
        training = _in_progress(published, c, progress, finished={h for _, h in groups})
        rows += training if groups or training else [Reproduction(published, c, None)]
    return rows


def progress_matches(
    correspondence: Correspondence, snapshot: ProgressSnapshot, unit: str | None
) -> bool:
    """Return whether the unfinished run of `snapshot` is a reproduction of the published number
    (the rule of `matches`, read from the snapshot's resolved spec)."""
    c, spec = correspondence, snapshot.spec
    model, dataset = spec.get("model", {}), spec.get("dataset", {})
    evaluator = spec.get("eval", {}).get(c.family)
    return (
        isinstance(evaluator, dict)
        and unit == "nats"  # NOTE: the probe is an IS-NLL in nats
        and dataset.get("name") == c.dataset
        and dataset.get("preprocessing") == c.preprocessing
        and model.get("name") == c.model
        and all(model.get(k) == v for k, v in c.model_settings.items())
        and all(evaluator.get(k) == v for k, v in c.estimator.items())
    )


def _in_progress(
    published: PublishedResult,
    c: Correspondence,
    progress: list[ProgressSnapshot],
    *,
    finished: set[str],
) -> list[Reproduction]:
    """Return one in-progress item per matching configuration (config hash) not in `finished`.

    NOTE: a configuration with a record is shown by its record; a seed of it still training
    waits for the record's next regeneration rather than splitting the row.
    """
    groups: dict[tuple[str, str], list[ProgressSnapshot]] = {}
    for snapshot in progress:
        if progress_matches(c, snapshot, published.unit) and snapshot.config_hash not in finished:
            groups.setdefault((snapshot.name, snapshot.config_hash), []).append(snapshot)
    rows = []
    for (run, _), group in sorted(groups.items()):
        ordered = tuple(sorted(group, key=lambda s: s.seed))
        fractions = [s.budget_fraction for s in ordered]
        budget = None if None in fractions else min(fractions)
        rows.append(Reproduction(published, c, run, budget_fraction=budget, in_progress=ordered))
    return rows


def _reproduction(
    published: PublishedResult, c: Correspondence, run: str, group: list[RunRecord]
) -> Reproduction:
    ordered = sorted(group, key=lambda r: r.spec["seed"])
    estimates = [r.metric(c.family, c.metric) for r in ordered]
    fractions = [r.training.budget_fraction for r in ordered]
    return Reproduction(
        published,
        c,
        run,
        tuple(e.value for e in estimates),
        tuple(sorted({e.params.get("k") for e in estimates}, key=str)),
        tuple(e.stderr for e in estimates),
        None if None in fractions else min(fractions),
        warnings=tuple(dict.fromkeys(e.warning for e in estimates if e.warning)),
    )


def reproduction_table(
    entries: list[PublishedResult],
    records: list[RunRecord],
    progress: Sequence[ProgressSnapshot] = (),
) -> list[str]:
    """Render "paper vs reproduced": paper, ours (mean ± std), budget, ours − paper, verdict."""
    lines = [
        "| published | status | dataset · preprocessing | model | paper | K paper | ours (run) "
        "| seeds | K ours | budget | ours − paper [95% CI] | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in reproductions(entries, records, progress):
        lines.append("| " + " | ".join(_reproduction_cells(row)) + " |")
    return lines


def _reproduction_cells(row: Reproduction) -> list[str]:
    from benchmark.leaderboard import format_number

    p, c = row.published, row.correspondence
    settings = ", ".join(f"{k}={v}" for k, v in c.model_settings.items())
    ours, diff, k_ours, budget = "not run yet", "—", "—", "—"
    if row.values:
        ours = f"{_ours_value(row)} ({row.run})"
        diff = _difference_text(row, format_number(row.difference))
        fraction = row.budget_fraction
        budget = "no protocol" if fraction is None else f"{fraction:.3g} of the paper's"
        k_ours = "/".join(str(k) for k in row.k) + (" (K differs)" if row.k != (p.k,) else "")
    elif row.in_progress:
        ours = "; ".join(probe_text(s) for s in row.in_progress)
        fraction = row.budget_fraction
        done = f"{format_percent(fraction)} of the paper's, so far" if fraction is not None else ""
        budget = done or "no protocol"
    model = f"{c.model} {settings}".strip()
    return [
        p.id,
        p.status,
        f"{c.dataset} · {c.preprocessing}",
        model,
        f"{p.value} {p.unit}",
        str(p.k),
        ours,
        str(len(row.values) or len(row.in_progress)),
        k_ours,
        budget,
        diff,
        row.verdict,
    ]


def _ours_value(row: Reproduction) -> str:
    """Return our mean, ± the std across seeds (two or more), and the caveat, if any."""
    from benchmark.leaderboard import format_number

    spread = f" ± {format_number(stdev(row.values))}" if len(row.values) > 1 else ""
    return f"{format_number(mean(row.values))}{spread}{row.caveat}"


def _difference_text(row: Reproduction, difference: str) -> str:
    """Return `difference` (ours − paper, formatted) followed by its 95% CI, if formed."""
    from benchmark.leaderboard import format_number

    interval = row.difference_interval
    if interval is None:
        return difference
    return f"{difference} [{format_number(interval[0])}, {format_number(interval[1])}]"


def reproduction_summary(
    entries: list[PublishedResult],
    records: list[RunRecord],
    progress: Sequence[ProgressSnapshot] = (),
) -> list[str]:
    """Render the README's front-page table: every published number with a run of ours.

    One row per configuration that has records or a run still training (the rows of
    `reproductions`, same values and verdicts), in the compact form of the front page; the
    published numbers not run yet are counted in one closing line, not listed.
    """
    rows = reproductions(entries, records, progress)
    shown = [row for row in rows if row.values or row.in_progress]
    lines = [
        "| published | paper | ours | budget | ours − paper [95% CI] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in shown:
        lines.append("| " + " | ".join(_summary_cells(row)) + " |")
    not_run = len({r.published.id for r in rows} - {r.published.id for r in shown})
    if not_run:
        lines += ["", f"Not run yet: {not_run} further published numbers (see the leaderboard)."]
    return lines


def _summary_cells(row: Reproduction) -> list[str]:
    p = row.published
    paper = f"{p.value} {p.unit} (K = {p.k})"
    if row.values:
        seeds = f"{len(row.values)} seed{'s' if len(row.values) > 1 else ''}"
        k = "/".join(str(k) for k in row.k)
        ours = f"{_ours_value(row)} ({row.run}, {seeds}, K = {k})"
        difference = _difference_text(row, f"{row.difference:+.2f}")
    else:
        ours = "; ".join(probe_text(s) for s in row.in_progress)
        difference = "—"
    fraction = row.budget_fraction
    budget = "no protocol" if fraction is None else format_percent(fraction)
    if row.in_progress and fraction is not None:
        budget += " so far"
    return [
        f"{p.id} ({p.short_paper}, {p.table_or_file})",
        paper,
        ours,
        budget,
        difference,
        row.verdict,
    ]


def probe_text(snapshot: ProgressSnapshot) -> str:
    """Describe an unfinished run by its last pass-end probe, saying it is not the final estimate.

    E.g. ``89.2 ± 0.8 at epoch 121, k = 1000 on 1,000 test images (probe, not the final K = 5000
    estimate) (L1-vae-k1, seed 0)``.
    """
    run = f"({snapshot.name}, seed {snapshot.seed})"
    probe = snapshot.last_probe
    if probe is None:
        return f"no pass-end probe yet, step {snapshot.step:,} {run}"
    final_k = (snapshot.spec.get("eval", {}).get("nll") or {}).get("k")
    final = f"the final K = {final_k} estimate" if final_k else "the final estimate"
    return (
        f"{value_with_stderr(probe['nll'], probe.get('nll_stderr'))} at epoch "
        f"{probe['epoch']:g}, k = {probe['k']:g} on {probe['examples']:,} test images "
        f"(probe, not {final}) {run}"
    )


def value_with_stderr(value: float, stderr: float | None) -> str:
    """Format ``value ± stderr`` with the standard error to one significant digit."""
    from benchmark.leaderboard import format_number

    if not stderr or stderr <= 0:
        return format_number(value)
    decimals = max(0, -math.floor(math.log10(stderr)))
    return f"{value:.{decimals}f} ± {stderr:.{decimals}f}"


def literature_section(
    entries: list[PublishedResult],
    records: list[RunRecord],
    progress: Sequence[ProgressSnapshot] = (),
    *,
    figure_links: Sequence[str] = (),
) -> list[str]:
    """Render the literature part: paper vs reproduced (with the learning-curve figures of
    `figure_links`, Markdown image lines), then every published number."""
    return [
        "## Literature",
        "",
        "### Paper vs reproduced",
        "",
        "Matched on dataset, preprocessing, model (family and its training k), metric and "
        "estimator (split), by the explicit table in `benchmark/literature.py`. Ours is the mean "
        "± std across seeds; the interval is the Student-t 95% CI across seeds (one seed: "
        "±1.96 standard errors over test examples) shifted by the paper's value. K differs: our "
        "importance-sample count is not the paper's (a smaller K over-states the NLL). ⚠ is the "
        "estimate's own diagnostic warning (e.g. PSIS k-hat >= 0.7 on most test images: the IS "
        "estimate may still be far above the true NLL, as the paper's may be). budget: "
        "the smallest share of the paper's training budget among our seeds. verdict: "
        "reproduced = at full budget within 0.3 nats (or the paper's own spread, if larger) "
        "with the CI reaching that band; differs = at full budget the CI lies outside it; "
        "reduced budget = not yet comparable; inconclusive = neither; in progress = no record "
        "yet, but a run still training (`vaebench progress` snapshots its checkpoint): budget is "
        "the share of the paper's budget done so far, and ours its last pass-end probe (IS-NLL "
        "of a fixed test subset with the probe's k), which is not comparable with the paper's "
        "final estimate.",
        "",
        *reproduction_table(entries, records, progress),
        "",
        *(line for link in figure_links for line in (link, "")),
        "### Published numbers",
        "",
        "From `results/literature.yaml`. status primary = read from the authors' own repository "
        "or abstract; secondary = quoted by a third party (not checked against the paper). "
        "Rows marked ↳ are the paper values quoted by pythae beside its own result (secondary). "
        "± after a pythae value is the std over 5 repeated estimation rounds, not a "
        "standard error.",
        "",
        *literature_table(entries),
        "",
    ]
