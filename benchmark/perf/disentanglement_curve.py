"""How MIG, DCI disentanglement and reconstruction evolve with training steps on dSprites.

``python -m benchmark.perf disentanglement_curve [--steps 1000,3000,10000,30000]
[--runs beta-vae-b4,factor-vae-g30] [--out figures/disentanglement_curve] [--workers 2]
[--set train.lr=1e-4 ...]``

Each run is taken from the ``dsprites`` suite (β-VAE with β = 4 and FactorVAE with γ = 30 by
default) with everything the suite sets (dataset, model, batch, learning rate, seed), so the
curve measures what a re-run of that suite at a given ``train.steps`` would train. One model per
run trains once through all checkpoints (``--set`` overrides a suite setting, as on the
command line of ``vaebench suite``) (resuming, so step 10,000 continues step 3,000's model
and optimizer), and at step 0 and at each checkpoint gets:

- ``discrete_mig`` and ``dci_disentanglement``: the suite's sample sizes and seed, on the
  posterior means (``--num-train``/``--num-eval`` override the sizes);
- ``reconstruction``: E_q(z|x)[-log p(x|z)] in nats per image, one posterior draw per image,
  over the first ``--num-recon`` test images;
- ``kl_per_latent``: KL(q(z_d|x) || N(0, 1)) per latent on the same images, so the traversal
  rows worth reading are known;
- ``traversals/<run>-<step>.png``: the latent traversals of the first test image, one row per
  latent (values -3 .. 3), as in the suite's image grids.

Writes ``curve.json`` (values, settings, this command) and ``curve.png`` into ``--out``. CPU
cost: about 15 training steps/s for β-VAE and 8 for FactorVAE on 2 cores, plus the scores.
"""

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.distributions import Normal, kl_divergence

from benchmark.datasets import create_dataset
from benchmark.spec import RunSpec
from benchmark.suite import load_suite
from benchmark.trainer import resolve_device, train
from metrics.disentanglement import DCIConfig, MIGConfig, disentanglement_scores
from metrics.disentanglement.representation import mean_representation
from registry import create_model
from registry.base import LatentVariableModel


def suite_runs(names: list[str], overrides: list[str], suite: str = "dsprites") -> list[RunSpec]:
    """Return the named runs of `suite` with ``dotted.key=value`` overrides, or raise."""
    runs = {spec.name: spec for spec in load_suite(suite, overrides=overrides).runs}
    unknown = [name for name in names if name not in runs]
    if unknown:
        raise ValueError(
            f"Expected runs of suite {suite!r} among {sorted(runs)}, but got {unknown}."
        )
    return [runs[name] for name in names]


@torch.no_grad()
def reconstruction_and_kl(model: LatentVariableModel, x: torch.Tensor) -> tuple[float, list[float]]:
    """Return mean -log p(x|z), z ~ q(z|x), in nats, and the mean KL to N(0, 1) per latent."""
    q_z = model.encode(x)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        z = q_z.sample()  # (B, D)
    reconstruction = -model.decode(z).log_prob(x).mean().item()
    kl = kl_divergence(Normal(q_z.mean, q_z.stddev), Normal(0.0, 1.0)).mean(dim=0)  # (D,)
    return reconstruction, [round(v, 4) for v in kl.tolist()]


def checkpoint_values(
    model: LatentVariableModel, dataset: Any, spec: RunSpec, args: argparse.Namespace
) -> dict[str, Any]:
    """Return the curve's values for the model as it is now."""
    config = spec.eval["disentanglement"]
    num_train = args.num_train or config.num_train
    num_eval = args.num_eval or config.num_eval
    scores = disentanglement_scores(
        dataset.ground_truth,
        mean_representation(model),
        scores=["mig", "dci"],
        configs={
            "mig": MIGConfig(
                num_train=num_train, batch_size=config.batch_size, num_bins=config.num_bins
            ),
            "dci": DCIConfig(num_train=num_train, num_test=num_eval, batch_size=config.batch_size),
        },
        seed=spec.seed,
        workers=args.workers,
    )
    x = dataset.evaluation_data("test")[: args.num_recon]
    reconstruction, kl = reconstruction_and_kl(model, x.to(next(model.parameters()).device))
    return {
        "discrete_mig": scores["mig"]["discrete_mig"],
        "dci_disentanglement": scores["dci"]["disentanglement"],
        "dci_informativeness_test": scores["dci"]["informativeness_test"],
        "reconstruction": reconstruction,
        "kl_per_latent": kl,
    }


def run_curve(spec: RunSpec, steps: list[int], out: Path, args: argparse.Namespace) -> list[dict]:
    """Train `spec`'s model through `steps`, returning one row of values per checkpoint."""
    from benchmark.images import latent_traversal_grid  # NOTE: needs Pillow only here

    dataset = create_dataset(
        spec.dataset["name"],
        data_root=args.data_root,
        **{k: v for k, v in spec.dataset.items() if k != "name"},
    )
    torch.manual_seed(spec.seed)  # as the runner does before building the model
    model = create_model(
        spec.model["name"],
        data_shape=dataset.data_shape,
        **{k: v for k, v in spec.model.items() if k != "name"},
    )
    device = resolve_device(args.device)
    model.to(device)
    checkpoint = out / "checkpoints" / f"{spec.name}.pt"
    checkpoint.unlink(missing_ok=True)  # NOTE: a curve always starts from initialisation
    rows, x_first = [], dataset.evaluation_data("test")[:1].to(device)
    for step in [0, *steps]:
        started = time.perf_counter()
        if step > 0:
            train_spec = replace(spec.train, steps=step, checkpoint_every=0)
            train(
                model,
                dataset,
                train_spec,
                seed=spec.seed,
                device=device,
                checkpoint_path=checkpoint,
                progress=False,
            )
        trained = time.perf_counter() - started
        model.eval()
        row = {"run": spec.name, "step": step, **checkpoint_values(model, dataset, spec, args)}
        path = out / "traversals" / f"{spec.name}-{step}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        latent_traversal_grid(model, x_first, path)
        row["traversals"] = str(path.relative_to(out))
        row["seconds"] = {
            "train": round(trained, 1),
            "total": round(time.perf_counter() - started, 1),
        }
        print(json.dumps({k: v for k, v in row.items() if k != "kl_per_latent"}), flush=True)
        rows.append(row)
    return rows


def draw_curve(rows: list[dict], path: Path, command: str) -> None:
    """Plot MIG, DCI disentanglement and reconstruction against steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        ("discrete_mig", "MIG (higher is better)"),
        ("dci_disentanglement", "DCI disentanglement (higher is better)"),
        ("reconstruction", "reconstruction -log p(x|z), nats (lower is better)"),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (key, label) in zip(axes, keys, strict=True):
        for run in dict.fromkeys(row["run"] for row in rows):
            points = [(row["step"], row[key]) for row in rows if row["run"] == run]
            ax.plot(*zip(*points, strict=True), marker="o", label=run)
        ax.set_xscale("symlog", linthresh=max(1, min(r["step"] for r in rows if r["step"] > 0)))
        ax.set_xlabel("training steps")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle(f"generated by: {command}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf disentanglement_curve")
    parser.add_argument("--steps", default="1000,3000,10000,30000", help="ascending checkpoints")
    parser.add_argument("--runs", default="beta-vae-b4,factor-vae-g30", help="dsprites suite runs")
    parser.add_argument("--out", type=Path, default=Path("figures/disentanglement_curve"))
    parser.add_argument("--num-train", type=int, default=None, help="score points (suite's)")
    parser.add_argument("--num-eval", type=int, default=None, help="DCI test points (suite's)")
    parser.add_argument("--num-recon", type=int, default=1000, help="test images")
    parser.add_argument("--workers", type=int, default=1, help="processes fitting DCI's trees")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--set", action="append", default=[], help="override in the suite runs, e.g. train.lr=1e-4"
    )
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")]
    if steps != sorted(set(steps)) or steps[0] < 1:
        raise ValueError(f"Expected `--steps` ascending and >= 1, but got {steps}.")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmark.perf disentanglement_curve " + shlex.join(argv)
    rows = [
        row
        for spec in suite_runs(args.runs.split(","), args.set)
        for row in run_curve(spec, steps, args.out, args)
    ]
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    payload = {"command": command.strip(), "settings": settings, "rows": rows}
    (args.out / "curve.json").write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    draw_curve(rows, args.out / "curve.png", command.strip())
    print(f"wrote {args.out / 'curve.json'} and {args.out / 'curve.png'}", file=sys.stderr)
