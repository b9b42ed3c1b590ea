"""Runtime of the inference-gap metric on 1,000 points for a Cremer et al. (2018) sized VAE.

``python -m benchmark.perf gaps [--points 1000] [--max-steps 50000] [--batch-size 100] ...``

The model is the paper's MLP VAE (encoder 784-200-200-2x50, decoder 50-200-200-784, ELU,
Bernoulli likelihood), untrained, scored on random binary vectors; the metric runs with the
evaluator's defaults (FFG q*, Adam lr 1e-3, 100 samples per step, stop after > 10 checks of 100
steps without improvement, 5,000 samples for each bound). It prints the wall time, the Adam steps
each point used, and the achieved throughput as a fraction of this machine's fp32 GEMM rate.
"""

import argparse
import math
import time

import torch

from metrics.inference_gaps import inference_gaps
from metrics.local_posterior import LocalOptimization
from registry import create_model
from registry.trunks import Architecture

DATA_DIM, LATENT_DIM, HIDDEN = 784, 50, (200, 200)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf gaps", description=__doc__)
    parser.add_argument("--points", type=int, default=1000, help="datapoints (paper: 1,000)")
    parser.add_argument("--max-steps", type=int, default=50_000, help="Adam step cap per point")
    parser.add_argument("--batch-size", type=int, default=100, help="points optimised together")
    parser.add_argument("--samples", type=int, default=5000, help="samples for L[q], L[q*], IS")
    parser.add_argument("--samples-per-step", type=int, default=100, help="k per Adam step")
    parser.add_argument("--family", choices=("ffg", "flow"), default="ffg")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def gemm_flops_per_second(device: torch.device, size: int = 1024, repeats: int = 10) -> float:
    """Return this machine's best observed fp32 matrix-multiply rate in FLOP/s."""
    a = torch.randn(size, size, device=device)
    best = math.inf
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        a @ a
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decoder_flops_per_sample() -> int:
    """Return multiply-adds x 2 of one decoder forward pass (the dominant cost)."""
    widths = [LATENT_DIM, *HIDDEN, DATA_DIM]
    return 2 * sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.bernoulli(torch.full((args.points, DATA_DIM), 0.5), generator=generator).to(device)
    torch.manual_seed(args.seed)
    model = (
        create_model(
            "vae",
            data_shape=(DATA_DIM,),
            latent_dim=LATENT_DIM,
            architecture=Architecture(hidden=HIDDEN, activation="elu"),
            likelihood="bernoulli",
        )
        .to(device)
        .eval()
    )
    optimization = LocalOptimization(
        family=args.family, max_steps=args.max_steps, samples_per_step=args.samples_per_step
    )
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(args.seed)
        _synchronize(device)
        start = time.perf_counter()
        results = inference_gaps(
            model,
            x,
            optimization=optimization,
            is_samples=args.samples,
            elbo_samples=args.samples,
            batch_size=args.batch_size,
            chunk_size=500,
        )
        _synchronize(device)
        seconds = time.perf_counter() - start
    report(args, results, seconds, gemm_flops_per_second(device))


def report(args: argparse.Namespace, results: dict, seconds: float, gemm_rate: float) -> None:
    diagnostics = results["approximation_gap"].diagnostics
    point_steps = diagnostics["steps_mean"] * args.points
    # Each Adam step costs about 3 decoder passes (forward + backward) per sample; each bound
    # evaluation one pass per sample, for q and for q*.
    flops = decoder_flops_per_sample() * (
        3 * point_steps * args.samples_per_step + 2 * args.points * args.samples
    )
    print(
        f"device {args.device}, {torch.get_num_threads()} CPU threads, family {args.family}, "
        f"{args.points} points in batches of {args.batch_size}, {args.samples} samples per bound"
    )
    print(f"wall time {seconds:.1f} s ({seconds / args.points:.3f} s per point)")
    print(
        f"Adam steps per point: mean {diagnostics['steps_mean']:.0f}, min "
        f"{diagnostics['steps_min']}, max {diagnostics['steps_max']} (cap {args.max_steps}); "
        f"converged {diagnostics['converged_fraction']:.1%}"
    )
    print(
        f"throughput {flops / seconds / 1e9:.1f} GFLOP/s = {flops / seconds / gemm_rate:.2f} x "
        f"this machine's fp32 GEMM rate ({gemm_rate / 1e9:.1f} GFLOP/s)"
    )
    for name in ("log_px", "elbo_q", "elbo_q_star", "approximation_gap", "amortization_gap"):
        estimate = results[name]
        print(f"{name:>18}: {estimate.value:9.3f} ± {estimate.stderr or 0.0:.3f} nats")
