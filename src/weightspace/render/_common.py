"""Input checks and small conversions shared by the renderers.

Render functions take plain arrays and typed results (a path on a plane is a
:class:`~weightspace.landscape.PlaneTrajectory`; :func:`plane_trajectory` builds one from bare
coordinates); everything here checks user input and turns arrays into float64 numpy arrays of
the documented shapes, or raises :class:`~weightspace.errors.WeightspaceError` with
a one-line message naming the argument.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..checks import as_array
from ..errors import WeightspaceError
from ..landscape.results import PlaneTrajectory


def check_grid(xs: Any, ys: Any, values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check a surface: ``xs (nx,)``, ``ys (ny,)``, ``values (ny, nx)`` with ``values[j, i]``
    at ``(xs[i], ys[j])``. Non-finite values (divergent points) become NaN.

    Raises:
        WeightspaceError: wrong shapes, fewer than 2 points per axis, or unsorted axes.
    """
    xs = as_array(xs, "xs", ndim=1)
    ys = as_array(ys, "ys", ndim=1)
    values = as_array(values, "values", ndim=2)
    for name, axis in (("xs", xs), ("ys", ys)):
        if axis.size < 2 or not np.all(np.isfinite(axis)) or np.any(np.diff(axis) <= 0):
            raise WeightspaceError(
                f"{name}: expected at least 2 finite, strictly increasing values, got "
                f"{axis.size} values; pass a grid axis such as np.linspace(-1, 1, 21)"
            )
    if values.shape != (ys.size, xs.size):
        hint = (
            "it looks transposed; pass values.T"
            if values.shape == (xs.size, ys.size)
            else "values[j, i] is the value at (xs[i], ys[j])"
        )
        raise WeightspaceError(
            f"values: expected shape (ny, nx) = ({ys.size}, {xs.size}), got {values.shape}; {hint}"
        )
    values = np.where(np.isfinite(values), values, np.nan)
    return xs, ys, values


def prepare_values(values: np.ndarray, log: bool, clip: float | None) -> np.ndarray:
    """Clip values above ``clip`` and take ``log10`` when asked; NaN stays NaN.

    Raises:
        WeightspaceError: ``log=True`` with non-positive values, or a non-finite ``clip``.
    """
    out = values.copy()
    if clip is not None:
        if not math.isfinite(float(clip)):
            raise WeightspaceError(f"clip: expected a finite number or None, got {clip!r}")
        out = np.minimum(out, float(clip))  # NaN propagates: divergent points stay gaps
    if log:
        finite = out[np.isfinite(out)]
        if finite.size and finite.min() <= 0:
            raise WeightspaceError(
                f"values: log=True needs positive values, got a minimum of {finite.min():.4g}; "
                "pass log=False"
            )
        out = np.log10(out)
    if not np.any(np.isfinite(out)):
        raise WeightspaceError(
            "values: every value is NaN or infinite (all points diverged); "
            "evaluate a smaller region"
        )
    return out


def value_label(name: str, log: bool, clip: float | None) -> str:
    label = f"log10 {name}" if log else name
    return f"{label} (clipped at {clip:.4g})" if clip is not None else label


TRAJECTORY_ARRAYS = ("steps", "residual", "loss", "plane_loss")


def plane_trajectory(
    coords: Any,
    *,
    name: str = "run",
    steps: Any = None,
    loss: Any = None,
    plane_loss: Any = None,
    residual: Any = None,
) -> PlaneTrajectory:
    """A :class:`~weightspace.landscape.PlaneTrajectory` from bare plane coordinates, for
    drawing paths that no landscape computed.

    Args:
        coords: ``(T, 2)`` coordinates on the plane, in grid units.
        name: the legend label.
        steps: ``(T,)`` training steps; default ``0 .. T-1``.
        loss: ``(T,)`` true loss at each point; default NaN (not known).
        plane_loss: ``(T,)`` loss at the projection; default NaN (not known).
        residual: ``(T,)`` relative off-plane distance; default NaN (not known).

    Returns:
        A PlaneTrajectory with float64 arrays.

    Raises:
        WeightspaceError: ``coords`` is not ``(T, 2)`` or another array is not ``(T,)``.

    Example:
        >>> import numpy as np
        >>> traj = plane_trajectory(np.zeros((3, 2)), name="sgd", loss=[3.0, 2.0, 1.0])
        >>> traj.steps, traj.plane_loss
        (array([0., 1., 2.]), array([nan, nan, nan]))
    """
    coords = _coords(coords, "coords")
    n = coords.shape[0]
    given = {"steps": steps, "loss": loss, "plane_loss": plane_loss, "residual": residual}
    arrays = {
        key: np.full(n, np.nan) if value is None else as_array(value, key, 1, n)
        for key, value in given.items()
    }
    if steps is None:
        arrays["steps"] = np.arange(n, dtype=np.float64)
    return PlaneTrajectory(name=str(name), coords=coords, **arrays)


def _coords(coords: Any, name: str) -> np.ndarray:
    coords = as_array(coords, name, ndim=2)
    if coords.shape[1] != 2 or coords.shape[0] < 1:
        raise WeightspaceError(
            f"{name}: expected shape (T, 2), got {coords.shape}; pass one row (a, b) per checkpoint"
        )
    return coords


def check_trajectories(trajectories: Any, name: str = "trajectories") -> list[PlaneTrajectory]:
    """``None``, one :class:`~weightspace.landscape.PlaneTrajectory` or a sequence of them,
    as a list; each is checked (``coords (T, 2)``, ``steps``, ``residual``, ``loss``,
    ``plane_loss`` all ``(T,)``) and returned as it is (fields given as lists or tensors
    are made float64 arrays in a copy).

    Raises:
        WeightspaceError: something other than PlaneTrajectory objects (dicts included), or a
            field of the wrong shape.
    """
    if trajectories is None:
        return []
    if isinstance(trajectories, (list, tuple)):
        return [_check_one(t, f"{name}[{r}]") for r, t in enumerate(trajectories)]
    return [_check_one(trajectories, name)]


def _check_one(traj: Any, name: str) -> PlaneTrajectory:
    if not isinstance(traj, PlaneTrajectory):
        raise WeightspaceError(
            f"{name}: expected a weightspace.landscape.PlaneTrajectory, got "
            f"{type(traj).__name__}; build one with "
            "weightspace.render.plane_trajectory(coords, name=..., loss=...)"
        )
    coords = _coords(traj.coords, f"{name}.coords")
    n = coords.shape[0]
    arrays = {key: as_array(getattr(traj, key), f"{name}.{key}", 1, n) for key in TRAJECTORY_ARRAYS}
    if all(type(getattr(traj, k)) is np.ndarray for k in ("coords", *TRAJECTORY_ARRAYS)):
        return traj
    return dataclasses.replace(traj, coords=coords, **arrays)


def as_runs(scores: Any, name: str, min_cols: int = 1) -> list[np.ndarray]:
    """One ``(T, k)`` array or a list of per-run ``(T_r, k)`` arrays with the same ``k``.

    Raises:
        WeightspaceError: shapes disagree or there are fewer than ``min_cols`` columns.
    """
    runs = [scores] if hasattr(scores, "shape") and np.ndim(scores) == 2 else list(scores)
    if not runs:
        raise WeightspaceError(f"{name}: expected at least one (T, k) array, got none")
    out = [as_array(s, f"{name}[{r}]", ndim=2) for r, s in enumerate(runs)]
    k = out[0].shape[1]
    for r, s in enumerate(out):
        if s.shape[1] != k or k < min_cols or s.shape[0] < 1:
            raise WeightspaceError(
                f"{name}[{r}]: expected shape (T, {max(k, min_cols)}) like run 0, got {s.shape}; "
                f"pass scores with the same {max(k, min_cols)}+ components for every run"
            )
    return out


def labels_for(labels: Any, n: int, name: str = "labels") -> list[str]:
    """``n`` labels: the given ones (checked for length) or ``run 0``, ``run 1``, ..."""
    if labels is None:
        return [f"run {r}" for r in range(n)]
    if isinstance(labels, str):
        labels = [labels]
    labels = [str(x) for x in labels]
    if len(labels) != n:
        raise WeightspaceError(f"{name}: expected {n} labels, got {len(labels)}; one per run")
    return labels


def interpolate_grid(
    xs: np.ndarray, ys: np.ndarray, values: np.ndarray, coords: np.ndarray
) -> np.ndarray:
    """Bilinear interpolation of ``values (ny, nx)`` at ``coords (T, 2)``; NaN outside."""
    from scipy.interpolate import RegularGridInterpolator

    f = RegularGridInterpolator((ys, xs), values, bounds_error=False, fill_value=np.nan)
    return f(coords[:, ::-1])


def short_label(name: object, limit: int = 28) -> str:
    """A legend label of at most ``limit`` characters (a long run name would squeeze the
    axes of a figure whose legend sits outside them)."""
    text = str(name)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def new_figure(figsize: tuple[float, float]):
    """A matplotlib ``Figure`` on the Agg canvas (no pyplot state, never shown)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def root_figure(ax: Any):
    """The top-level figure an Axes belongs to (also inside sub-figures)."""
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10
        fig = ax.figure
        return getattr(fig, "figure", fig) or fig


def check_ax(ax: Any, name: str = "ax", three_d: bool = False) -> Any:
    """Check that ``ax`` is a matplotlib Axes (a 3-D one when ``three_d``)."""
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise WeightspaceError(
            f"{name}: expected a matplotlib Axes or None, got {type(ax).__name__}; "
            "pass fig.add_subplot() or leave it out"
        )
    if three_d != (ax.name == "3d"):
        want, got = ("3-D", "2-D") if three_d else ("2-D", "3-D")
        fix = "fig.add_subplot(projection='3d')" if three_d else "fig.add_subplot()"
        raise WeightspaceError(f"{name}: expected a {want} Axes, got a {got} one; pass {fix}")
    return ax


def new_or_given(ax: Any, figsize: tuple[float, float], three_d: bool = False) -> tuple[Any, Any]:
    """``(fig, ax)``: the given Axes (checked) and its figure, or a new figure with one Axes."""
    if ax is None:
        fig = new_figure(figsize)
        if not three_d:
            return fig, fig.add_subplot()
        ax = fig.add_subplot(projection="3d")
        ax.set_box_aspect(None, zoom=0.85)  # room for the z label
        return fig, ax
    return root_figure(check_ax(ax, three_d=three_d)), ax


def axes_grid(
    ax: Any, n: int, ncols: int, figsize: tuple[float, float], projection: str | None = None
) -> tuple[Any, np.ndarray]:
    """``n`` axes: new ones on a grid of ``ncols`` columns, or the ``n`` given in ``ax``.

    Returns:
        ``(fig, axes)`` with ``axes`` a flat object array of length ``n``; extra new axes
        on the grid are switched off.
    """
    if ax is None:
        nrows = math.ceil(n / ncols)
        fig = new_figure((figsize[0] * ncols, figsize[1] * nrows))
        grid = [fig.add_subplot(nrows, ncols, q + 1, projection=projection) for q in range(n)]
        return fig, np.array(grid, dtype=object)
    axes = np.array(ax, dtype=object).ravel()
    if axes.size != n:
        raise WeightspaceError(
            f"ax: expected {n} Axes (one per panel), got {axes.size}; pass {n} axes or None"
        )
    for q, a in enumerate(axes):
        check_ax(a, f"ax[{q}]", three_d=projection == "3d")
    return root_figure(axes[0]), axes


RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")


def run_color(r: int) -> str:
    """A distinct colour for run ``r`` (cycles after 7 runs)."""
    return RUN_COLORS[r % len(RUN_COLORS)]


def trajectory_z(
    tr: PlaneTrajectory,
    xs: np.ndarray,
    ys: np.ndarray,
    surface: np.ndarray,
    log: bool,
    clip: float | None,
) -> np.ndarray:
    """Height of a trajectory over the drawn (clipped, logged) ``surface``: its loss at the
    projection (``plane_loss``) if it has finite values, else its true ``loss`` if that has,
    transformed like the surface; else the surface interpolated under it."""
    z = next((v for v in (tr.plane_loss, tr.loss) if np.any(np.isfinite(v))), None)
    if z is None:
        return interpolate_grid(xs, ys, surface, np.asarray(tr.coords, dtype=np.float64))
    z = np.where(np.isfinite(z), z, np.nan)
    if clip is not None:
        z = np.minimum(z, clip)
    return np.log10(np.where(z > 0, z, np.nan)) if log else z
