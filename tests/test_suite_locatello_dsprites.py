"""Protocol test of the `locatello_dsprites` suite against the study's reference entries.

The expected settings are parsed from the entries ``locatello-grid-models``,
``locatello-grid-shared`` and ``locatello-metric-configs`` of ``results/literature.yaml``
(from disentanglement_lib's ``unsupervised_study_v1`` configs), not restated here; only the
sampling batch of 16 of the train/test scores comes from the reference notes
(disentanglement.md §4), which the literature entry does not give.
"""

import re
from collections import defaultdict

import pytest
import yaml

from benchmark.evaluators.disentanglement import DisentanglementConfig
from benchmark.literature import LITERATURE_FILE
from benchmark.suite import load_suite
from metrics.disentanglement import SCORES
from registry.trunks import LOCATELLO_CONV

FAMILIES = {  # the study's method names -> registered model and its grid hyperparameter
    "beta-VAE": ("beta_vae", "beta"),
    "AnnealedVAE": ("annealed_vae", "c_max"),
    "FactorVAE": ("factor_vae", "gamma"),
    "DIP-VAE-I": ("dip_vae_i", "lambda_od"),
    "DIP-VAE-II": ("dip_vae_ii", "lambda_od"),
    "beta-TCVAE": ("beta_tcvae", "beta"),
}


def reference(entry_id: str) -> str:
    entries = yaml.safe_load(LITERATURE_FILE.read_text())
    return next(e["value"] for e in entries if e["id"] == entry_id)


def number(pattern: str, text: str) -> float:
    return float(re.search(pattern, text).group(1).replace(",", ""))


@pytest.fixture(scope="module")
def suite():
    return load_suite("locatello_dsprites")


def test_grid_is_the_studys_six_methods_times_six_values(suite):
    """Reference: each method runs exactly its reference grid, one run per value and seed."""
    text = reference("locatello-grid-models")
    expected = {
        FAMILIES[family]: sorted(float(v) for v in values.split(","))
        for family, values in re.findall(r"([\w-]+) \w+ in \{([\d,]+)\}", text)
    }
    assert len(expected) == 6
    grid = defaultdict(list)
    for spec in suite.runs:
        model = spec.model["name"]
        hyperparameter = next(h for m, h in FAMILIES.values() if m == model)
        grid[model, hyperparameter].append(spec.model[hyperparameter])
    assert {key: sorted(values) for key, values in grid.items()} == expected
    assert len({spec.name for spec in suite.runs}) == len(suite.runs) == 36


def test_method_settings_outside_the_grid_follow_the_study(suite):
    """Reference: AnnealedVAE gamma and capacity schedule, FactorVAE's discriminator optimizer,
    and the DIP-VAE lambda_d / lambda_od ratios."""
    text = reference("locatello-grid-models")
    by_model = defaultdict(list)
    for spec in suite.runs:
        by_model[spec.model["name"]].append(spec.model)
    for model in by_model["annealed_vae"]:
        assert model["gamma"] == number(r"gamma=([\d,]+)", text)
        assert model["capacity_steps"] == number(r"([\d,]+) iterations to reach c_max", text)
    for model in by_model["factor_vae"]:
        assert model["discriminator_lr"] == number(r"discriminator Adam lr ([\d.e-]+)", text)
        assert model["discriminator_betas"] == (
            number(r"beta1=([\d.]+)", text),
            number(r"beta2=([\d.]+)", text),
        )
        assert len(model["discriminator_hidden"]) == 6  # fully connected, 6 x 1000 (Kim & Mnih)
    assert all(
        m["lambda_d_factor"] == number(r"lambda_d = (\d+)\*", text) for m in by_model["dip_vae_i"]
    )
    assert "lambda_d = lambda_od;" in text
    assert all(m["lambda_d_factor"] == 1.0 for m in by_model["dip_vae_ii"])


def test_shared_training_settings_are_the_studys(suite):
    """Reference: latent 10, conv architecture, Bernoulli likelihood, batch 64, 300,000 steps,
    Adam lr 1e-4 with beta1 0.9, beta2 0.999, eps 1e-8, for every run."""
    text = reference("locatello-grid-shared")
    assert "convolutional encoder" in text and "Bernoulli" in text
    for spec in suite.runs:
        assert spec.model["latent_dim"] == number(r"latent dim (\d+)", text)
        assert spec.model["likelihood"] == "bernoulli"
        assert spec.model["architecture"] == LOCATELLO_CONV
        assert spec.train.batch_size == number(r"batch (\d+)", text)
        assert spec.train.steps == number(r"([\d,]+) training steps", text)
        assert spec.train.lr == number(r"Adam lr ([\d.e-]+)", text)
        assert spec.train.adam_betas == (
            number(r"beta1 ([\d.]+)", text),
            number(r"beta2 ([\d.]+)", text),
        )
        assert spec.train.adam_eps == number(r"eps ([\d.e-]+)", text)
        assert spec.train.kl_warmup_steps == 0 and spec.train.grad_clip_norm is None


def test_scores_run_at_the_studys_defaults(suite):
    """Reference: the six scores at the metric configs' sample sizes, batches, bins and pruning
    threshold, on the mean representation."""
    text = reference("locatello-metric-configs")
    for spec in suite.runs:
        config = spec.eval["disentanglement"]
        assert isinstance(config, DisentanglementConfig) and config.scores == SCORES
        assert config.num_train == number(r"([\d,]+) train / ", text)
        assert config.num_eval == number(r" / ([\d,]+) eval points", text)
        assert config.num_variance_estimate == number(r"([\d,]+) points for the variance", text)
        assert config.intervention_batch_size == number(r"batch (\d+)", text)
        assert config.prune_threshold == number(r"std below ([\d.]+)", text)
        assert config.num_bins == number(r"with (\d+) bins", text)
        assert config.batch_size == 16  # disentanglement.md §4: MIG, SAP, DCI, modularity
        assert config.representation == "mean"


def test_description_lists_every_deviation(suite):
    """Contract: what differs from the study (seeds, training images, representation, seeding)
    is named in the suite's description, with the numbers the runs use."""
    description = " ".join(suite.description.split())
    assert "DEVIATIONS" in description
    assert {spec.seed for spec in suite.runs} == {0} and "one seed (0) instead of 50" in description
    assert f"{suite.runs[0].dataset['num_train']:,} of the 737,280 images" in description
    assert "only the mean representation" in description
    assert "seeded" in description and "evaluation seed" in description
