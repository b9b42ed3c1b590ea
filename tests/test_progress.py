"""Tests of progress snapshots of unfinished runs, their CLI and their leaderboard rows."""

import hashlib
import json
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.literature import load_literature, reproduction_table, reproductions
from benchmark.progress import (
    PROGRESS_DIR,
    format_percent,
    load_progress,
    progress_snapshot,
    read_snapshot,
    refresh_progress,
    remove_finished_snapshots,
    unfinished,
    write_snapshot,
)
from benchmark.records import record_path, write_record
from benchmark.suite import load_suite
from metrics.estimate import Estimate
from tests.test_records import make_record

PROBES = [  # as the trainer's pass-end probe writes them (`runner.learning_curve_probe`)
    {"step": 2980, "epoch": 1.0, "nll": 146.49, "nll_stderr": 1.17, "k": 1000, "examples": 1000},
    {"step": 360580, "epoch": 121.0, "nll": 89.232, "nll_stderr": 0.771, "k": 1000,
     "examples": 1000},
]  # fmt: skip
STATE = {
    "step": 923_800,
    "curve": [{"step": 923_700, "loss": 93.2}, {"step": 923_800, "loss": 93.1, "lr": 1.9e-4}],
    "learning_curve": PROBES,
    "reference_loss": 200.0,
    "resumed_from": 894_000,
    "seconds": 4682.0,
}
MTIME = datetime(2026, 12, 7, 1, 35, tzinfo=UTC).timestamp()


@cache
def table1_job(seed: int = 0):
    """The suite job L1-vae-k1 of iwae_table1 (full protocol: 9,774,400 steps)."""
    return load_suite("iwae_table1", seeds=[seed]).runs[0]


def fake_checkpoint(folder: Path, spec, state=STATE) -> Path:
    """Write a checkpoint holding only a training state where the runner would put it."""
    path = folder / f"{spec.training_hash[:16]}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": 2, "state": state}, path)
    os.utime(path, (MTIME, MTIME))
    return path


def ok_record_of(spec: dict, spec_hash: str, results: Path, status: str = "ok") -> None:
    base = make_record(status=status, seed=spec["seed"])
    record = replace(base, spec=spec, spec_hash=spec_hash, dataset={"name": "mnist"})
    write_record(record, record_path(results, spec["name"], "mnist", spec_hash))


def test_snapshot_from_a_checkpoint_state(tmp_path):
    """Contract: `refresh_progress` writes the snapshot of the job's checkpoint, only under
    results/progress, with the step, the probes, the last curve point and the UTC mtime."""
    spec = table1_job()
    fake_checkpoint(tmp_path / "checkpoints", spec)
    results = tmp_path / "results"
    (job,) = refresh_progress((spec,), checkpoint_dir=tmp_path / "checkpoints", results_dir=results)
    path = results / PROGRESS_DIR / "mnist" / f"L1-vae-k1-{spec.hash[:12]}.json"
    assert [p for p in results.rglob("*") if p.is_file()] == [path]
    snapshot = read_snapshot(path)
    assert job.state == "in progress" and snapshot == job.snapshot
    assert (snapshot.step, snapshot.steps, snapshot.paper_steps) == (923_800, 9_774_400, 9_774_400)
    assert snapshot.last_probe == PROBES[-1] and snapshot.last_curve_point == STATE["curve"][-1]
    assert snapshot.checkpoint_mtime == "2026-12-07T01:35:00+00:00"
    assert (snapshot.spec_hash, snapshot.config_hash) == (spec.hash, spec.config_hash)
    assert snapshot.suite == "iwae_table1" and snapshot.spec == spec.to_dict()
    assert isinstance(json.loads(path.read_text())["learning_curve"][0]["k"], int)


def test_budget_fraction_is_steps_over_the_paper_budget():
    """Property: fraction done = step / train.paper_steps (none without a protocol budget)."""
    spec = table1_job()
    snapshot = progress_snapshot(spec, STATE, checkpoint_mtime=MTIME, git_commit=None)
    assert snapshot.budget_fraction == pytest.approx(923_800 / 9_774_400)  # 0.094512...
    assert format_percent(snapshot.budget_fraction) == "9.5 %"
    assert format_percent(1.0) == "100.0 %" and format_percent(0.0002) == "0.02 %"
    assert replace(snapshot, paper_steps=None).budget_fraction is None


def test_a_state_of_the_wrong_shape_is_refused():
    """Contract: a training state with a non-integer step is one error naming the field."""
    spec = table1_job()
    with pytest.raises(TypeError, match=r"`checkpoint state\.step` to be int"):
        progress_snapshot(spec, {**STATE, "step": "many"}, checkpoint_mtime=MTIME, git_commit=None)


def test_the_record_wins_and_stale_snapshots_are_removed(tmp_path):
    """Property: once a run has an ok record its snapshot is ignored and removed by the next
    refresh; a failed record does not win, and another suite's snapshot is left alone."""
    spec, results = table1_job(), tmp_path / "results"
    snapshot = progress_snapshot(spec, STATE, checkpoint_mtime=MTIME, git_commit="abc")
    other_spec = {**snapshot.spec, "name": "other", "suite": "cremer_gaps"}
    other = replace(snapshot, name="other", spec=other_spec, spec_hash="e" * 64)
    kept = write_snapshot(other, results)
    ok_record_of(other_spec, other.spec_hash, results)  # finished, but of another suite
    written = write_snapshot(snapshot, results)
    ok_record_of(spec.to_dict(), spec.hash, results, status="failed")
    assert remove_finished_snapshots("iwae_table1", results) == [] and written.is_file()
    ok_record_of(spec.to_dict(), spec.hash, results)
    fake_checkpoint(tmp_path / "checkpoints", spec)
    (job,) = refresh_progress((spec,), checkpoint_dir=tmp_path / "checkpoints", results_dir=results)
    assert job.state == "done"
    assert remove_finished_snapshots("iwae_table1", results) == [written]
    assert not written.exists() and kept.is_file()
    record = replace(make_record(), spec_hash=spec.hash)
    assert unfinished([snapshot, other], [record]) == [other]
    assert unfinished([snapshot], [replace(record, status="failed")]) == [snapshot]


def test_a_snapshot_under_an_older_spec_of_the_same_training_is_replaced(tmp_path):
    """Contract: after an eval-only change of the suite (same checkpoint), a refresh leaves one
    snapshot of the job, the current spec's; an older spec's snapshot of another training (its
    own checkpoint, maybe still running) and another seed's are kept."""
    spec, results = table1_job(), tmp_path / "results"
    data = spec.to_dict()

    def snapshot_of(changed: dict, seed: int = 0):
        old = {**data, **changed, "seed": seed}
        base = progress_snapshot(spec, STATE, checkpoint_mtime=MTIME, git_commit="abc")
        spec_hash = hashlib.sha256(repr(old).encode()).hexdigest()
        return write_snapshot(replace(base, spec=old, seed=seed, spec_hash=spec_hash), results)

    older_eval = snapshot_of({"eval": {"nll": data["eval"]["nll"]}})
    older_training = snapshot_of({"train": {**data["train"], "steps": 1000}})
    other_seed = snapshot_of({"eval": {}}, seed=1)
    fake_checkpoint(tmp_path / "checkpoints", spec)
    refresh_progress((spec,), checkpoint_dir=tmp_path / "checkpoints", results_dir=results)
    left = sorted(p.name for p in (results / PROGRESS_DIR / "mnist").iterdir())
    assert not older_eval.exists()
    assert left == sorted(
        [f"L1-vae-k1-{spec.hash[:12]}.json", older_training.name, other_seed.name]
    )


def test_a_bad_snapshot_file_is_skipped_with_one_warning(tmp_path, caplog):
    """Contract: loading is tolerant like records: a bad file is one warning line, skipped."""
    snapshot = progress_snapshot(table1_job(), STATE, checkpoint_mtime=MTIME, git_commit=None)
    write_snapshot(snapshot, tmp_path)
    bad = tmp_path / PROGRESS_DIR / "mnist" / "broken.json"
    bad.write_text('{"schema_version": 1, "name": 3}')
    no_epoch = json.loads(snapshot.to_json())
    del no_epoch["learning_curve"][0]["epoch"]
    (bad.parent / "no-epoch.json").write_text(json.dumps(no_epoch))
    with caplog.at_level(logging.WARNING):
        assert load_progress(tmp_path) == [snapshot]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2 and not any("\n" in warning for warning in warnings)
    assert "broken.json" in warnings[0] and "no-epoch.json" in warnings[1]
    with pytest.raises(ValueError, match="broken.json"):
        load_progress(tmp_path, strict=True)


def nll_record(spec, nll: float):
    """Return an ok MNIST record of `spec` whose test NLL (K = 5000) is `nll`."""
    estimate = Estimate(nll, 0.1, 10000, "nats", False, {"k": 5000, "split": "test"})
    return replace(
        make_record(),
        spec=spec.to_dict(),
        spec_hash=spec.hash,
        config_hash=spec.config_hash,
        dataset={"name": "mnist", "preprocessing": "dynamic_binarization"},
        metrics={"nll": {"nll": estimate}},
    )


def test_leaderboard_row_of_a_run_in_progress():
    """Contract: a published row with no record but a matching snapshot reads in progress, with
    the budget done and the last probe as ours; a record of the configuration wins."""
    entries = load_literature()
    snapshot = progress_snapshot(table1_job(), STATE, checkpoint_mtime=MTIME, git_commit=None)
    lines = reproduction_table(entries, [], [snapshot])
    (row,) = [line for line in lines if line.startswith("| iwae-t1-mnist-L1-vae-k1 |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[6] == (
        "89.2 ± 0.8 at epoch 121, k = 1000 on 1,000 test images (probe, not the final K = 5000 "
        "estimate) (L1-vae-k1, seed 0)"
    )
    assert cells[7:] == ["1", "—", "9.5 % of the paper's, so far", "—", "in progress"]
    others = [line for line in lines[2:] if line is not row]
    assert others and all(line.endswith("| not run |") for line in others)
    record = nll_record(table1_job(), 87.0)
    rows = [r for r in reproductions(entries, [record], [snapshot]) if r.run == "L1-vae-k1"]
    assert [(r.values, r.in_progress, r.verdict) for r in rows] == [((87.0,), (), "reduced budget")]


def test_a_full_run_in_progress_keeps_its_row_beside_reduced_budget_records():
    """Contract: a reduced-budget record of L1-vae-k1 (another config hash) does not hide the
    full-protocol run still training: the row appears twice, reduced budget and in progress."""
    from benchmark.suite import with_budget

    full = table1_job()
    snapshot = progress_snapshot(full, STATE, checkpoint_mtime=MTIME, git_commit=None)
    record = nll_record(with_budget(full, 0.004), 96.0)
    rows = [r for r in reproductions(load_literature(), [record], [snapshot]) if r.run]
    assert [(r.run, r.values, r.verdict) for r in rows] == [
        ("L1-vae-k1", (96.0,), "reduced budget"),
        ("L1-vae-k1", (), "in progress"),
    ]


def test_a_snapshot_of_another_configuration_does_not_match():
    """Property: a snapshot of IWAE k = 5 leaves the VAE k = 1 row not run."""
    spec = load_suite("iwae_table1", seeds=[0]).runs[4]  # L1-iwae-k5
    snapshot = progress_snapshot(spec, STATE, checkpoint_mtime=MTIME, git_commit=None)
    rows = {r.published.id: r for r in reproductions(load_literature(), [], [snapshot])}
    assert rows["iwae-t1-mnist-L1-vae-k1"].verdict == "not run"
    assert rows["iwae-t1-mnist-L1-iwae-k5"].verdict == "in progress"


def test_cli_progress_prints_one_line_per_job(tmp_path, capsys):
    """Contract: `vaebench progress` snapshots the job with a checkpoint and lists every job."""
    fake_checkpoint(tmp_path / "ck", table1_job())
    argv = ["progress", "iwae_table1", "--seeds", "0", "--checkpoints", str(tmp_path / "ck")]
    assert main([*argv, "--results", str(tmp_path / "results")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and sum("no checkpoint yet" in line for line in lines) == 11
    assert lines[0] == (
        "L1-vae-k1\tseed=0\tstep 923,800 / 9,774,400\t9.5 % of the paper's budget\t"
        "last probe: 89.23 nats at epoch 121 (k = 1000)"
    )
    assert len(load_progress(tmp_path / "results")) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["progress", "iwae_tabel1"], "Did you mean 'iwae_table1'?"),
        (["progress", "iwae_table1", "--checkpoints", "{tmp}/checkpoint"], "Did you mean '{tmp}/"
         "checkpoints'?"),
    ],
)  # fmt: skip
def test_cli_progress_errors_are_one_line(tmp_path, capsys, argv, message):
    """Contract: an unknown suite or a missing checkpoint folder is one line with a suggestion."""
    (tmp_path / "checkpoints").mkdir()
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main([*argv, "--results", str(tmp_path / "results")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(tmp=tmp_path) in err
    assert not (tmp_path / "results").exists()


def test_write_leaderboard_reads_the_snapshots_of_its_results_folder(tmp_path):
    """Contract: `vaebench leaderboard` shows a snapshot under DIR/progress as in progress."""
    from benchmark.leaderboard import write_leaderboard
    from benchmark.literature import LITERATURE_FILE

    results = tmp_path / "results"
    write_record(make_record(), record_path(results, "vae", "digits", "0" * 64))
    (results / "literature.yaml").write_text(LITERATURE_FILE.read_text())
    snapshot = progress_snapshot(table1_job(), STATE, checkpoint_mtime=MTIME, git_commit=None)
    write_snapshot(snapshot, results)
    board = tmp_path / "leaderboard.md"
    write_leaderboard(results, board, tmp_path / "leaderboard.csv")
    (row,) = [line for line in board.read_text().splitlines() if "| in progress |" in line]
    assert row.startswith("| iwae-t1-mnist-L1-vae-k1 |") and "9.5 %" in row


def test_learning_curve_figure_draws_runs_still_training():
    """Contract: a dataset with only a run in progress gets the learning-curve figure, its
    probes labelled in progress beside the paper's line, and the leaderboard embeds it under
    "Paper vs reproduced" (not in a dataset section)."""
    from benchmark.figures import learning_curve_points, planned_figures
    from benchmark.leaderboard import render_leaderboard

    snapshot = progress_snapshot(table1_job(), STATE, checkpoint_mtime=MTIME, git_commit=None)
    data = learning_curve_points([], [snapshot])
    assert set(data["run"]) == {"L1-vae-k1 (in progress)"}
    assert data["epoch"].tolist() == [p["epoch"] for p in STATE["learning_curve"]]
    assert set(data["paper"]) == {86.76}
    (figure,) = planned_figures([make_record()], [snapshot])
    assert (figure.dataset, figure.kind) == ("mnist", "learning-curve")
    text = render_leaderboard(
        [make_record()], literature=load_literature(), figures_link="figures", progress=[snapshot]
    )
    link = "![mnist: Test NLL at the end of each pass (dashed: the paper's final value)]"
    assert text.count(link) == 1
    assert text.index("### Paper vs reproduced") < text.index(link)
    assert text.index(link) < text.index("### Published numbers")
