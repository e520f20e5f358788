"""The randomness of a curve's training step, a function of ``(seed, step)`` alone, so that
a resumed run draws what an uninterrupted one does."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["draws", "seeded"]


def draws(seed: int, step: int) -> tuple[float, int]:
    """Step ``step``'s ``t`` in [0, 1) and the seed of the model's randomness there."""
    rng = np.random.default_rng([int(seed), int(step)])
    return float(rng.random()), int(rng.integers(0, 2**63 - 1))


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The global RNG of the CPU (and of ``device`` when it is a GPU) seeded with ``seed``
    for the duration, then put back: dropout draws the same masks at a step, resumed or not."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        if cuda:
            index = device.index if device.index is not None else torch.cuda.current_device()
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
