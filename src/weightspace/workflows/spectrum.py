"""Hessian spectra of a run: at chosen snapshots, or on the line to another run (what
``weightspace spectrum`` computes)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..buffers import at_snapshot
from ..curvature import CurvatureAlong, curvature_along, curvature_between
from ..errors import WeightspaceError
from ..objective import Objective
from ._runs import At, RunLike, RunPoint, as_point, as_run, check_layouts, select_indices

__all__ = ["spectrum_of_run"]


def spectrum_of_run(
    objective: Objective,
    run: RunLike,
    *,
    at: At = "final",
    between: RunPoint | None = None,
    points: int = 11,
    progress: bool = False,
    **settings: Any,
) -> CurvatureAlong:
    """Top eigenpairs, trace and spectral density of the Hessian at a run's snapshots.

    Every snapshot reads its own recorded buffers; the optimizer recorded with the run gives
    the stability threshold for ``λ_max·lr``. With ``between``, the points are instead
    ``points`` places on the line from the run's snapshot ``at`` (one) to ``between``
    (GradVis §3.4), their buffers interpolated.

    Args:
        objective: the loss (data, mode).
        run: the run.
        at: which snapshots: ``"final"``, ``"all"``, ``"every:K"``, a recorded step or a
            list of steps.
        between: a run (its last snapshot) or ``(run, step)``: the line's other end.
        points: points on the ``between`` line, both ends included.
        progress: show progress bars.
        **settings: the curvature settings of :func:`~weightspace.curvature_at`
            (``top_k``, ``which``, ``tol``, ``trace_probes``, ``density``, ``n_probes``,
            ``n_steps``, ``sigma``, ``seed``, ``dtype``, ``include``, ``method``,
            ``split``, ``block_size``, ...).

    Returns:
        :class:`~weightspace.CurvatureAlong` (saved as a ``"spectrum"`` result).

    Example::

        spec = ws.spectrum_of_run(obj, "runs/sgd", at="every:10", top_k=3)
    """
    traj = as_run(run)
    check_layouts(objective, [traj])
    indices = select_indices(traj, at)
    if between is None:
        out = curvature_along(objective, traj, indices=indices, progress=progress, **settings)
        return dataclasses.replace(out, metadata={**out.metadata, "at": at})
    if len(indices) != 1:
        raise WeightspaceError(
            f"at: the line to the other run needs one point of this run, got {at!r} "
            f"({len(indices)} points); use at='final' or a step"
        )
    other, j = as_point(between)
    check_layouts(objective, [other])
    dtype = settings.get("dtype") or objective.theta0.dtype
    a = traj.theta(indices[0], dtype=dtype, device=objective.device)
    b = other.theta(j, dtype=dtype, device=objective.device)
    obj = at_snapshot(objective, traj, indices[0])
    buffers_b = other.buffers(j) if len(obj.buffer_layout) and other.records_buffers else None
    out = curvature_between(obj, a, b, points, buffers_b=buffers_b, progress=progress, **settings)
    ends = {
        "run": str(traj.path),
        "step_a": int(traj.steps[indices[0]]),
        "between": str(other.path),
        "step_b": int(other.steps[j]),
    }
    return dataclasses.replace(out, metadata={**out.metadata, **ends, "at": at})
