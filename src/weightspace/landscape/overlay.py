"""Points and trajectories under a landscape: plane coordinates by least squares with the
off-plane residual, the loss at given parameter vectors, and runs drawn on a plane with their
true loss beside the plane's.

Evaluated by the same engine as the grids (:mod:`weightspace.landscape`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..buffers import snapshot_states
from ..checks import as_vector
from ..directions import cosine
from ..errors import LayoutMismatchError, WeightspaceError
from ..objective import Objective
from ._engine import EngineOptions
from .grid import _affine_writer, _prepare, _run
from .results import PlaneTrajectory

__all__ = [
    "plane_coordinates",
    "plane_extent",
    "points_losses",
    "snapshots_evaluation",
    "trajectories_on_plane",
]


def points_losses(
    objective: Objective,
    points: Any,
    *,
    check: bool = False,
    engine: EngineOptions | Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Mean loss at each of ``points``, through the same engine as the grids.

    Args:
        points: ``(T, n)`` tensor or array (each point reads the objective's buffers), or a
            :class:`~weightspace.Trajectory` (its snapshots, read one at a time, in float32,
            each with its own recorded buffers).

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
        state = snapshot_states(objective, traj)
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
        state = None

        def write(idx: np.ndarray, out: torch.Tensor) -> None:
            out.copy_(t[torch.as_tensor(idx, device=t.device)])

    c = as_vector(first, n, "points[0]", dtype=dtype, device=objective.device)
    opts = EngineOptions.of(engine)
    values, *_ = _run(
        objective, c, write, count, key, "points", check=check, engine=opts, state=state
    )
    return values


def snapshots_evaluation(
    objective: Objective,
    traj: Any,
    indices: Sequence[int] | None = None,
    *,
    engine: EngineOptions | Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mean loss, its standard error over batches, and accuracy (classification) at
    snapshots of a run, each read with its own recorded buffers, through the grid engine.

    Args:
        traj: a :class:`~weightspace.Trajectory`.
        indices: snapshot indices (default: all).

    Returns:
        ``(values, stderr, accuracy)``, each ``(m,)`` float64 (accuracy None for a regression
        objective); NaN where the loss is not finite.
    """
    idx = np.arange(len(traj)) if indices is None else np.asarray(list(indices), dtype=np.int64)
    if idx.size == 0:
        raise WeightspaceError("indices: no snapshot selected; give at least one")
    n = objective.layout.numel
    run_state = snapshot_states(objective, traj)

    def write(rows: np.ndarray, out: torch.Tensor) -> None:
        for r, i in enumerate(idx[rows].tolist()):
            out[r].copy_(traj.theta(i, dtype=out.dtype, device=out.device))

    def state(rows: np.ndarray, thetas: torch.Tensor) -> torch.Tensor:
        return run_state(idx[rows], thetas)

    dtype = objective.theta0.dtype  # the model's own precision
    first = as_vector(traj.theta(int(idx[0]), dtype=dtype), n, "snapshot", device=objective.device)
    key = ("snapshots", str(traj.path), np.asarray(traj.steps)[idx], np.asarray(traj.snapshot(-1)))
    values, stderr, acc, *_ = _run(
        objective, first, write, len(idx), key, "snapshots", check=False,
        engine=EngineOptions.of(engine), state=None if run_state is None else state,
    )  # fmt: skip
    return values, stderr, acc


def trajectories_on_plane(
    objective: Objective,
    trajectories: Sequence[Any],
    center: Any,
    d1: Any,
    d2: Any,
    *,
    names: Sequence[str] | None = None,
    losses: bool = True,
    engine: EngineOptions | Mapping[str, Any] | None = None,
) -> tuple[PlaneTrajectory, ...]:
    """Runs drawn on a plane: coordinates, residuals, true loss beside the plane's loss.

    The true loss of a recorded snapshot reads that snapshot's own buffers (BatchNorm
    statistics); the loss at its projection reads the objective's, as the surface does.

    Args:
        objective: the loss the surface shows (with the surface's buffers).
        trajectories: :class:`~weightspace.Trajectory` objects or ``(T, n)`` arrays.
        center, d1, d2: the plane.
        names: labels (default: run directory names, or ``run0``, ``run1``, ...).
        losses: evaluate the true and the projected loss of every snapshot (2T points
            per run); False leaves them NaN.
        engine: how to evaluate, as in :func:`evaluate_plane`.

    Returns:
        one :class:`PlaneTrajectory` per run.
    """
    opts = EngineOptions.of(engine)
    c, (v1, v2) = _prepare(objective, center, {"d1": d1, "d2": d2})
    out = []
    for k, traj in enumerate(trajectories):
        coords, residual, distance = _fit_plane(traj, c, v1, v2)
        is_run = hasattr(traj, "snapshot")
        steps = np.asarray(traj.steps) if is_run else np.arange(len(coords))
        name = names[k] if names is not None else (Path(traj.path).name if is_run else f"run{k}")
        nan = np.full(len(coords), np.nan)
        true = plane = nan
        if losses:
            true = points_losses(objective, traj, engine=opts)
            write = _affine_writer(c, [v1, v2], coeffs=coords)
            key = (c, v1, v2, coords)
            plane, *_ = _run(
                objective, c, write, len(coords), key, "plane", check=False, engine=opts
            )
        out.append(PlaneTrajectory(name, steps, coords, residual, true, plane, distance))
    return tuple(out)


# ---------------------------------------------------------------------------- plane coordinates
def _iter_points(points: Any, n: int):
    """Yield ``(n,)`` float64 tensors from a Trajectory, a ``(T, n)``/``(n,)`` array or a list."""
    if hasattr(points, "snapshot") and hasattr(points, "__len__"):  # a Trajectory
        for i in range(len(points)):
            yield torch.from_numpy(np.array(points.snapshot(i), dtype=np.float64))
        return
    if isinstance(points, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(points.detach() if isinstance(points, torch.Tensor) else points)
        if t.ndim == 1:
            t = t[None]
        if t.ndim != 2 or t.shape[1] != n:
            raise LayoutMismatchError(
                f"points: expected shape (T, {n}) or ({n},), got {tuple(t.shape)}; use "
                "vectors laid out like the centre"
            )
        yield from t.to(torch.float64)
        return
    for i, p in enumerate(points):
        yield as_vector(p, n, f"points[{i}]", dtype=torch.float64)


def plane_coordinates(points: Any, center: Any, d1: Any, d2: Any) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of points on the plane ``center + a*d1 + b*d2``, by least squares.

    The coordinates are in grid units (``theta ~ center + a*d1 + b*d2``, the units of a
    surface's ``xs`` and ``ys``), found by a QR factorisation of ``[d1 d2]`` in float64, so
    they are right for directions of any length and for non-orthogonal directions.

    Args:
        points: ``(T, n)`` or ``(n,)`` tensor/array, a list of ``(n,)`` vectors, or a
            :class:`~weightspace.Trajectory` (read snapshot by snapshot).
        center: ``(n,)`` the plane's origin.
        d1, d2: ``(n,)`` the plane's directions.

    Returns:
        ``coords: (T, 2)`` the ``(a, b)`` of each point and ``residual: (T,)`` its relative
        off-plane distance ``||theta - c - a d1 - b d2|| / ||theta - c||`` (0 at the centre).

    Raises:
        WeightspaceError: mismatched shapes, or parallel or zero directions.

    Example:
        >>> c, d1, d2 = torch.zeros(3), torch.tensor([2.0, 0, 0]), torch.tensor([0, 1.0, 0])
        >>> coords, res = plane_coordinates(torch.tensor([[1.0, 3.0, 0.0]]), c, d1, d2)
        >>> coords.round(6).tolist(), res.round(6).tolist()
        ([[0.5, 3.0]], [0.0])
    """
    coords, residual, _ = _fit_plane(points, center, d1, d2)
    return coords, residual


def _fit_plane(points: Any, center: Any, d1: Any, d2: Any) -> tuple[np.ndarray, ...]:
    """:func:`plane_coordinates`, and each point's distance ``||theta - c||`` too."""
    c = as_vector(center, int(np.shape(center)[-1]), "center", dtype=torch.float64)
    n = c.shape[0]
    basis = torch.stack(
        [as_vector(d, n, name, dtype=torch.float64) for d, name in ((d1, "d1"), (d2, "d2"))]
    )
    norms = torch.linalg.vector_norm(basis, dim=1)
    if not bool((norms > 0).all()):
        raise WeightspaceError("d1, d2: a direction has zero norm; give nonzero directions")
    q, r = torch.linalg.qr(basis.T)  # (n, 2), (2, 2)
    if abs(float(r[1, 1])) <= 1e-10 * float(norms[1]):
        raise WeightspaceError(
            f"d1, d2: parallel (cosine {cosine(basis[0], basis[1]):.12f}); choose two "
            "independent directions"
        )
    coords, residual, distance = [], [], []
    for p in _iter_points(points, n):
        delta = p.to(c.device) - c
        y = q.T @ delta
        coords.append(torch.linalg.solve_triangular(r, y[:, None], upper=True)[:, 0])
        dist = float(torch.linalg.vector_norm(delta))
        off = float(torch.linalg.vector_norm(delta - q @ y))
        residual.append(off / dist if dist > 0 else 0.0)
        distance.append(dist)
    if not coords:
        raise WeightspaceError("points: no point given; give at least one (n,) vector")
    f64 = np.float64
    return torch.stack(coords).cpu().numpy(), np.asarray(residual, f64), np.asarray(distance, f64)


def plane_extent(
    coords: Sequence[np.ndarray] | np.ndarray, *, margin: float = 0.1
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Grid spans ``((-x, x), (-y, y))`` centred on the centre and covering every point, with
    a margin.

    The centre (the origin of the plane, usually the minimum a surface is drawn around) is
    the middle of each axis, so it is never at the edge of a picture, and with an odd number
    of grid points it is a grid point.

    Args:
        coords: ``(T, 2)`` coordinates, or a list of them (several runs).
        margin: extra share of each half-width (0.1: 10 %).

    Returns:
        the x and y spans; an axis along which every point sits at the centre gets
        ``[-1, 1]``.

    Example:
        >>> plane_extent(np.array([[-4.0, 0.5], [1.0, 1.0]]), margin=0.25)
        ((-5.0, 5.0), (-1.25, 1.25))
    """
    if margin < 0:
        raise WeightspaceError(f"margin: expected a non-negative number, got {margin}")
    arrays = [coords] if isinstance(coords, np.ndarray) else list(coords)
    pts = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1, 2) for a in arrays])
    half = np.abs(pts).max(axis=0) if len(pts) else np.zeros(2)
    half = np.where(half > 0, half * (1 + margin), 1.0)
    return (float(-half[0]), float(half[0])), (float(-half[1]), float(half[1]))
