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
from benchmark.records import record_path, write_record
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
    note = "- ¹ n/a for iaf (elbo/kl): the flow posterior's KL has no per-dimension split."
    assert text.count(note) == 1


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
