"""The leaderboard as one self-contained HTML page (``vaebench leaderboard --html``).

Built from the same records and the same tables as ``leaderboard.md`` (`benchmark.leaderboard`),
so the two never disagree; the Markdown stays the committed artifact. The page needs nothing
but itself: style and script are inline, and the figures and each configuration's image grids
(prior samples, reconstructions, latent traversals) are embedded as base64 PNG. Every table can
be sorted by clicking a column header and filtered with its dataset's search box; hovering a
metric cell shows the estimator's parameters and the provenance of each seed's record.
"""

import base64
import html
from pathlib import Path

from benchmark.figures import draw_figure, planned_figures
from benchmark.leaderboard import (
    REGENERATE,
    DatasetSection,
    Grid,
    Table,
    TableCell,
    dataset_sections,
)
from benchmark.records import RunRecord

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px;
  padding: 0 1em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ccd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d6d6e0; padding: .25em .55em; text-align: right; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #eef0f7; cursor: pointer; user-select: none; }
th.asc::after { content: " ▲"; } th.desc::after { content: " ▼"; }
tr:nth-child(even) td { background: #f8f9fc; }
td[title] { text-decoration: underline dotted #99a; }
.notes { font-size: .9em; color: #444; } .provenance { color: #555; }
input.filter { font-size: 1em; padding: .3em .5em; width: 22em; margin: .4em 0; }
details { margin: .3em 0; } summary { cursor: pointer; font-weight: 600; }
.grids { display: flex; flex-wrap: wrap; gap: 1em; }
.grids figure { margin: 0; border: 1px solid #d6d6e0; padding: .4em; }
.grids img { height: 140px; image-rendering: pixelated; margin-right: .3em; }
.figures img { max-width: 640px; margin: .3em; border: 1px solid #eee; }
"""

SCRIPT = """
function cellValue(row, index) {
  const cell = row.cells[index];
  const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent;
  const number = parseFloat(raw);
  return isNaN(number) ? raw.toLowerCase() : number;
}
function sortTable(th) {
  const table = th.closest('table'), body = table.tBodies[0];
  const index = Array.from(th.parentNode.children).indexOf(th);
  const ascending = !th.classList.contains('asc');
  table.querySelectorAll('th').forEach(h => h.classList.remove('asc', 'desc'));
  th.classList.add(ascending ? 'asc' : 'desc');
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellValue(a, index), y = cellValue(b, index);
    const missing = (v) => v === '' || v === '—' || v === 'n/a';
    if (missing(x) !== missing(y)) return missing(x) ? 1 : -1;
    if (x < y) return ascending ? -1 : 1;
    if (x > y) return ascending ? 1 : -1;
    return 0;
  });
  rows.forEach(r => body.appendChild(r));
}
function filterSection(input) {
  const query = input.value.toLowerCase();
  input.closest('section').querySelectorAll('tbody tr').forEach(row => {
    row.hidden = query !== '' && !row.textContent.toLowerCase().includes(query);
  });
}
document.querySelectorAll('th').forEach(th => th.addEventListener('click', () => sortTable(th)));
document.querySelectorAll('input.filter').forEach(
  input => input.addEventListener('input', () => filterSection(input)));
document.body.dataset.ready = 'yes';
"""


def _png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _cell(cell: TableCell) -> str:
    value = html.escape(cell.value)
    value = f"<b>{value}</b>" if cell.bold and value else value
    links = " · ".join(
        f'<a href="#{_anchor(path)}">{html.escape(label)}</a>' for label, path in cell.links
    )
    sort = "" if cell.sort is None else f' data-sort="{html.escape(str(cell.sort))}"'
    title = f' title="{html.escape(cell.title)}"' if cell.title else ""
    return f"<td{sort}{title}>{value}{links}{html.escape(cell.suffix)}</td>"


def _anchor(path: str) -> str:
    return "grid-" + "".join(ch if ch.isalnum() else "-" for ch in str(Path(path).parent))


def table_html(table: Table, kind: str) -> list[str]:
    """Render a table with one ``<tr data-config="name@hash">`` per configuration."""
    head = "".join(f"<th>{html.escape(label)}</th>" for label in table.header)
    lines = [f'<table class="{kind}">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    keys = table.row_keys or (None,) * len(table.rows)
    for key, row in zip(keys, table.rows, strict=True):
        config = f' data-config="{html.escape(str(key))}"' if key is not None else ""
        lines.append(f"<tr{config}>" + "".join(_cell(c) for c in row) + "</tr>")
    return lines + ["</tbody>", "</table>"]


def _grids(grids: tuple[Grid, ...], results_dir: Path) -> list[str]:
    lines = ['<div class="grids">']
    for grid in grids:
        folder = next(iter(grid.images.values()))
        images = []
        for kind, path in grid.images.items():
            file = Path(results_dir) / path
            if file.is_file():
                alt = html.escape(f"{grid.config.run} {kind}")
                images.append(
                    f'<img alt="{alt}" title="{html.escape(kind)}" src="{_png(file.read_bytes())}">'
                )
        if images:
            caption = html.escape(f"{grid.config.run} (seed {grid.seed}): {', '.join(grid.images)}")
            lines += [
                f'<figure id="{_anchor(folder)}">',
                *images,
                f"<figcaption>{caption}</figcaption></figure>",
            ]
    return lines + ["</div>"]


def section_html(
    section: DatasetSection, records: list[RunRecord], figures_dir: Path | None, results_dir: Path
) -> list[str]:
    """Render one dataset: search box, headline, notes, folded details, costs, figures, grids."""
    name = html.escape(section.dataset)
    lines = [
        f'<section id="{name}" data-dataset="{name}">',
        f"<h2>{name}</h2>",
        f'<p class="provenance">{html.escape(section.provenance)}</p>',
        f'<input class="filter" type="search" placeholder="filter {name} rows…">',
        *table_html(section.headline, "headline"),
    ]
    if section.notes:
        lines += (
            ['<ul class="notes">']
            + [f"<li>{html.escape(n[2:])}</li>" for n in section.notes]
            + ["</ul>"]
        )
    for detail in section.details:
        lines += [f"<details><summary>{html.escape(detail.family)}</summary>"]
        lines += table_html(detail.table, "detail")
        lines += [f'<p class="notes">{html.escape(detail.parameters)}</p>', "</details>"]
    lines += ["<details><summary>cost and provenance</summary>"]
    lines += table_html(section.cost, "cost") + ["</details>"]
    lines += _figures(section.dataset, records, figures_dir)
    if section.grids:
        lines += ["<h3>image grids</h3>", *_grids(section.grids, results_dir)]
    return lines + ["</section>"]


def _figures(dataset: str, records: list[RunRecord], figures_dir: Path | None) -> list[str]:
    lines = ['<div class="figures">']
    for figure in planned_figures([r for r in records if r.dataset.name == dataset]):
        path = Path(figures_dir) / figure.filename if figures_dir is not None else None
        data = (
            path.read_bytes()
            if path is not None and path.is_file()
            else draw_figure(figure, records)
        )
        lines.append(f'<img alt="{html.escape(figure.title)}" src="{_png(data)}">')
    return lines + ["</div>"]


def render_html(
    records: list[RunRecord],
    *,
    figures_dir: Path | None = None,
    results_dir: Path = Path("results"),
    filters: str = "",
) -> str:
    """Return the self-contained page for `records`.

    Args:
        records: The run records (already filtered).
        figures_dir: Where the figure PNGs were written; None draws them in memory.
        results_dir: The folder the records' image paths are relative to.
        filters: Human-readable description of the filters applied, for the header.
    """
    filtered = f" Filtered to {html.escape(filters)}." if filters else ""
    body = [
        f"<!-- Generated by `{REGENERATE} --html` from the run records; do not edit. -->",
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>vaebench leaderboard</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>vaebench leaderboard</h1>",
        f"<p>Generated from {len(records)} run records by <code>{REGENERATE} --html</code>; the "
        "same tables as leaderboard.md. Click a column header to sort, type in a section's box "
        "to filter its rows, hover a number for its estimator parameters and provenance."
        f"{filtered}</p>",
    ]
    for section in dataset_sections(records):
        body += section_html(section, records, figures_dir, results_dir)
    body += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(body) + "\n"
