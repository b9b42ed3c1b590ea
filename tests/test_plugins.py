"""Tests of plugins: a model registered outside vaebench, by file, by spec, or by entry point.

Each test runs in a subprocess: the model registry is global, and registering the example model
in this process would change what other tests parametrize over with `list_models()`.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "examples/plugin_vae.py"


def run_python(*args: str) -> str:
    """Run Python from the repository root and return its stdout (failing on a non-zero exit)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cli_plugin_flag_lists_the_example_model():
    """Contract: `vaebench --plugin examples/plugin_vae.py list models` lists free_bits_vae."""
    listed = run_python("-m", "benchmark", "--plugin", PLUGIN, "list", "models").split()
    assert "free_bits_vae" in listed and "vae" in listed


SPEC_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    from benchmark.leaderboard import render_leaderboard
    from benchmark.records import load_records
    from benchmark.runner import RunOptions, run_spec
    from benchmark.spec import resolve_spec
    from registry import create_model, list_models

    before = "free_bits_vae" in list_models()
    spec = resolve_spec({
        "name": "fb", "plugins": ["examples/plugin_vae.py"],
        "model": {"name": "free_bits_vae", "latent_dim": 2, "architecture": {"hidden": [8]}},
        "dataset": {"name": "digits"},
        "train": {"steps": 3, "batch_size": 16, "checkpoint_every": 0},
        "eval": {"elbo": {"num_examples": 20}},
    })
    results = Path(sys.argv[1])
    record = run_spec(spec, RunOptions(results_dir=results, checkpoint_dir=results / "ck",
                                       catch_failures=False, progress=False))
    board = render_leaderboard(load_records(results))

    # The objective: free_bits = 0 is the VAE's negative ELBO; a large floor is -rec + D * floor.
    x = torch.rand(5, 1, 8, 8).bernoulli()
    model = create_model("free_bits_vae", data_shape=(1, 8, 8), latent_dim=3, free_bits=0.0)
    vae = create_model("vae", data_shape=(1, 8, 8), latent_dim=3)
    vae.load_state_dict(model.state_dict())
    losses = []
    for m in (model, vae):
        torch.manual_seed(0)
        losses.append(m.loss(x, 0).loss.item())
    model.free_bits = 100.0
    torch.manual_seed(0)
    floored = model.loss(x, 0)
    print(json.dumps({"before": before, "status": record.status, "losses": losses,
                      "floored": floored.loss.item(),
                      "reconstruction": floored.terms["reconstruction"], "board": board}))
""")


def test_spec_plugin_runs_and_reaches_the_leaderboard(tmp_path):
    """Contract: a spec's `plugins:` registers the model, which trains, is recorded and is listed
    in the leaderboard; closed-form reference: free_bits = 0 gives the VAE's loss, and a floor
    above every KL gives −reconstruction + D · floor."""
    out = json.loads(run_python("-c", SPEC_SCRIPT, str(tmp_path)).splitlines()[-1])
    assert out["before"] is False and out["status"] == "ok"
    assert abs(out["losses"][0] - out["losses"][1]) < 1e-4
    assert abs(out["floored"] - (-out["reconstruction"] + 3 * 100.0)) < 1e-3
    assert "| fb | free_bits_vae | ok×1 |" in out["board"]


ENTRY_POINT_SCRIPT = textwrap.dedent("""
    import importlib.metadata as metadata

    original = metadata.entry_points

    def entry_points(**selection):
        if selection != {"group": "vaebench.models"}:  # torch looks up its own groups
            return original(**selection)
        return [metadata.EntryPoint(name="free_bits", value="examples.plugin_vae",
                                    group="vaebench.models")]

    metadata.entry_points = entry_points  # what an installed package would declare
    from registry import list_models
    print(" ".join(list_models()))
""")


def test_entry_point_group_registers_models_on_first_lookup():
    """Contract: a `vaebench.models` entry point is imported on the registry's first lookup."""
    assert "free_bits_vae" in run_python("-c", ENTRY_POINT_SCRIPT).split()
