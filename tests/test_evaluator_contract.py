"""Contract tests, parametrized over every registered evaluator (as `test_registry.py` is over
every model): declared outputs, kinds and directions; the settings dataclass as spec schema; the
return type; the reliability field; seeded determinism.

A new evaluator is covered automatically. Its run-time checks use `SMALL` settings where they
exist (add an entry to keep the test fast) and the settings dataclass's defaults otherwise.
"""

import dataclasses
import math

import pytest
import torch

from benchmark.datasets import create_dataset
from benchmark.evaluators import (
    _EVALUATORS,
    Output,
    get_evaluator,
    list_evaluators,
    register_evaluator,
)
from metrics.estimate import ESTIMATE_KINDS, Estimate, NotDefined
from registry import create_model
from registry._typecheck import check_value

# Settings that make each evaluator run in seconds on 8x8 digits (toy_factors for the scores).
SMALL = {
    "elbo": {"num_examples": 20},
    "nll": {"k": 30, "chunk": 16, "num_examples": 12},
    "ais": {"chains": 3, "steps": 5, "leapfrog_steps": 2, "num_examples": 4, "is_k": 25},
    "bdmc": {"num_examples": 3, "chains": 3, "steps": 5, "leapfrog_steps": 2},
    "inference_gaps": {
        "num_examples": 3,
        "is_k": 10,
        "elbo_k": 10,
        "samples_per_step": 4,
        "check_every": 5,
        "max_steps": 10,
        "chunk_size": 10,
    },
    "active_units": {"num_examples": 30},
    "linear_probe": {"num_labels": 200, "num_valid": 100, "num_test": 100},
    "posterior_collapse": {"num_examples": 20, "num_samples": 2},
    "sample_quality": {
        "num_samples": 60,
        "num_reference": 60,
        "kid_subsets": 3,
        "kid_subset_size": 30,
        "fid_bootstrap": 2,
        "feature_epochs": 1,
    },
    "disentanglement": {
        "scores": ("beta_vae", "factor_vae", "mig", "sap", "modularity_explicitness"),  # no DCI
        "num_train": 60,
        "num_eval": 40,
        "num_variance_estimate": 60,
        "intervention_batch_size": 8,
        "batch_size": 8,
    },
}


@pytest.fixture(scope="module", autouse=True)
def feature_cache(tmp_path_factory):
    """A fresh feature-network cache for ``sample_quality`` (it reads $VAEBENCH_CACHE)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAEBENCH_CACHE", str(tmp_path_factory.mktemp("vaebench_cache")))
        yield


@pytest.fixture(scope="module")
def datasets():
    return {"digits": create_dataset("digits"), "toy_factors": create_dataset("toy_factors")}


def run(name: str, datasets: dict, seed: int) -> dict:
    """Run evaluator `name` with `SMALL` settings on a small VAE of the right data shape.

    The model is built under its own forked generator, so only the evaluator touches the
    caller's global generator.
    """
    dataset = datasets["toy_factors" if name == "disentanglement" else "digits"]
    evaluator = get_evaluator(name)
    config = check_value(f"eval.{name}", SMALL.get(name, {}), evaluator.config_type)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("vae", data_shape=dataset.data_shape, latent_dim=3)
    return evaluator.function(model=model, dataset=dataset, config=config, seed=seed)


@pytest.mark.parametrize("name", list_evaluators())
def test_declared_outputs_kinds_and_directions(name):
    """Contract: each evaluator declares distinct outputs with a unit, a known kind, and a
    direction that fits it (a diagnostic or a bound says which way is better only if it is an
    estimate of that quantity); its settings dataclass is a frozen dataclass with defaults."""
    evaluator = get_evaluator(name)
    assert evaluator.outputs and all(isinstance(o, Output) for o in evaluator.outputs)
    names = [o.name for o in evaluator.outputs]
    assert len(set(names)) == len(names)
    for output in evaluator.outputs:
        assert output.unit and output.kind in ESTIMATE_KINDS
        assert set(output.other_kinds) <= set(ESTIMATE_KINDS) - {output.kind}
        assert output.higher_is_better in (True, False, None)
        if output.kind == "diagnostic":
            assert output.higher_is_better is not True
    config_type = evaluator.config_type
    assert dataclasses.is_dataclass(config_type) and config_type.__dataclass_params__.frozen
    config_type()  # every setting has a default, so `eval: {name: {}}` is valid


@pytest.mark.parametrize("name", list_evaluators())
def test_results_follow_the_declaration_and_are_seeded(name, datasets):
    """Contract: the return type is dict[str, Estimate | NotDefined]; each name is declared and
    each Estimate carries its declaration's unit, direction and a declared kind, the run's seed
    and settings, and a warning that is None or a sentence; the same seed gives identical
    results, and the global generator is left as it was."""
    evaluator = get_evaluator(name)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = run(name, datasets, seed=7)
    assert torch.equal(torch.rand(1), before)  # the evaluator forked the generator
    assert isinstance(first, dict) and first
    for returned_name, value in first.items():
        output = evaluator.output(returned_name)
        assert isinstance(value, (Estimate, NotDefined)), (returned_name, type(value))
        if isinstance(value, NotDefined):
            assert value.reason
            continue
        assert value.unit == output.unit and value.higher_is_better == output.higher_is_better
        assert value.kind in (output.kind, *output.other_kinds)
        assert value.warning is None or (isinstance(value.warning, str) and value.warning)
        assert value.reliable == (value.warning is None)
        assert math.isfinite(value.value) and value.n >= 1
        assert value.stderr is None or value.stderr >= 0
        assert value.params["seed"] == 7 and value.params["version"] == evaluator.version
        for key, setting in SMALL.get(name, {}).items():
            assert value.params[key] == setting, (returned_name, key)
    assert run(name, datasets, seed=7) == first


def test_an_undeclared_output_or_kind_is_refused():
    """Contract: returning a name that is not declared, or a kind the declaration does not
    allow, raises at the evaluator boundary rather than reaching a record."""

    @dataclasses.dataclass(frozen=True)
    class Settings:
        name: str = "ok"
        kind: str = "estimate"

    @register_evaluator("_contract_probe", outputs=(Output("ok", "nats", True),))
    def probe(*, model, dataset, config: Settings, seed: int):
        estimate = Estimate(1.0, None, 1, "whatever", None, kind=config.kind)
        return {config.name: estimate}

    model = create_model("linear_vae", data_shape=(3,), latent_dim=2)
    try:
        result = probe(model=model, dataset=None, config=Settings(), seed=0)
        assert result["ok"].unit == "nats" and result["ok"].higher_is_better is True
        with pytest.raises(TypeError, match="declared outputs"):
            probe(model=model, dataset=None, config=Settings(name="other"), seed=0)
        with pytest.raises(TypeError, match="kind 'estimate'"):
            probe(model=model, dataset=None, config=Settings(kind="upper_bound"), seed=0)
    finally:
        del _EVALUATORS["_contract_probe"]
