"""Optimizers and learning-rate schedules named in train specs.

``adam`` is `torch.optim.Adam` (fused kernels where torch has them for the device).
``adam_burda2016`` is Adam as released with the IWAE paper (yburda/iwae, ``optimizers.py``),
which differs from the published algorithm in three ways that matter for reproducing Table 1:
the second-moment accumulator starts at ones rather than zeros (so the first thousands of steps
are small), ε = 1e-4 is added to sqrt(v), and the step size is
``lr * sqrt(1 - β2^t) / (1 - β1^t)``. β1 defaults to 0.99 there; the spec sets it.

The ``burda2016`` schedule: pass i = 0..7 lasts 3^i epochs with learning rate
``1e-4 * round(10 ** (1 - i / 7), 1)`` (1e-3 down to 1e-4), 3,280 epochs in all; the optimizer's
moments and step count carry over between passes, as in the released code.
"""

import math
from typing import Literal

import torch
from torch import Tensor

OptimizerName = Literal["adam", "adam_burda2016"]
ScheduleName = Literal["constant", "burda2016"]
BURDA_PASSES = 8


class BurdaAdam(torch.optim.Optimizer):
    """Adam with v initialised to ones and ε added to sqrt(v) (yburda/iwae, Burda et al. 2016)."""

    def __init__(self, params, *, lr: float, betas: tuple[float, float], eps: float) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: D102  the update is the class docstring's
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._state(p) for p in params]
            step = states[0]["step"] + 1  # one shared count: every parameter steps together
            for state in states:
                state["step"] = step
            beta1, beta2 = group["betas"]
            # NOTE: torch's fused Adam kernel (one pass over memory instead of six foreach
            # passes, a fifth of an IWAE k = 1 step) computes p -= lr / (1 - β1^t) * m /
            # (sqrt(v) / sqrt(1 - β2^t) + ε'); with ε' = ε / sqrt(1 - β2^t) that is the
            # released p -= lr * sqrt(1 - β2^t) / (1 - β1^t) * m / (sqrt(v) + ε), rounded
            # differently (a few ulp). m <- β1 m + (1 - β1) g and v <- β2 v + (1 - β2) g² as
            # released; v starting at ones is only its state.
            count = torch.tensor(float(step), device=params[0].device)  # exact below 2^24
            torch._fused_adam_(
                params,
                [p.grad for p in params],
                [s["m"] for s in states],
                [s["v"] for s in states],
                [],
                [count] * len(params),  # the kernel reads t; it is advanced here, not by it
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=0.0,
                eps=group["eps"] / math.sqrt(1 - beta2**step),
                amsgrad=False,
                maximize=False,
            )

    def _state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state.update(step=0, m=torch.zeros_like(p), v=torch.ones_like(p))
        return state


def create_optimizer(
    name: str, params: list[Tensor], *, lr: float, betas: tuple[float, float], eps: float
) -> torch.optim.Optimizer:
    """Return the named optimizer over `params`."""
    if name == "adam_burda2016":
        return BurdaAdam(params, lr=lr, betas=betas, eps=eps)
    # NOTE: fused Adam is one kernel over all parameters instead of a dozen small ones per
    # tensor: a quarter of a batch-20 MLP step on a CPU, more on a GPU.
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=True)


def burda_pass_starts(batches_per_epoch: int) -> list[int]:
    """Return the first step of each pass of the ``burda2016`` schedule (8 passes of 3^i epochs)."""
    epochs = [sum(3**j for j in range(i)) for i in range(BURDA_PASSES)]  # 0, 1, 4, 13, ...
    return [e * batches_per_epoch for e in epochs]


def burda_learning_rate(pass_index: int) -> float:
    """Return the learning rate of pass `pass_index` (0-based) of the ``burda2016`` schedule."""
    return 1e-4 * round(10 ** (1 - pass_index / (BURDA_PASSES - 1)), 1)


def learning_rate(schedule: str, base_lr: float, step: int, batches_per_epoch: int) -> float:
    """Return the learning rate at `step`: `base_lr` (constant), or the Burda pass's rate."""
    if schedule == "constant":
        return base_lr
    starts = burda_pass_starts(batches_per_epoch)
    pass_index = sum(1 for start in starts if start <= step) - 1
    return burda_learning_rate(pass_index)


def schedule_boundaries(schedule: str, batches_per_epoch: int, steps: int) -> list[int]:
    """Return the steps at which a pass of the schedule ends, up to `steps` (learning curves)."""
    if schedule == "constant":
        return [steps]
    return [start for start in burda_pass_starts(batches_per_epoch)[1:] if start < steps] + [steps]
