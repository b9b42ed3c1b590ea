"""Protocol test of the ``cremer_gaps`` suite against Cremer, Li & Duvenaud (2018).

Reference: the ``cremer-protocol-*`` entries of ``results/literature.yaml`` (read from the
authors' code). Each number the suite must use is parsed from that text, never copied into the
test, and compared with the suite's *resolved* settings, so a change to either side that breaks
the protocol fails here. The MLP trunk is not in those entries; it is estimators.md §3.3
("encoder 784-200-200, decoder 200-200-784").
"""

import re
from pathlib import Path

import pytest
import yaml

from benchmark.literature import load_literature
from benchmark.spec import RunSpec, read_yaml
from benchmark.suite import load_suite, suite_path

SUITE = "cremer_gaps"
MNIST_TRAIN_FILE = 60_000  # images in train-images-idx3-ubyte (MNIST and Fashion-MNIST)


@pytest.fixture(scope="module")
def protocol() -> dict[str, str]:
    """The protocol texts, by the part of the id after ``cremer-protocol-``."""
    entries = {e.id: e for e in load_literature()}
    return {key: entries[f"cremer-protocol-{key}"].value for key in ("training", "qstar", "logpx")}


def number(pattern: str, text: str) -> float:
    """Return the number captured by `pattern` in `text` (thousands separators removed)."""
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in the protocol text"
    return float(match.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def runs() -> dict[str, RunSpec]:
    """The suite's resolved runs by name."""
    return {spec.name: spec for spec in load_suite(SUITE).runs}


@pytest.fixture(scope="module")
def paper_steps() -> dict[str, int]:
    """``train.paper_steps`` of each run, as written in the suite file."""
    raw = yaml.safe_load(Path(suite_path(SUITE)).read_text())
    return {run["name"]: run["train"]["paper_steps"] for run in raw["runs"]}


def test_suite_has_ffg_and_flow_encoders_on_both_datasets(runs):
    """Reference: the FFG and flow encoders on MNIST and Fashion-MNIST, one seed each."""
    pairs = {(s.model["name"], s.dataset["name"]) for s in runs.values()}
    assert pairs == {(m, d) for m in ("vae", "iaf_vae") for d in ("mnist", "fashion_mnist")}
    assert len(runs) == 4


def test_architecture_and_training(runs, protocol, paper_steps):
    """Reference: z, ELU, k = 1, batch, Adam eps, constant lr, 3,280 epochs, 400-epoch warm-up."""
    text = protocol["training"]
    epochs = number(r"([\d,]+) epochs, batch", text)
    batch = number(r"epochs, batch (\d+)", text)
    warmup_epochs = number(r"over (\d+) epochs \(MNIST, Fashion-MNIST\)", text)
    for name, spec in runs.items():
        assert spec.model["latent_dim"] == number(r"z=(\d+)", text)
        assert "ELU" in text and spec.model["architecture"].activation == "elu"
        assert tuple(spec.model["architecture"].hidden) == (200, 200)  # estimators.md §3.3
        assert "k=1 training" in text and spec.model["name"] in ("vae", "iaf_vae")
        train = spec.train
        assert train.batch_size == batch
        assert train.adam_eps == number(r"Adam eps=([\d.e-]+)", text)
        assert train.lr == number(r"else constant ([\d.e-]+)", text)
        assert train.adam_betas == (0.9, 0.999)  # torch's Adam defaults, as the code uses
        batches_per_epoch = (MNIST_TRAIN_FILE - spec.dataset["valid_size"]) // batch
        assert paper_steps[name] == epochs * batches_per_epoch
        assert train.steps == paper_steps[name]  # the suite file is the full protocol
        assert train.kl_warmup_steps == warmup_epochs * batches_per_epoch
        assert train.paper_steps == paper_steps[name]


def test_fashion_mnist_data_follows_the_code(runs, protocol):
    """Reference: Fashion-MNIST thresholded at 0.5 with 55k train / 5k valid."""
    assert "Fashion-MNIST thresholded at 0.5, 55k train / 5k valid" in protocol["training"]
    for spec in runs.values():
        if spec.dataset["name"] == "fashion_mnist":
            assert spec.dataset["preprocessing"] == "threshold"
            assert MNIST_TRAIN_FILE - spec.dataset["valid_size"] == 55_000


def test_q_star_protocol(runs, protocol):
    """Reference: q* from N(0, I), Adam lr, samples per step, stopping rule, bound samples,
    first 1,000 training images, and q* of the encoder's family (flow: 2 steps, 200 units)."""
    text = protocol["qstar"]
    for spec in runs.values():
        gaps = spec.eval["inference_gaps"]
        assert "initialised to 0" in text and gaps.init == "standard_normal"
        assert gaps.lr == number(r"Adam lr=([\d.e-]+)", text)
        assert gaps.samples_per_step == number(r"k=(\d+)\s+replicas", text)
        assert gaps.check_every == number(r"every (\d+) steps compare", text)
        assert gaps.patience == number(r"more than (\d+) consecutive checks", text)
        assert gaps.elbo_k == number(r"evaluation with ([\d,]+) samples", text)
        first = number(r"gaps on the first ([\d,]+) training images", protocol["training"])
        assert (gaps.split, gaps.num_examples) == ("train", first)
        expected_family = "flow" if spec.model["name"] == "iaf_vae" else "ffg"
        assert gaps.family == expected_family
        if expected_family == "flow":
            assert gaps.flow_layers == spec.model["num_flows"] == number(r"(\d) flow steps", text)
            assert gaps.flow_hidden == number(r"flow networks\s+with (\d+) hidden units", text)


def test_log_px_protocol(runs, protocol):
    """Reference: IWAE k = 5000 and AIS from the prior with the code's chains, temperatures,
    schedule, leapfrog steps, step size and target acceptance, on the gap points."""
    text = protocol["logpx"]
    for spec in runs.values():
        gaps, ais = spec.eval["inference_gaps"], spec.eval["ais"]
        assert gaps.is_k == number(r"IWAE bound with k=(\d+)", text)
        assert spec.eval["nll"].k == gaps.is_k
        assert "initial distribution = prior" in text and ais.init == "prior"
        assert ais.chains == number(r"(\d+) parallel chains", text)
        assert ais.steps == number(r"([\d,]+)\s+intermediate distributions by default", text)
        assert "linear schedule in run.py" in text and ais.schedule == "linear"
        assert ais.leapfrog_steps == number(r"(\d+) leapfrog steps", text)
        assert ais.step_size == number(r"initial step size ([\d.]+)", text)
        assert ais.target_accept == number(r"towards ([\d.]+)\s+acceptance", text)
        assert (ais.split, ais.num_examples) == (gaps.split, gaps.num_examples)


def test_description_lists_the_deviations():
    """Property: every setting that differs from the code is named in the suite description."""
    description = read_yaml(suite_path(SUITE))["description"]
    for deviation in ("entropy", "IAF", "L[q*_AF]", "replicas", "cap", "larger of the two"):
        assert deviation in description, deviation


@pytest.mark.parametrize(
    ("budget", "overrides"),
    [(0.01, []), (None, ["train.steps=19549", "train.kl_warmup_steps=2384"])],
)
def test_reduced_budget_keeps_the_protocol_and_states_its_fraction(runs, budget, overrides):
    """Property: ``--budget 0.01`` or a ``--set`` budget shortens only the steps (and, with
    --set, the warm-up); paper_steps stays, so the record states about 1 % of the paper's."""
    reduced = load_suite(SUITE, overrides=overrides, budget=budget)
    for spec in reduced.runs:
        full = runs[spec.name]
        assert spec.train.paper_steps == full.train.paper_steps
        assert spec.train.steps / spec.train.paper_steps == pytest.approx(0.01, rel=0.1)
        assert spec.eval == full.eval and spec.model == full.model
        assert spec.dataset == full.dataset and spec.train.lr == full.train.lr
        assert spec.hash != full.hash
