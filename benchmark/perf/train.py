"""Benchmark ``train``: training throughput against this device's GEMM rate and a plain loop.

    python -m benchmark.perf train                         # every row, on cuda if available
    python -m benchmark.perf train --device cpu --threads 2 --rows iwae-k5
    python -m benchmark.perf train --quick                 # few steps, one round (a smoke run)

Rows (issue 13):

- ``iwae-k1``, ``iwae-k5``, ``iwae-k50``: the 1-layer architecture of Burda et al. (2016),
  encoder 784-200-200-2x50 and decoder 50-200-200-784, tanh, Bernoulli likelihood, batch 20,
  trained on the k-sample bound (the VAE is the IWAE at k = 1). vaebench runs the registered
  ``iwae`` model with ``architecture: {hidden: [200, 200], activation: tanh}``, latent 50,
  ``num_samples: k``, on MNIST (59,600 training images, dynamic binarization; random
  intensities of that shape when the files are missing). Paper budget: 3,280 epochs of 59,600
  images at batch 20 = 9,774,400 steps.
- ``locatello``: the conv VAE of Locatello et al. (2019) (``beta_vae`` with
  ``registry.trunks.LOCATELLO_CONV``: four 4x4 stride-2 convs of 32, 32, 64, 64 channels, FC
  256, latent 10, and the mirror decoder; ReLU; Bernoulli) on 2,000 dSprites images (64x64),
  batch 64. Paper budget: 300,000 steps.

In one run, for each row, it measures (interleaved rounds, best of each, so all see the same
machine load):

1. this device's fp32 GEMM rate (CPU: `benchmark.calibration.gemm_gflops`, 1024^3; GPU:
   4096^3 `torch.matmul` between synchronisations, TF32 as torch's default leaves it: off);
2. **the plain loop**: the training loop a researcher would write, modelled on pytorch/examples'
   ``vae/main.py``: ``nn.Sequential`` MLP (or conv) encoder and decoder, the encoder giving a
   mean and a log-variance, the reparameterised Gaussian ``z = mu + exp(logvar / 2) * eps``,
   ``F.binary_cross_entropy_with_logits`` summed over pixels, the k-sample bound by
   ``torch.logsumexp`` (IWAE rows) or the analytic KL (conv row), ``torch.optim.Adam`` with
   torch's defaults, the whole training set as one tensor on the device, a ``torch.randperm``
   per epoch, ``torch.bernoulli`` per batch (dynamic binarization), and ``loss.item()``
   accumulated every step, as that example does;
3. **vaebench's trainer**, `benchmark.trainer.train` on the registered model, without and with
   ``train.compile`` (torch.compile of the loss step), on the device of the run. Its per-step
   time is the difference between a run of W + N steps and one of W steps from the same
   initialisation, after a first run of W steps that pays for compilation, so set-up and
   compilation are excluded as they are for the plain loop's warm-up.

A checkout whose trainer has no ``device`` argument or no ``compile`` setting prints "n/a" for
what it cannot run, rather than failing.

FLOPs are counted analytically, per training step, from one forward pass of the plain model with
hooks on its layers: a linear layer costs 2 x in x out per row it is applied to (the decoder of
an IWAE row runs on k x B rows, the encoder on B); a convolution 2 x (output positions x output
channels) x (input channels x kernel height x kernel width); a transposed convolution, which is
the adjoint of a convolution, 2 x (input positions x input channels) x (output channels x kernel
area). A training step is counted as 3 x the forward FLOPs (the backward pass computes two
products per forward product: the gradients of the inputs and of the weights). Elementwise work
(activations, sampling, the likelihood, Adam) is not counted: it is the overhead that a ratio to
GEMM below 1 measures. Each rate is printed as FLOP/s and as a ratio to GEMM, and each row's
paper budget is projected as paper steps x seconds per step.

Targets (issue 13): vaebench >= the plain loop on every row; on the CPU, >= 0.3 of GEMM at
batch 20, k = 5; on a GPU, the IWAE 1-layer k = 1 budget in under 20 minutes. On a shared
machine run it when idle.
"""

import argparse
import copy
import dataclasses
import inspect
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.calibration import gemm_gflops
from benchmark.datasets import create_dataset
from benchmark.datasets.base import Dataset
from benchmark.spec import TrainSpec
from benchmark.trainer import train
from registry import create_model
from registry.trunks import LOCATELLO_CONV, Architecture

IWAE_PAPER_STEPS = 3280 * 59_600 // 20  # 3,280 epochs of 59,600 images at batch 20
LOCATELLO_PAPER_STEPS = 300_000
CPU_TARGET_RATIO = 0.3  # vaebench FLOP/s >= 0.3 x GEMM at batch 20, k = 5, on the CPU
GPU_TARGET_SECONDS = 20 * 60  # the IWAE 1-layer k = 1 budget on a GPU
IWAE_ARCHITECTURE = Architecture(hidden=(200, 200), activation="tanh")
REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Row:
    """One configuration of the table.

    Attributes:
        name: Row name, as given to ``--rows``.
        model: ``create_model`` arguments of vaebench's model (without ``data_shape``).
        dataset: ``mnist`` or ``dsprites``.
        batch_size: Examples per step.
        num_samples: k, latent samples per example in the loss.
        paper_steps: Steps of the paper's budget.
        budget: How the paper's budget is made up.
    """

    name: str
    model: dict
    dataset: str
    batch_size: int
    num_samples: int
    paper_steps: int
    budget: str


def iwae_row(k: int) -> Row:
    model = {"name": "iwae", "latent_dim": 50, "architecture": IWAE_ARCHITECTURE, "num_samples": k}
    budget = "Burda et al.: 3,280 epochs x 59,600 / 20"
    return Row(f"iwae-k{k}", model, "mnist", 20, k, IWAE_PAPER_STEPS, budget)


ROWS = {
    row.name: row
    for row in (
        iwae_row(1),
        iwae_row(5),
        iwae_row(50),
        Row(
            "locatello",
            {"name": "beta_vae", "latent_dim": 10, "architecture": LOCATELLO_CONV},
            "dsprites",
            64,
            1,
            LOCATELLO_PAPER_STEPS,
            "Locatello et al.: 300,000 steps",
        ),
    )
}


# --- the plain loop ---------------------------------------------------------------------------


class PlainIWAE(nn.Module):
    """The MLP VAE/IWAE as a researcher writes it: Sequentials, mean and log-variance."""

    def __init__(self, num_samples: int, latent_dim: int = 50, hidden: int = 200) -> None:
        super().__init__()
        self.k, self.latent_dim = num_samples, latent_dim
        self.encoder = nn.Sequential(
            nn.Linear(784, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 2 * latent_dim),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 784),
        )  # fmt: skip

    def loss(self, x: Tensor) -> Tensor:
        """Return the negative k-sample bound (Burda et al. 2016, Eq. 8), averaged over x."""
        x = x.flatten(1)  # (B, 784)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (B, D) each
        eps = torch.randn(self.k, *mu.shape, device=x.device)  # (k, B, D)
        z = mu + torch.exp(0.5 * logvar) * eps  # (k, B, D)
        logits = self.decoder(z)  # (k, B, 784)
        log_px = -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)  # (k, B)
        log_2pi = math.log(2 * math.pi)
        log_pz = -0.5 * (z**2 + log_2pi).sum(-1)
        log_qz = -0.5 * (eps**2 + logvar + log_2pi).sum(-1)
        log_w = log_px + log_pz - log_qz  # (k, B)
        return -(torch.logsumexp(log_w, 0) - math.log(self.k)).mean()


class PlainConvVAE(nn.Module):
    """The Locatello et al. conv VAE as a researcher writes it, with the analytic KL."""

    def __init__(self, latent_dim: int = 10, beta: float = 4.0) -> None:
        super().__init__()
        self.beta = beta

        def conv(c_in: int, c_out: int) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)

        def deconv(c_in: int, c_out: int) -> nn.ConvTranspose2d:
            return nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)

        self.encoder = nn.Sequential(
            conv(1, 32), nn.ReLU(), conv(32, 32), nn.ReLU(), conv(32, 64), nn.ReLU(),
            conv(64, 64), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 4 * 4, 256), nn.ReLU(),
            nn.Linear(256, 2 * latent_dim),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 64 * 4 * 4), nn.ReLU(),
            nn.Unflatten(1, (64, 4, 4)), deconv(64, 64), nn.ReLU(), deconv(64, 32), nn.ReLU(),
            deconv(32, 32), nn.ReLU(), deconv(32, 1),
        )  # fmt: skip

    def loss(self, x: Tensor) -> Tensor:
        """Return the beta-VAE loss: summed BCE plus beta x the analytic KL, averaged over x."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (B, D) each
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.decoder(z)  # (B, 1, 64, 64)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum()
        return (reconstruction + self.beta * kl) / len(x)


def plain_model(row: Row) -> nn.Module:
    return PlainConvVAE() if row.dataset == "dsprites" else PlainIWAE(row.num_samples)


def plain_batches(data: Tensor, batch_size: int, binarize: bool) -> Iterator[Tensor]:
    """Yield shuffled minibatches forever, a new permutation per epoch."""
    while True:
        order = torch.randperm(len(data), device=data.device)
        for start in range(0, len(data) - batch_size + 1, batch_size):
            x = data[order[start : start + batch_size]]
            yield torch.bernoulli(x) if binarize else x


def plain_loop_seconds(row: Row, data: Tensor, device: torch.device, args) -> float:
    """Return the plain loop's seconds per step, after ``args.warmup`` steps."""
    torch.manual_seed(0)
    model = plain_model(row).to(device)
    optimizer = torch.optim.Adam(model.parameters())
    batches = plain_batches(data, row.batch_size, binarize=row.dataset == "mnist")
    running = 0.0

    def steps(n: int) -> None:
        nonlocal running
        for _ in range(n):
            loss = model.loss(next(batches))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()

    steps(args.warmup)
    synchronize(device)
    tic = time.perf_counter()
    steps(args.steps)
    synchronize(device)
    return (time.perf_counter() - tic) / args.steps


# --- vaebench's trainer -----------------------------------------------------------------------


def trainer_features() -> dict[str, bool]:
    """Which of the trainer's newer options this checkout has (it may predate them)."""
    return {
        "device": "device" in inspect.signature(train).parameters,
        "compile": "compile" in {f.name for f in dataclasses.fields(TrainSpec)},
    }


def vaebench_seconds(
    row: Row, dataset: Dataset, device: torch.device, args, *, compile_step: bool
) -> float | str:
    """Return the trainer's seconds per step, or why it cannot be measured here."""
    features = trainer_features()
    if compile_step and not features["compile"]:
        return "n/a: TrainSpec has no `compile` on this checkout"
    if device.type != "cpu" and not features["device"]:
        return "n/a: train() has no `device` argument on this checkout"
    settings = {"compile": True} if compile_step else {}
    spec = TrainSpec(batch_size=row.batch_size, checkpoint_every=0, **settings)
    torch.manual_seed(0)
    initial = create_model(**row.model, data_shape=dataset.data_shape)
    device_argument = {"device": str(device)} if features["device"] else {}

    def seconds(steps: int) -> float:
        model = copy.deepcopy(initial)
        run_spec = dataclasses.replace(spec, steps=steps, log_every=min(spec.log_every, steps))
        synchronize(device)
        tic = time.perf_counter()
        train(model, dataset, run_spec, seed=0, progress=False, **device_argument)
        synchronize(device)
        return time.perf_counter() - tic

    try:
        seconds(args.warmup)  # NOTE: pays for compilation and first-touch allocations
        return (seconds(args.warmup + args.steps) - seconds(args.warmup)) / args.steps
    except Exception as error:  # noqa: BLE001  e.g. torch.compile without a C++ compiler
        return f"failed: {type(error).__name__}: {str(error).splitlines()[0][:80]}"


# --- FLOPs, GEMM, data --------------------------------------------------------------------------


def linear_and_conv_flops(module: nn.Module, inputs: Tensor, outputs: Tensor) -> int:
    """Return the multiply-add FLOPs (x 2) of one call of a linear or (transposed) conv layer."""
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * module.out_features * (outputs.numel() // outputs.shape[-1])
    if isinstance(module, nn.ConvTranspose2d):  # the adjoint of a conv: by its input
        kernel = math.prod(module.kernel_size)
        return 2 * inputs.numel() * module.out_channels // module.groups * kernel
    if isinstance(module, nn.Conv2d):
        kernel = math.prod(module.kernel_size)
        return 2 * outputs.numel() * module.in_channels // module.groups * kernel
    return 0


def forward_flops(model: nn.Module, loss: Callable[[], Tensor]) -> int:
    """Return the linear and conv FLOPs of one call of `loss`, counted with forward hooks."""
    total = 0

    def count(module: nn.Module, inputs: tuple[Tensor, ...], outputs: Tensor) -> None:
        nonlocal total
        total += linear_and_conv_flops(module, inputs[0], outputs)

    handles = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            loss()
    finally:
        for handle in handles:
            handle.remove()
    return total


def train_flops_per_step(row: Row) -> int:
    """Return 3 x the forward FLOPs of one training step of `row` (forward + backward)."""
    torch.manual_seed(0)
    model = plain_model(row)
    shape = (1, 64, 64) if row.dataset == "dsprites" else (1, 28, 28)
    x = torch.bernoulli(torch.full((row.batch_size, *shape), 0.5))
    return 3 * forward_flops(model, lambda: model.loss(x))


def gemm_flops_per_second(device: torch.device, seconds: float = 0.5) -> float:
    """Return this device's best observed fp32 matrix-multiply rate in FLOP/s."""
    if device.type == "cpu":
        return gemm_gflops(seconds=seconds) * 1e9
    size = 4096
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best, started = math.inf, time.perf_counter()
    while time.perf_counter() - started < seconds or best == math.inf:
        synchronize(device)
        tic = time.perf_counter()
        for _ in range(5):
            torch.matmul(a, b)
        synchronize(device)
        best = min(best, (time.perf_counter() - tic) / 5)
    return 2 * size**3 / best


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def default_data_root(data_root: str | None) -> str | None:
    """Return ``--data-root``, else None for ``$VAEBENCH_DATA``, else ``<repo>/../shared/data``."""
    if data_root or os.environ.get("VAEBENCH_DATA"):
        return data_root
    shared = REPOSITORY.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def load_datasets(rows: list[Row], data_root: str | None) -> dict[str, tuple[Dataset, str]]:
    """Return each needed dataset with a description; random MNIST-shaped data if absent."""
    datasets = {}
    if any(r.dataset == "mnist" for r in rows):
        try:
            mnist = create_dataset("mnist", data_root=default_data_root(data_root))
            datasets["mnist"] = (mnist, f"MNIST from {mnist.source}, dynamic binarization")
        except FileNotFoundError:
            datasets["mnist"] = (random_mnist(), "random intensities of MNIST's shape (no files)")
    if any(r.dataset == "dsprites" for r in rows):
        sprites = create_dataset("dsprites", num_train=2000, num_valid=10, num_test=10)
        datasets["dsprites"] = (sprites, f"2,000 dSprites images ({sprites.source})")
    return datasets


def random_mnist(num_train: int = 59_600) -> Dataset:
    """Return a dataset of random intensities with MNIST's shape and splits, binarized per batch."""
    generator = torch.Generator().manual_seed(0)
    splits = {
        split: torch.rand(n, 1, 28, 28, generator=generator)
        for split, n in (("train", num_train), ("valid", 400), ("test", 1000))
    }
    return Dataset(
        name="random_mnist",
        data_shape=(1, 28, 28),
        splits=splits,
        labels={},
        preprocessing="dynamic_binarization",
        checksum="random",
        source="generated",
    )


def plain_data(row: Row, dataset: Dataset, device: torch.device) -> Tensor:
    """Return the plain loop's training tensor on the device (intensities, or binary images)."""
    data = dataset.splits["train"] if row.dataset == "mnist" else dataset.evaluation_data("train")
    return data.to(device)


# --- the table ----------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """Return a duration as s, min, h or days, with three significant figures."""
    for unit, size in (("days", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def measure_row(row: Row, dataset: Dataset, device: torch.device, args) -> dict[str, float | str]:
    """Return the best seconds per step of each method over interleaved rounds."""
    data = plain_data(row, dataset, device)
    best: dict[str, float | str] = {}
    methods = {
        "plain loop": lambda: plain_loop_seconds(row, data, device, args),
        "vaebench": lambda: vaebench_seconds(row, dataset, device, args, compile_step=False),
        "vaebench + compile": lambda: vaebench_seconds(
            row, dataset, device, args, compile_step=True
        ),
    }
    for _ in range(args.rounds):
        for method, seconds in methods.items():
            if isinstance(best.get(method), str):
                continue
            value = seconds()
            best[method] = value if isinstance(value, str) else min(best.get(method, value), value)
    return best


def print_row(row: Row, flops: int, best: dict[str, float | str], *, gemm: float) -> None:
    """Print one line per method: time, FLOP/s, ratio to GEMM and to the plain loop, budget."""
    plain = best["plain loop"]
    for method, seconds in best.items():
        label = row.name if method == "plain loop" else ""
        if isinstance(seconds, str):
            print(f"{label:10} {method:19} {seconds}")
            continue
        rate = flops / seconds
        versus = f"{plain / seconds:8.2f}" if isinstance(plain, float) else "     n/a"
        print(
            f"{label:10} {method:19} {seconds * 1e3:9.3f} {rate / 1e9:9.2f} {rate / gemm:7.3f}"
            f" {versus} {format_duration(row.paper_steps * seconds):>12}"
        )


def print_targets(results: dict[str, dict], device: torch.device, gemm: float) -> None:
    """Print each target of issue 13 with the measured figure and whether it is met."""
    print("\ntargets:")
    for name, (_, best) in results.items():
        plain, ours = best["plain loop"], fastest_vaebench(best)
        if isinstance(ours, float):
            ratio = plain / ours
            verdict = "met" if ratio >= 1 else "NOT met"
            print(f"  vaebench >= plain loop, {name}: {ratio:.2f}x  {verdict}")
    if device.type == "cpu" and "iwae-k5" in results:
        flops, best = results["iwae-k5"]
        ours = fastest_vaebench(best)
        if isinstance(ours, float):
            ratio = flops / ours / gemm
            verdict = "met" if ratio >= CPU_TARGET_RATIO else "NOT met"
            print(f"  CPU, batch 20, k = 5: {ratio:.3f} of GEMM (>= {CPU_TARGET_RATIO})  {verdict}")
    if device.type == "cuda" and "iwae-k1" in results:
        ours = fastest_vaebench(results["iwae-k1"][1])
        if isinstance(ours, float):
            budget = IWAE_PAPER_STEPS * ours
            verdict = "met" if budget < GPU_TARGET_SECONDS else "NOT met"
            print(
                f"  GPU, IWAE 1-layer k = 1 budget: {format_duration(budget)} (< 20 min)  {verdict}"
            )


def fastest_vaebench(best: dict[str, float | str]) -> float | str:
    """Return the faster of vaebench with and without compile (a message if neither ran)."""
    times = [best[m] for m in ("vaebench", "vaebench + compile") if isinstance(best[m], float)]
    return min(times) if times else best["vaebench"]


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda {torch.version.cuda})"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.perf train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (CPU 200, GPU 2000)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best of)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)}")
    parser.add_argument("--data-root", default=None, help="folder holding mnist/")
    parser.add_argument("--quick", action="store_true", help="20 steps, 1 round: a smoke run")
    args = parser.parse_args(argv)
    args.device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    gpu = args.device.type != "cpu"
    args.steps = args.steps or (20 if args.quick else 2000 if gpu else 200)
    args.warmup = max(1, args.warmup if args.warmup is not None else (5 if args.quick else 20))
    args.rounds = 1 if args.quick else args.rounds
    unknown = sorted(set(args.rows.split(",")) - set(ROWS))
    if unknown:
        parser.error(f"Expected --rows among {list(ROWS)}, but got {unknown}.")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device, rows = args.device, [ROWS[name] for name in args.rows.split(",")]
    features = trainer_features()
    print(f"torch {torch.__version__}; device {device}: {describe_device(device)}")
    print(
        f"trainer: device argument {'yes' if features['device'] else 'no'}, "
        f"train.compile {'yes' if features['compile'] else 'no'}; "
        f"{args.steps} timed steps after {args.warmup}, best of {args.rounds} round(s)"
    )
    datasets = load_datasets(rows, args.data_root)
    for name, (_, description) in datasets.items():
        print(f"data {name}: {description}")
    gemm = gemm_flops_per_second(device)
    results = {}
    for row in rows:
        print(f"measuring {row.name} ...", file=sys.stderr, flush=True)
        best = measure_row(row, datasets[row.dataset][0], device, args)
        results[row.name] = (train_flops_per_step(row), best)
        gemm = max(gemm, gemm_flops_per_second(device))  # NOTE: re-measured beside each row
    print(f"\nfp32 GEMM: {gemm / 1e9:.1f} GFLOP/s (best of the run)\n")
    print(
        f"{'row':10} {'method':19} {'ms/step':>9} {'GFLOP/s':>9} {'/GEMM':>7} "
        f"{'vs plain':>8} {'paper budget':>12}"
    )
    for row in rows:
        print_row(row, *results[row.name], gemm=gemm)
    print()
    for row in rows:
        flops = results[row.name][0]
        print(
            f"{row.name}: {flops / 1e6:.2f} MFLOP per training step (3 x forward); "
            f"paper budget {row.paper_steps:,} steps ({row.budget})"
        )
    print_targets(results, device, gemm)
