"""Runs and points of runs, as the workflows take them.

A run is a run directory or a :class:`~weightspace.Trajectory`; a point of a run is a run
(one of its snapshots by default) or ``(run, step)``. Snapshot selections (``at=``) are
``"final"``, ``"all"``, ``"every:K"`` (every K-th and the last), a recorded step, or a list
of recorded steps.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import WeightspaceError
from ..objective import Objective
from ..trajectory import Trajectory

RunLike = str | os.PathLike | Trajectory
RunPoint = RunLike | tuple[RunLike, int | None]
At = str | int | Sequence[int]


def as_run(run: RunLike) -> Trajectory:
    """A Trajectory (loaded when given a directory)."""
    return run if isinstance(run, Trajectory) else Trajectory.load(run)


def as_runs(runs: RunLike | Sequence[RunLike], what: str = "runs") -> list[Trajectory]:
    """Trajectories, at least one; the same run twice is refused."""
    items = [runs] if isinstance(runs, (str, os.PathLike, Trajectory)) else list(runs)
    if not items:
        raise WeightspaceError(f"{what}: expected at least one run, got none")
    trajs = [as_run(r) for r in items]
    seen: dict[str, int] = {}
    for i, t in enumerate(trajs):
        key = os.path.realpath(t.path)
        if key in seen:
            raise WeightspaceError(
                f"{what}: run {str(t.path)!r} is given twice (positions {seen[key]} and {i}); "
                "give each run once"
            )
        seen[key] = i
    return trajs


def as_point(point: RunPoint, default: int = -1) -> tuple[Trajectory, int]:
    """``(trajectory, snapshot index)``: ``(run, step)`` picks that recorded step, a bare run
    its snapshot ``default`` (-1: the last)."""
    if isinstance(point, tuple):
        if len(point) != 2:
            raise WeightspaceError(f"point: expected a run or (run, step), got {point!r}")
        run, step = point
        traj = as_run(run)
        return traj, (default % len(traj)) if step is None else traj.index_of(step)
    traj = as_run(point)
    return traj, default % len(traj)


def as_points(points: RunPoint | Sequence[RunPoint]) -> list[RunPoint]:
    """A list of points: one run, one ``(run, step)``, or a sequence of either."""
    single = isinstance(points, (str, os.PathLike, Trajectory)) or (
        isinstance(points, tuple)
        and len(points) == 2
        and (points[1] is None or isinstance(points[1], int))
        and not isinstance(points[1], bool)
    )
    out = [points] if single else list(points)
    if not out:
        raise WeightspaceError("runs: expected at least one run, got none")
    return out


def select_indices(traj: Trajectory, at: At) -> list[int]:
    """Snapshot indices for ``at``: "final", "all", "every:K", a recorded step or steps.

    Raises:
        WeightspaceError: naming ``at`` and the forms it takes, or a step not in the run.
    """
    T = len(traj)
    if isinstance(at, str):
        if at == "final":
            return [T - 1]
        if at == "all":
            return list(range(T))
        if at.startswith("every:"):
            k = at.removeprefix("every:")
            if not k.isdigit() or int(k) < 1:
                raise WeightspaceError(
                    f"at: expected every:K with K a positive integer, got {at!r}"
                )
            out = list(range(0, T, int(k)))
            return out if out[-1] == T - 1 else [*out, T - 1]
        parts = at.split(",")
        if all(p.strip().isdigit() for p in parts):
            return [traj.index_of(int(p)) for p in parts]
        raise WeightspaceError(
            f"at: expected 'final', 'all', 'every:K', a recorded step or steps (e.g. "
            f"'100,200'), got {at!r}"
        )
    steps = [at] if isinstance(at, int) else list(at)
    if not steps or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps):
        raise WeightspaceError(f"at: expected a recorded step or a list of steps, got {at!r}")
    return [traj.index_of(s) for s in steps]


def check_layouts(objective: Objective, trajs: Sequence[Trajectory]) -> None:
    """Every run's layout matches the objective's model."""
    for t in trajs:
        t.layout.check_compatible(
            objective.layout, what=f"run {str(t.path)!r} vs the problem's model"
        )


def describe_point(traj: Trajectory, i: int) -> dict[str, Any]:
    return {"run": str(traj.path), "step": int(traj.steps[i])}
