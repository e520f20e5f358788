"""Static figures of trajectories: PCA spectra against the null, PC pairs, parametric 3-D
paths, embeddings and metrics along runs; exported by :mod:`weightspace.render.static`.

Every function takes ``ax=None`` and returns ``(fig, ax)`` (``ax`` an array of Axes for
multi-panel figures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    short_label,
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
    handles, labels = axes[0, 0].get_legend_handles_labels()
    short = [short_label(x) for x in labels]
    if k >= 3:  # in the empty cell at the top right, off the data
        axes[0, -1].legend(handles, short, fontsize=7, loc="upper right", frameon=False)
    else:
        below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.25), "frameon": False}
        axes[0, 0].legend(handles, short, fontsize=7, ncols=min(3, len(labels)), **below)
    return fig, axes


def _per_run(values: Any) -> bool:
    """Whether ``values`` is a list of per-run arrays (runs of any lengths) rather than one
    run's values."""
    return isinstance(values, (list, tuple)) and all(np.ndim(v) >= 1 for v in values)


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
    if len(runs) == 1 and not _per_run(losses):
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
    allv = allv[np.isfinite(allv)] if np.isfinite(allv).any() else np.zeros(1)
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
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, [short_label(x) for x in labels], fontsize=7, loc="upper left",
              bbox_to_anchor=(-0.1, 1.05), frameon=False)  # fmt: skip
    return fig, ax


def plot_embeddings(
    embeddings: Mapping[str, Any],
    scores: Mapping[str, float] | None = None,
    *,
    labels: Mapping[str, Sequence[str]] | None = None,
    color: Any = None,
    color_label: str = "step",
    ax: Any = None,
):
    """Two-dimensional embeddings side by side, each titled with its preservation score.

    Args:
        embeddings: method name -> the coordinates: a list of per-run ``(T_r, 2)`` arrays
            (each run drawn as its path in its own colour, start circle, end star, a legend
            of runs below), or one ``(T, 2)`` array of points.
        scores: optional method name -> preservation score (e.g. kNN overlap), in the title.
        labels: optional method name -> the runs' labels (per-run coordinates only).
        color: optional (T,) values to colour the points of ``(T, 2)`` arrays by (steps).
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
    fig, axes = axes_grid(ax, len(embeddings), len(embeddings), (3.6, 3.4))
    sc = None
    col = None
    for a, (name, value) in zip(axes, embeddings.items()):
        if _per_run(value):
            runs = as_runs(value, f"embeddings[{name!r}]", min_cols=2)
            names = labels_for(None if labels is None else labels.get(name), len(runs))
            for r, c in enumerate(runs):
                a.plot(c[:, 0], c[:, 1], "-", lw=0.8, color=run_color(r), alpha=0.7)
                a.scatter(c[:, 0], c[:, 1], s=9, color=run_color(r), label=short_label(names[r]))
                a.plot(c[0, 0], c[0, 1], "o", ms=6, mfc="white", mec=run_color(r))
                a.plot(c[-1, 0], c[-1, 1], "*", ms=9, mfc=run_color(r), mec="k", mew=0.4)
            a.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.02),
                     ncols=min(3, len(runs)), frameon=False)  # fmt: skip
        else:
            c = as_array(value, f"embeddings[{name!r}]", ndim=2)
            if c.shape[1] != 2:
                raise WeightspaceError(
                    f"embeddings[{name!r}]: expected shape (T, 2), got {c.shape}"
                )
            col = None if color is None else as_array(color, "color", ndim=1)
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
    if sc is not None:
        fig.colorbar(sc, ax=list(axes), label=color_label, shrink=0.8)
    return fig, axes


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
    _runs_legend(fig, axes, own_figure=ax is None)
    return fig, axes


def _runs_legend(fig: Any, axes: Any, *, own_figure: bool) -> None:
    """One legend of the runs below all panels when every panel shows the same runs (in a
    figure of our own), else one below each panel; never over the data."""
    per_axes = [a.get_legend_handles_labels() for a in axes]
    names = [tuple(labels) for _, labels in per_axes]
    if not any(names):
        return
    style = {"fontsize": 7, "frameon": False}
    if own_figure and len(set(names)) == 1:
        handles, labels = per_axes[0]
        short = [short_label(x) for x in labels]
        fig.legend(handles, short, loc="outside lower center", ncols=min(6, len(labels)), **style)
        return
    for a, (handles, labels) in zip(axes, per_axes):
        if labels:
            a.legend(handles, [short_label(x) for x in labels], loc="upper center",
                     bbox_to_anchor=(0.5, -0.2), ncols=min(3, len(labels)), **style)  # fmt: skip
