"""The surface around a run: a 2-D loss landscape centred on a recorded point, with the runs
drawn on it (what ``weightspace surface`` computes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..buffers import at_snapshot
from ..curvature import HessianOperator, top_eigenpairs
from ..directions import (
    Directions,
    directions_from_vectors,
    load_directions,
    plane_through,
    random_directions,
)
from ..errors import WeightspaceError
from ..landscape import (
    EngineOptions,
    Surface,
    check_point_count,
    evaluate_plane,
    grid_axis,
    plane_coordinates,
    plane_extent,
    trajectories_on_plane,
)
from ..objective import Objective
from ..projection import PCA
from ..trajectory import Trajectory
from ._runs import RunPoint, as_point, as_points, as_runs, check_layouts, describe_point

__all__ = ["normalization_for", "plane_directions", "surface_around"]

DIRECTION_KINDS = ("random", "pca", "eigen", "interp")
Span = (
    str | tuple[str, float] | tuple[float, float] | tuple[tuple[float, float], tuple[float, float]]
)


def normalization_for(kind: str, normalization: str | None, ignore: str | None):
    """Filter normalisation for random directions; PCA/eigen/interp/file vectors as they are
    unless a normalisation is asked for."""
    norm = normalization or ("filter" if kind == "random" else "none")
    if norm == "none" and kind != "random" and normalization is None:
        ignore = None
    return norm, ignore


def plane_directions(
    objective: Objective,
    trajs: Sequence[Trajectory],
    center: torch.Tensor,
    directions: str | Directions | np.ndarray,
    *,
    seed: int = 0,
    normalization: str | None = None,
    ignore: str | None = "biasbn",
) -> Directions:
    """The plane's two directions: random (filter-normalised), the runs' top PCs, the top
    Hessian eigenvectors at the centre, the plane through three recorded points, a file
    (``.npy`` of shape (2, n), or a surface/spectrum result ``.npz``), or given vectors."""
    layout = objective.layout
    if isinstance(directions, Directions):
        return _two(directions, "the given Directions")
    kind = "vectors" if isinstance(directions, (np.ndarray, torch.Tensor)) else str(directions)
    norm, ign = normalization_for("random" if kind == "random" else "other", normalization, ignore)
    if kind == "random":
        return random_directions(center, layout, 2, normalization=norm, ignore=ign, seed=seed)
    if kind == "interp":
        return _interp_plane(trajs, center.dtype, center.device)
    if kind in ("pca", "eigen", "vectors"):
        if kind == "vectors":
            vectors, meta = np.asarray(directions), {}
        elif kind == "pca":
            pca = PCA(n_components=2).fit(list(trajs) if len(trajs) > 1 else trajs[0])
            vectors = np.asarray(pca.components_)[:2]
            meta = {"explained_variance_ratio": np.asarray(pca.explained_variance_ratio_).tolist()}
        else:
            eig = top_eigenpairs(HessianOperator(objective, center), k=2, which="largest")
            vectors = eig.eigenvectors.detach().cpu().numpy()
            vectors = vectors if vectors.shape[0] == 2 else vectors.T
            meta = {"eigenvalues": [float(v) for v in eig.eigenvalues]}
        d = directions_from_vectors(
            vectors, theta=center, layout=layout, normalization=norm, ignore=ign,
            kind=kind, metadata=meta,
        )  # fmt: skip
        return _two(d, kind)
    if kind.endswith((".npy", ".npz")):
        d = load_directions(kind, theta=center, layout=layout, normalization=norm, ignore=ign)
        return _two(d, kind)
    raise WeightspaceError(
        f"directions: expected one of {', '.join(DIRECTION_KINDS)}, a .npy/.npz file, "
        f"vectors of shape (2, n) or Directions, got {directions!r}"
    )


def _two(d: Directions, what: str) -> Directions:
    if len(d) < 2:
        raise WeightspaceError(
            f"directions: {what} holds {len(d)} direction, a plane needs 2; give a (2, n) array"
        )
    return d if len(d) == 2 else dataclasses.replace(d, vectors=d.vectors[:2])


def _interp_plane(trajs: Sequence[Trajectory], dtype: torch.dtype, device) -> Directions:
    """Plane through three recorded points, centred on the first run's last point."""

    def th(t: Trajectory, i: int) -> torch.Tensor:
        return t.theta(i, dtype=dtype, device=device)

    if len(trajs) >= 3:
        pts = [th(t, -1) for t in trajs[:3]]
        desc = "final points of the first three runs"
    elif len(trajs) == 2:
        pts = [th(trajs[0], -1), th(trajs[0], 0), th(trajs[1], -1)]
        desc = "first run's final and initial points, second run's final point"
    else:
        t = trajs[0]
        if len(t) < 3:
            raise WeightspaceError(
                f"directions='interp': run {str(t.path)!r} has {len(t)} snapshots; a plane "
                "through one run needs 3, or give 2-3 runs"
            )
        pts = [th(t, -1), th(t, 0), th(t, len(t) // 2)]
        desc = "the run's final, initial and middle points"
    d = plane_through(*pts, orthogonalize=True)
    return dataclasses.replace(d, metadata={**d.metadata, "through": desc})


def _is_auto(span: Any) -> bool:
    return span == "auto" or (isinstance(span, tuple) and len(span) == 2 and span[0] == "auto")


def _axes(
    span: Span, grid: int | tuple[int, int], coords: list[np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    nx, ny = (grid, grid) if isinstance(grid, (int, np.integer)) else tuple(grid)
    grid_axis(-1.0, 1.0, nx, "grid")  # counts checked before any work
    grid_axis(-1.0, 1.0, ny, "grid")
    check_point_count(nx * ny, "grid")
    if isinstance(span, str) and span != "auto":
        raise WeightspaceError(
            f"span: expected 'auto', (lo, hi) or ((xlo, xhi), (ylo, yhi)), got {span!r}"
        )
    if _is_auto(span):
        margin = 0.1 if span == "auto" else float(span[1])
        if not coords:
            raise WeightspaceError(
                "span='auto': needs the trajectories on the plane (trajectories=True) or "
                "give span=(lo, hi)"
            )
        (x0, x1), (y0, y1) = plane_extent(coords, margin=margin)
        return grid_axis(x0, x1, nx, "span"), grid_axis(y0, y1, ny, "span"), True
    try:
        sx, sy = (span, span) if np.ndim(span) == 1 else span
        (x0, x1), (y0, y1) = ((float(a), float(b)) for a, b in (sx, sy))
    except (TypeError, ValueError):
        raise WeightspaceError(
            f"span: expected 'auto', (lo, hi) or ((xlo, xhi), (ylo, yhi)), got {span!r}"
        ) from None
    return grid_axis(x0, x1, nx, "span"), grid_axis(y0, y1, ny, "span"), False


def surface_around(
    objective: Objective,
    runs: RunPoint | Sequence[RunPoint],
    *,
    directions: str | Directions | np.ndarray = "random",
    span: Span = "auto",
    grid: int | tuple[int, int] = 25,
    seed: int = 0,
    normalization: str | None = None,
    ignore: str | None = "biasbn",
    trajectories: bool = True,
    dtype: torch.dtype | None = None,
    engine: EngineOptions | dict[str, Any] | None = None,
    **evaluate: Any,
) -> Surface:
    """The loss on a plane around a recorded point, with the runs drawn on it.

    The centre is the first run's last snapshot (or ``(run, step)``), evaluated with the
    buffers recorded there (BatchNorm statistics). Every run is placed on the plane by least
    squares, with its off-plane residual and its true loss beside the loss at its projection.

    Args:
        objective: the loss (model, data, mode).
        runs: run directories or Trajectories (the first may be ``(run, step)``).
        directions: ``"random"`` (filter-normalised, seeded), ``"pca"`` (the runs' top two
            PCs), ``"eigen"`` (top two Hessian eigenvectors at the centre), ``"interp"``
            (the plane through three recorded points), a ``.npy``/``.npz`` file, a ``(2, n)``
            array, or :class:`~weightspace.Directions`.
        span: ``"auto"`` (random directions, or no trajectories: ``(-1, 1)``; otherwise
            covering the trajectories and the centre with a margin of 10% of each axis'
            range on both sides), ``("auto", margin)`` for another margin, ``(lo, hi)`` for
            both axes, or ``((xlo, xhi), (ylo, yhi))``.
        grid: points per axis, or ``(nx, ny)``.
        seed, normalization, ignore: random directions' seed and normalisation (``None``:
            filter for random directions, none for the others).
        trajectories: draw the runs on the plane (their true and projected losses too).
        dtype: the compute dtype (default: the model's); ``torch.float64`` for accuracy.
        engine: :class:`~weightspace.EngineOptions` (or a mapping of its fields).
        **evaluate: passed to :func:`~weightspace.evaluate_plane` (``recompute_bn``,
            ``checkpoint``, ``resume``, ``check``, ``metadata``).

    Returns:
        the :class:`~weightspace.Surface`, its ``trajectories`` and ``directions`` filled in.

    Example::

        obj = ws.Objective(ws.zoo.problem("digits-mlp"))
        surf = ws.surface_around(obj, ["runs/a", "runs/b"], directions="pca")
    """
    engine = EngineOptions.of(engine)
    points = as_points(runs)
    first, ci = as_point(points[0])
    trajs = as_runs([first, *(p[0] if isinstance(p, tuple) else p for p in points[1:])])
    check_layouts(objective, trajs)
    random = isinstance(directions, str) and directions == "random"
    if _is_auto(span) and (random or not trajectories):
        span = (-1.0, 1.0)
    dtype = objective.theta0.dtype if dtype is None else dtype
    center = first.theta(ci, dtype=dtype, device=objective.device)
    obj = at_snapshot(objective, first, ci)  # the centre's buffers (BatchNorm statistics)
    dirs = plane_directions(
        obj, trajs, center, directions, seed=seed, normalization=normalization, ignore=ignore
    )
    coords = None
    if trajectories:
        coords = [plane_coordinates(t, center, dirs[0], dirs[1])[0] for t in trajs]
    xs, ys, auto = _axes(span, grid, coords)
    meta = {
        "directions": dirs.describe(),
        "center": describe_point(first, ci),
        "runs": [str(t.path) for t in trajs],
        "auto_span": auto,
        "seed": seed,
        **dict(evaluate.pop("metadata", None) or {}),
    }
    surf = evaluate_plane(
        obj, center, dirs[0], dirs[1], xs, ys, engine=engine, metadata=meta, **evaluate
    )
    if trajectories:
        on_plane = trajectories_on_plane(obj, trajs, center, dirs[0], dirs[1], engine=engine)
        surf = dataclasses.replace(surf, trajectories=on_plane)
    return surf
