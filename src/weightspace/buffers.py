"""The buffers a point reads: a snapshot's own, interpolated between two points, or re-estimated.

In eval mode a BatchNorm network's loss depends on its running statistics, which training
moves as much as the weights. weightspace therefore records them beside every snapshot
(:class:`~weightspace.Recorder`, format 2) and evaluates a snapshot with its own statistics
(:func:`at_snapshot`). Points that were never trained at need a rule, stated in every result:

* a grid around a centre: the centre's buffers everywhere (the default);
* the line between two points: ``(1 − t)·B_start + t·B_end`` with ``t = clip(α, 0, 1)``, so
  both ends are exact and points beyond them keep the nearer end's (:func:`interpolated`);
* ``recompute_bn=True``: BatchNorm statistics re-estimated at every point by one pass over the
  training data in train mode (Li et al. 2018, Garipov et al. 2018; :func:`recompute_batchnorm`).

Runs of format 1 (before buffers were recorded) have none: eval-mode analyses of a model with
buffers then use the problem's own and say so, once, in the log and in the metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .objective import Objective

__all__ = ["at_snapshot", "interpolated", "recompute_batchnorm", "recomputed", "snapshot_states"]

log = logging.getLogger(__name__)

StateFn = Callable[[np.ndarray, torch.Tensor], torch.Tensor]
NO_BUFFERS = "problem's (the run recorded none: format 1)"
_warned: set[str] = set()


def _missing(objective: Objective, run: Any) -> bool:
    """Whether ``run`` lacks buffers that an eval-mode objective would read; warns once."""
    if run.records_buffers or not len(objective.buffer_layout):
        return False
    key = str(run.path)
    if objective.mode == "eval" and key not in _warned:
        _warned.add(key)
        log.warning(
            "run %s has no recorded buffers (written by an older weightspace); eval-mode "
            "numbers use the problem's own buffers (e.g. BatchNorm statistics), not the "
            "run's; re-record or re-import it",
            run.path,
        )
    return True


def at_snapshot(objective: Objective, run: Any, i: int) -> Objective:
    """The objective reading snapshot ``i``'s buffers (BatchNorm statistics, ...).

    Args:
        objective: the loss.
        run: a :class:`~weightspace.Trajectory`.
        i: the snapshot index (negative allowed).

    Returns:
        ``objective.with_buffers(...)`` with the source recorded (``"run NAME step S"``); for
        a run without recorded buffers, the problem's buffers with a one-line warning.
    """
    i %= len(run)
    if _missing(objective, run):
        return objective.with_buffers(None, source=NO_BUFFERS)
    if not len(objective.buffer_layout):
        return objective
    run.buffer_layout.check_compatible(
        objective.buffer_layout, what=f"run {str(run.path)!r} vs the problem's model"
    )
    return objective.with_buffers(
        run.buffers(i), source=f"run {run.path.name} step {int(run.steps[i])}"
    )


def snapshot_states(objective: Objective, run: Any) -> StateFn | None:
    """``state(indices, thetas)``: each snapshot's own buffers, for the point engine; None
    when there are none to read (a model without buffers, or a run that recorded none)."""
    if not len(objective.buffer_layout) or _missing(objective, run):
        return None
    run.buffer_layout.check_compatible(
        objective.buffer_layout, what=f"run {str(run.path)!r} vs the problem's model"
    )

    def state(idx: np.ndarray, thetas: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.stack([run.buffer_array(int(i)) for i in idx]))

    return state


def interpolated(
    objective: Objective, end_buffers: Mapping[str, torch.Tensor], alphas: np.ndarray
) -> tuple[StateFn | None, torch.Tensor | None]:
    """``state(indices, thetas)`` for the line ``start + α·(end − start)``: the buffers
    ``(1 − t)·B_start + t·B_end`` with ``t = clip(α, 0, 1)``, ``B_start`` the objective's.

    Returns:
        the state function (None for a model without buffers) and ``B_end`` flat.
    """
    layout = objective.buffer_layout
    if not len(layout):
        return None, None
    b0 = objective.buffer_vector()
    b1 = layout.flatten({**objective.buffers(), **dict(end_buffers)})
    t_all = np.clip(np.asarray(alphas, dtype=np.float64), 0.0, 1.0)

    def state(idx: np.ndarray, thetas: torch.Tensor) -> torch.Tensor:
        t = torch.from_numpy(t_all[idx])[:, None]
        return (1 - t) * b0 + t * b1

    return state, b1


INTERPOLATION_RULE = (
    "interpolated: (1 - t)·B_start + t·B_end with t = clip(alpha, 0, 1) (integer buffers rounded)"
)
RECOMPUTE_RULE = (
    "recomputed: BatchNorm statistics re-estimated at every point by one pass over the "
    "training data in train mode (exact average, momentum=None)"
)


def recompute_batchnorm(
    objective: Objective, theta: torch.Tensor, *, data: Any = None, batch_size: int | None = None
) -> dict[str, torch.Tensor]:
    """BatchNorm statistics re-estimated at ``theta`` (Li et al. 2018, Garipov et al. 2018).

    Every BatchNorm layer's running statistics are reset and accumulated as the exact average
    over one pass of the training data (``problem.data``, or ``data``) in train mode
    (``momentum=None`` during the pass; the model's settings are restored after). Other
    buffers keep the objective's values.

    Returns:
        the objective's buffers with the BatchNorm ones replaced (name -> tensor, in their
        own dtypes).

    Example::

        new = recompute_batchnorm(obj, theta)
        obj.with_buffers(new, source="recomputed").evaluate(theta)
    """
    bns = [
        (name, m)
        for name, m in objective.model.named_modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    out = {n: t.clone() for n, t in objective.buffers().items()}
    if not bns:
        return out
    dtype = theta.dtype
    fresh: dict[str, torch.Tensor] = {}
    for name, _ in bns:
        p = f"{name}." if name else ""
        own = objective.buffers()
        fresh[p + "running_mean"] = torch.zeros_like(own[p + "running_mean"], dtype=dtype)
        fresh[p + "running_var"] = torch.ones_like(own[p + "running_var"], dtype=dtype)
        fresh[p + "num_batches_tracked"] = torch.zeros_like(own[p + "num_batches_tracked"])
    train = _train_objective(objective, data, batch_size)
    state = {
        n: (t.to(dtype) if t.is_floating_point() else t).clone()
        for n, t in objective.buffers().items()
    }
    state.update(fresh)  # the pass updates these tensors in place
    saved = [(m, m.momentum) for _, m in bns]
    try:
        for _, m in bns:
            m.momentum = None  # cumulative average: exact over the pass
        with torch.no_grad():
            for b in range(train.n_batches):
                inputs, _ = train.batch(b, dtype)
                train.forward(theta.detach(), inputs, buffers=state)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
    out.update({n: t.to(out[n].dtype) for n, t in fresh.items()})
    return out


def _train_objective(objective: Objective, data: Any, batch_size: int | None) -> Objective:
    """The objective's model in train mode on the training data (staged once per objective)."""
    cache = objective.__dict__.setdefault("_weightspace_train_objective", {})
    key = (id(data), batch_size)
    if key not in cache:
        problem = objective.problem
        cache[key] = Objective(
            problem,
            "train",
            layout=objective.layout,
            data=problem.data if data is None else data,
            batch_size=batch_size,
            device=objective.device,
        )
    return cache[key]


def recomputed(objective: Objective) -> StateFn | None:
    """``state(indices, thetas)``: BatchNorm statistics re-estimated at every point."""
    if not len(objective.buffer_layout):
        return None
    layout = objective.buffer_layout

    def state(idx: np.ndarray, thetas: torch.Tensor) -> torch.Tensor:
        return torch.stack([layout.flatten(recompute_batchnorm(objective, t)) for t in thetas])

    return state
