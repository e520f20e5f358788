"""Static figures of loss surfaces and lines (matplotlib on the Agg canvas, never shown).

Every figure function takes ``ax=None`` and returns ``(fig, ax)``: with ``ax`` given it draws
there, otherwise on a new :class:`matplotlib.figure.Figure`. Surfaces follow the grid
convention of the landscape results: ``values[j, i]`` is the value at ``(xs[i], ys[j])``,
as in ``matplotlib.axes.Axes.contour(xs, ys, values)``. Non-finite values (divergent points)
are drawn as gaps.

Figures of projections (PCA spectra, PC pairs, embeddings, metrics; private ``_paths``),
of curvature (eigenvalue densities, top eigenvalues; ``_spectra``) and of lines
(``_line``) are defined in private modules and exported here.

Example:
    >>> import numpy as np
    >>> from weightspace.render import static
    >>> xs, ys = np.linspace(-1, 1, 21), np.linspace(-1, 1, 11)
    >>> fig, ax = static.plot_surface_contour(xs, ys, xs[None] ** 2 + ys[:, None] ** 2)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib import colors as mcolors

from ..errors import WeightspaceError
from ..store import atomic_path
from ._common import (
    check_grid,
    check_trajectories,
    new_figure,
    new_or_given,
    prepare_values,
    run_color,
    short_label,
    trajectory_z,
    value_label,
)
from ._line import barrier_point, plot_line
from ._paths import (
    plot_embeddings,
    plot_metrics_panel,
    plot_parametric_3d,
    plot_pc_pairs,
    plot_pca_spectrum,
)
from ._spectra import plot_density, plot_density_heatmap, plot_top_eigenvalues

__all__ = [
    "barrier_point",
    "plot_contour_and_mesh",
    "plot_density",
    "plot_density_heatmap",
    "plot_embeddings",
    "plot_line",
    "plot_metrics_panel",
    "plot_parametric_3d",
    "plot_pc_pairs",
    "plot_pca_spectrum",
    "plot_surface_3d",
    "plot_surface_contour",
    "plot_top_eigenvalues",
    "save_figure",
]

logger = logging.getLogger(__name__)

FORMATS = ("png", "svg", "pdf")


# legends outside the data they would otherwise hide: below the axes (under the x label)
LEGEND_BELOW = {"fontsize": 7, "loc": "upper center", "bbox_to_anchor": (0.5, -0.14),
                "frameon": False}  # fmt: skip


def plot_surface_contour(
    xs: Any,
    ys: Any,
    values: Any,
    trajectories: Any = None,
    *,
    log: bool = False,
    clip: float | None = None,
    levels: int = 20,
    color_by: Literal["step", "loss"] = "step",
    cmap: str = "viridis",
    axis_titles: tuple[str, str, str] = ("α (direction 1)", "β (direction 2)", "loss"),
    title: str | None = None,
    ax: Any = None,
):
    """Filled contour plus contour lines of a surface, with trajectories drawn on it.

    Args:
        xs: (nx,) first grid axis, increasing.
        ys: (ny,) second grid axis, increasing.
        values: (ny, nx) ``values[j, i]`` at ``(xs[i], ys[j])``; NaN/inf are left blank.
        trajectories: None, one :class:`~weightspace.landscape.PlaneTrajectory` or a list of
            them (a surface's ``trajectories``; for bare coordinates build one with
            :func:`weightspace.render.plane_trajectory`). Points are coloured by step or
            loss; the start is a circle, the end a star; the legend of runs sits below the
            axes.
        log: draw ``log10(values)`` (values must be positive).
        clip: values above ``clip`` are drawn at ``clip`` (divergent regions stay blank).
        levels: number of contour levels.
        color_by: colour trajectory points by ``"step"`` or by ``"loss"``.
        cmap: colour map of the surface.
        axis_titles: labels of the x axis, the y axis and the values (the colour bar).
        title: optional title.
        ax: a 2-D Axes to draw on, or None for a new figure.

    Returns:
        ``(fig, ax)``.

    Raises:
        WeightspaceError: bad shapes, trajectories that are not PlaneTrajectory objects,
            ``log`` with non-positive values, or ``color_by="loss"`` for a trajectory without
            a finite ``loss``.
    """
    xs, ys, values = check_grid(xs, ys, values)
    z = prepare_values(values, log, clip)
    trajs = check_trajectories(trajectories)
    if color_by not in ("step", "loss"):
        raise WeightspaceError(f"color_by: expected 'step' or 'loss', got {color_by!r}")
    if color_by == "loss" and any(not np.any(np.isfinite(t.loss)) for t in trajs):
        raise WeightspaceError(
            "color_by: 'loss' needs finite loss values in every trajectory, got a trajectory "
            "without; give each its loss or use 'step'"
        )
    xlabel, ylabel, value_name = _titles(axis_titles)
    fig, ax = new_or_given(ax, (6.0, 4.8))
    filled = ax.contourf(xs, ys, z, levels=levels, cmap=cmap)
    ax.contour(
        xs, ys, z, levels=filled.levels, colors="k", linewidths=0.4, alpha=0.5, linestyles="solid"
    )
    fig.colorbar(filled, ax=ax, label=value_label(value_name, log, clip))
    n_bad = int(np.isnan(z).sum())
    if n_bad:
        ax.text(
            0.01,
            0.01,
            f"{n_bad} divergent points left blank",
            transform=ax.transAxes,
            fontsize=7,
            va="bottom",
        )
    if trajs:
        _draw_trajectories(fig, ax, trajs, color_by)
    ax.set(xlim=(xs[0], xs[-1]), ylim=(ys[0], ys[-1]), xlabel=xlabel, ylabel=ylabel)
    if title:
        ax.set_title(title)
    return fig, ax


def _titles(axis_titles: Any) -> tuple[str, str, str]:
    if isinstance(axis_titles, str) or len(axis_titles) != 3:
        raise WeightspaceError(
            f"axis_titles: expected three labels (x, y, values), got {axis_titles!r}; pass "
            "e.g. ('α', 'β', 'loss')"
        )
    return tuple(str(t) for t in axis_titles)


def _draw_trajectories(fig, ax, trajs, color_by) -> None:
    key = "steps" if color_by == "step" else "loss"
    allc = np.concatenate([getattr(t, key) for t in trajs])
    allc = allc[np.isfinite(allc)]
    norm = mcolors.Normalize(*(allc.min(), allc.max()) if allc.size else (0, 1))
    sc = None
    for r, t in enumerate(trajs):
        color = run_color(r)
        label = short_label(t.name)  # how far it is from the plane: the report's table
        x, y = t.coords[:, 0], t.coords[:, 1]
        ax.plot(x, y, color=color, lw=1.2, label=label, zorder=3)
        sc = ax.scatter(
            x,
            y,
            c=getattr(t, key),
            cmap="plasma",
            norm=norm,
            s=12,
            edgecolors=color,
            linewidths=0.5,
            zorder=4,
        )
        ax.plot(x[0], y[0], "o", ms=7, mfc="white", mec=color, zorder=5)
        ax.plot(x[-1], y[-1], "*", ms=11, mfc=color, mec="k", mew=0.5, zorder=5)
    fig.colorbar(sc, ax=ax, label=color_by, location="right", shrink=0.8, pad=0.02)
    ax.plot([], [], "o", mfc="white", mec="k", label="start")
    ax.plot([], [], "*", mfc="grey", mec="k", label="end")
    ax.legend(**LEGEND_BELOW, ncols=min(4, len(trajs) + 2))


def plot_surface_3d(
    xs: Any,
    ys: Any,
    values: Any,
    trajectories: Any = None,
    *,
    log: bool = False,
    clip: float | None = None,
    cmap: str = "viridis",
    axis_titles: tuple[str, str, str] = ("α", "β", "loss"),
    title: str | None = None,
    ax: Any = None,
):
    """3-D mesh of a surface, with trajectories drawn at their loss.

    Args:
        xs: (nx,) first grid axis.
        ys: (ny,) second grid axis.
        values: (ny, nx) ``values[j, i]`` at ``(xs[i], ys[j])``; NaN/inf are left out.
        trajectories: as in :func:`plot_surface_contour`; a trajectory's height is its
            ``plane_loss`` (the loss at its projection) where that has finite values, else its
            true ``loss`` where that has, else the surface interpolated under it.
        log: draw ``log10(values)``.
        clip: values above ``clip`` are drawn at ``clip``.
        cmap: colour map.
        axis_titles: labels of the x axis, the y axis and the values (the z axis).
        title: optional title.
        ax: a 3-D Axes (``fig.add_subplot(projection="3d")``), or None.

    Returns:
        ``(fig, ax)``.
    """
    xs, ys, values = check_grid(xs, ys, values)
    z = prepare_values(values, log, clip)
    trajs = check_trajectories(trajectories)
    xlabel, ylabel, value_name = _titles(axis_titles)
    fig, ax = new_or_given(ax, (6.0, 5.0), three_d=True)
    gx, gy = np.meshgrid(xs, ys)  # (ny, nx), like values
    masked = np.ma.masked_invalid(z)
    ax.plot_surface(
        gx,
        gy,
        masked,
        cmap=cmap,
        linewidth=0.2,
        edgecolor="k",
        alpha=0.85,
        rcount=min(ys.size, 60),
        ccount=min(xs.size, 60),
        vmin=float(masked.min()),
        vmax=float(masked.max()),
    )
    for r, t in enumerate(trajs):
        tz = trajectory_z(t, xs, ys, z, log, clip)
        ax.plot(
            t.coords[:, 0], t.coords[:, 1], tz, color=run_color(r), lw=2, label=short_label(t.name)
        )
        ax.scatter(
            t.coords[-1:, 0], t.coords[-1:, 1], tz[-1:], marker="*", s=60, color=run_color(r)
        )
    if trajs:
        ax.legend(**LEGEND_BELOW, ncols=min(3, len(trajs)))
    ax.set(xlabel=xlabel, ylabel=ylabel, zlabel=value_label(value_name, log, clip))
    if title:
        ax.set_title(title)
    return fig, ax


def plot_contour_and_mesh(
    xs: Any, ys: Any, values: Any, trajectories: Any = None, *, ax: Any = None, **kwargs: Any
):
    """Contour (left) and 3-D mesh (right) of the same surface, side by side.

    Args:
        xs: (nx,) first grid axis.
        ys: (ny,) second grid axis.
        values: (ny, nx) surface values.
        trajectories: as in :func:`plot_surface_contour`.
        ax: None, or a pair ``(ax_2d, ax_3d)`` to draw on.
        **kwargs: ``log``, ``clip``, ``cmap``, ``axis_titles``, ``title`` for both panels.

    Returns:
        ``(fig, (ax_2d, ax_3d))``.
    """
    if ax is None:
        fig = new_figure((11.0, 4.6))
        ax = (fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2, projection="3d"))
        ax[1].set_box_aspect(None, zoom=0.85)
    elif len(ax) != 2:
        raise WeightspaceError(f"ax: expected a pair (ax_2d, ax_3d), got {len(ax)} axes")
    fig, a2 = plot_surface_contour(xs, ys, values, trajectories, ax=ax[0], **kwargs)
    _, a3 = plot_surface_3d(xs, ys, values, trajectories, ax=ax[1], **kwargs)
    return fig, (a2, a3)


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Write a figure to ``path`` atomically; the format follows the suffix.

    Args:
        fig: a matplotlib Figure (or SubFigure, whose whole figure is saved).
        path: destination ending in ``.png``, ``.svg`` or ``.pdf``.
        dpi: resolution of raster output.

    Returns:
        The path written.

    Raises:
        WeightspaceError: an unknown suffix or a missing directory.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise WeightspaceError(
            f"path: expected a name ending in .png, .svg or .pdf, got {str(path)!r}; "
            "change the suffix"
        )
    if not path.parent.is_dir():
        raise WeightspaceError(
            f"path: directory {str(path.parent)!r} does not exist; create it first"
        )
    fig = getattr(fig, "figure", fig) or fig
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    logger.debug("wrote %s", path)
    return path
