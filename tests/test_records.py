"""Tests of the run-record schema: round trip, NaN refusal, atomic writes."""

import json
import math

import pytest

from benchmark.records import (
    SCHEMA_VERSION,
    RunRecord,
    load_records,
    read_record,
    record_path,
    write_record,
)
from metrics.estimate import Estimate, mean_estimate


def make_record(value: float = -80.5, status: str = "ok", seed: int = 0) -> RunRecord:
    estimate = Estimate(value, 0.25, 360, "nats", True, {"k": 1000, "split": "test"}, {"ess": 12.5})
    return RunRecord(
        schema_version=SCHEMA_VERSION,
        status=status,
        spec={"name": "vae", "seed": seed, "model": {"name": "vae"}, "dataset": {"name": "digits"}},
        spec_hash=f"{seed:064d}",
        config_hash="c" * 64,
        model={"name": "vae", "num_parameters": 1234},
        dataset={"name": "digits", "checksum": "ab"},
        metrics={"elbo": {"elbo": estimate}} if status == "ok" else {},
        seeds={"run": seed},
        environment={"python": "3.11"},
        git={"commit": "abc", "dirty": False},
        timings={"train": 1.5, "eval": 0.5, "total": 2.0},
    )


def test_record_round_trip(tmp_path):
    """Contract: a written record reads back equal, with sorted keys and Estimates restored."""
    record = make_record()
    path = write_record(record, tmp_path / "r.json")
    assert read_record(path) == record
    text = path.read_text()
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert isinstance(read_record(path).metric("elbo", "elbo"), Estimate)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused_and_old_file_kept(tmp_path, bad):
    """Property: NaN/Inf is never written; the existing record survives the failed write."""
    path = write_record(make_record(), tmp_path / "r.json")
    before = path.read_text()
    with pytest.raises(ValueError, match="finite.*diverged"):
        write_record(make_record(value=bad), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_diverged_record_has_null_metrics(tmp_path):
    """Property: a diverged run is a valid record with status 'diverged' and no metric values."""
    path = write_record(make_record(status="diverged"), tmp_path / "d.json")
    assert read_record(path).status == "diverged" and read_record(path).metrics == {}


def test_schema_version_mismatch_and_unknown_keys_are_refused(tmp_path):
    """Property: records of another schema version or with stray keys are rejected clearly."""
    data = make_record().to_dict()
    (tmp_path / "old.json").write_text(json.dumps({**data, "schema_version": 0}))
    with pytest.raises(ValueError, match="schema_version"):
        read_record(tmp_path / "old.json")
    (tmp_path / "stray.json").write_text(json.dumps({**data, "extra": 1}))
    with pytest.raises(ValueError, match="unknown"):
        read_record(tmp_path / "stray.json")


def test_record_path_follows_spec_and_load_records_finds_it(tmp_path):
    """Contract: the path is a function of the spec, and load_records reads everything."""
    record = make_record()
    path = record_path(tmp_path, "vae", "digits", record.spec_hash)
    assert path == record_path(tmp_path, "vae", "digits", record.spec_hash)
    write_record(record, path)
    assert load_records(tmp_path) == [record]


def test_mean_estimate_matches_numpy_and_names_bad_example():
    """Reference (numpy): mean and sd/sqrt(n); a non-finite value names its index."""
    import numpy as np
    import torch

    values = torch.tensor([1.0, 2.0, 4.0, 7.0])
    estimate = mean_estimate(values, unit="nats", higher_is_better=True)
    assert estimate.value == pytest.approx(3.5)
    assert estimate.stderr == pytest.approx(np.std(values.numpy(), ddof=1) / 2)
    with pytest.raises(ValueError, match="example 2"):
        mean_estimate(torch.tensor([0.0, 1.0, math.nan]), unit="nats", higher_is_better=True)


def test_sections_are_typed_and_old_records_still_load():
    """Contract: every committed record (schema 1, written before the sections were typed and
    before Estimate had kind/warning) loads; sections are dataclasses read by field, undeclared
    keys kept in ``extra``, and a re-written record reads back equal."""
    from pathlib import Path

    from benchmark.records import ConfigKey, DatasetInfo, ModelInfo, Timings

    results = Path(__file__).resolve().parents[1] / "results"
    records = load_records(results, strict=True)
    assert len(records) >= 20
    record = records[0]
    assert isinstance(record.model, ModelInfo) and isinstance(record.dataset, DatasetInfo)
    assert isinstance(record.timings, Timings) and record.timings.train > 0
    assert record.model.num_parameters == record.model["num_parameters"] > 0
    assert "eval_elbo" in record.timings.extra and "elbo" in record.timings.per_evaluator
    old = json.loads(json.dumps(record.to_dict()))  # as written before kind/warning existed
    for family in old["metrics"].values():
        for estimate in family.values():
            estimate.pop("kind", None), estimate.pop("warning", None)
    old_record = RunRecord.from_dict(old)
    assert all(
        e.kind == "estimate" and e.warning is None
        for f in old_record.metrics.values()
        for e in f.values()
    )
    assert record.config_key == ConfigKey(record.spec["name"], record.config_hash[:8])
    assert str(record.config_key) == f"{record.spec['name']}@{record.config_hash[:8]}"
    original = json.loads(json.dumps(record.to_dict()))
    assert RunRecord.from_dict(original) == record
    assert set(original["model"]) >= {"class", "name", "num_parameters"}


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("list.json", "[1, 2]"),
        ("metrics.json", "METRICS_LIST"),
        ("nameless.json", "NO_NAME"),
        ("nan.json", "NAN"),
        ("status.json", "STATUS"),
        ("folder.json", None),
        ("garbage.json", "{not json"),
    ],
)
def test_a_bad_record_is_skipped_with_one_warning_naming_it(tmp_path, caplog, name, content):
    """Property: a bad file among good records is skipped with one warning line naming it, and
    `strict` raises a ValueError naming it instead."""
    good = make_record()
    write_record(good, record_path(tmp_path, "vae", "digits", good.spec_hash))
    data = good.to_dict()
    texts = {
        "METRICS_LIST": json.dumps({**data, "metrics": [1]}),
        "NO_NAME": json.dumps({**data, "spec": {"seed": 0}}),
        "NAN": json.dumps({**data, "timings": {"train": math.nan}}),
        "STATUS": json.dumps({**data, "status": "great"}),
    }
    bad = tmp_path / "runs" / "digits" / name
    if content is None:
        bad.mkdir()
    else:
        bad.write_text(texts.get(content, content))
    with caplog.at_level("WARNING"):
        assert load_records(tmp_path) == [good]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(bad) in warnings[0] and "\n" not in warnings[0]
    with pytest.raises(ValueError, match=name):
        load_records(tmp_path, strict=True)
