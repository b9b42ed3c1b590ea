"""Runs under hostile conditions: locks, bad records, long names, plugins (issue 18).

Property tests: two processes given the same spec train it once (items 15); a file at a run's
record path that is not a valid record is re-run with a warning naming it (item 12); a long or
odd name gives one bounded path component before training (item 1); ``suite --list`` imports
no plugin and ``--help`` says plugins run code (item 3).
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.atomic import MAX_STEM_BYTES, safe_file_stem
from benchmark.records import record_path
from benchmark.runner import RunOptions, run_spec
from benchmark.spec import resolve_spec

ROOT = Path(__file__).resolve().parents[1]
RAW = {
    "name": "lock",
    "model": {"name": "vae", "latent_dim": 2, "architecture": {"hidden": [8]}},
    "dataset": {"name": "digits"},
    "train": {"steps": 100, "log_every": 50, "checkpoint_every": 0},
    "eval": {"elbo": {"num_examples": 20}},
}
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
RUN = """
import json, sys
from pathlib import Path
from benchmark.runner import RunOptions, run_spec
from benchmark.spec import load_spec
record = run_spec(load_spec(sys.argv[1]), RunOptions(Path("results"), Path("ck"), progress=False))
print(json.dumps({"status": record.status, "total": record.timings["total"]}))
"""


def test_second_process_waits_for_the_lock_and_reuses_the_record(tmp_path):
    """Property: while this process holds a run's lock, a process given the same spec waits;
    when a record appears and the lock is released, it returns that record without training."""
    from benchmark.atomic import run_lock

    raw = {**RAW, "train": {"steps": 2, "log_every": 1, "checkpoint_every": 0}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    spec = resolve_spec(raw)
    made = run_spec(spec, RunOptions(tmp_path / "made", tmp_path / "ck", progress=False))
    path = record_path(tmp_path / "results", spec.name, "digits", spec.hash)
    with run_lock(path.with_suffix(".lock")):
        waiting = subprocess.Popen(
            [sys.executable, "-c", RUN, "spec.yaml"], cwd=tmp_path, env=ENV,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert "waiting for another process" in waiting.stderr.readline()
        source = record_path(tmp_path / "made", spec.name, "digits", spec.hash)
        path.write_text(source.read_text())  # what the other process would have written
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0 and "reusing" in err
    assert json.loads(out) == {"status": "ok", "total": made.timings["total"]}
    assert not path.with_suffix(".lock").exists()


def test_two_identical_processes_train_the_run_once(tmp_path):
    """Property: started together, two processes with the same spec return the same record
    (one trained; the other waited or found it), and no lock file is left behind."""
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(RAW))
    command = [sys.executable, "-c", RUN, "spec.yaml"]
    processes = [
        subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [json.loads(p.communicate(timeout=300)[0]) for p in processes]
    assert all(p.returncode == 0 for p in processes)
    assert outputs[0] == outputs[1] and outputs[0]["status"] == "ok"
    assert not list((tmp_path / "results").rglob("*.lock"))


@pytest.mark.parametrize(
    "content", ["[]", "{}", '{"schema_version": 1}', "{not json", "folder"], ids=str
)
def test_unusable_record_at_the_run_path_is_rerun_with_a_warning(tmp_path, content, caplog):
    """Property: whatever sits at the record path, the run re-runs (warning naming the file)
    and ends with a valid ok record there."""
    raw = {**RAW, "train": {"steps": 2, "log_every": 1, "checkpoint_every": 0}}
    spec = resolve_spec(raw)
    options = RunOptions(tmp_path / "results", tmp_path / "ck", progress=False)
    path = record_path(options.results_dir, spec.name, "digits", spec.hash)
    path.parent.mkdir(parents=True)
    if content == "folder":
        path.mkdir()
    else:
        path.write_text(content)
    with caplog.at_level(logging.WARNING):
        record = run_spec(spec, options)
    assert record.status == "ok" and str(path) in caplog.text
    assert json.loads(path.read_text())["spec_hash"] == spec.hash


def test_long_names_become_one_bounded_component_that_keeps_them_apart():
    """Property: safe stems are one short component; distinct long names stay distinct."""
    long_a, long_b = "a" * 300, "a" * 299 + "b"
    for name in (long_a, "β" * 200, "../../x", "a/b\x00c", "..", ""):
        stem = safe_file_stem(name)
        assert len(stem.encode()) <= MAX_STEM_BYTES and "/" not in stem and "\x00" not in stem
        assert not stem.startswith(".") and stem
    assert safe_file_stem(long_a) != safe_file_stem(long_b)
    assert safe_file_stem("vae-k5_b2.0") == "vae-k5_b2.0"  # ordinary names are kept


def test_run_with_a_300_character_name_writes_its_record_and_images(tmp_path):
    """Property: the long name is shortened before training, so the run ends ok with its
    record and images inside results/ (it crashed after training before)."""
    raw = {**RAW, "name": "n" * 300, "train": {"steps": 2, "log_every": 1}}
    record = run_spec(
        resolve_spec(raw), RunOptions(tmp_path / "r", tmp_path / "ck", progress=False)
    )
    assert record.status == "ok" and record.spec["name"] == "n" * 300
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in files) and any(p.suffix == ".png" for p in files)
    assert all(len(part.encode()) <= 255 for p in files for part in p.parts)


def test_suite_list_imports_no_plugin_and_help_warns(tmp_path):
    """Property: listing a suite whose runs name a plugin leaves the plugin's marker unwritten;
    running `--help` says that plugins run code."""
    marker = tmp_path / "imported"
    (tmp_path / "plug.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    suite = {
        "name": "p",
        "defaults": {"dataset": {"name": "digits"}, "train": {"steps": 2}},
        "runs": [
            {"name": "plain", "model": {"name": "vae"}},
            {"name": "plugged", "model": {"name": "free_bits_vae"}, "plugins": ["plug.py"]},
        ],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    env = ENV
    listing = subprocess.run(
        [sys.executable, "-m", "benchmark", "suite", "s.yaml", "--list"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].startswith("0\tplain\tseed=0\t") and "plugins not imported" in lines[1]
    assert not marker.exists()
    from benchmark.cli import build_parser

    assert "is Python code and runs" in " ".join(build_parser().format_help().split())
