"""GPU placement: which device each run of a suite is given by the executor that runs it.

A run's device is *how* it runs, like its Ray resources: it travels in `RunOptions.device` and
never changes the spec hash. Two executors place runs on GPUs:

- the local pool with ``gpus=("0", "1")`` (``--gpus 0,1``): one worker per GPU; each worker
  process takes a free GPU from a shared queue when its run starts and gives it back when the
  run ends, so no two concurrent runs share a GPU (list an id twice, ``--gpus 0,0,1,1``, to put
  two runs on each). The ids count the GPUs this process sees, as ``cuda:N`` does.
- Ray with ``num_gpus > 0`` (``--num-gpus 1``): the run uses the GPU Ray assigned to its task
  (``ray.get_gpu_ids()``); a task that reserved no GPU runs on the CPU unless the device was
  named explicitly.

A worker restricts itself to its GPU with ``CUDA_VISIBLE_DEVICES`` (set before CUDA starts, so
anything that allocates on "the" GPU lands on the right one) and runs on ``cuda:0``; if CUDA is
already initialised in that process, the variable would be ignored, so it names ``cuda:N``
instead.
"""

import dataclasses
import os
from collections.abc import Sequence

import torch

from benchmark.records import RunRecord
from benchmark.runner import RunOptions, run_spec
from benchmark.spec import RunSpec

VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"
GPU_DEVICES = ("auto", "cuda")  # --device values that leave the choice of GPU to the executor


def parse_gpu_ids(gpus: Sequence[str | int] | str) -> tuple[str, ...]:
    """Return GPU ids as strings from ``"0,1"``, ``[0, 1]`` or ``("0", "1")``.

    Raises:
        ValueError: for an empty list or an id that is not a non-negative integer.
    """
    items = gpus.split(",") if isinstance(gpus, str) else list(gpus)
    ids = tuple(str(item).strip() for item in items)
    if not ids or not all(i.isdigit() for i in ids):
        raise ValueError(
            f"Expected `gpus` to be GPU indices such as '0,1', but got {gpus!r}. "
            "Hint: `nvidia-smi -L` lists this machine's GPUs."
        )
    return ids


def physical_gpu_ids(gpus: Sequence[str], visible: str | None) -> tuple[str, ...]:
    """Return what each GPU index of this process is called in ``CUDA_VISIBLE_DEVICES``.

    Index ``i`` means ``cuda:i`` of this process: the i-th entry of its own
    ``CUDA_VISIBLE_DEVICES`` when that is set (an id or a UUID), else GPU ``i`` itself.

    Args:
        gpus: GPU indices, as from `parse_gpu_ids`.
        visible: This process's ``CUDA_VISIBLE_DEVICES`` (None when unset).

    Raises:
        ValueError: for an index beyond the visible GPUs.
    """
    if visible is None or not visible.strip():
        return tuple(gpus)
    entries = [entry.strip() for entry in visible.split(",")]
    beyond = [g for g in gpus if int(g) >= len(entries)]
    if beyond:
        raise ValueError(
            f"Expected `gpus` to index the {len(entries)} GPU(s) in "
            f"{VISIBLE_DEVICES_ENV}={visible!r}, but got {list(gpus)}."
        )
    return tuple(entries[int(g)] for g in gpus)


def check_gpu_device(options: RunOptions, placement: str) -> None:
    """Raise if the run's ``--device`` contradicts an executor that places runs on GPUs.

    Args:
        options: The runs' options.
        placement: The flag that places runs, for the message (``--gpus``, ``--num-gpus``).
    """
    device = options.device
    if device not in GPU_DEVICES:
        raise ValueError(
            f"Expected `--device` to be 'auto' or 'cuda' with {placement}, which gives each run "
            f"its GPU, but got {device!r}."
        )


def claim_gpu(physical_id: str, index: str) -> str:
    """Restrict this worker process to one GPU and return the device its run should use.

    Args:
        physical_id: The GPU's entry for ``CUDA_VISIBLE_DEVICES``.
        index: The same GPU as an index of the parent's visible devices (``cuda:index``).
    """
    if torch.cuda.is_initialized():  # NOTE: too late for the variable to take effect
        return f"cuda:{index}"
    os.environ[VISIBLE_DEVICES_ENV] = physical_id
    return "cuda:0"


def ray_task_device(gpu_ids: Sequence[int | str], visible: str | None) -> str:
    """Return the device of a Ray task that was assigned GPUs `gpu_ids` (it uses the first).

    Ray sets the task's ``CUDA_VISIBLE_DEVICES`` to its GPU ids, so the first is ``cuda:0`` of
    the task; when Ray is told not to set it, the id is the device index itself.

    Args:
        gpu_ids: ``ray.get_gpu_ids()`` inside the task.
        visible: The task's ``CUDA_VISIBLE_DEVICES`` (None when unset).

    Raises:
        ValueError: when Ray assigned no GPU.
    """
    if not gpu_ids:
        raise ValueError("Expected Ray to assign this task a GPU (num_gpus > 0), but got none.")
    first = str(gpu_ids[0])
    entries = [e.strip() for e in visible.split(",")] if visible else []
    return f"cuda:{entries.index(first)}" if first in entries else f"cuda:{first}"


def run_on_device(spec: RunSpec, options: RunOptions, device: str | None) -> RunRecord:
    """Run `spec` with `options`, on `device` when one is given (executors call this)."""
    return run_spec(
        spec, options if device is None else dataclasses.replace(options, device=device)
    )
