"""Meshes of a loss surface for MeshLab, ParaView and OpenGL viewers: PLY and VTK.

The surface ``values (ny, nx)`` (``values[j, i]`` at ``(xs[i], ys[j])``) becomes ``nx·ny``
vertices, vertex ``j·nx + i`` at ``(xs[i], ys[j], z_scale·height)``, where the height is the
value after the optional clipping and ``log10``. Every vertex carries the raw ``loss``;
divergent (non-finite) points keep ``loss = NaN``, sit at the top of the surface and belong to
no face, so they show as holes. Files are written atomically through ``meshio``, an optional
dependency (``pip install meshio``).

Example:
    >>> import numpy as np
    >>> from weightspace.render import export
    >>> xs = np.linspace(-1, 1, 11)
    >>> path = export.write_ply("surface.ply", xs, xs, xs[None] ** 2 + xs[:, None] ** 2)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WeightspaceError
from ..store import atomic_path
from ._common import check_grid, check_trajectories, prepare_values, trajectory_z

__all__ = ["surface_mesh", "write_ply", "write_vtk"]

logger = logging.getLogger(__name__)

MESHIO_HINT = "install it with `pip install meshio` (or `pip install 'weightspace[export]'`)"


def _meshio():
    try:
        import meshio
    except ImportError:
        raise WeightspaceError(f"meshio is needed to write PLY/VTK files; {MESHIO_HINT}") from None
    return meshio


def surface_mesh(
    xs: Any,
    ys: Any,
    values: Any,
    *,
    log: bool = False,
    clip: float | None = None,
    z_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertices and quads of a surface.

    Args:
        xs: (nx,) first grid axis.
        ys: (ny,) second grid axis.
        values: (ny, nx) surface values.
        log: heights are ``log10(values)``.
        clip: heights above ``clip`` are cut to ``clip``.
        z_scale: factor applied to the heights.

    Returns:
        ``points (nx·ny, 3)``, ``quads (q, 4)`` int32 (only quads whose corners are all
        finite, counter-clockwise seen from +z), ``loss (nx·ny,)`` raw values and
        ``height (nx·ny,)`` the drawn heights before ``z_scale`` (NaN where divergent).
    """
    xs, ys, values = check_grid(xs, ys, values)
    height = prepare_values(values, log, clip)
    if not np.isfinite(z_scale) or z_scale == 0:
        raise WeightspaceError(f"z_scale: expected a finite non-zero number, got {z_scale}")
    nx, ny = xs.size, ys.size
    gx, gy = np.meshgrid(xs, ys)  # (ny, nx): vertex j*nx + i
    top = np.nanmax(height)
    z = np.where(np.isnan(height), top, height) * z_scale
    points = np.column_stack([gx.ravel(), gy.ravel(), z.ravel()])
    idx = np.arange(nx * ny).reshape(ny, nx)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], axis=-1)
    quads = quads.reshape(-1, 4)
    ok = np.isfinite(height.ravel())[quads].all(axis=1)
    return points, quads[ok].astype(np.int32), values.ravel(), height.ravel()


def _colors(height: np.ndarray, cmap: str) -> np.ndarray:
    """(m, 3) uint8 colours of the heights on ``cmap``; grey where NaN."""
    from matplotlib import colormaps

    lo, hi = np.nanmin(height), np.nanmax(height)
    t = (height - lo) / (hi - lo) if hi > lo else np.zeros_like(height)
    rgb = colormaps[cmap](np.nan_to_num(t, nan=0.0))[:, :3]
    rgb = np.round(rgb * 255).astype(np.uint8)
    rgb[np.isnan(height)] = 128
    return rgb


def _check_dir(path: Path, suffix: str) -> None:
    if path.suffix.lower() != suffix:
        raise WeightspaceError(
            f"path: expected a name ending in {suffix}, got {str(path)!r}; change the suffix"
        )
    if not path.parent.is_dir():
        raise WeightspaceError(f"path: directory {str(path.parent)!r} does not exist; create it")


def write_ply(
    path: str | os.PathLike,
    xs: Any,
    ys: Any,
    values: Any,
    *,
    log: bool = False,
    clip: float | None = None,
    z_scale: float = 1.0,
    cmap: str = "viridis",
    binary: bool = True,
) -> Path:
    """Write the surface as a PLY mesh with per-vertex loss colours (MeshLab, Blender).

    Vertices carry ``red``, ``green``, ``blue`` (uint8, the height on ``cmap``) and ``loss``
    (float64); faces are two triangles per grid cell with four finite corners.

    Args:
        path: destination ending in ``.ply``.
        xs: (nx,) first grid axis.
        ys: (ny,) second grid axis.
        values: (ny, nx) surface values.
        log: heights and colours from ``log10(values)``.
        clip: heights above ``clip`` are cut to ``clip``.
        z_scale: factor applied to the heights.
        cmap: matplotlib colour map of the vertex colours.
        binary: binary PLY (default) or ASCII.

    Returns:
        The path written.

    Raises:
        WeightspaceError: bad input, or meshio is not installed.
    """
    path = Path(path)
    _check_dir(path, ".ply")
    meshio = _meshio()
    points, quads, loss, height = surface_mesh(xs, ys, values, log=log, clip=clip, z_scale=z_scale)
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]]).astype(np.int32)
    rgb = _colors(height, cmap)
    point_data = {"red": rgb[:, 0], "green": rgb[:, 1], "blue": rgb[:, 2], "loss": loss}
    mesh = meshio.Mesh(points, [("triangle", tris)], point_data=point_data)
    with atomic_path(path) as tmp:
        meshio.write(tmp, mesh, file_format="ply", binary=binary)
    logger.debug("wrote %s (%d vertices, %d faces)", path, len(points), len(tris))
    return path


def write_vtk(
    path: str | os.PathLike,
    xs: Any,
    ys: Any,
    values: Any,
    trajectories: Any = None,
    *,
    log: bool = False,
    clip: float | None = None,
    z_scale: float = 1.0,
    binary: bool = True,
) -> Path:
    """Write the surface grid and trajectory polylines as a legacy VTK file (ParaView).

    Points ``0 .. nx·ny−1`` are the grid (quads); the points of trajectory ``r`` follow, in
    order, joined by line segments. Point data: ``loss`` (the grid's values; a trajectory's
    true ``loss``, NaN where not known), ``height`` (drawn height before ``z_scale``), ``run``
    (−1 on the grid, ``r`` on trajectory ``r``) and ``step`` (NaN on the grid).

    Args:
        path: destination ending in ``.vtk``.
        xs: (nx,) first grid axis.
        ys: (ny,) second grid axis.
        values: (ny, nx) surface values.
        trajectories: None, one :class:`~weightspace.landscape.PlaneTrajectory` or a list of
            them (for bare coordinates, :func:`weightspace.render.plane_trajectory`); a path
            is drawn at its ``plane_loss`` where that has finite values, else at its ``loss``,
            else on the surface.
        log: heights from ``log10(values)``.
        clip: heights above ``clip`` are cut to ``clip``.
        z_scale: factor applied to the heights.
        binary: binary (default) or ASCII VTK.

    Returns:
        The path written.

    Raises:
        WeightspaceError: bad input, or meshio is not installed.
    """
    path = Path(path)
    _check_dir(path, ".vtk")
    meshio = _meshio()
    xs_, ys_, vals = check_grid(xs, ys, values)
    points, quads, loss, height = surface_mesh(xs_, ys_, vals, log=log, clip=clip, z_scale=z_scale)
    trajs = check_trajectories(trajectories)
    surface = height.reshape(ys_.size, xs_.size)
    pts, lines = [points], []
    data = {"loss": [loss], "height": [height], "run": [np.full(len(loss), -1.0)]}
    data["step"] = [np.full(len(loss), np.nan)]
    start = len(points)
    for r, t in enumerate(trajs):
        n = t.coords.shape[0]
        tz = trajectory_z(t, xs_, ys_, surface, log, clip)
        tz = np.where(np.isfinite(tz), tz, np.nanmax(surface))  # off the grid: at the top
        pts.append(np.column_stack([t.coords, tz * z_scale]))
        lines.append(np.column_stack([np.arange(n - 1), np.arange(1, n)]) + start)
        data["loss"].append(t.loss)
        data["height"].append(tz)
        data["run"].append(np.full(n, float(r)))
        data["step"].append(t.steps)
        start += n
    cells = [("quad", quads)]
    if lines:
        cells.append(("line", np.concatenate(lines).astype(np.int32)))
    point_data = {k: np.concatenate(v).astype(np.float64) for k, v in data.items()}
    mesh = meshio.Mesh(np.concatenate(pts), cells, point_data=point_data)
    with atomic_path(path) as tmp:
        meshio.write(tmp, mesh, file_format="vtk", binary=binary)
    logger.debug("wrote %s (%d points, %d trajectories)", path, start, len(trajs))
    return path
