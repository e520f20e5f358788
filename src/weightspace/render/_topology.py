"""Figures of persistence: the persistence diagram and the barcode.

Both take a :class:`~weightspace.topology.LossTopology` or a plain ``(m, 2)`` diagram of
``(birth, death)`` rows (all of dimension 0), take ``ax=None`` and return ``(fig, ax)``.
Essential classes (``death = inf``) are drawn on a dashed line above the finite bars.

Example:
    >>> import numpy as np
    >>> fig, ax = plot_persistence(np.array([[0.0, np.inf], [1.0, 4.0], [2.0, 5.0]]))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WeightspaceError
from ._common import new_or_given

DIM_COLORS = ("#1f77b4", "#d62728", "#2ca02c")


def _unpack(topo_or_diagram: Any, threshold: float | None):
    """``(diagram (m, 2), dims (m,), threshold or None)`` of a LossTopology or an array."""
    if hasattr(topo_or_diagram, "diagram") and hasattr(topo_or_diagram, "dims"):
        diagram = np.asarray(topo_or_diagram.diagram, dtype=np.float64).reshape(-1, 2)
        dims = np.asarray(topo_or_diagram.dims, dtype=np.int64)
        if threshold is None:
            threshold = getattr(topo_or_diagram, "threshold", None)
    else:
        try:
            diagram = np.asarray(topo_or_diagram, dtype=np.float64)
        except (TypeError, ValueError):
            diagram = np.zeros((0, 3))
        if diagram.ndim != 2 or diagram.shape[1] != 2:
            raise WeightspaceError(
                f"topo_or_diagram: expected a LossTopology or an (m, 2) array of (birth, death), "
                f"got {type(topo_or_diagram).__name__} of shape {np.shape(diagram)}; "
                "pass loss_topology(...) or its .diagram"
            )
        dims = np.zeros(len(diagram), dtype=np.int64)
    if np.isnan(diagram).any() or np.isinf(diagram[:, 0]).any():
        raise WeightspaceError(
            "topo_or_diagram: expected finite births and no NaN, got NaN or an infinite birth; "
            "pass a diagram from sublevel_persistence"
        )
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise WeightspaceError(
            f"threshold: expected a non-negative persistence or None, got {threshold!r}"
        )
    return diagram, dims, threshold


def _range(diagram: np.ndarray) -> tuple[float, float, float]:
    """``(low, high, top)``: the span of finite values and the height drawn for ``inf``."""
    finite = diagram[np.isfinite(diagram)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = high - low if high > low else max(abs(high), 1.0)
    return low, high, high + 0.1 * span


def plot_persistence(
    topo_or_diagram: Any,
    ax: Any = None,
    *,
    threshold: float | None = None,
    title: str | None = None,
):
    """Persistence diagram: death against birth, one marker per bar.

    The diagonal ``death = birth`` is drawn, bars at ``death = inf`` sit on a dashed top
    line, and the band ``birth < death ≤ birth + threshold`` (bars too short to count as
    significant basins) is shaded.

    Args:
        topo_or_diagram: a :class:`~weightspace.topology.LossTopology`, or (m, 2) bars.
        ax: a 2-D Axes or None.
        threshold: persistence below which bars are not significant (default: the
            LossTopology's own; none for a plain array).
        title: optional title (default: counts of bars and significant basins).

    Returns:
        ``(fig, ax)``.

    Raises:
        WeightspaceError: not a diagram, NaN or infinite births, a negative threshold.
    """
    diagram, dims, threshold = _unpack(topo_or_diagram, threshold)
    fig, ax = new_or_given(ax, (4.8, 4.4))
    low, _, top = _range(diagram)
    pad = 0.05 * (top - low)
    xs = np.array([low - pad, top])
    ax.plot(xs, xs, "-", color="grey", lw=1)
    if threshold is not None and threshold > 0:
        ax.fill_between(
            xs, xs, xs + threshold, color="grey", alpha=0.2, lw=0, label="not significant"
        )
    ax.axhline(top, ls="--", color="k", lw=0.8)
    ax.text(low - pad, top, " ∞", va="bottom", ha="left")
    for d in np.unique(dims):
        bars = diagram[dims == d]
        death = np.where(np.isinf(bars[:, 1]), top, bars[:, 1])
        color = DIM_COLORS[int(d) % len(DIM_COLORS)]
        ax.scatter(bars[:, 0], death, s=18, color=color, label=f"H{int(d)} ({len(bars)})")
    ax.set(xlim=(low - pad, top + pad), ylim=(low - pad, top + 2 * pad))
    ax.set(xlabel="birth (loss)", ylabel="death (loss)")
    if title is None:
        title = f"{len(diagram)} bars"
        if threshold is not None:
            h0 = diagram[dims == 0]
            n_sig = int(np.sum(h0[:, 1] - h0[:, 0] > threshold))
            title += f", {n_sig} significant basins"
    ax.set_title(title)
    if len(diagram) or threshold:
        ax.legend(fontsize=8, loc="lower right")
    return fig, ax


def plot_barcode(
    topo_or_diagram: Any,
    ax: Any = None,
    *,
    threshold: float | None = None,
    title: str | None = None,
):
    """Barcode: one horizontal bar per class from birth to death, longest first within each
    dimension; essential bars run to the dashed ``∞`` line, significant ones are thicker.

    Args:
        topo_or_diagram: a :class:`~weightspace.topology.LossTopology`, or (m, 2) bars.
        ax: a 2-D Axes or None.
        threshold: persistence a bar needs to be drawn thick (default: the
            LossTopology's own; none for a plain array).
        title: optional title.

    Returns:
        ``(fig, ax)``.

    Raises:
        WeightspaceError: not a diagram, NaN or infinite births, a negative threshold.
    """
    diagram, dims, threshold = _unpack(topo_or_diagram, threshold)
    fig, ax = new_or_given(ax, (6.0, 0.5 + 0.12 * max(len(diagram), 10)))
    low, _, top = _range(diagram)
    row = 0
    for d in np.unique(dims):
        bars = diagram[dims == d]
        bars = bars[np.argsort(-(bars[:, 1] - bars[:, 0]), kind="stable")]
        color = DIM_COLORS[int(d) % len(DIM_COLORS)]
        for q, (b, e) in enumerate(bars):
            strong = threshold is None or e - b > threshold
            ax.plot(
                [b, min(e, top)],
                [row, row],
                color=color,
                lw=2.5 if strong else 1.0,
                alpha=1.0 if strong else 0.5,
                label=f"H{int(d)}" if q == 0 else None,
            )
            row += 1
    ax.axvline(top, ls="--", color="k", lw=0.8)
    ax.text(top, -0.5, " ∞", ha="left", va="top")
    ax.set(xlabel="loss", ylabel="bar", ylim=(row, -1), xlim=(low - 0.05 * (top - low), None))
    ax.set_yticks([])
    ax.set_title(title or f"{len(diagram)} bars")
    if len(diagram):
        ax.legend(fontsize=8, loc="lower right")
    return fig, ax
