"""Static figures of curvature: eigenvalue densities (one point, or a heat map along a run)
and the top eigenvalues against the stability threshold; exported by
:mod:`weightspace.render.static`.

Every function takes ``ax=None`` and returns ``(fig, ax)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import colors as mcolors

from ..errors import WeightspaceError
from ..optimizers import stability
from ._common import as_array, new_or_given


def _check_sigma(sigma: float) -> float:
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        raise WeightspaceError(f"sigma: expected the positive Gaussian width used, got {sigma}")
    return sigma


def plot_density(
    grid: Any,
    density: Any,
    sigma: float,
    band: Any = None,
    *,
    label: str | None = None,
    ax: Any = None,
):
    """Eigenvalue density on a log y axis, with the Gaussian width σ printed on the plot.

    Args:
        grid: (G,) eigenvalue positions.
        density: (G,) density at ``grid``.
        sigma: Gaussian width used to smooth the quadrature nodes.
        band: optional (2, G) lower and upper curves (e.g. the spread over probes).
        label: optional legend label.
        ax: a 2-D Axes or None.

    Returns:
        ``(fig, ax)``.
    """
    grid = as_array(grid, "grid", ndim=1)
    density = as_array(density, "density", ndim=1, length=grid.size)
    sigma = _check_sigma(sigma)
    top = np.nanmax(density) if np.any(density > 0) else 1.0
    floor = top * 1e-8  # log axis: densities below the floor are drawn at it
    fig, ax = new_or_given(ax, (6.0, 4.0))
    (line,) = ax.plot(grid, np.maximum(density, floor), label=label)
    if band is not None:
        band = as_array(band, "band", ndim=2, length=2)
        if band.shape[1] != grid.size:
            raise WeightspaceError(f"band: expected shape (2, {grid.size}), got {band.shape}")
        lo, hi = np.maximum(band, floor)
        ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.25, lw=0, label="spread")
    ax.set_yscale("log")
    ax.set(xlabel="eigenvalue", ylabel="density", ylim=(floor, top * 3))
    ax.text(0.98, 0.96, f"σ = {sigma:.3g}", transform=ax.transAxes, ha="right", va="top")
    if label is not None or band is not None:
        ax.legend(fontsize=8, loc="upper left")
    return fig, ax


def cell_edges(centres: Any) -> np.ndarray:
    """``(S + 1,)`` edges of cells around increasing ``centres``: halfway between neighbours,
    and the end cells centred on the end points (half a unit either side of a single centre).

    Example:
        >>> cell_edges([0, 150, 300]).tolist(), cell_edges([0, 10, 40]).tolist()
        ([-75.0, 75.0, 225.0, 375.0], [-5.0, 5.0, 25.0, 55.0])
        >>> cell_edges([600]).tolist()
        [599.5, 600.5]
    """
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[:-1] + c[1:]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def _sigma_title(sigma: np.ndarray) -> str:
    lo, hi = float(sigma.min()), float(sigma.max())
    return f"σ = {hi:.3g}" if lo == hi else f"σ per step, {lo:.3g} to {hi:.3g}"


def plot_density_heatmap(
    steps: Any, grid: Any, densities: Any, sigma: Any, *, xlabel: str = "step", ax: Any = None
):
    """Eigenvalue density along training as a heat map (log colour scale).

    Each step is a column of cells around it, its edges halfway to the neighbouring steps
    (:func:`cell_edges`; centred on the step when the steps are evenly spaced), so irregular
    steps keep their places; the x-limits are the first and the last step (the axis does not
    run past the run; one step alone: its cell).

    Args:
        steps: (S,) training steps, strictly increasing (one step: a cell one unit wide).
        grid: (G,) eigenvalue positions, increasing.
        densities: (S, G) density at each step.
        sigma: the Gaussian width used, one for all steps or (S,) one per step (each row
            smoothed with its own), printed on the plot.
        xlabel: what the steps are (``"step"``, ``"α"``).
        ax: a 2-D Axes or None.

    Returns:
        ``(fig, ax)``.

    Example:
        >>> g = np.linspace(0.0, 4.0, 41)
        >>> dens = np.exp(-((g[None] - np.array([[1.0], [2.0], [3.0]])) ** 2))
        >>> fig, ax = plot_density_heatmap([0, 10, 40], g, dens, [0.1, 0.2, 0.3])
        >>> [float(x) for x in ax.get_xlim()], ax.get_title()
        ([0.0, 40.0], 'eigenvalue density (σ per step, 0.1 to 0.3)')
    """
    steps = as_array(steps, "steps", ndim=1)
    grid = as_array(grid, "grid", ndim=1)
    densities = as_array(densities, "densities", ndim=2, length=steps.size)
    sig = as_array(sigma, "sigma")
    sig = np.full(steps.size, sig) if sig.ndim == 0 else as_array(sig, "sigma", 1, steps.size)
    for value in sig:
        _check_sigma(value)
    if densities.shape[1] != grid.size:
        raise WeightspaceError(
            f"densities: expected shape (S, G) = ({steps.size}, {grid.size}), "
            f"got {densities.shape}; one row per step"
        )
    if not np.isfinite(steps).all() or np.any(np.diff(steps) <= 0):
        raise WeightspaceError(
            f"steps: expected finite, strictly increasing steps, got {steps.tolist()}"
        )
    if grid.size < 2 or np.any(np.diff(grid) <= 0):
        raise WeightspaceError(
            f"grid: expected at least 2 increasing eigenvalue positions, got {grid.size}"
        )
    top = np.nanmax(densities) if np.any(densities > 0) else 1.0
    fig, ax = new_or_given(ax, (6.5, 4.0))
    xedges, yedges = cell_edges(steps), cell_edges(grid)
    mesh = ax.pcolormesh(
        xedges,
        yedges,
        np.maximum(densities.T, top * 1e-8),
        shading="flat",
        norm=mcolors.LogNorm(top * 1e-8, top),
        cmap="magma",
    )
    fig.colorbar(mesh, ax=ax, label="density")
    ax.set(
        xlabel=xlabel,
        ylabel="eigenvalue",
        xlim=(steps[0], steps[-1]) if steps.size > 1 else (xedges[0], xedges[-1]),
        ylim=(yedges[0], yedges[-1]),
        title=f"eigenvalue density ({_sigma_title(sig)})",
    )
    return fig, ax


def stability_edge(
    optimizer: Mapping[str, Any] | None, lr: float | None = None
) -> tuple[float | None, str | None, str]:
    """The edge of stability as an eigenvalue, ``threshold / lr``, and its label.

    The threshold on ``λ·lr`` is :func:`weightspace.optimizers.stability` of the run's
    optimizer settings (2 for gradient descent, ``2 + 2β`` with heavy-ball momentum ``β``,
    ...; Cohen et al. 2021); the label names the formula that rule used.

    Args:
        optimizer: the run's optimizer settings (a run's metadata, or a
            :class:`~weightspace.curvature.CurvatureAlong`'s ``metadata["optimizer"]``).
        lr: the learning rate, replacing ``optimizer["lr"]`` when given.

    Returns:
        ``(value, label, rule)``: e.g. ``(76.0, "(2+2β)/lr = 76", rule)`` with the rule of
        :func:`~weightspace.optimizers.stability`; ``(None, None, reason)`` when the optimizer
        has no such threshold (Adam-type) or no learning rate is known.

    Example:
        >>> value, label, rule = stability_edge({"optimizer": "sgd", "lr": 0.05, "momentum": 0.9})
        >>> round(value, 9), label, rule
        (76.0, '(2+2β)/lr = 76', '(2+2β) = 3.8: heavy-ball momentum β=0.9')
        >>> stability_edge({"optimizer": "sgd"}, lr=0.05)[:2]
        (40.0, '2/lr = 40')
        >>> stability_edge({"optimizer": "adam", "lr": 1e-3})[:2]
        (None, None)
    """
    settings = dict(optimizer or {})
    if lr is not None:
        settings["lr"] = lr
    stab = stability(settings)
    if stab.threshold is None or stab.lr is None:
        return None, None, stab.rule
    value = stab.threshold / stab.lr
    formula = stab.rule.split(":", 1)[0].split(" = ", 1)[0] + "/lr"
    if "weight_decay" in stab.rule:  # (threshold − wd·lr)/lr
        formula += " − weight_decay"
    return value, f"{formula} = {value:.4g}", stab.rule


FAR_EDGE = 10.0  # an edge of stability this many times the largest eigenvalue: log scale


def plot_top_eigenvalues(
    steps: Any,
    eigenvalues: Any,
    trace: Any = None,
    lr: float | None = None,
    *,
    optimizer: Mapping[str, Any] | None = None,
    xlabel: str = "step",
    ax: Any = None,
):
    """Top Hessian eigenvalues (and the trace) along training, with the edge of stability.

    Args:
        steps: (S,) training steps.
        eigenvalues: (S, k) top eigenvalues at each step, largest first.
        trace: optional (S,) trace estimates, on a second axis (none, and no legend entry,
            when no value is finite: a trace that was not computed).
        lr: optional learning rate (replaces ``optimizer["lr"]``).
        optimizer: the run's optimizer settings. With a learning rate, the edge of stability
            :func:`stability_edge` is drawn as a dashed line, labelled with its formula
            (``2/lr`` for plain gradient descent, the default when only ``lr`` is given;
            ``(2+2β)/lr`` with heavy-ball momentum β); none for optimizers without a classical
            threshold (Adam-type).
        xlabel: what the steps are (``"step"``, ``"α"``).
        ax: a 2-D Axes or None.

    Returns:
        ``(fig, ax)``.

    Example:
        >>> eig = np.array([[50.0, 10.0], [70.0, 20.0]])
        >>> fig, ax = plot_top_eigenvalues(
        ...     [0, 100], eig, optimizer={"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}
        ... )
        >>> ax.lines[-1].get_label()
        '(2+2β)/lr = 76'
    """
    steps = as_array(steps, "steps", ndim=1)
    eig = as_array(eigenvalues, "eigenvalues", ndim=2, length=steps.size)
    if lr is not None and not (np.isfinite(float(lr)) and float(lr) > 0):
        raise WeightspaceError(f"lr: expected a positive learning rate, got {lr}")
    fig, ax = new_or_given(ax, (6.5, 4.0))
    for q in range(eig.shape[1]):
        ax.plot(steps, eig[:, q], "-o", ms=3, label=f"λ{q + 1}")
    if lr is not None or optimizer is not None:
        edge, label, _ = stability_edge(optimizer, lr)
        if edge is not None:
            ax.axhline(edge, ls="--", color="k", lw=1, label=label)
            finite = eig[np.isfinite(eig)]
            if finite.size and finite.min() > 0 and edge > FAR_EDGE * finite.max():
                ax.set_yscale("log")  # the eigenvalues would be a flat line under the edge
    handles, labels = ax.get_legend_handles_labels()
    tr = None if trace is None else as_array(trace, "trace", ndim=1, length=steps.size)
    twinned = tr is not None and bool(np.isfinite(tr).any())
    if twinned:
        twin = ax.twinx()
        twin.plot(steps, tr, ":", color="grey", label="trace")
        twin.set_ylabel("trace")
        h2, l2 = twin.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    right = 1.18 if twinned else 1.02  # a legend right of the data, past the twin's ticks
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(right, 1.0))
    ax.set(
        xlabel=xlabel, ylabel="eigenvalue" + (" (log scale)" if ax.get_yscale() == "log" else "")
    )
    return fig, ax
