"""Test-wide settings: one intra-op thread (the tests are tiny; threads only oversubscribe)."""

import torch

torch.set_num_threads(1)
