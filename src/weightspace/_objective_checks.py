"""The checks an :class:`~weightspace.Objective` runs before a long loop: the model's own
loss, and the determinism probe and centre check (:meth:`Objective.check`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ._batches import call_model, mean_over_batch
from .errors import WeightspaceError

if TYPE_CHECKING:
    from .objective import Objective


def model_loss(obj: Objective) -> float:
    """The model's own loss (calling the module itself) at its current parameters; its
    buffers are as they were after (a train-mode BatchNorm writes running statistics)."""
    buffers = {n: b.detach().clone() for n, b in obj.model.named_buffers()}
    total = 0.0
    try:
        with torch.no_grad(), obj._model_mode():
            batches = obj._staged(obj.theta0.dtype)  # data cast as at theta0
            for (inputs, targets), w in zip(batches, obj.batch_weights.tolist()):
                loss = obj.loss_fn(call_model(obj.model, inputs), targets)
                loss = mean_over_batch(loss, inputs, targets, obj.problem)
                total += w * float(loss)
    finally:
        with torch.no_grad():
            for n, b in obj.model.named_buffers():
                b.copy_(buffers[n])
    return total


def check(obj: Objective, theta: torch.Tensor | None, rtol: float) -> float:
    """:meth:`Objective.check`: the loss at ``theta`` (default: the model's parameters)."""
    at_centre = theta is None
    probe = obj.with_buffers(None) if at_centre and obj._buffers is not None else obj
    theta = obj.theta0 if theta is None else theta
    a, b = probe.evaluate(theta).loss, probe.evaluate(theta).loss
    if not math.isfinite(a):
        raise WeightspaceError(
            f"theta: the loss is {a} there; check the point, the data and the model"
        )
    if abs(a - b) > rtol * max(abs(a), 1e-12):
        raise WeightspaceError(
            f"objective is not deterministic: two evaluations gave {a!r} and {b!r} "
            f"(mode={obj.mode!r}); likely dropout or BatchNorm in train mode, or data "
            "that reshuffles; use mode='eval' and fixed data"
        )
    if at_centre:
        own = model_loss(obj)
        if abs(a - own) > rtol * max(abs(own), 1e-12) + 1e-12:
            raise WeightspaceError(
                f"objective at the model's parameters is {a!r} but the model's own loss is "
                f"{own!r}; likely parameters shared or created outside named_parameters(), "
                "or a forward that depends on state weightspace does not see"
            )
    return a
