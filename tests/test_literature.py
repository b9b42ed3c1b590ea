"""Tests of the literature tables: the published numbers with their status, and the matching."""

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from benchmark.datasets import list_datasets
from benchmark.datasets.preprocessing import PREPROCESSINGS
from benchmark.literature import (
    CORRESPONDENCES,
    literature_table,
    load_literature,
    matches,
    reproduction_summary,
    reproduction_table,
    reproduction_verdict,
    reproductions,
)
from benchmark.progress import load_progress
from benchmark.records import load_records
from registry import list_models, resolve_hyperparameters
from tests.test_leaderboard import mnist_records


def test_literature_file_is_valid_and_every_entry_has_a_status():
    """Contract: results/literature.yaml loads, with unique ids and a primary/secondary status."""
    entries = load_literature()
    assert len(entries) == 56 and len({e.id for e in entries}) == 56
    assert {e.status for e in entries} == {"primary", "secondary"}
    numbers = [e for e in entries if e.is_number]
    assert all(e.source for e in numbers)
    assert not any(e.metric.startswith("protocol:") for e in numbers)


def test_literature_table_renders_every_number_with_its_status():
    """Contract: each published number has a row with its value and status; each pythae quote
    of the paper has its own row marked secondary."""
    entries = load_literature()
    lines = literature_table(entries)
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines[2:]}
    for entry in (e for e in entries if e.is_number):
        row = rows[entry.id]
        assert row.endswith(f"| {entry.status} |") and str(entry.value) in row
        if entry.reference_value is not None:
            quote = rows[f"↳ {entry.id}"]
            assert quote.endswith("| secondary |") and str(entry.reference_value) in quote
    assert len(lines) == 2 + sum(e.is_number for e in entries) + sum(
        e.reference_value is not None for e in entries if e.is_number
    )


def test_correspondences_agree_with_the_yaml_and_the_registries():
    """Contract: every row of the matching table names a published MNIST NLL in nats whose
    preprocessing and model text agree with our dataset, preprocessing and model names."""
    by_id = {e.id: e for e in load_literature()}
    for c in CORRESPONDENCES:
        published = by_id[c.literature_id]
        assert published.is_number and published.unit == "nats" and published.dataset == "MNIST"
        assert c.dataset in list_datasets() and c.preprocessing in PREPROCESSINGS
        assert c.model in list_models()
        assert set(c.model_settings) <= set(resolve_hyperparameters(c.model, {}))
        assert c.preprocessing.split("_")[0] in published.preprocessing
        family = c.model_settings.get("objective", c.model)  # burda_iwae: VAE or IWAE objective
        assert published.model.startswith(family.upper())
        assert f"k={c.model_settings.get('num_samples', 1)}" in published.model
        if "stochastic_layers" in c.model_settings:
            assert published.architecture.startswith(f"{c.model_settings['stochastic_layers']} ")


def test_matching_rule_and_difference():
    """Contract: records match on dataset, preprocessing, model + k, metric and split; the
    difference is ours − paper; a K unlike the paper's is flagged but still matched."""
    entries = load_literature()
    rows = {(r.published.id, r.run): r for r in reproductions(entries, mnist_records())}
    iwae = rows[("iwae-t1-mnist-L1-iwae-k5", "iwae-k5")]
    assert iwae.values == (85.9, 86.3) and iwae.k == (1000,)
    assert iwae.difference == pytest.approx(86.1 - 85.54)
    assert iwae.budget_fraction == 1.0
    vae = rows[("iwae-t1-mnist-L1-vae-k1", "vae")]
    assert vae.difference == pytest.approx(88.0 - 86.76)
    assert (vae.budget_fraction, vae.verdict) == (0.25, "reduced budget")
    assert ("iwae-static-mnist-L1-iwae-k5", None) in rows  # listed, not run yet
    assert rows[("iwae-static-mnist-L1-iwae-k5", None)].verdict == "not run"
    table = "\n".join(reproduction_table(entries, mnist_records()))
    assert "| 1000 (K differs) | 1 of the paper's | 0.560 [" in table
    assert "| 5000 | 0.25 of the paper's | 1.24 [" in table


def test_the_summary_lists_only_numbers_we_ran_and_counts_the_rest():
    """Contract: the front-page summary has one row per run configuration, with the same
    value, difference and verdict as the full table, and counts the published numbers not run."""
    entries = load_literature()
    lines = reproduction_summary(entries, mnist_records())
    rows = [line for line in lines if line.startswith("| iwae-")]
    assert len(rows) == 2
    iwae = next(r for r in rows if r.startswith("| iwae-t1-mnist-L1-iwae-k5 "))
    assert "| 86.1 ± 0.283 (iwae-k5, 2 seeds, K = 1000) | 100.0 % | +0.56 [" in iwae
    assert iwae.endswith("| inconclusive |")  # the two seeds' t interval is wide
    vae = next(r for r in rows if r.startswith("| iwae-t1-mnist-L1-vae-k1 "))
    assert "| 88.0 (vae, 1 seed, K = 5000) | 25.0 % | +1.24 [" in vae
    assert vae.endswith("| reduced budget |")
    run = {"iwae-t1-mnist-L1-iwae-k5", "iwae-t1-mnist-L1-vae-k1"}
    not_run = len({r.published.id for r in reproductions(entries, [])} - run)
    assert lines[-1] == f"Not run yet: {not_run} further published numbers (see the leaderboard)."


def test_a_distrusted_estimate_carries_its_warning_into_both_tables():
    """Contract: an NLL whose own diagnostics distrust it (PSIS k-hat) is never shown in
    "paper vs reproduced" or the front-page summary without its warning."""
    records = mnist_records()
    vae = records[2]
    estimate = replace(vae.metrics["nll"]["nll"], warning="98% of examples have PSIS k-hat >= 0.7")
    records[2] = replace(vae, metrics={"nll": {"nll": estimate}})
    entries = load_literature()
    for table in (reproduction_table(entries, records), reproduction_summary(entries, records)):
        row = next(line for line in table if line.startswith("| iwae-t1-mnist-L1-vae-k1 "))
        assert "88.0 ⚠ 98% of examples have PSIS k-hat >= 0.7 (vae" in row
        iwae = next(line for line in table if line.startswith("| iwae-t1-mnist-L1-iwae-k5 "))
        assert "⚠" not in iwae


def test_the_readme_front_page_shows_the_committed_reproductions():
    """Contract (on the committed results): the README's "Reproduced so far" table is what
    `reproduction_summary` renders from results/, so it cannot fall behind a new record or
    progress snapshot."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    start, end = "<!-- reproduction-summary: start -->\n", "\n<!-- reproduction-summary: end -->"
    shown = readme.split(start, 1)[1].split(end, 1)[0]
    results = root / "results"
    expected = reproduction_summary(
        load_literature(), load_records(results), load_progress(results)
    )
    assert shown == "\n".join(expected), "replace the README block with:\n" + "\n".join(expected)


@pytest.mark.parametrize(
    ("difference", "interval", "fraction", "verdict"),
    [
        (None, None, None, "not run"),
        (0.1, (-0.2, 0.4), 0.5, "reduced budget"),
        (0.1, (-0.2, 0.4), None, "reduced budget"),
        (0.1, (-0.2, 0.4), 1.0, "reproduced"),
        (-0.29, (-0.6, 0.1), 1.0, "reproduced"),
        (1.5, (1.0, 2.0), 1.0, "differs"),
        (-1.5, (-2.0, -1.0), 1.0, "differs"),
        (0.5, (-1.0, 2.0), 1.0, "inconclusive"),
        (0.2, None, 1.0, "reproduced"),
    ],
)
def test_reproduction_verdicts(difference, interval, fraction, verdict):
    """Contract: the issue's verdict rule at tolerance 0.3 nats, case by case."""
    assert reproduction_verdict(difference, interval, fraction, tolerance=0.3) == verdict


def test_a_paper_spread_larger_than_the_tolerance_widens_it():
    """Contract: within the paper's reported spread (0.5 here) counts as reproduced."""
    assert reproduction_verdict(0.45, (0.3, 0.6), 1.0, tolerance=0.5) == "reproduced"


@pytest.mark.parametrize("change", ["preprocessing", "num_samples", "split", "unit", "status"])
def test_a_record_differing_in_one_key_does_not_match(change):
    """Property: changing any one of the matched keys of a matching record breaks the match."""
    correspondence = next(
        c for c in CORRESPONDENCES if c.literature_id == "iwae-t1-mnist-L1-iwae-k5"
    )
    record = mnist_records()[0]
    assert matches(correspondence, record, "nats")
    estimate = record.metric("nll", "nll")
    changed = {
        "preprocessing": replace(
            record, dataset={**record.dataset, "preprocessing": "static_binarization"}
        ),
        "num_samples": replace(
            record, spec={**record.spec, "model": {**record.spec["model"], "num_samples": 50}}
        ),
        "split": replace(
            record,
            metrics={
                "nll": {"nll": replace(estimate, params={**estimate.params, "split": "valid"})}
            },
        ),
        "unit": replace(record, metrics={"nll": {"nll": replace(estimate, unit="bits/dim")}}),
        "status": replace(record, status="diverged"),
    }[change]
    assert not matches(correspondence, changed, "nats")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown key", "unknown"),
        ("bad status", "status"),
        ("duplicate id", "duplicates"),
        ("missing key", "complete"),
    ],
)
def test_load_literature_rejects_malformed_entries(tmp_path, case, message):
    """Property: unknown or missing keys, an unknown status or duplicate ids are refused."""
    entry = {k: v for k, v in vars(load_literature()[0]).items() if v is not None}
    content = {
        "unknown key": [{**entry, "extra": 1}],
        "bad status": [{**entry, "status": "tertiary"}],
        "duplicate id": [entry, entry],
        "missing key": [{k: v for k, v in entry.items() if k != "paper"}],
    }[case]
    path = tmp_path / "literature.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ValueError, match=message):
        load_literature(path)
