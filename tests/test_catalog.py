"""Tests of `vaebench list models`: family, preset, parameter count and paper per model."""

from benchmark.catalog import model_catalog, model_paper
from benchmark.cli import main
from registry import create_model
from registry._registry import MODELS


def test_list_models_shows_family_preset_parameters_and_paper(capsys):
    """Contract: one row per model with its family, the base of a preset, the parameter count
    of the default model on 1×28×28 images, and the paper of its module."""
    assert main(["list", "models", "v*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "preset", "of", "params", "(1×28×28)", "paper"]
    rows = {line.split()[0]: line for line in lines[1:]}
    count = sum(p.numel() for p in create_model("vae", data_shape=(1, 28, 28)).parameters())
    assert rows["vae"].split()[1:4] == ["vae", "—", f"{count:,}"]
    assert rows["vae"].endswith("Kingma & Welling, ICLR 2014")
    assert rows["vamp_prior_paper"].split()[1:3] == ["vamp_prior", "vamp_prior"]


def test_every_model_has_a_family_and_presets_name_a_registered_base():
    """Contract (every registered model): a family, a parameter count on some data shape, and
    for a preset a registered base of the same family."""
    entries = model_catalog()
    assert {e.name for e in entries} == set(MODELS.names())
    for entry in entries:
        assert entry.family and entry.num_parameters and entry.num_parameters > 0
        if entry.preset_of is not None:
            base = next(e for e in entries if e.name == entry.preset_of)
            assert base.preset_of is None and base.family == entry.family
    assert sum(e.preset_of is not None for e in entries) >= 5


def test_paper_citation_drops_titles_and_shortens_long_author_lists():
    """Property: italic titles are removed and three or more authors become 'First et al.'."""
    assert model_paper(MODELS.get("beta_tcvae")) == "Chen et al., NeurIPS 2018"
    assert model_paper(MODELS.get("factor_vae")) == "Kim & Mnih, ICML 2018"
