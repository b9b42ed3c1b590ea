"""The model zoo's preset convention: every family is registered twice, small and paper."""

import pytest

from registry import create_model, list_models, resolve_hyperparameters

FAMILIES = ("cvae", "iaf_vae", "ladder_vae", "nvae", "skip_vae", "vamp_prior", "vq_vae", "wae_mmd")


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_has_a_small_and_a_paper_preset(family):
    """Contract: `<family>` and `<family>_paper` are listed, share one spec schema (the same
    hyperparameter names) and differ in their defaults."""
    assert {family, f"{family}_paper"} <= set(list_models())
    small = resolve_hyperparameters(family, {})
    paper = resolve_hyperparameters(f"{family}_paper", {})
    assert small.keys() == paper.keys()
    assert small != paper


def test_wae_is_the_only_zoo_family_not_trained_on_a_bound():
    """Contract: the flag that reports show is False for WAE-MMD and True for the other families."""
    flags = {
        family: create_model(family, data_shape=(1, 8, 8)).trains_on_likelihood_bound
        for family in FAMILIES
    }
    assert [family for family, flag in flags.items() if not flag] == ["wae_mmd"]
