"""Tests of `vaebench compare`: Welch, the paired bootstrap, Holm, selection and the report."""

import math
from dataclasses import replace

import numpy as np
import pytest
import yaml
from scipy import stats

from benchmark.cli import main
from benchmark.compare import (
    Selection,
    compare_records,
    holm_adjust,
    paired_bootstrap_difference,
    paired_per_example,
    render_report,
    select_runs,
    verdict,
    welch_difference,
)
from benchmark.leaderboard import format_number
from benchmark.records import load_records
from benchmark.stats import benjamini_hochberg as bh
from benchmark.stats import minimum_detectable_difference
from benchmark.suite import load_suite
from metrics.estimate import Estimate
from tests.test_records import make_record


def test_welch_matches_the_closed_form():
    """Closed-form reference: Welch's t, Welch–Satterthwaite df, two-sided p and the t CI."""
    a, b = [1.0, 2.5, 2.0, 4.0], [3.0, 5.5, 4.0]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    delta, se = np.mean(a) - np.mean(b), math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * se
    result = welch_difference(a, b)
    assert result.estimate == pytest.approx(delta)
    assert result.p_value == pytest.approx(2 * stats.t.sf(abs(delta) / se, df))
    assert (result.low, result.high) == pytest.approx((delta - half, delta + half))
    assert f"df={df:.1f}" in result.detail


def test_welch_is_undefined_without_spread():
    """Property: one seed per side, or no spread at all, gives no p-value and no interval."""
    assert welch_difference([1.0], [2.0, 3.0]).p_value is None
    flat = welch_difference([1.0, 1.0], [2.0, 2.0])
    assert flat.p_value is None and flat.low is None and flat.estimate == -1.0


def test_holm_against_a_hand_computed_example():
    """Closed-form reference: Holm (1979) step-down on four p-values, and the cap at 1."""
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.6]) == [1.0, 1.0]
    assert holm_adjust([]) == []


def paired_samples(rng, delta, *, n=100, seeds=2):
    """Per-example values with a large shared example effect, and a true mean difference delta."""
    example = rng.normal(80.0, 5.0, size=n)  # shared by both sides: what pairing removes
    baseline = example + rng.normal(0.0, 1.0, size=(seeds, n))
    new = example + delta + rng.normal(0.0, 1.0, size=(seeds, n))
    return new, baseline


def test_paired_bootstrap_ci_covers_the_true_difference_at_the_stated_rate():
    """Property: over 200 synthetic data sets the 95% CI holds the true Δ about 95% of the time,
    and under Δ = 0 the test rejects at about its 5% level."""
    rng = np.random.default_rng(0)
    hits, rejections = 0, 0
    for trial in range(200):
        new, baseline = paired_samples(rng, 0.3)
        result = paired_bootstrap_difference(new, baseline, num_resamples=400, seed=trial)
        hits += result.low <= 0.3 <= result.high
        null_new, null_baseline = paired_samples(rng, 0.0)
        null = paired_bootstrap_difference(null_new, null_baseline, num_resamples=400, seed=trial)
        rejections += null.p_value < 0.05
    assert 0.88 <= hits / 200 <= 0.99
    assert rejections / 200 <= 0.10


def test_paired_bootstrap_width_matches_the_normal_theory_of_paired_differences():
    """Closed-form reference: the CI width is about 2 · 1.96 · sd(d) / sqrt(N), free of the
    example effect (sd 5) an unpaired comparison would carry; a clear effect has p = 1/(B+1)."""
    rng = np.random.default_rng(1)
    new, baseline = paired_samples(rng, 1.0, n=400)
    d = (new - baseline).mean(0)
    result = paired_bootstrap_difference(new, baseline, num_resamples=4000, seed=3)
    expected = 2 * 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert result.high - result.low == pytest.approx(expected, rel=0.1)
    assert result.estimate == pytest.approx(d.mean())
    assert result.p_value == pytest.approx(1 / 4001)
    again = paired_bootstrap_difference(new, baseline, num_resamples=4000, seed=3)
    assert again == result


def nll_record(name, seed, values, *, split="test", elbo=-80.0):
    """A record with an nll estimate carrying its per-example values, and an elbo estimate."""
    base = make_record(seed=seed)
    params = {"k": 100, "split": split, "seed": seed, "num_examples": None}
    nll = Estimate(
        float(np.mean(values)),
        0.1,
        len(values),
        "nats",
        False,
        params,
        {"per_example": list(values)},
    )
    metrics = {"nll": {"nll": nll}, "elbo": {"elbo": Estimate(elbo, 0.2, 9, "nats", True)}}
    return replace(
        base,
        spec={**base.spec, "name": name},
        metrics=metrics,
        spec_hash=f"{name}{seed}".ljust(64, "0"),
    )


def test_paired_per_example_refuses_unpaired_data():
    """Property: missing per-example values, unequal lengths or another split raise clearly."""
    new = [nll_record("new", 0, [1.0, 2.0])]
    with pytest.raises(ValueError, match="equal length"):
        paired_per_example(new, [nll_record("base", 0, [1.0, 2.0, 3.0])])
    with pytest.raises(ValueError, match="same `split`"):
        paired_per_example(new, [nll_record("base", 0, [1.0, 2.0], split="valid")])
    with pytest.raises(ValueError, match="share seeds"):
        paired_per_example(new, [nll_record("base", 1, [1.0, 2.0])])
    bare = nll_record("base", 0, [1.0, 2.0])
    estimate = replace(bare.metric("nll", "nll"), diagnostics={})
    bare = replace(bare, metrics={**bare.metrics, "nll": {"nll": estimate}})
    with pytest.raises(ValueError, match=r"per_example.*--no-bootstrap"):
        paired_per_example(new, [bare])


def test_compare_records_holm_adjusts_within_the_primary_family_only():
    """Contract: per baseline, Welch on the primary endpoint (NLL), its paired bootstrap, then
    the secondary endpoints; Holm within the primary Welch family, Holm within the bootstrap
    family, Benjamini–Hochberg for the secondary ones."""
    rng = np.random.default_rng(2)
    example = rng.normal(80.0, 3.0, size=50)
    new = [
        nll_record("new", s, example - 2 + rng.normal(0, 0.5, 50), elbo=-78.0 - s) for s in range(3)
    ]
    baselines = {
        name: [
            nll_record(name, s, example + shift + rng.normal(0, 0.5, 50), elbo=-80.0 - s)
            for s in range(2)
        ]
        for name, shift in (("vae", 0.0), ("iwae", -1.9))
    }
    comparisons = compare_records(new, baselines, num_resamples=2000, bootstrap_seed=0)
    kinds = [(c.baseline, c.family, c.method, c.endpoint) for c in comparisons]
    assert kinds == [
        ("vae", "nll", "welch", "primary"),
        ("vae", "nll", "paired bootstrap", "primary"),
        ("vae", "elbo", "welch", "secondary"),
        ("iwae", "nll", "welch", "primary"),
        ("iwae", "nll", "paired bootstrap", "primary"),
        ("iwae", "elbo", "welch", "secondary"),
    ]
    for members, adjust in (((0, 3), holm_adjust), ((1, 4), holm_adjust), ((2, 5), bh)):
        raw = [comparisons[i].difference.p_value for i in members]
        assert [comparisons[i].p_adjusted for i in members] == pytest.approx(adjust(raw))
    assert comparisons[0].detectable == pytest.approx(
        minimum_detectable_difference(
            comparisons[0].difference.standard_error, comparisons[0].difference.df
        )
    )
    vae_boot = comparisons[1]
    assert vae_boot.difference.estimate == pytest.approx(
        np.mean([r.metric("nll", "nll").value for r in new[:2]])
        - np.mean([r.metric("nll", "nll").value for r in baselines["vae"]])
    )
    assert verdict(vae_boot) == "NEW better"  # 2 nats lower NLL on every example
    chosen = compare_records(new, baselines, num_resamples=10, metrics=["elbo/elbo"])
    assert [(c.family, c.method, c.endpoint) for c in chosen] == [
        ("elbo", "welch", "primary"),
    ] * 2  # --metrics makes the ELBO primary; the NLL is then no endpoint at all


def write_suite(path, steps=4):
    suite = {
        "name": "tiny",
        "seeds": [0, 1],
        "defaults": {
            "dataset": {"name": "digits"},
            "train": {"steps": steps, "batch_size": 16, "checkpoint_every": 0, "log_every": 2},
            "eval": {
                "elbo": {"split": "test", "num_examples": 40},
                "nll": {"k": 8, "chunk": 8, "num_examples": 40, "pareto_k": False},
            },
        },
        "runs": [
            {
                "name": "vae",
                "model": {"name": "vae", "latent_dim": 2, "architecture": {"hidden": [8]}},
            },
            {
                "name": "iwae-k2",
                "model": {
                    "name": "iwae",
                    "latent_dim": 2,
                    "num_samples": 2,
                    "architecture": {"hidden": [8]},
                },
            },
            {
                "name": "iwae-k3",
                "model": {
                    "name": "iwae",
                    "latent_dim": 2,
                    "num_samples": 3,
                    "architecture": {"hidden": [8]},
                },
            },
        ],
    }
    path.write_text(yaml.safe_dump(suite))
    return path


def test_selection_by_run_name_model_name_or_registered_model(tmp_path):
    """Contract: run names first, then a model used by one run, then any registered model."""
    suite = load_suite(str(write_suite(tmp_path / "tiny.yaml")))
    by_run = select_runs(suite, "iwae-k2", ["vae"])
    assert [s.name for s in by_run.new_specs] == ["iwae-k2", "iwae-k2"]
    assert [s.seed for s in by_run.baselines["vae"]] == [0, 1]
    with pytest.raises(ValueError, match="used by runs"):
        select_runs(suite, "iwae", ["vae"])
    with pytest.raises(ValueError, match="vaebench list"):
        select_runs(suite, "vea", ["vae"])
    derived = select_runs(suite, "beta_vae", ["iwae-k3", "vae"])
    assert derived.derived_from == "iwae-k3" and derived.dropped == ("num_samples",)
    spec = derived.new_specs[1]
    assert spec.model["latent_dim"] == 2 and spec.model["architecture"].hidden == (8,)
    assert spec.seed == 1 and spec.train == derived.baselines["iwae-k3"][1].train


def test_report_shows_intervals_p_values_and_verdicts():
    """Contract: the Markdown report has Δ with its CI, raw and Holm p-values, and the runs."""
    rng = np.random.default_rng(3)
    example = rng.normal(80.0, 3.0, size=20)
    new = [nll_record("new", s, example - 1 + rng.normal(0, 0.1, 20)) for s in range(2)]
    base = {"vae": [nll_record("vae", s, example + rng.normal(0, 0.1, 20)) for s in range(2)]}
    comparisons = compare_records(new, base, num_resamples=500)
    text = render_report(
        Selection("new", (), {"vae": ()}),
        {"new": new, **base},
        comparisons,
        command="vaebench compare new --against vae --suite s",
        suite="s",
    )
    boot = next(c for c in comparisons if c.method == "paired bootstrap")
    interval = f"[{format_number(boot.difference.low)}, {format_number(boot.difference.high)}]"
    row = next(line for line in text.splitlines() if interval in line)
    assert f"| {boot.difference.p_value:.3g} | {boot.p_adjusted:.3g} | NEW better |" in row
    assert "B=500, 20 examples × 2 seeds" in row
    assert "**Primary endpoint**: `nll/nll`" in text and "(seeds 0, 1)" in text
    assert "| detectable at 80% power | p | p (Holm) | verdict |" in text
    welch = next(c for c in comparisons if c.method == "welch")
    assert f"| ±{format_number(welch.detectable)} |" in text
    assert "| new | new | 0 | ok | `new000000000` |" in text


def test_cli_compare_runs_then_reuses_records(tmp_path, capsys):
    """Contract: compare trains the missing runs, pairs the nll evaluator's per-example values,
    writes the report, and a rerun trains nothing and writes the same report."""
    suite = write_suite(tmp_path / "tiny.yaml")
    args = [
        "compare",
        "iwae-k2",
        "--against",
        "vae",
        "--suite",
        str(suite),
        "--results",
        str(tmp_path / "results"),
        "--checkpoints",
        str(tmp_path / "ck"),
        "--no-progress",
        "--bootstrap-resamples",
        "100",
        "--metrics",
        "nll/nll,elbo/elbo",
        "--seeds",
        "0,1",
        "--executor",
        "serial",
    ]
    assert main(args) == 0
    report = tmp_path / "results" / "compare" / "iwae-k2-vs-vae.md"
    first = report.read_text()
    records = {r.spec_hash: r for r in load_records(tmp_path / "results")}
    assert len(records) == 4 and "**Primary endpoint**: `nll/nll`, `elbo/elbo`" in first
    assert "| elbo/elbo ↑ (nats) | vae |" in first and "Welch df=" in first
    assert "| nll/nll ↓ (nats) | vae |" in first and "B=100, 40 examples × 2 seeds" in first
    assert main(args) == 0
    assert report.read_text() == first
    assert {r.spec_hash: r for r in load_records(tmp_path / "results")} == records
    assert first in capsys.readouterr().out


class RecordingExecutor:
    """An executor stand-in: records the specs it is given and answers with synthetic records."""

    def __init__(self):
        self.specs = []

    def map_runs(self, specs, options, *, on_event):
        self.specs += list(specs)
        rng = np.random.default_rng(len(self.specs))
        example = np.linspace(70.0, 90.0, 30)
        return [
            nll_record(
                spec.name,
                spec.seed,
                example + (0.5 if spec.name == "vae" else 0.0) + rng.normal(0, 0.2, 30),
            )
            for spec in specs
        ]


def test_cli_compare_declares_the_endpoint_and_runs_5_seeds_through_an_executor(
    tmp_path, monkeypatch, capsys
):
    """Contract: without --seeds, compare runs 5 training seeds per side, all in one call of an
    executor's `map_runs` (like a suite), declares the primary endpoint before running, and
    reports the detectable difference of each primary test."""
    executor = RecordingExecutor()
    monkeypatch.setattr("benchmark.compare._compare_executor", lambda args: executor)
    suite = write_suite(tmp_path / "tiny.yaml")
    args = ["compare", "iwae-k2", "--against", "vae", "--suite", str(suite)]
    args += ["--results", str(tmp_path / "results"), "--bootstrap-resamples", "50"]
    assert main(args) == 0
    seeds = sorted((s.name, s.seed) for s in executor.specs)
    assert seeds == sorted((n, s) for n in ("iwae-k2", "vae") for s in range(5))
    out = capsys.readouterr()
    assert "primary endpoint: nll/nll; secondary:" in out.err.splitlines()[0]
    assert "Training seeds per side: iwae-k2 5, vae 5" in out.out
    row = next(
        line for line in out.out.splitlines() if line.startswith("| nll/nll ↓ (nats) | vae |")
    )
    detectable = float(row.split(" | ")[5].lstrip("±"))
    assert 0 < detectable < 1  # 5 seeds, spread about 0.04: a 0.5-nat difference is detectable


def test_endpoints_are_declared_with_nll_primary_and_fid_of_any_network_secondary():
    """Contract: by default the test NLL is the primary endpoint and ELBO, active units and the
    FID of any feature network are secondary; other metrics are neither. `--metrics` makes its
    patterns the primary family and takes them out of the secondary one."""
    from benchmark.compare import Endpoints

    default = Endpoints.declare(None)
    roles = {
        key: default.role(key)
        for key in [
            ("nll", "nll"),
            ("elbo", "elbo"),
            ("active_units", "active_units"),
            ("sample_quality", "fid[lenet-ab89def4f8ce]"),
            ("sample_quality", "kid[lenet-ab89def4f8ce]"),
            ("nll", "iwae_bound"),
        ]
    }
    assert list(roles.values()) == ["primary", *["secondary"] * 3, None, None]
    chosen = Endpoints.declare(["elbo/elbo", "ais/*"])
    assert chosen.role(("elbo", "elbo")) == chosen.role(("ais", "ais_nll")) == "primary"
    assert chosen.role(("nll", "nll")) is None and "elbo/elbo" not in chosen.secondary
