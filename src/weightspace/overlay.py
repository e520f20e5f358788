"""Points and trajectories under a landscape: the loss at given parameter vectors, and runs
drawn on a plane with their off-plane residual and their true loss beside the plane's.

Evaluated by the same engine as the grids (:mod:`weightspace.landscape`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .directions import as_vector, plane_coordinates
from .errors import WeightspaceError
from .landscape import PlaneTrajectory, _affine_writer, _prepare, _run
from .objective import Objective


def points_losses(
    objective: Objective, points: Any, *, check: bool = False, **options: Any
) -> np.ndarray:
    """Mean loss at each of ``points``, through the same engine as the grids.

    Args:
        points: ``(T, n)`` tensor or array, or a :class:`~weightspace.Trajectory` (its
            snapshots, read one at a time, in float32).

    Returns:
        ``(T,)`` float64 mean losses (NaN where not finite).
    """
    n = objective.layout.numel
    if hasattr(points, "snapshot"):
        traj = points
        count, dtype = len(traj), torch.float32

        def write(idx: np.ndarray, out: torch.Tensor) -> None:
            for r, i in enumerate(idx.tolist()):
                out[r].copy_(traj.theta(i, dtype=out.dtype, device=out.device))

        first = traj.theta(0)
        key: tuple[Any, ...] = (str(traj.path), traj.steps, np.asarray(traj.snapshot(-1)))
    else:
        t = points if isinstance(points, torch.Tensor) else torch.as_tensor(np.asarray(points))
        t = t.detach().reshape(1, -1) if t.ndim == 1 else t.detach()
        if t.ndim != 2 or t.shape[1] != n:
            raise WeightspaceError(
                f"points: expected shape (T, {n}), got {tuple(t.shape)}; use vectors laid out "
                "like the objective's parameters"
            )
        dtype = t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32
        t = t.to(dtype=dtype, device=objective.device)
        count, first, key = t.shape[0], t[0], (t,)

        def write(idx: np.ndarray, out: torch.Tensor) -> None:
            out.copy_(t[torch.as_tensor(idx, device=t.device)])

    c = as_vector(first, n, "points[0]", dtype=dtype, device=objective.device)
    values, *_ = _run(objective, c, write, count, key, check, options, "points")
    return values


def trajectories_on_plane(
    objective: Objective,
    trajectories: Sequence[Any],
    center: Any,
    d1: Any,
    d2: Any,
    *,
    names: Sequence[str] | None = None,
    losses: bool = True,
    **options: Any,
) -> tuple[PlaneTrajectory, ...]:
    """Runs drawn on a plane: coordinates, residuals, true loss beside the plane's loss.

    Args:
        objective: the loss the surface shows.
        trajectories: :class:`~weightspace.Trajectory` objects or ``(T, n)`` arrays.
        center, d1, d2: the plane.
        names: labels (default: run directory names, or ``run0``, ``run1``, ...).
        losses: evaluate the true and the projected loss of every snapshot (2T points
            per run); False leaves them NaN.
        **options: engine options, as in :func:`evaluate_plane` (no checkpoints).

    Returns:
        one :class:`PlaneTrajectory` per run.
    """
    c, (v1, v2) = _prepare(objective, center, {"d1": d1, "d2": d2})
    out = []
    for k, traj in enumerate(trajectories):
        coords, residual = plane_coordinates(traj, c, v1, v2)
        is_run = hasattr(traj, "snapshot")
        steps = np.asarray(traj.steps) if is_run else np.arange(len(coords))
        name = names[k] if names is not None else (Path(traj.path).name if is_run else f"run{k}")
        nan = np.full(len(coords), np.nan)
        true = plane = nan
        if losses:
            true = points_losses(objective, traj, **options)
            write = _affine_writer(c, [v1, v2], coeffs=coords)
            plane, *_ = _run(
                objective, c, write, len(coords), (c, v1, v2, coords), False, options, "plane"
            )
        out.append(PlaneTrajectory(name, steps, coords, residual, true, plane))
    return tuple(out)
