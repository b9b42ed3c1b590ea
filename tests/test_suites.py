"""Contract tests over every shipped suite: each loads and resolves, with or without a budget."""

import pytest

from benchmark.suite import list_suites, load_suite


@pytest.mark.parametrize("name", list_suites())
def test_every_shipped_suite_resolves(name):
    """Contract: a shipped suite expands to resolved, uniquely hashed runs (its eval keys are the
    evaluators' current settings, so a renamed setting fails here, not at run time)."""
    suite = load_suite(name)
    hashes = [spec.hash for spec in suite.runs]
    assert suite.runs and len(set(hashes)) == len(hashes)
    if all(spec.train.paper_steps for spec in suite.runs):
        reduced = load_suite(name, budget=0.5)
        assert all(r.train.steps == round(0.5 * r.train.paper_steps) for r in reduced.runs)


def test_dsprites_runs_share_the_study_architecture():
    """Contract: every method of the dsprites grid has the study's conv encoder/decoder and 10
    latents, so scores compare objectives, not networks (a run that left them to its model's
    defaults got an MLP with 16 latents)."""
    models = {spec.name: spec.model for spec in load_suite("dsprites").runs}
    shapes = {
        name: (model["latent_dim"], model["architecture"].trunk, model["architecture"].hidden)
        for name, model in models.items()
    }
    assert set(shapes.values()) == {(10, "conv", (32, 32, 64, 64))}, shapes
