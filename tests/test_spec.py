"""Tests of run-spec validation, resolution, hashing and suites."""

import pytest
import yaml

from benchmark.spec import TrainSpec, load_spec, resolve_spec
from benchmark.suite import load_suite

RAW = {
    "name": "vae-digits",
    "model": {"name": "vae", "latent_dim": 4},
    "dataset": {"name": "digits"},
    "train": {"steps": 10},
}


def test_resolution_fills_every_default_and_hashes_stably():
    """Contract: defaults are explicit in the resolved spec; equal specs hash equal."""
    spec = resolve_spec(RAW)
    assert spec.model["architecture"].hidden == (200, 200)
    assert spec.dataset["preprocessing"] == "dynamic_binarization"
    assert spec.train == TrainSpec(steps=10)
    assert "elbo" in spec.eval and len(spec.hash) == 64
    assert resolve_spec(dict(RAW)).hash == spec.hash
    assert (
        resolve_spec(
            {**RAW, "model": {"name": "vae", "latent_dim": 4, "likelihood": "bernoulli"}}
        ).hash
        == spec.hash
    )


def test_any_change_changes_the_hash_but_seed_keeps_config_hash():
    """Property: settings change the hash; the seed changes the hash but not the config hash."""
    spec = resolve_spec(RAW)
    other = resolve_spec({**RAW, "train": {"steps": 11}})
    seeded = resolve_spec({**RAW, "seed": 3})
    assert other.hash != spec.hash and seeded.hash != spec.hash
    assert seeded.config_hash == spec.config_hash != other.config_hash


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        ({**RAW, "trian": {}}, ValueError, r"among \['name', 'seed'.*unknown \['trian'\]"),
        ({**RAW, "train": {"step": 5}}, ValueError, r"among \['steps'"),
        ({**RAW, "train": {"steps": "many"}}, TypeError, "train.steps"),
        ({**RAW, "model": {"name": "vea"}}, ValueError, "Did you mean 'vae'"),
        ({**RAW, "dataset": {"name": "digit"}}, ValueError, "Did you mean 'digits'"),
        ({**RAW, "model": {"latent_dim": 3}}, ValueError, "with a `name`"),
        ({**RAW, "eval": {"elbow": {}}}, ValueError, "Did you mean 'elbo'"),
        ({**RAW, "eval": {"elbo": {"split": "tset"}}}, ValueError, "eval.elbo.split"),
        ({k: v for k, v in RAW.items() if k != "dataset"}, ValueError, "`dataset`"),
        ([1, 2], TypeError, "mapping"),
    ],
)
def test_invalid_specs_get_clear_errors(raw, error, match):
    """Property: each malformed spec is rejected with a message naming the fix."""
    with pytest.raises(error, match=match):
        resolve_spec(raw)


def test_malformed_yaml_names_the_file(tmp_path):
    """Property: a YAML syntax error is reported with the file name, not a traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\nmodel: {name: vae")
    with pytest.raises(ValueError, match="bad.yaml.*valid YAML"):
        load_spec(path)


def test_overrides_and_seed_go_into_the_resolved_spec(tmp_path):
    """Contract: --set and --seed change the resolved spec and therefore its hash."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(RAW))
    base = load_spec(path)
    changed = load_spec(path, seed=7, overrides=["train.steps=20", "model.architecture.hidden=[8]"])
    assert changed.seed == 7 and changed.train.steps == 20
    assert changed.model["architecture"].hidden == (8,) and changed.hash != base.hash
    with pytest.raises(ValueError, match="train.steps=100"):
        load_spec(path, overrides=["train.steps"])


def test_quick_suite_expands_runs_times_seeds():
    """Contract: the quick suite has >= 3 models x 2 seeds, resolved before anything runs."""
    suite = load_suite("quick")
    models = {spec.model["name"] for spec in suite.runs}
    seeds = {spec.seed for spec in suite.runs}
    assert len(models) >= 3 and len(seeds) >= 2
    assert len(suite.runs) == len({s.name for s in suite.runs}) * len(seeds)
    assert all(spec.suite == "quick" for spec in suite.runs)
    assert sum(spec.dataset["name"] == "digits" for spec in suite.runs) >= 6


def test_unknown_suite_suggests():
    """Property: a misspelt suite name suggests the shipped one."""
    with pytest.raises(ValueError, match="Did you mean 'quick'"):
        load_suite("quik")
