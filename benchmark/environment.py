"""The environment a run ran in: software versions, hardware, and the git commit."""

import hashlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or `platform.processor()` elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """Return the CUDA device name if a GPU is visible, else None."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def describe_environment() -> dict[str, Any]:
    """Return versions and hardware facts, plus a fingerprint of the hardware alone."""
    hardware = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "gpu": gpu_name(),
    }
    return {
        **hardware,
        "hardware_fingerprint": hashlib.sha256(repr(sorted(hardware.items())).encode()).hexdigest()[
            :16
        ],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }


def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """Return the commit checked out in `repo` and whether tracked source files differ from it.

    Records and the generated leaderboard do not count as dirty: a suite writes them itself.
    """

    def git(*args: str) -> str:
        result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or None
    status = git(
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":(exclude)results",
        ":(exclude)leaderboard.md",
        ":(exclude)leaderboard.csv",
        ":(exclude)figures",
    )
    return {"commit": commit, "dirty": bool(status) if commit else None}
