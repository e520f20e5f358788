"""Static figures of projections and curvature; exported by :mod:`weightspace.render.static`.

Every function takes ``ax=None`` and returns ``(fig, ax)`` (``ax`` an array of Axes for
multi-panel figures).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import colors as mcolors

from ..errors import WeightspaceError
from ._common import (
    as_array,
    as_runs,
    axes_grid,
    labels_for,
    new_or_given,
    run_color,
)


def plot_pca_spectrum(
    ratios: Any,
    null_ratios: Any,
    correlations: Any = None,
    *,
    title: str | None = None,
    ax: Any = None,
):
    """Explained-variance ratios of the top PCs beside the random-walk null.

    Args:
        ratios: (k,) explained-variance ratios of the trajectory's PCs.
        null_ratios: (k,) expected ratios of a random walk with as many points
            (Antognini & Sohl-Dickstein 2018).
        correlations: optional (k,) correlations of PC-k scores with ``cos(πk(t−½)/T)``,
            drawn as |r| on a second axis.
        title: optional title.
        ax: a 2-D Axes or None.

    Returns:
        ``(fig, ax)``.
    """
    ratios = as_array(ratios, "ratios", ndim=1)
    null_ratios = as_array(null_ratios, "null_ratios", ndim=1, length=ratios.size)
    fig, ax = new_or_given(ax, (6.0, 4.0))
    k = np.arange(1, ratios.size + 1)
    ax.bar(k - 0.2, ratios, width=0.4, label="trajectory", color="#1f77b4")
    ax.bar(k + 0.2, null_ratios, width=0.4, label="random-walk null", color="#bbbbbb")
    ax.set(xlabel="principal component", ylabel="explained variance ratio", xticks=k)
    handles, labels = ax.get_legend_handles_labels()
    if correlations is not None:
        corr = as_array(correlations, "correlations", ndim=1, length=ratios.size)
        twin = ax.twinx()
        twin.plot(k, np.abs(corr), "D", color="crimson", ms=5, label="|corr(score, cosine)|")
        twin.set(ylim=(0, 1.05), ylabel="|correlation| with the null's cosine")
        h2, l2 = twin.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8, loc="upper right")
    ax.set_title(title or f"top {ratios.size} PCs explain {100 * np.sum(ratios):.1f}%")
    return fig, ax


def plot_pc_pairs(scores: Any, labels: Any = None, *, k: int | None = None, ax: Any = None):
    """Grid of PC pairs (Lorch 2016): PC j against PC i for every ``i < j < k``.

    Args:
        scores: (T, K) PC scores of one run, or a list of per-run (T_r, K) arrays.
        labels: optional run labels, one per run.
        k: number of leading PCs to pair (default ``min(4, K)``).
        ax: None, or ``(k−1)²`` Axes (row-major grid; PC j+1 in row j, PC i in column i).

    Returns:
        ``(fig, axes)`` with ``axes`` of shape ``(k−1, k−1)``; cells above the diagonal are off.
    """
    runs = as_runs(scores, "scores", min_cols=2)
    names = labels_for(labels, len(runs))
    width = runs[0].shape[1]
    k = min(4, width) if k is None else int(k)
    if not 2 <= k <= width:
        raise WeightspaceError(
            f"k: expected 2 <= k <= {width} (the number of PCs in scores), got {k}"
        )
    fig, axes = axes_grid(ax, (k - 1) ** 2, k - 1, (2.6, 2.6))
    axes = axes.reshape(k - 1, k - 1)
    for row in range(k - 1):
        for col in range(k - 1):
            a = axes[row, col]
            if col > row:
                a.set_axis_off()
                continue
            i, j = col, row + 1
            for r, s in enumerate(runs):
                a.plot(s[:, i], s[:, j], "-", lw=1, color=run_color(r), label=names[r])
                a.plot(s[0, i], s[0, j], "o", ms=4, mfc="white", mec=run_color(r))
            if row == k - 2:
                a.set_xlabel(f"PC {i + 1}")
            if col == 0:
                a.set_ylabel(f"PC {j + 1}")
    axes[0, 0].legend(fontsize=7)
    return fig, axes


def plot_parametric_3d(
    scores: Any,
    losses: Any,
    labels: Any = None,
    *,
    i: int = 0,
    j: int = 1,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    ax: Any = None,
):
    """3-D parametric paths (PC i, PC j, −loss), coloured on one absolute loss scale.

    Args:
        scores: (T, K) scores or a list of per-run (T_r, K) arrays.
        losses: (T,) loss or a list of per-run (T_r,) losses.
        labels: optional run labels.
        i: PC on the x axis (0-based).
        j: PC on the y axis (0-based).
        vmin: bottom of the shared loss colour scale (default: smallest loss of all runs).
        vmax: top of the shared loss colour scale (default: largest loss of all runs).
        cmap: colour map of the loss.
        ax: a 3-D Axes or None.

    Returns:
        ``(fig, ax)``.
    """
    runs = as_runs(scores, "scores", min_cols=max(i, j) + 1)
    if np.ndim(losses) == 1 and len(runs) == 1 and np.size(losses) > 0:
        losses = [losses]
    losses = list(losses)
    if len(losses) != len(runs):
        raise WeightspaceError(f"losses: expected {len(runs)} runs like scores, got {len(losses)}")
    losses = [
        as_array(v, f"losses[{r}]", 1, s.shape[0]) for r, (v, s) in enumerate(zip(losses, runs))
    ]
    names = labels_for(labels, len(runs))
    if i == j or min(i, j) < 0:
        raise WeightspaceError(f"i, j: expected two different PCs >= 0, got i={i}, j={j}")
    allv = np.concatenate(losses)
    allv = allv[np.isfinite(allv)]
    norm = mcolors.Normalize(
        allv.min() if vmin is None else vmin, allv.max() if vmax is None else vmax
    )
    fig, ax = new_or_given(ax, (6.0, 5.0), three_d=True)
    sc = None
    for r, (s, v) in enumerate(zip(runs, losses)):
        ax.plot(s[:, i], s[:, j], -v, color=run_color(r), lw=1, label=names[r])
        sc = ax.scatter(s[:, i], s[:, j], -v, c=v, cmap=cmap, norm=norm, s=10)
    fig.colorbar(sc, ax=ax, label="loss (one scale for all runs)", shrink=0.7)
    ax.set(xlabel=f"PC {i + 1}", ylabel=f"PC {j + 1}", zlabel="−loss")
    ax.legend(fontsize=7)
    return fig, ax


def plot_embeddings(
    embeddings: Mapping[str, Any],
    scores: Mapping[str, float] | None = None,
    *,
    color: Any = None,
    color_label: str = "step",
    ax: Any = None,
):
    """Two-dimensional embeddings side by side, each titled with its preservation score.

    Args:
        embeddings: method name -> (T, 2) coordinates, e.g. ``{"PHATE": ..., "t-SNE": ...}``.
        scores: optional method name -> preservation score (e.g. kNN overlap), in the title.
        color: optional (T,) values to colour the points by (e.g. steps).
        color_label: what ``color`` is, for the colour bar.
        ax: None, or one Axes per embedding.

    Returns:
        ``(fig, axes)`` with one Axes per embedding.
    """
    if not isinstance(embeddings, Mapping) or not embeddings:
        raise WeightspaceError(
            "embeddings: expected a dict of name -> (T, 2) coordinates, got "
            f"{type(embeddings).__name__}; pass {{'PHATE': coords}}"
        )
    coords = {name: as_array(c, f"embeddings[{name!r}]", ndim=2) for name, c in embeddings.items()}
    for name, c in coords.items():
        if c.shape[1] != 2:
            raise WeightspaceError(f"embeddings[{name!r}]: expected shape (T, 2), got {c.shape}")
    first = next(iter(coords.values()))
    col = None if color is None else as_array(color, "color", ndim=1, length=first.shape[0])
    fig, axes = axes_grid(ax, len(coords), len(coords), (3.6, 3.4))
    sc = None
    for a, (name, c) in zip(axes, coords.items()):
        if col is not None and c.shape[0] != col.size:
            raise WeightspaceError(
                f"color: expected {c.shape[0]} values like embeddings[{name!r}], got {col.size}"
            )
        if col is None:
            a.scatter(c[:, 0], c[:, 1], s=10)
        else:
            sc = a.scatter(c[:, 0], c[:, 1], c=col, cmap="viridis", s=10)
        score = None if scores is None else scores.get(name)
        a.set_title(name if score is None else f"{name} (preservation {score:.3f})")
        a.set_xticks([])
        a.set_yticks([])
    if col is not None:
        fig.colorbar(sc, ax=list(axes), label=color_label, shrink=0.8)
    return fig, axes


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


def plot_density_heatmap(steps: Any, grid: Any, densities: Any, sigma: float, *, ax: Any = None):
    """Eigenvalue density along training as a heat map (log colour scale).

    Args:
        steps: (S,) training steps, increasing, S >= 2.
        grid: (G,) eigenvalue positions.
        densities: (S, G) density at each step.
        sigma: Gaussian width used, printed on the plot.
        ax: a 2-D Axes or None.

    Returns:
        ``(fig, ax)``.
    """
    steps = as_array(steps, "steps", ndim=1)
    grid = as_array(grid, "grid", ndim=1)
    densities = as_array(densities, "densities", ndim=2, length=steps.size)
    sigma = _check_sigma(sigma)
    if densities.shape[1] != grid.size:
        raise WeightspaceError(
            f"densities: expected shape (S, G) = ({steps.size}, {grid.size}), "
            f"got {densities.shape}; one row per step"
        )
    if steps.size < 2 or np.any(np.diff(steps) <= 0):
        raise WeightspaceError(
            f"steps: expected at least 2 increasing steps, got {steps.size}; "
            "use plot_density for one checkpoint"
        )
    top = np.nanmax(densities) if np.any(densities > 0) else 1.0
    fig, ax = new_or_given(ax, (6.5, 4.0))
    mesh = ax.pcolormesh(
        steps,
        grid,
        np.maximum(densities.T, top * 1e-8),
        shading="nearest",
        norm=mcolors.LogNorm(top * 1e-8, top),
        cmap="magma",
    )
    fig.colorbar(mesh, ax=ax, label="density")
    ax.set(xlabel="step", ylabel="eigenvalue", title=f"eigenvalue density (σ = {sigma:.3g})")
    return fig, ax


def plot_top_eigenvalues(
    steps: Any,
    eigenvalues: Any,
    trace: Any = None,
    lr: float | None = None,
    *,
    ax: Any = None,
):
    """Top Hessian eigenvalues (and the trace) along training, with 2/lr when ``lr`` is given.

    Args:
        steps: (S,) training steps.
        eigenvalues: (S, k) top eigenvalues at each step, largest first.
        trace: optional (S,) trace estimates, on a second axis.
        lr: optional learning rate; the stability edge 2/lr of gradient descent is drawn.
        ax: a 2-D Axes or None.

    Returns:
        ``(fig, ax)``.
    """
    steps = as_array(steps, "steps", ndim=1)
    eig = as_array(eigenvalues, "eigenvalues", ndim=2, length=steps.size)
    fig, ax = new_or_given(ax, (6.5, 4.0))
    for q in range(eig.shape[1]):
        ax.plot(steps, eig[:, q], "-o", ms=3, label=f"λ{q + 1}")
    if lr is not None:
        if not float(lr) > 0:
            raise WeightspaceError(f"lr: expected a positive learning rate, got {lr}")
        ax.axhline(2.0 / float(lr), ls="--", color="k", lw=1, label=f"2/lr = {2 / float(lr):.4g}")
    handles, labels = ax.get_legend_handles_labels()
    if trace is not None:
        tr = as_array(trace, "trace", ndim=1, length=steps.size)
        twin = ax.twinx()
        twin.plot(steps, tr, ":", color="grey", label="trace")
        twin.set_ylabel("trace")
        h2, l2 = twin.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8)
    ax.set(xlabel="step", ylabel="eigenvalue")
    return fig, ax


def plot_metrics_panel(metrics: Mapping[str, Any], *, ncols: int = 3, ax: Any = None):
    """One panel per metric along training (distances, path length, straightness, ...).

    Args:
        metrics: name -> ``(steps (S,), values (S,))``, or name -> {run label -> (steps, values)}
            to compare runs in one panel.
        ncols: panels per row.
        ax: None, or one Axes per metric.

    Returns:
        ``(fig, axes)`` with one Axes per metric.
    """
    if not isinstance(metrics, Mapping) or not metrics:
        raise WeightspaceError(
            "metrics: expected a dict of name -> (steps, values), got "
            f"{type(metrics).__name__}; pass {{'path length': (steps, values)}}"
        )
    fig, axes = axes_grid(ax, len(metrics), min(ncols, len(metrics)), (3.6, 3.0))
    for a, (name, entry) in zip(axes, metrics.items()):
        series = entry if isinstance(entry, Mapping) else {None: entry}
        for r, (label, pair) in enumerate(series.items()):
            if len(pair) != 2:
                raise WeightspaceError(
                    f"metrics[{name!r}]: expected a pair (steps, values), got {len(pair)} items"
                )
            steps = as_array(pair[0], f"metrics[{name!r}] steps", ndim=1)
            values = as_array(pair[1], f"metrics[{name!r}] values", 1, steps.size)
            a.plot(steps, values, "-", color=run_color(r), label=label)
        a.set(title=name, xlabel="step")
        if len(series) > 1 or None not in series:
            a.legend(fontsize=7)
    return fig, axes
