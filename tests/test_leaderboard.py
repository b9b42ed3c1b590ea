"""Golden-file tests of the leaderboard built from fixture records."""

import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmark.cli import main
from benchmark.leaderboard import (
    aggregate,
    config_key,
    filter_records,
    format_number,
    metric_rows,
    render_leaderboard,
    seed_interval,
    version_mismatches,
    write_leaderboard,
)
from benchmark.literature import LITERATURE_FILE, load_literature
from benchmark.records import RunRecord, record_path, write_record
from metrics.estimate import Estimate
from tests.test_records import make_record

GOLDEN = Path(__file__).parent / "golden"


def fixture_records():
    """Two configurations x two seeds on digits, one diverged run, one linear_gaussian run, and
    three mnist runs that reproduce published IWAE numbers (see `benchmark.literature`).

    The iwae nll column mixes metric versions 1 and 2, which the leaderboard must flag.
    """
    records = []
    for name, elbo_means, nll_means, versions in (
        ("vae", (-80.0, -81.0), (77.0, 78.5), ("1", "1")),
        ("iwae", (-79.5, -79.0), (76.0, 76.2), ("1", "2")),
    ):
        for seed, (elbo, nll, version) in enumerate(
            zip(elbo_means, nll_means, versions, strict=True)
        ):
            base = make_record(seed=seed)
            kl = 12.0 + seed
            metrics = {
                "elbo": {
                    "elbo": Estimate(elbo, 0.5, 360, "nats", True, {"split": "test"}),
                    "kl": Estimate(kl, 0.1, 360, "nats", None, {"split": "test"}),
                    "reconstruction": Estimate(
                        elbo + kl, 0.5, 360, "nats", True, {"split": "test"}
                    ),
                },
                "nll": {
                    "nll": Estimate(
                        nll,
                        0.4,
                        360,
                        "nats",
                        False,
                        {"k": 1000, "split": "test", "version": version},
                    )
                },
            }
            curve = [{"step": 100, "loss": 95.0 - seed}, {"step": 200, "loss": 85.0 - seed}]
            records.append(
                replace(
                    base,
                    spec={**base.spec, "name": name, "suite": "quick"},
                    spec_hash=f"{name}{seed}".ljust(64, "0"),
                    config_hash=f"{name}".ljust(64, "1"),
                    model={"name": name, "num_parameters": 1000 + len(name)},
                    metrics=metrics,
                    training={"curve": curve},
                )
            )
    diverged = make_record(status="diverged", seed=2)
    records.append(
        replace(
            diverged,
            spec={**diverged.spec, "name": "vae"},
            config_hash="vae".ljust(64, "1"),
            timings={"train": None},
        )
    )
    linear = make_record(value=-20.25, seed=0)
    records.append(replace(linear, dataset={"name": "linear_gaussian", "checksum": "ff"}))
    records[0] = replace(
        records[0],
        environment={"calibration": {"gemm_gflops": 100.0}},
        images={"samples": "images/digits/vae-0/samples.png"},
    )
    # A model not trained on a likelihood bound (‡), whose AIS is undefined (n/a with reason).
    wae = make_record(value=-85.0, seed=0)
    records.append(
        replace(
            wae,
            spec={**wae.spec, "name": "wae", "suite": "quick"},
            spec_hash="wae0".ljust(64, "0"),
            config_hash="wae".ljust(64, "1"),
            model={"name": "wae_mmd", "num_parameters": 1003, "trains_on_likelihood_bound": False},
            undefined_metrics={"ais": "AIS needs gradients in z, but the codes are discrete."},
        )
    )
    # A label-conditional model (§): its likelihoods are of log p(x|y).
    cvae = make_record(value=-78.0, seed=0)
    records.append(
        replace(
            cvae,
            spec={**cvae.spec, "name": "cvae", "suite": "quick"},
            spec_hash="cvae0".ljust(64, "0"),
            config_hash="cvae".ljust(64, "1"),
            model={"name": "cvae", "num_parameters": 1010, "conditions_on_labels": True},
        )
    )
    # A model whose NLL is an upper bound its diagnostics do not trust (≤ and ⚠ with a note).
    vq = make_record(value=-90.0, seed=0)
    nll = Estimate(
        88.0,
        0.5,
        360,
        "nats",
        False,
        {"k": 100, "split": "test"},
        kind="upper_bound",
        warning="83% of examples have PSIS k-hat > 0.7",
    )
    records.append(
        replace(
            vq,
            spec={**vq.spec, "name": "vq", "suite": "quick"},
            spec_hash="vq0".ljust(64, "0"),
            config_hash="vq".ljust(64, "1"),
            model={"name": "vq_vae", "num_parameters": 2_500_000},
            metrics={**vq.metrics, "nll": {"nll": nll, "iwae_bound": replace(nll, value=-88.0)}},
        )
    )
    return records + mnist_records()


def mnist_records():
    """Burda et al.'s IWAE k=5 on dynamically binarized MNIST with K=1000 (2 seeds, full budget),
    and their VAE with K=5000 (1 seed, a quarter of the budget)."""
    iwae = {"name": "burda_iwae", "stochastic_layers": 1, "objective": "iwae", "num_samples": 5}
    vae = {"name": "burda_iwae", "stochastic_layers": 1, "objective": "vae", "num_samples": 1}
    runs = [
        ("iwae-k5", iwae, 1000, 0, 85.9, 1.0),
        ("iwae-k5", iwae, 1000, 1, 86.3, 1.0),
        ("vae", vae, 5000, 0, 88.0, 0.25),
    ]
    records = []
    for name, model, k, seed, nll, fraction in runs:
        base = make_record(seed=seed)
        estimate = Estimate(nll, 0.3, 10000, "nats", False, {"k": k, "split": "test"})
        records.append(
            replace(
                base,
                spec={**base.spec, "name": name, "model": model},
                spec_hash=f"m{name}{seed}".ljust(64, "0"),
                config_hash=f"m{name}".ljust(64, "2"),
                model={"name": model["name"], "num_parameters": 100},
                dataset={
                    "name": "mnist",
                    "checksum": "ee",
                    "preprocessing": "dynamic_binarization",
                },
                metrics={"nll": {"nll": estimate}},
                git={"commit": "def4567890", "dirty": True},
                training={**base.training, "budget_fraction": fraction},
            )
        )
    return records


GOLDEN_LITERATURE = (
    "iwae-t1-mnist-L1-vae-k1",
    "iwae-t1-mnist-L1-iwae-k5",
    "iwae-static-mnist-L1-iwae-k5",
    "pythae-iwae",
    "iwae-protocol-training",
)


def fixture_literature():
    """A few real entries: primary and secondary, a pythae quote, a protocol (not a number)."""
    return [e for e in load_literature() if e.id in GOLDEN_LITERATURE]


def test_leaderboard_matches_golden_file():
    """Contract (golden file): tables, ± and CI across seeds, arrows, bold best, version
    flags, n/a with its reason, the ‡ flag, provenance, costs normalised by the calibration,
    image links, embedded figures and the literature tables."""
    text = render_leaderboard(
        fixture_records(),
        figures_link="figures",
        images_link="results",
        literature=fixture_literature(),
    )
    golden = GOLDEN / "leaderboard.md"
    if os.environ.get("VAEBENCH_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_leaderboard_is_reproducible_from_written_records(tmp_path):
    """Property: regenerating from the records on disk reproduces the files byte for byte."""
    for record in fixture_records():
        write_record(
            record,
            record_path(tmp_path, record.spec["name"], record.dataset["name"], record.spec_hash),
        )
    write_leaderboard(tmp_path, tmp_path / "a.md", tmp_path / "a.csv")
    figures = {p.name: p.read_bytes() for p in (tmp_path / "figures").iterdir()}
    write_leaderboard(tmp_path, tmp_path / "b.md", tmp_path / "b.csv")
    assert (tmp_path / "a.md").read_bytes() == (tmp_path / "b.md").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert figures == {p.name: p.read_bytes() for p in (tmp_path / "figures").iterdir()}
    text = (tmp_path / "a.md").read_text()
    assert "Generated by `vaebench leaderboard`" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((tmp_path / link).is_file() for link in links)


def test_one_undefined_metric_is_na_with_its_reason_in_its_own_cell():
    """Contract: an ``undefined_metrics`` key ``family/metric`` makes just that cell n/a, with
    the reason under the table; the family's other cells keep their numbers."""
    base = make_record(value=-80.0)
    defined = replace(base, spec={**base.spec, "name": "vae"}, config_hash="a" * 64)
    flow = make_record(value=-79.0)
    flow = replace(
        flow,
        spec={**flow.spec, "name": "iaf"},
        spec_hash="f" * 64,
        config_hash="b" * 64,
        metrics={"elbo": {"elbo": flow.metrics["elbo"]["elbo"]}},
        undefined_metrics={"elbo/kl": "the flow posterior's KL has no per-dimension split."},
    )
    defined = replace(
        defined,
        metrics={
            "elbo": {
                "elbo": defined.metrics["elbo"]["elbo"],
                "kl": Estimate(12.0, 0.1, 360, "nats", None, {"split": "test"}),
            }
        },
    )
    text = render_leaderboard([defined, flow])
    details = text.split("<details><summary>elbo</summary>")[1].split("</details>")[0]
    rows = {line.split(" | ")[0]: line for line in details.splitlines() if line.startswith("| ")}
    assert rows["| iaf"].endswith("| n/a¹ |") and "-79.0" in rows["| iaf"]
    assert "12.0" in rows["| vae"]
    note = "- ¹ n/a: the flow posterior's KL has no per-dimension split — elbo/kl of iaf."
    assert text.count(note) == 1


def test_a_family_whose_only_metric_is_undefined_keeps_its_row():
    """Contract: a run whose family reports its only metric as n/a (``linear_probe/…`` for the
    CVAE, whose q(z|x, y) reads the label) gets a row with n/a and the reason, not no row."""
    base = make_record(value=-80.0)
    probe = Estimate(0.8, 0.01, 500, "fraction", True, {"num_labels": 100})
    defined = replace(
        base,
        spec={**base.spec, "name": "vae"},
        config_hash="a" * 64,
        metrics={**base.metrics, "linear_probe": {"linear_probe_accuracy": probe}},
    )
    cvae = replace(
        make_record(value=-79.0),
        spec={**base.spec, "name": "cvae"},
        spec_hash="f" * 64,
        config_hash="b" * 64,
        metrics={**base.metrics, "linear_probe": {}},
        undefined_metrics={"linear_probe/linear_probe_accuracy": "q(z|x, y) takes the label."},
    )
    text = render_leaderboard([defined, cvae])
    details = text.split("<details><summary>linear_probe</summary>")[1].split("</details>")[0]
    rows = {line.split(" | ")[0]: line for line in details.splitlines() if line.startswith("| ")}
    assert "0.800" in rows["| vae"]
    assert rows["| cvae"].endswith("| n/a¹ |")
    note = "- ¹ n/a: q(z|x, y) takes the label — linear_probe/linear_probe_accuracy of cvae."
    assert note in text


def _warned(name: str, seed: int, warnings: dict[str, str]) -> RunRecord:
    """A digits record of run `name` whose inference-gap metrics carry the given warnings."""
    base = make_record(seed=seed)
    gaps = {
        metric: Estimate(0.5, 0.1, 50, "nats", False, {"split": "train"}, warning=warning)
        for metric, warning in warnings.items()
    }
    return replace(
        base,
        spec={**base.spec, "name": name},
        spec_hash=f"{name}{seed}".ljust(64, "0"),
        config_hash=name.ljust(64, "1"),
        metrics={**base.metrics, "inference_gaps": gaps},
    )


def test_warnings_differing_only_in_figures_share_one_note_per_section():
    """Property: one note per distinct reason, not per seed, metric and run. Warnings that
    differ only in their figures get one mark and one note; the note blanks the figures that
    vary (…), keeps those that do not (max_steps = 2000), and lists the runs and metrics it
    applies to with each run's figures; a different reason gets its own note."""
    stopped = "only {}% of q* stopped (the rest hit max_steps = 2000)"
    both = ("amortization_gap", "elbo_q_star")
    records = [
        _warned("vae", 0, dict.fromkeys(both, stopped.format(18))),
        _warned("vae", 1, dict.fromkeys(both, stopped.format(42))),
        _warned("iwae", 0, {"amortization_gap": stopped.format(2), "elbo_q_star": "diverged"}),
        _warned("iwae", 1, {"amortization_gap": stopped.format(4), "elbo_q_star": "diverged"}),
    ]
    text = render_leaderboard(records)
    notes = [line for line in text.splitlines() if line.startswith("- ")]
    assert notes == [
        "- ¹ only …% of q* stopped (the rest hit max_steps = 2000) — "
        "inference_gaps/amortization_gap of iwae (2, 4); inference_gaps/amortization_gap, "
        "elbo_q_star of vae (18, 42).",
        "- ² diverged — inference_gaps/elbo_q_star of iwae.",
    ]
    details = text.split("<summary>inference_gaps</summary>")[1].split("</details>")[0]
    rows = {line.split(" | ")[0]: line for line in details.splitlines() if line.startswith("| ")}
    assert rows["| vae"].count("⚠¹") == 2 and "⚠²" not in rows["| vae"]
    assert rows["| iwae"].count("⚠¹") == 1 and rows["| iwae"].count("⚠²") == 1


def test_csv_marks_label_conditional_runs():
    """Contract: the long-format CSV says which rows are log p(x|y), so a reader filtering it
    does not rank a CVAE's conditional NLL against unconditional ones by accident."""
    rows = metric_rows(fixture_records())
    conditional = rows[rows["conditional"]]
    assert set(conditional["run"]) == {"cvae"} and len(conditional) > 0
    assert not rows[rows["run"] != "cvae"]["conditional"].any()


def test_leaderboard_without_records_says_how_to_make_them(tmp_path):
    """Property: an empty results folder gets an error naming the command that fills it."""
    with pytest.raises(ValueError, match="vaebench suite quick"):
        write_leaderboard(tmp_path, tmp_path / "a.md", tmp_path / "a.csv")


@pytest.mark.parametrize(
    ("value", "text"),
    [(-80.0, "-80.0"), (0.01234567, "0.0123"), (1234.5, "1230"), (None, "—"), (0.0, "0")],
)
def test_format_number(value, text):
    """Property: three significant digits in plain notation."""
    assert format_number(value) == text


@pytest.mark.parametrize("values", [[1.0, 2.5], [3.0, 2.0, 4.5, 4.0]])
def test_seed_interval_matches_scipy_t_interval(values):
    """Reference (scipy): the CI across seeds is scipy's Student-t interval of the mean."""
    expected = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert seed_interval(values, stderr=None) == pytest.approx(expected)


def test_single_seed_interval_is_normal_from_stderr():
    """Reference (scipy): one seed gives mean ± z_0.975 stderr, and None without a stderr."""
    assert seed_interval([2.0], stderr=0.5) == pytest.approx(stats.norm.interval(0.95, 2.0, 0.5))
    assert seed_interval([2.0], stderr=None) is None


def test_version_mismatch_flags_only_the_mixed_column():
    """Property: a column mixing metric versions is flagged; a single-version column is not."""
    records = [r for r in fixture_records() if r.dataset.name == "digits" and r.name != "vq"]
    cells = aggregate(records)
    configs = sorted({config_key(r) for r in records})
    assert version_mismatches("nll", configs, cells, ["nll"]) == {"nll": ["1", "2"]}
    assert version_mismatches("elbo", configs, cells, ["elbo", "kl"]) == {}
    vae_only = [c for c in configs if c.run == "vae"]
    assert version_mismatches("nll", vae_only, cells, ["nll"]) == {}


def test_filter_records_by_dataset_and_model_patterns():
    """Contract: filters keep matching datasets and run-or-model names, and explain a miss."""
    records = fixture_records()
    assert {r.dataset["name"] for r in filter_records(records, datasets=["*mnist"])} == {"mnist"}
    kept = filter_records(records, models=["iwae*"])
    assert {r.spec["name"] for r in kept} == {"iwae", "iwae-k5"}
    both = filter_records(records, datasets=["digits"], models=["vae"])
    assert {(r.dataset["name"], r.spec["name"]) for r in both} == {("digits", "vae")}
    with pytest.raises(ValueError, match="none matched.*digits"):
        filter_records(records, datasets=["cifar10"])


def test_cli_leaderboard_filters(tmp_path, capsys):
    """Contract: `vaebench leaderboard --dataset --models` writes only the matching sections,
    and the literature of results/literature.yaml closes the file."""
    (tmp_path / "literature.yaml").write_text(LITERATURE_FILE.read_text())
    for record in fixture_records():
        write_record(
            record,
            record_path(tmp_path, record.spec["name"], record.dataset["name"], record.spec_hash),
        )
    out = tmp_path / "board.md"
    code = main(
        [
            "leaderboard",
            "--results",
            str(tmp_path),
            "--output",
            str(out),
            "--csv",
            str(tmp_path / "board.csv"),
            "--dataset",
            "linear_gaussian,mnist",
            "--models",
            "vae",
        ]
    )
    text = out.read_text()
    assert code == 0 and "## linear_gaussian" in text and "## digits" not in text
    assert "Filtered to datasets linear_gaussian, mnist; models vae." in text
    assert "iwae-k5" not in text.split("## Literature")[0]
    assert "### Paper vs reproduced" in text and "| iwae-t1-mnist-L1-vae-k1 | secondary |" in text


def test_each_section_opens_with_the_headline_and_no_quantity_has_two_names():
    """Property (on the committed records): every dataset section's first table is the
    headline, the per-family tables are folded, each reason is noted once per section (not once
    per seed, metric and run), and no column of `SAME_AS` (a second name for a quantity) is
    shown."""
    from benchmark.leaderboard import SAME_AS, dataset_sections
    from benchmark.records import load_records

    def blank(text: str) -> str:  # the reason, its figures blanked as the notes do
        return re.sub(r"(?<![\w.])\d+(\.\d+)?(?!\w)", "…", text)

    records = load_records(Path(__file__).resolve().parents[1] / "results", strict=True)
    text, warned = render_leaderboard(records).split("\n## Literature")[0], 0
    for section in text.split("\n## ")[1:]:
        body = section.split("<details>")[0]
        header = next(line for line in body.splitlines() if line.startswith("| "))
        assert header.startswith("| model | params | test NLL") or "ELBO" in header
        notes = [
            blank(line[2:].lstrip("⁰¹²³⁴⁵⁶⁷⁸⁹ ").split(" — ")[0])
            for line in section.splitlines()
            if line.startswith("- ")
        ]
        dataset = section.split("\n")[0]
        reasons = {
            blank(e.warning).rstrip(" .")
            for r in records
            if r.dataset.name == dataset
            for metrics in r.metrics.values()
            for e in metrics.values()
            if e.warning
        }
        warned += len(reasons)
        for reason in reasons:
            assert notes.count(reason) == 1, f"{dataset}: {reason!r} noted {notes.count(reason)}×"
    assert warned, "the committed records carry no warning to group"
    shown = {
        (detail.family, column.split(" ")[0])
        for section in dataset_sections(records)
        for detail in section.details
        for column in detail.table.header
    }
    assert not shown & set(SAME_AS)
    assert ("ais", "ais_nll") in shown and ("elbo", "kl") in shown


def test_headline_shows_the_interval_only_where_it_matters_for_the_order():
    """Property: in the sorting column, a row shows its 95% interval only when it overlaps a
    neighbour's; well-separated rows show the bare value."""
    from benchmark.leaderboard import SectionContext, headline_table

    records = [r for r in fixture_records() if r.dataset.name == "mnist"]
    table = headline_table(SectionContext.of(records))
    assert [row[2].suffix for row in table.rows] == [" [83.6, 88.6]", "† (K=5000) [87.4, 88.6]"]
    far = [
        replace(r, metrics={"nll": {"nll": replace(r.metric("nll", "nll"), value=50.0)}})
        if r.name == "vae"
        else r
        for r in records
    ]
    table = headline_table(SectionContext.of(far))
    assert [row[2].suffix for row in table.rows] == ["† (K=5000)", ""]


def test_warnings_and_bounds_are_marked_with_one_note_per_section():
    """Contract: an Estimate's warning puts ⚠ and a numbered note (shown once though the cell
    appears in the headline and the details), and an upper bound is prefixed ≤."""
    text = render_leaderboard(fixture_records())
    digits = text.split("## digits")[1].split("\n## ")[0]
    assert digits.count("83% of examples have PSIS k-hat > 0.7") == 1
    assert "| ≤ 88.0† ⚠¹ (K=100) [87.0, 89.0] |" in digits
    assert "| ≤ 88.0 ± 0.50† ⚠¹" in digits
    assert digits.count("- ≤ / ≥: the value is an upper / lower bound") == 1


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({}, "committed"),
        ({"results_dir": Path("scratch")}, "scratch"),
        ({"filtered": True}, "results"),
        ({"results_dir": Path("results"), "output": Path("x/board.md")}, "x"),
    ],
)
def test_only_the_default_leaderboard_writes_the_committed_files(options, where):
    """Property: the committed leaderboard.md/.csv/figures are targeted only with no options;
    another results folder or a filtered view goes beside its records."""
    from benchmark.leaderboard import leaderboard_paths

    paths = leaderboard_paths(options.pop("results_dir", None), **options)
    folder = {"committed": Path("."), "scratch": Path("scratch"), "results": Path("results")}
    expected = folder.get(where, Path(where))
    assert paths.markdown.parent == expected and paths.csv.parent == expected
    assert paths.figures == expected / "figures"


def test_cli_leaderboard_skips_bad_files_and_strict_fails(tmp_path, caplog, capsys):
    """Contract: a bad record and a corrupt literature.yaml each cost one warning and the rest
    is built (beside the records, with --html too); --strict fails with a one-line error."""
    for record in fixture_records():
        write_record(
            record, record_path(tmp_path, record.name, record.dataset.name, record.spec_hash)
        )
    (tmp_path / "runs" / "digits" / "bad.json").write_text("[]")
    (tmp_path / "literature.yaml").write_text("- {id: [unclosed")
    with caplog.at_level("WARNING"):
        assert main(["leaderboard", "--results", str(tmp_path), "--html"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "bad.json" in warnings[0] and "literature.yaml" in warnings[1]
    assert (tmp_path / "leaderboard.md").is_file() and (tmp_path / "leaderboard.csv").is_file()
    assert 'data-config="vq@vq111111"' in (tmp_path / "leaderboard.html").read_text()
    assert main(["leaderboard", "--results", str(tmp_path), "--strict"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "bad.json" in error[0]


def test_suite_with_results_dir_leaves_the_repository_leaderboard_alone(tmp_path, monkeypatch):
    """Contract (issue 18, item 14): `suite --results DIR` writes its leaderboard beside DIR's
    records and never the working folder's leaderboard.md, .csv or figures/. (The executor is
    a stand-in that writes fixture records, so nothing trains.)"""

    class WritingExecutor:
        def map_runs(self, specs, options, *, on_event):
            records = [r for r in fixture_records() if r.dataset.name == "mnist"]
            for record in records:
                path = record_path(options.results_dir, record.name, "mnist", record.spec_hash)
                write_record(record, path)
            return records

    monkeypatch.setattr("benchmark.cli._executor", lambda args: WritingExecutor())
    repository = tmp_path / "repo"
    repository.mkdir()
    monkeypatch.chdir(repository)
    scratch = tmp_path / "scratch"
    assert main(["suite", "quick", "--results", str(scratch), "--no-progress"]) == 0
    assert not {"leaderboard.md", "leaderboard.csv", "figures"} & {
        p.name for p in repository.iterdir()
    }
    assert (scratch / "leaderboard.md").is_file() and (scratch / "leaderboard.csv").is_file()
    assert (scratch / "figures" / "mnist-nll.png").is_file()
