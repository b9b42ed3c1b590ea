"""The study's two representations of a model: posterior means and posterior draws.

Locatello et al. (2019) score every trained encoder twice: on the mean of q(z|x) (``mean.gin``)
and on one draw from it (``sampled.gin``). This is the only module of the package that imports
torch, so the processes that fit the scores' classifiers never load it.
"""

import numpy as np
import torch

from metrics.disentanglement.ground_truth import Representation
from registry.base import LatentVariableModel


def mean_representation(model: LatentVariableModel) -> Representation:
    """Return the representation x -> E_q(z|x)[z], the study's "mean" codes ``(N, D)``."""
    parameter = next(model.parameters())

    @torch.no_grad()
    def represent(x: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(x, dtype=parameter.dtype, device=parameter.device)
        return model.encode(x).mean.cpu().numpy()  # (N, D)

    return represent


class SampledRepresentation:
    """The representation x -> one draw z ~ q(z|x), the study's "sampled" codes ``(N, D)``.

    Call c draws under a forked torch RNG seeded from (seed, c), so draws are reproducible,
    independent across calls, and leave the global RNG alone. `restart` rewinds to call 0; the
    driver restarts it before each score, so every score sees the same noise for a given seed.
    """

    def __init__(self, model: LatentVariableModel, *, seed: int) -> None:
        self.model, self.seed, self.calls = model, seed, 0
        self.parameter = next(model.parameters())

    def restart(self) -> None:
        self.calls = 0

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        call_seed = int(np.random.SeedSequence([self.seed, self.calls]).generate_state(1)[0])
        self.calls += 1
        x = torch.as_tensor(x, dtype=self.parameter.dtype, device=self.parameter.device)
        devices = [self.parameter.device] if self.parameter.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(call_seed)
            return self.model.encode(x).sample().cpu().numpy()  # (N, D)


def sampled_representation(model: LatentVariableModel, *, seed: int) -> SampledRepresentation:
    """Return the study's "sampled" representation of `model`, one posterior draw per input."""
    return SampledRepresentation(model, seed=seed)
