"""Smoke test of the steps-versus-scores curve script (``benchmark/perf/disentanglement_curve.py``).

Tiny sizes only: one dsprites suite run, 1 training step, 100 training images, scores on 40
points. The real curve (1k to 30k steps) is run by hand; see the script's docstring.
"""

import json
import math

from benchmark.perf import disentanglement_curve


def test_curve_script_trains_scores_and_draws_each_checkpoint(tmp_path):
    """Contract: rows for step 0 and each checkpoint with MIG and DCI in [0, 1], a finite
    reconstruction that training changed, one KL per latent, the traversal grids, the figure
    and the regenerating command."""
    disentanglement_curve.main(
        [
            *("--steps", "1", "--runs", "beta-vae-b4", "--out", str(tmp_path)),
            *("--num-train", "40", "--num-eval", "20", "--num-recon", "8"),
            *("--set", "dataset.num_train=100", "--set", "dataset.num_valid=10"),
            *("--set", "dataset.num_test=20"),
        ]
    )
    payload = json.loads((tmp_path / "curve.json").read_text())
    rows = payload["rows"]
    assert [(row["run"], row["step"]) for row in rows] == [("beta-vae-b4", 0), ("beta-vae-b4", 1)]
    for row in rows:
        assert 0 <= row["discrete_mig"] <= 1 and 0 <= row["dci_disentanglement"] <= 1
        assert math.isfinite(row["reconstruction"]) and row["reconstruction"] > 0
        assert len(row["kl_per_latent"]) == 10
        assert (tmp_path / row["traversals"]).stat().st_size > 0
    assert rows[1]["reconstruction"] != rows[0]["reconstruction"]
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert payload["command"].startswith("python -m benchmark.perf disentanglement_curve --steps 1")
