"""Benchmark ``nll``: importance-sampled NLL throughput as a fraction of this machine's GEMM speed.

    python -m benchmark.perf nll            # the issue's figures (~1.5 min on 2 idle cores)
    python -m benchmark.perf nll --quick    # wall time over 1,000 images only (~15 s)
    python -m benchmark.perf nll --generic  # also the unfused path, for comparison

Measures, in the same run and interleaved so that both see the same machine load:

1. fp32 GEMM throughput (`benchmark.calibration.gemm_gflops`, 1024^3 `torch.matmul`);
2. the throughput of `metrics.nll.importance_sampled_log_likelihood` (the estimator the ``nll``
   evaluator runs, diagnostics included) at K = 1000 on a batch of test images, counted as
   decoder FLOP/s: 2 * in * out per linear layer per sample, i.e. 2 (50*500 + 500*500 + 500*784)
   = 1.334 MFLOP per sample for the 50-500-500-784 decoder of a 784-500-500-50 MLP VAE;

and prints their ratio (best of the interleaved rounds of each). Then it times the estimator on
the whole test set (10,000 Fashion-MNIST images, or random binary images of that shape when the
files are missing). The model is untrained: speed does not depend on the weights. On a shared
machine run it when idle: both rates are the best of their rounds, but load that differs between
rounds still moves the ratio.
"""

import argparse
import math
import platform
import time

import torch
from torch import Tensor, nn

from benchmark.calibration import gemm_gflops
from metrics.nll import importance_sampled_log_likelihood
from registry import create_model
from registry.base import LatentVariableModel
from registry.estimators import log_importance_weights
from registry.trunks import Architecture

TARGET_RATIO = 0.6  # issue 3: IS-NLL decoder FLOP/s >= 0.6 x fp32 GEMM FLOP/s


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.perf nll",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--k", type=int, default=1000, help="importance samples per example")
    parser.add_argument("--chunk", type=int, default=1000, help="samples drawn per pass")
    parser.add_argument("--batch-size", type=int, default=100, help="examples per pass")
    parser.add_argument("--examples", type=int, default=10_000, help="images for the wall time")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--activation", default="relu", choices=["relu", "tanh", "elu"])
    parser.add_argument("--data", default="auto", choices=["auto", "fashion_mnist", "random"])
    parser.add_argument(
        "--generic",
        action="store_true",
        help="also time the unfused log p(z) + log p(x|z) - log q of the model's densities",
    )
    parser.add_argument("--quick", action="store_true", help="1,000 images for the wall time")
    args = parser.parse_args(argv)
    if args.quick:
        args.examples = min(args.examples, 1000)
    return args


def benchmark_model(activation: str) -> LatentVariableModel:
    """Return an MLP VAE 784-500-500-50 with a Bernoulli decoder 50-500-500-784, in eval mode."""
    architecture = Architecture(hidden=(500, 500), activation=activation)
    model = create_model("vae", data_shape=(1, 28, 28), latent_dim=50, architecture=architecture)
    return model.eval()


def decoder_flops_per_sample(model: LatentVariableModel) -> int:
    """Return 2 * in * out summed over the decoder's linear layers (multiply-adds x 2)."""
    return sum(
        2 * m.in_features * m.out_features
        for m in model.decoder.modules()
        if isinstance(m, nn.Linear)
    )


def evaluation_images(choice: str, num_examples: int) -> tuple[Tensor, str]:
    """Return binarized Fashion-MNIST test images, or random binary ones, and a description."""
    if choice in ("auto", "fashion_mnist"):
        try:
            from benchmark.datasets import create_dataset

            dataset = create_dataset("fashion_mnist")
            x = dataset.evaluation_data("test")[:num_examples]
            return x, f"Fashion-MNIST test images ({dataset.preprocessing}, eval seed 123)"
        except (FileNotFoundError, ImportError):
            if choice == "fashion_mnist":
                raise
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(num_examples, 1, 28, 28, generator=generator) < 0.3).float()
    return x, "random binary images of Fashion-MNIST's shape (dataset files not found)"


def nll_seconds(model: LatentVariableModel, x: Tensor, args: argparse.Namespace) -> float:
    """Return the wall time of the ``nll`` evaluator's estimator on `x`."""
    tic = time.perf_counter()
    importance_sampled_log_likelihood(
        model, x, num_samples=args.k, chunk_size=args.chunk, batch_size=args.batch_size, seed=0
    )
    return time.perf_counter() - tic


def generic_seconds(model: LatentVariableModel, x: Tensor, args: argparse.Namespace) -> float:
    """Return the wall time of the model's own log weights, chunked, for comparison."""
    tic = time.perf_counter()
    with torch.no_grad():
        for start in range(0, args.k, args.chunk):
            z, log_q = model.sample_posterior(x, min(args.chunk, args.k - start))
            model.log_prior(z) + model.log_likelihood(x, z) - log_q
    return time.perf_counter() - tic


def throughput_ratio(model: LatentVariableModel, x: Tensor, args: argparse.Namespace) -> None:
    """Print GEMM GFLOP/s, IS-NLL decoder GFLOP/s and their ratio, interleaved over rounds."""
    flops = decoder_flops_per_sample(model) * args.k * len(x)
    gemm, nll, generic = 0.0, math.inf, math.inf
    log_importance_weights(model, x[:2], num_samples=8, chunk_size=8)  # warm-up
    for _ in range(args.rounds):
        gemm = max(gemm, gemm_gflops(seconds=0.5))
        nll = min(nll, nll_seconds(model, x, args))
        if args.generic:
            generic = min(generic, generic_seconds(model, x, args))
    nll_gflops = flops / nll / 1e9
    print(f"fp32 GEMM, torch.matmul 1024^3:        {gemm:8.1f} GFLOP/s (best of {args.rounds})")
    print(
        f"IS-NLL decoder, K={args.k}, batch {len(x)}: {nll_gflops:8.1f} GFLOP/s "
        f"({nll:.3f} s per batch)"
    )
    print(
        f"ratio IS-NLL / GEMM:                   {nll_gflops / gemm:8.2f}   "
        f"(target >= {TARGET_RATIO})"
    )
    if args.generic:
        generic_gflops = flops / generic / 1e9
        print(
            f"  unfused model densities: {generic_gflops:8.1f} GFLOP/s, "
            f"ratio {generic_gflops / gemm:.2f}"
        )


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = benchmark_model(args.activation)
    x, description = evaluation_images(args.data, args.examples)
    flops = decoder_flops_per_sample(model)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"model: vae 784-500-500-50 ({args.activation}), Bernoulli decoder; decoder FLOPs per "
        f"sample = 2 * (50*500 + 500*500 + 500*784) = {flops:,}"
    )
    throughput_ratio(model, x[: args.batch_size], args)
    seconds = nll_seconds(model, x, args)
    print(
        f"wall time, K={args.k} over {len(x):,} {description}: {seconds:.1f} s "
        f"({seconds / len(x) * 1e3:.1f} ms per image)"
    )
