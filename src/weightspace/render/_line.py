"""Static figure of a 1-D loss profile with its barrier; exported by
:mod:`weightspace.render.static`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WeightspaceError
from ._common import as_array, new_or_given


def plot_line(
    alphas: Any,
    values: Any,
    stderr: Any = None,
    barrier: float | None = None,
    *,
    barrier_at: float | None = None,
    label: str | None = None,
    xlabel: str = "α",
    ylabel: str = "loss",
    title: str | None = None,
    ax: Any = None,
):
    """A 1-D line with a ±1 standard-error band and the barrier marked.

    Args:
        alphas: (m,) positions along the line.
        values: (m,) values at ``alphas``; NaN/inf are gaps.
        stderr: optional (m,) standard errors, drawn as a band ``values ± stderr`` (no band
            and no legend entry when none is finite, e.g. from one batch).
        barrier: optional barrier height (a :class:`~weightspace.landscape.Line`'s
            ``barrier``: ``max_a L(a) − ((1−a) L(0) + a L(1))`` over the points with
            ``0 <= a <= 1``), drawn as an arrow from the straight line between the ends up to
            the curve at the ``a`` where that maximum is attained (:func:`barrier_point`),
            and written beside it; NaN (no barrier defined, e.g. a line without both end
            points) draws nothing.
        barrier_at: draw the arrow here instead, ``barrier`` high and ending on the curve (for
            a height measured some other way).
        label: legend label of the line.
        xlabel: label of the x axis.
        ylabel: label of the y axis.
        title: optional title.
        ax: a 2-D Axes or None.

    Returns:
        ``(fig, ax)``.

    Raises:
        WeightspaceError: bad shapes; a finite ``barrier`` without ``barrier_at`` that is not
            the height of these values above the straight line between α = 0 and α = 1
            (or with 0 or 1 missing).

    Example:
        >>> a = np.linspace(-0.5, 1.5, 9)  # the bump at a = 0.5 is 1 above the ends' line
        >>> fig, ax = plot_line(a, 4 * a * (1 - a) + a, barrier=1.0)
        >>> ax.texts[0].xy, ax.texts[0].xyann
        ((0.5, 1.5), (0.5, 0.5))
    """
    alphas = as_array(alphas, "alphas", ndim=1)
    values = as_array(values, "values", ndim=1, length=alphas.size)
    values = np.where(np.isfinite(values), values, np.nan)
    if not np.any(np.isfinite(values)):
        raise WeightspaceError("values: every value is NaN or infinite; nothing to draw")
    fig, ax = new_or_given(ax, (6.0, 4.0))
    (line,) = ax.plot(alphas, values, "-o", ms=3, label=label)
    se = None if stderr is None else as_array(stderr, "stderr", ndim=1, length=alphas.size)
    if se is not None and not np.isfinite(se).any():
        se = None
    if se is not None:
        ax.fill_between(
            alphas,
            values - se,
            values + se,
            color=line.get_color(),
            alpha=0.25,
            lw=0,
            label="±1 standard error",
        )
    if barrier is not None and np.isfinite(float(barrier)):
        at, low, top = _barrier_arrow(alphas, values, float(barrier), barrier_at)
        ax.annotate(
            "",
            xy=(at, top),
            xytext=(at, low),
            arrowprops={"arrowstyle": "<->", "color": "crimson"},
        )
        ax.text(
            at,
            (top + low) / 2,
            f"  barrier {float(barrier):.4g}",
            color="crimson",
            va="center",
            fontsize=8,
        )
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if title:
        ax.set_title(title)
    if label is not None or se is not None:
        ax.legend(fontsize=8)
    return fig, ax


def barrier_point(alphas: Any, values: Any) -> tuple[float, float, float] | None:
    """Where a line's barrier is attained: ``(a, chord, value)`` at the ``a`` in [0, 1] where
    ``values − ((1−a)·L(0) + a·L(1))`` is largest, over the points with ``0 <= a <= 1`` (the
    rule of :class:`~weightspace.landscape.Line`'s ``barrier``: the first such point on a tie).

    Args:
        alphas: (m,) increasing positions along the line.
        values: (m,) the loss at ``alphas``.

    Returns:
        ``(a, chord, value)``, ``value − chord`` being the barrier; None when 0 or 1 is not
        among the alphas or a value between them is not finite (the barrier is NaN then).

    Example:
        >>> a = np.linspace(0.0, 1.0, 11)
        >>> at, chord, top = barrier_point(a, 1.0 - (a - 0.4) ** 2)  # the peak is at 0.4, but
        >>> at, round(chord, 12), round(top, 12)  # the gap to the falling chord peaks at 0.5
        (0.5, 0.74, 0.99)
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    i0 = np.flatnonzero(np.isclose(alphas, 0.0, rtol=0, atol=1e-9))
    i1 = np.flatnonzero(np.isclose(alphas, 1.0, rtol=0, atol=1e-9))
    if not len(i0) or not len(i1) or i1[0] < i0[0]:
        return None
    a, v = alphas[i0[0] : i1[0] + 1], values[i0[0] : i1[0] + 1]
    if not np.isfinite(v).all():
        return None
    chord = (1 - a) * v[0] + a * v[-1]
    k = int(np.argmax(v - chord))
    return float(a[k]), float(chord[k]), float(v[k])


def _barrier_arrow(
    alphas: np.ndarray, values: np.ndarray, barrier: float, barrier_at: float | None
) -> tuple[float, float, float]:
    """``(a, low, top)`` of the barrier arrow of :func:`plot_line`."""
    finite = np.isfinite(values)
    if barrier_at is not None:
        at = float(barrier_at)
        top = float(np.interp(at, alphas[finite], values[finite]))
        return at, top - barrier, top
    point = barrier_point(alphas, values)
    if point is None:
        raise WeightspaceError(
            f"barrier: got {barrier:.6g}, but the barrier is measured between α = 0 and α = 1 "
            "and these alphas miss one of them (or a value between them is not finite); pass "
            "barrier=None, or barrier_at= to place the arrow yourself"
        )
    at, low, top = point
    tol = 1e-6 * max(1.0, float(np.nanmax(np.abs(values))))
    if abs((top - low) - barrier) > tol:
        raise WeightspaceError(
            f"barrier: expected the height of these values above the straight line between "
            f"α = 0 and α = 1, {top - low:.6g} (at α = {at:.4g}), got {barrier:.6g}; pass the "
            "line's own barrier, or barrier_at= to place another height"
        )
    return at, low, top
