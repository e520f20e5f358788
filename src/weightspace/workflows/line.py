"""The loss along a line: from a run's start to its end, between two runs, or along a
direction (what ``weightspace line`` computes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..buffers import at_snapshot
from ..directions import (
    directions_from_vectors,
    interpolation_directions,
    load_directions,
    random_directions,
)
from ..errors import WeightspaceError
from ..landscape import EngineOptions, Line, check_point_count, evaluate_line, grid_axis
from ..objective import Objective
from ._runs import RunPoint, as_point, check_layouts, describe_point
from .surface import normalization_for

__all__ = ["line_between"]


def line_between(
    objective: Objective,
    start: RunPoint,
    end: RunPoint | None = None,
    *,
    direction: str | np.ndarray | torch.Tensor = "interp",
    alphas: tuple[float, float] | np.ndarray | None = None,
    points: int = 41,
    seed: int = 0,
    normalization: str | None = None,
    ignore: str | None = "biasbn",
    dtype: torch.dtype | None = None,
    engine: EngineOptions | dict[str, Any] | None = None,
    **evaluate: Any,
) -> Line:
    """The loss along ``start + α·d``, with the barrier and monotonicity on ``[0, 1]``.

    ``direction="interp"`` (Goodfellow et al. 2015) runs from ``start`` to ``end``: a run
    alone goes from its first snapshot to its last; ``end`` (a run: its last snapshot, or
    ``(run, step)``) goes from ``start`` (its last snapshot by default) to there. Each end
    reads its own recorded buffers and the points between them their interpolation
    (:mod:`weightspace.buffers`). ``"random"`` is a filter-normalised direction from
    ``start`` (its last snapshot); a ``.npy``/``.npz`` file or an ``(n,)`` array is used as
    it is unless a normalisation is asked for.

    Args:
        objective: the loss.
        start, end: points of runs (a run, or ``(run, step)``).
        direction: ``"interp"``, ``"random"``, a file or a vector.
        alphas: ``(lo, hi)`` (default ``(-0.5, 1.5)`` for interp, ``(-1, 1)`` otherwise), or
            the coordinates themselves.
        points: points on the line when ``alphas`` is a range.
        seed, normalization, ignore: as in :func:`~weightspace.surface_around`.
        dtype: the compute dtype (default: the model's).
        engine: :class:`~weightspace.EngineOptions` (or a mapping of its fields).
        **evaluate: passed to :func:`~weightspace.evaluate_line` (``recompute_bn``,
            ``checkpoint``, ``resume``, ``check``, ``metadata``).

    Returns:
        :class:`~weightspace.Line`.
    """
    engine = EngineOptions.of(engine)
    kind = direction if isinstance(direction, str) else "vector"
    if alphas is None or (isinstance(alphas, tuple) and len(alphas) == 2):
        lo, hi = alphas or ((-0.5, 1.5) if kind == "interp" else (-1.0, 1.0))
        check_point_count(points, "points")
        alphas = grid_axis(float(lo), float(hi), points, "alphas")
    s_traj, s_i = as_point(start, default=-1 if (end is not None or kind != "interp") else 0)
    check_layouts(objective, [s_traj])
    dtype = objective.theta0.dtype if dtype is None else dtype
    theta0 = s_traj.theta(s_i, dtype=dtype, device=objective.device)
    obj = at_snapshot(objective, s_traj, s_i)  # the start's buffers
    ends = {"start": describe_point(s_traj, s_i)}
    end_buffers = None
    norm, ign = normalization_for("random" if kind == "random" else "other", normalization, ignore)
    if kind == "interp":
        e_traj, e_i = as_point(s_traj if end is None else end)
        check_layouts(objective, [e_traj])
        ends["end"] = describe_point(e_traj, e_i)
        d = interpolation_directions(
            theta0, e_traj.theta(e_i, dtype=dtype, device=objective.device)
        )
        if len(obj.buffer_layout) and e_traj.records_buffers:
            end_buffers = e_traj.buffers(e_i)
    elif kind == "random":
        d = random_directions(theta0, obj.layout, 1, normalization=norm, ignore=ign, seed=seed)
    elif kind == "vector" or kind.endswith((".npy", ".npz")):
        if kind == "vector":
            d = directions_from_vectors(
                np.asarray(direction)[None], theta=theta0, layout=obj.layout,
                normalization=norm, ignore=ign, kind="vectors",
            )  # fmt: skip
        else:
            d = load_directions(kind, theta=theta0, layout=obj.layout, normalization=norm,
                                ignore=ign)  # fmt: skip
    else:
        raise WeightspaceError(
            f"direction: expected 'interp', 'random', a .npy/.npz file or an (n,) vector, "
            f"got {direction!r}"
        )
    meta = {
        "direction": d.describe(),
        "points": ends,
        "seed": seed,
        **dict(evaluate.pop("metadata", None) or {}),
    }
    return evaluate_line(
        obj, theta0, d[0], alphas, engine=engine, end_buffers=end_buffers, metadata=meta,
        **evaluate,
    )  # fmt: skip
