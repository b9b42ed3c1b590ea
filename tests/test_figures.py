"""Tests of the leaderboard figures: the data each figure plots, and deterministic PNG files."""

from dataclasses import replace

import pandas as pd
import pytest
from scipy import stats

from benchmark.figures import (
    active_unit_points,
    disentanglement_scores,
    draw_figure,
    nll_points,
    planned_figures,
    rate_distortion_points,
    run_labels,
    score_rank_correlations,
    training_curve_points,
    write_figures,
)
from metrics.estimate import Estimate
from tests.test_records import make_record

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def dsprites_record(name: str, beta: float | None, seed: int, units: float, mig: float):
    """A beta-VAE-style run on dsprites with active units, two disentanglement scores, a curve."""
    base = make_record(seed=seed)
    model = {"name": "beta_vae" if beta is not None else "vae", "latent_dim": 10}
    if beta is not None:
        model["beta"] = beta
    metrics = {
        "active_units": {"active_units": Estimate(units, None, 1, "count", True)},
        "disentanglement": {
            "mig": Estimate(mig, None, 1, "fraction", True),
            "sap": Estimate(mig / 2, None, 1, "fraction", True),
        },
        "elbo": {
            "kl": Estimate(5.0 + seed, 0.1, 100, "nats", None),
            "reconstruction": Estimate(-60.0 - seed, 0.5, 100, "nats", True),
        },
    }
    curve = [{"step": 10 * i, "loss": 100.0 - i - seed} for i in range(1, 4)]
    return replace(
        base,
        spec={**base.spec, "name": name, "model": model},
        config_hash=name.ljust(64, "0"),
        spec_hash=f"{name}{seed}".ljust(64, "0"),
        dataset={"name": "dsprites"},
        metrics=metrics,
        training={"curve": curve},
    )


def dsprites_records():
    return [
        dsprites_record("b1", 1.0, 0, 9, 0.1),
        dsprites_record("b1", 1.0, 1, 7, 0.3),
        dsprites_record("b4", 4.0, 0, 4, 0.5),
        dsprites_record("vae", None, 0, 10, 0.2),
    ]


def nll_records():
    """digits: two seeds of `vae` with an NLL, and one diverged run with a training curve only."""
    records = []
    for seed, nll in enumerate((70.0, 72.0)):
        base = make_record(seed=seed)
        records.append(
            replace(base, metrics={"nll": {"nll": Estimate(nll, 0.2, 9, "nats", False)}})
        )
    diverged = make_record(status="diverged", seed=2)
    records.append(replace(diverged, training={"curve": [{"step": 5, "loss": 3.0}]}))
    return records


def test_nll_points_one_row_per_ok_seed():
    """Contract: the NLL figure plots each ok seed's value; the diverged run is left out."""
    points = nll_points(nll_records())
    assert points[["run", "seed", "value", "unit"]].values.tolist() == [
        ["vae", 0, 70.0, "nats"],
        ["vae", 1, 72.0, "nats"],
    ]


def test_rate_distortion_is_kl_and_negative_reconstruction():
    """Contract: rate = the elbo evaluator's kl, distortion = −reconstruction."""
    points = rate_distortion_points(dsprites_records())
    row = points[(points["run"] == "b1") & (points["seed"] == 1)].iloc[0]
    assert (row["rate"], row["distortion"]) == (6.0, 61.0)
    assert len(points) == 4


def test_active_units_against_beta_skips_models_without_beta():
    """Contract: x is the model's beta hyperparameter, else the β the runner recorded for the
    model; runs with neither are not plotted."""
    records = dsprites_records()
    recorded = replace(records[-1], model={**records[-1].model, "beta": 1.0})
    assert active_unit_points(records[:-1] + [recorded])["beta"].tolist() == [1.0, 1.0, 4.0, 1.0]
    points = active_unit_points(records)
    assert sorted(points[["beta", "active_units"]].values.tolist()) == [
        [1.0, 7],
        [1.0, 9],
        [4.0, 4],
    ]


def test_disentanglement_heatmap_is_mean_over_seeds():
    """Contract: a heatmap cell is the mean across seeds of one score of one run."""
    scores = disentanglement_scores(dsprites_records())
    assert list(scores.columns) == ["mig", "sap"] and list(scores.index) == ["b1", "b4", "vae"]
    assert scores.loc["b1", "mig"] == pytest.approx(0.2)
    assert scores.loc["b4", "sap"] == pytest.approx(0.25)


def test_score_rank_correlations_match_scipy_across_runs_and_seeds():
    """Reference: each cell is scipy's Spearman rho over the (run, seed) observations, for the
    study's scores only (a score outside them, here ``sap_train``, is left out)."""
    records = dsprites_records()
    scores = [[0.7, 0.1, 0.4, 0.9], [0.1, 0.3, 0.5, 0.2], [0.05, 0.15, 0.25, 0.1]]
    for record, value in zip(records, scores[0], strict=True):
        record.metrics["disentanglement"]["dci_disentanglement"] = Estimate(
            value, None, 1, "fraction", True
        )
        record.metrics["disentanglement"]["sap_train"] = Estimate(value, None, 1, "fraction", True)
    table = score_rank_correlations(records)
    assert list(table.columns) == ["dci_disentanglement", "mig", "sap"]
    for i, a in enumerate(table.columns):
        for j, b in enumerate(table.columns):
            assert table.loc[a, b] == pytest.approx(stats.spearmanr(scores[i], scores[j])[0])
    assert table.loc["dci_disentanglement", "mig"] == pytest.approx(-0.6)  # ranks 3124 v 1342
    assert score_rank_correlations(records[:2]).empty  # two runs: no rank correlation


def test_training_curves_include_diverged_runs():
    """Contract: every recorded curve point is plotted, including a diverged run's."""
    points = training_curve_points(nll_records() + dsprites_records())
    assert len(points) == 1 + 4 * 3
    assert points[points["run"] == "b4"]["loss"].tolist() == [99.0, 98.0, 97.0]


def test_run_labels_disambiguate_shared_names():
    """Property: two configurations sharing a run name get the config hash appended."""
    a, b = make_record(seed=0), make_record(seed=1)
    b = replace(b, config_hash="d" * 64)
    labels = run_labels([a, b])
    assert labels == {"c" * 64: "vae@cccccccc", "d" * 64: "vae@dddddddd"}
    assert run_labels([a]) == {"c" * 64: "vae"}


def test_planned_figures_follow_the_data():
    """Property: a figure is planned only for a dataset whose records hold its data."""
    planned = {(f.dataset, f.kind) for f in planned_figures(nll_records() + dsprites_records())}
    assert planned == {
        ("digits", "nll"),
        ("digits", "training-curves"),
        ("dsprites", "rate-distortion"),
        ("dsprites", "active-units"),
        ("dsprites", "disentanglement"),
        ("dsprites", "score-correlation"),
        ("dsprites", "training-curves"),
    }
    assert planned_figures([make_record()]) == []
    assert isinstance(disentanglement_scores([make_record()]), pd.DataFrame)


def test_figures_are_png_deterministic_and_not_rewritten(tmp_path):
    """Property: valid PNGs without software metadata; same records, same bytes, file untouched."""
    records = nll_records() + dsprites_records()
    paths = write_figures(records, tmp_path)
    assert sorted(p.name for p in paths) == sorted(f.filename for f in planned_figures(records))
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in paths}
    for _, data in stamps.values():
        assert data.startswith(PNG_SIGNATURE) and b"matplotlib" not in data.lower()
    write_figures(records, tmp_path)
    assert stamps == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in paths}
    heatmap = next(f for f in planned_figures(records) if f.kind == "disentanglement")
    changed = [
        replace(
            records[-1],
            metrics={
                **records[-1].metrics,
                "disentanglement": {"mig": Estimate(0.9, None, 1, "fraction", True)},
            },
        )
    ]
    assert draw_figure(heatmap, records[:-1] + changed) != draw_figure(heatmap, records)


def test_learning_curve_points_carry_the_matched_paper_value():
    """Contract: each probe becomes a point; a run matched to Table 1 carries its paper value,
    an unmatched run none, and the figure is planned only where probes exist."""
    from dataclasses import replace

    from benchmark.figures import learning_curve_points, planned_figures
    from tests.test_leaderboard import mnist_records

    matched, unmatched = mnist_records()[0], mnist_records()[0]
    curve = [{"step": 2980, "epoch": 1.0, "nll": 120.0}, {"step": 11920, "epoch": 4.0, "nll": 100}]
    matched = replace(matched, training={**matched.training, "learning_curve": curve})
    unmatched = replace(
        unmatched,
        training={**unmatched.training, "learning_curve": curve[:1]},
        spec={**unmatched.spec, "name": "other", "model": {"name": "vae"}},
        config_hash="other".ljust(64, "0"),
    )
    data = learning_curve_points([matched, unmatched])
    assert data["nll"].tolist() == [120.0, 100, 120.0]
    assert data["paper"].tolist()[:2] == [85.54, 85.54] and data["paper"].isna().tolist()[2]
    panels = data["panel"].tolist()
    assert panels == ["iwae-t1-mnist-L1-iwae-k5 (paper 85.54)"] * 2 + ["other"]
    reduced = mnist_records()[2]  # a quarter of the paper's budget
    reduced = replace(reduced, training={**reduced.training, "learning_curve": curve[:1]})
    assert learning_curve_points([reduced])["run"].tolist() == ["vae (25.0 % of the budget)"]
    assert "learning-curve" in {f.kind for f in planned_figures([matched])}
    assert "learning-curve" not in {f.kind for f in planned_figures(mnist_records())}


def test_a_kind_with_panels_draws_one_axes_per_panel():
    """Contract: data with a ``panel`` column becomes small multiples: one visible axes per
    panel, titled by it, the grid's spare cells hidden, every panel with its dashed paper line."""
    import matplotlib
    import pandas as pd

    from benchmark.figures import _draw_learning_curve, _draw_panels

    data = pd.DataFrame(
        [
            {"run": f"r{i}", "seed": 0, "epoch": e, "nll": 100 - e - i, "paper": 80.0 + i,
             "panel": f"p{i}"}
            for i in range(5)
            for e in (1.0, 4.0, 13.0)
        ]
    )  # fmt: skip
    with matplotlib.rc_context({"figure.dpi": 50}):
        figure = _draw_panels(_draw_learning_curve, data)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == [f"p{i}" for i in range(5)]
    assert len(figure.axes) == 8  # two rows of four
    for i, ax in enumerate(visible):
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert [line.get_ydata()[0] for line in dashed] == [80.0 + i]
    # the panels above the spare cells keep their epoch ticks
    assert all(ax.xaxis.label.get_visible() for ax in visible[1:])


def test_many_runs_keep_a_readable_axes():
    """Regression: two dozen runs (fashion_mnist with the reading lists) put a 24-entry legend
    inside the axes and a VAE-GAN's 13,000-nat distortion flattened the others: the legend now
    goes beside the axes in columns, and a positive axis spanning > 20x is drawn in log scale."""
    import pandas as pd
    from matplotlib.figure import Figure as MplFigure

    from benchmark.figures import LEGEND_ROWS, _legend_beside, _log_scale_if_wide

    fig = MplFigure(layout="constrained")
    ax = fig.subplots()
    for i in range(2 * LEGEND_ROWS + 1):
        ax.plot([0, 1], [i, i + 1], label=f"run-{i}")
    ax.legend()
    _legend_beside(ax)
    legend = ax.get_legend()
    assert legend._ncols == 3 and legend.get_bbox_to_anchor().x0 > ax.bbox.x1
    _log_scale_if_wide(ax, pd.Series([60.0, 140.0]))
    assert ax.get_yscale() == "linear"
    _log_scale_if_wide(ax, pd.Series([60.0, 13_600.0]))
    assert ax.get_yscale() == "log"
