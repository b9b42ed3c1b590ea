"""The `reading_list` suite: every family of issue 17 at a budget comparable to its VAE."""

import pytest

from benchmark.suite import load_suite
from registry import create_model

FASHION_MNIST_SHAPE = (1, 28, 28)
BUDGET_TOLERANCE = 0.15  # +- 15% of the baseline VAE's parameter count


def parameter_count(model_block: dict) -> int:
    settings = {k: v for k, v in model_block.items() if k != "name"}
    model = create_model(model_block["name"], data_shape=FASHION_MNIST_SHAPE, **settings)
    return sum(p.numel() for p in model.parameters())  # discriminators/classifiers included


@pytest.fixture(scope="module")
def suite():
    return load_suite("reading_list")


def test_suite_runs_every_new_family_on_fashion_mnist(suite):
    """Contract: the suite expands, runs on Fashion-MNIST, and holds the baseline VAE and the
    families of this issue's first part (others join the same file)."""
    models = {run.model["name"] for run in suite.runs}
    assert {"vae", "vq_vae2", "biva", "ncp_vae", "vae_gan"} <= models
    assert {run.dataset["name"] for run in suite.runs} == {"fashion_mnist"}


def test_every_run_has_a_parameter_budget_comparable_to_the_vae(suite):
    """Contract (acceptance 3: comparable parameter budgets): every run's model, counted with
    `create_model` on 28x28 images, is within 15% of the baseline VAE's parameter count."""
    counts = {run.name: parameter_count(run.model) for run in suite.runs}
    baseline = counts["vae-reading-list"]
    outside = {
        name: count
        for name, count in counts.items()
        if abs(count - baseline) > BUDGET_TOLERANCE * baseline
    }
    assert not outside, (baseline, outside)
