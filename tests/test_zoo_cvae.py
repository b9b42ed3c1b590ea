"""Conditional VAE (Sohn et al. 2015): labels bound by a view that every metric accepts.

The harness trains and scores it on (x, y) pairs: the trainer binds each batch's labels, and
the evaluators bind the labels of the examples they score (`benchmark.evaluators._examples`).
"""

import functools

import pytest
import torch

from benchmark.datasets import create_dataset
from benchmark.datasets.stream import TrainingStream
from benchmark.evaluators import get_evaluator
from benchmark.images import prior_samples
from benchmark.runner import RunOptions, run_spec
from benchmark.spec import TrainSpec, resolve_spec
from benchmark.trainer import train
from registry import create_model
from registry.base import LatentVariableModel
from registry.estimators import log_importance_weights, log_mean_exp


@functools.cache
def trained_on_digits(steps: int = 600) -> LatentVariableModel:
    """A CVAE trained by the harness's trainer on digits (labels bound per batch)."""
    dataset = create_dataset("digits")
    torch.manual_seed(0)
    model = create_model("cvae", data_shape=dataset.data_shape, latent_dim=4)
    spec = TrainSpec(steps=steps, batch_size=64, lr=2e-3, checkpoint_every=0)
    train(model, dataset, spec, seed=0, progress=False)
    return model


def test_conditioned_view_is_a_model_of_p_x_given_y():
    """Contract: conditioned_on(y) is a LatentVariableModel whose prior has batch (B,) and
    whose importance weights come from the shared estimator; labels are validated."""
    torch.manual_seed(0)
    model = create_model("cvae", data_shape=(1, 8, 8), latent_dim=4)
    x, y = (torch.rand(5, 1, 8, 8) > 0.5).float(), torch.tensor([0, 3, 9, 3, 1])
    view = model.conditioned_on(y)
    assert isinstance(view, LatentVariableModel)
    assert view.prior().batch_shape == (5,) and view.encode(x).batch_shape == (5,)
    assert view.decode(torch.randn(3, 5, 4)).batch_shape == (3, 5)
    log_w = log_importance_weights(view, x, num_samples=4, chunk_size=3)
    assert log_w.shape == (4, 5) and torch.isfinite(log_w).all()
    assert set(p for p in view.parameters()) == set(model.parameters())
    with pytest.raises(ValueError, match="labels"):
        model.conditioned_on(torch.tensor([0, 10]))
    with pytest.raises(TypeError, match="integer label"):
        model.conditioned_on(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="5 examples"):
        view.encode(x[:2])


def test_without_labels_the_model_is_the_zero_condition_model():
    """Property: the unconditional fallback is exactly the model conditioned on the all-zero
    condition, with prior batch shape ()."""
    torch.manual_seed(0)
    model = create_model("cvae", data_shape=(1, 8, 8), latent_dim=4)
    x = (torch.rand(3, 1, 8, 8) > 0.5).float()
    zeros = torch.zeros(3, 10)
    torch.testing.assert_close(model.encode(x).mean, model.conditional_encode(x, zeros).mean)
    assert model.prior().batch_shape == ()
    z = torch.randn(2, 3, 4)
    torch.testing.assert_close(model.decode(z).mean, model.conditional_decode(z, zeros).mean)


def test_conditional_likelihood_identifies_the_label():
    """Property (Sohn et al. 2015: p(x|y) models the output given its condition): after 600
    steps on digits, argmax_y log p_hat(x|y) (IS, K = 20) recovers the test labels far above
    the 10% chance level (measured 0.88 accuracy, seeds 0-1)."""
    dataset = create_dataset("digits")
    model = trained_on_digits()
    x, labels = dataset.evaluation_data("test"), dataset.labels["test"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        scores = torch.stack(
            [
                log_mean_exp(
                    log_importance_weights(
                        model.conditioned_on(torch.full_like(labels, c)),
                        x,
                        num_samples=20,
                        chunk_size=20,
                    )
                )
                for c in range(10)
            ]
        )  # (10, B)
    accuracy = (scores.argmax(0) == labels).double().mean().item()
    assert accuracy > 0.6, accuracy


def test_training_batches_carry_the_labels_of_their_rows():
    """Property: with_labels yields the same x batches and draws, each with its rows' labels."""
    dataset = create_dataset("digits", preprocessing="dynamic_binarization")
    plain = TrainingStream(dataset, batch_size=50, seed=3)
    labelled = TrainingStream(dataset, batch_size=50, seed=3, with_labels=True)
    for step in range(plain.batches_per_epoch + 2):  # into the second epoch
        x, (x_l, y) = plain.batch(step), labelled.batch(step)
        torch.testing.assert_close(x, x_l, rtol=0, atol=0)
        torch.testing.assert_close(y, dataset.labels["train"][plain.rows(step)].long())


def test_the_trainer_makes_the_labels_matter():
    """Property: trained by the harness, the conditional ELBO with the true labels beats the
    ELBO with the labels rotated by one class by a wide margin (an unconditioned fit would give
    equal values); measured 13.6 nats on the digits test set (margin required: 3)."""
    dataset = create_dataset("digits")
    model = trained_on_digits()
    x, y = dataset.evaluation_data("test"), dataset.labels["test"]
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        true = -model.conditioned_on(y).loss(x, 0).loss.item()
        wrong = -model.conditioned_on((y + 1) % 10).loss(x, 0).loss.item()
    assert true > wrong + 3.0, (true, wrong)


def test_evaluators_bind_each_example_to_its_own_label():
    """Property: in blocks of 7 rows, the evaluators score the view bound to each example's own
    label. The ELBO evaluator's analytic KL and active units' posterior means are deterministic,
    so they must equal the closed form computed on the whole batch with its labels exactly."""
    dataset = create_dataset("digits")
    model = trained_on_digits()
    x, y = dataset.evaluation_data("test")[:40], dataset.labels["test"][:40]
    bound = model.conditioned_on(y)
    with torch.no_grad():
        kl = torch.distributions.kl_divergence(bound.encode(x), bound.prior())  # (40,)
        means = bound.encode(x).mean.double()  # (40, D)
    elbo = get_evaluator("elbo")
    config = elbo.config_type(num_examples=40, batch_size=7)
    result = elbo.function(model=model, dataset=dataset, config=config, seed=0)
    assert result["kl"].value == pytest.approx(kl.mean().item(), rel=1e-5)
    units = get_evaluator("active_units")
    config = units.config_type(split="test", num_examples=40, batch_size=7)
    result = units.function(model=model, dataset=dataset, config=config, seed=0)
    activity = result["active_units"].diagnostics["activity"]
    torch.testing.assert_close(
        torch.tensor(activity, dtype=torch.float64), means.var(0, correction=0)
    )


def test_nll_of_the_cvae_is_of_p_x_given_y():
    """Property: the ``nll`` evaluator on a CVAE equals the IS estimate of -log p(x|y) under the
    true labels, draw for draw (same seed and blocks), and is far below -log p(x|wrong y)."""
    dataset = create_dataset("digits")
    model = trained_on_digits()
    nll = get_evaluator("nll")
    config = nll.config_type(split="test", num_examples=30, k=50, chunk=50, batch_size=7)
    value = nll.function(model=model, dataset=dataset, config=config, seed=0)["nll"].value
    x, y = dataset.evaluation_data("test")[:30], dataset.labels["test"][:30]

    def nll_under(labels: torch.Tensor) -> float:
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(0)
            view = model.conditioned_on(labels)
            blocks = [
                log_mean_exp(
                    log_importance_weights(
                        view.select(slice(s, s + 7)), x[s : s + 7], num_samples=50, chunk_size=50
                    )
                )
                for s in range(0, 30, 7)
            ]
        return -torch.cat(blocks).double().mean().item()

    assert value == pytest.approx(nll_under(y), rel=1e-6)
    assert nll_under((y + 1) % 10) > value + 3.0


def test_samples_follow_the_bound_labels():
    """Property: prior samples of a bound CVAE, drawn in blocks of 3, are decoded with each
    row's own label: a digits classifier-free check, the sample mean of class c images is closer
    to the class-c training mean than to any other class mean."""
    dataset = create_dataset("digits")
    model = trained_on_digits()
    y = torch.arange(10).repeat_interleave(30)  # (300,)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        images = prior_samples(model.conditioned_on(y), 300, batch_size=3)  # (300, 1, 8, 8)
    train_x, train_y = dataset.splits["train"], dataset.labels["train"]
    class_means = torch.stack([train_x[train_y == c].mean(0) for c in range(10)])  # (10, 1, 8, 8)
    sample_means = images.unflatten(0, (10, 30)).mean(1)  # (10, 1, 8, 8)
    distances = torch.cdist(sample_means.flatten(1), class_means.flatten(1))  # (10, 10)
    assert (distances.argmin(1) == torch.arange(10)).all(), distances.argmin(1)
    with pytest.raises(ValueError, match="bind as many labels"):
        model.conditioned_on(y).sample_prior(5)


def test_a_cvae_needs_a_labelled_dataset(tmp_path):
    """Bad input: a CVAE on a dataset without labels fails with an error naming the fix, and the
    run is recorded as failed rather than silently trained without its condition."""
    spec = resolve_spec(
        {
            "name": "cvae-unlabelled",
            "model": {"name": "cvae", "latent_dim": 2, "likelihood": "gaussian"},
            "dataset": {"name": "linear_gaussian"},
            "train": {"steps": 5, "batch_size": 16},
            "eval": {"elbo": {"num_examples": 10}},
        }
    )
    options = RunOptions(
        results_dir=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt", progress=False
    )
    record = run_spec(spec, options)
    assert record.status == "failed"
    assert "no labels" in record.failure["reason"] and "fashion_mnist" in record.failure["reason"]


def test_a_cvae_run_end_to_end_records_conditional_metrics(tmp_path):
    """Integration: a CVAE spec trains on (x, y), and every evaluator of the suite's defaults
    returns finite numbers for it (ELBO, IS-NLL, active units, collapse diagnostics)."""
    spec = resolve_spec(
        {
            "name": "cvae-digits",
            "model": {"name": "cvae", "latent_dim": 4},
            "dataset": {"name": "digits"},
            "train": {"steps": 30, "batch_size": 32},
            "eval": {
                "elbo": {"num_examples": 40},
                "nll": {"k": 30, "chunk": 30, "num_examples": 40, "batch_size": 9},
                "active_units": {"num_examples": 40, "batch_size": 9},
                "posterior_collapse": {"num_examples": 40, "batch_size": 9},
                "inference_gaps": {"num_examples": 4, "max_steps": 200, "is_k": 20, "elbo_k": 20},
                "ais": {"num_examples": 6, "chains": 2, "steps": 20, "batch_size": 4},
            },
        }
    )
    options = RunOptions(
        results_dir=tmp_path / "results", checkpoint_dir=tmp_path / "ckpt", progress=False
    )
    record = run_spec(spec, options)
    assert record.status == "ok", record.failure
    for metric in ("elbo", "nll", "active_units", "rate", "approximation_gap", "ais_nll"):
        found = [e for family in record.metrics.values() for n, e in family.items() if n == metric]
        assert found and all(torch.isfinite(torch.tensor(e.value)) for e in found), metric


def test_run_images_of_a_cvae_on_a_small_test_split(tmp_path):
    """Bad-input edge: the 64 sample tiles of a CVAE need 64 labels; a test split smaller than
    that repeats its labels instead of failing the run's image grids."""
    from dataclasses import replace

    from benchmark.runner import save_images

    dataset = create_dataset("digits")
    small = replace(
        dataset,
        splits={**dataset.splits, "test": dataset.splits["test"][:20]},
        labels={**dataset.labels, "test": dataset.labels["test"][:20]},
    )
    spec = resolve_spec(
        {
            "name": "cvae-images",
            "model": {"name": "cvae", "latent_dim": 4},
            "dataset": {"name": "digits"},
        }
    )
    paths = save_images(trained_on_digits(), small, spec, tmp_path)
    assert set(paths) == {"samples", "reconstructions", "traversals"}
    assert all((tmp_path / p).is_file() for p in paths.values())
