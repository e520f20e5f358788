"""Interactive figures (plotly): a 3-D surface with trajectories, and scatters with hover.

Figures are :class:`plotly.graph_objects.Figure`. For a page, :func:`html_fragment` gives a
``<div>`` that expects plotly.js to be on the page already, and :func:`plotly_js` gives the
bundled plotly.js of the installed plotly package, to embed once per page; nothing is ever
fetched from a CDN. User text (labels, hover values) is HTML-escaped, because plotly reads
a few HTML tags in its text.

Example:
    >>> import numpy as np
    >>> from weightspace.render import interactive
    >>> xs = np.linspace(-1, 1, 11)
    >>> fig = interactive.surface_figure(xs, xs, xs[None] ** 2 + xs[:, None] ** 2)
    >>> div = interactive.html_fragment(fig)
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import WeightspaceError
from ._common import (
    as_array,
    as_runs,
    check_grid,
    check_trajectories,
    labels_for,
    prepare_values,
    run_color,
    trajectory_z,
    value_label,
)

__all__ = ["html_fragment", "plotly_js", "scatter_figure", "surface_figure"]

CONFIG = {"displaylogo": False, "responsive": True}


# 3-D scenes: the camera a little further out than plotly's default (1.25) so that the axis
# titles stay inside the figure, margins that keep them, and legends above the data
SCENE = {"camera": {"eye": {"x": 1.55, "y": 1.55, "z": 1.05}}}
MARGIN = {"l": 10, "r": 10, "b": 10}
LEGEND = {"orientation": "h", "x": 0.0, "y": 1.0, "yanchor": "bottom"}


def _fmt(x: float, spec: str = ".4g") -> str:
    return "n/a" if x is None or not np.isfinite(x) else format(float(x), spec)


def _go():
    import plotly.graph_objects as go

    return go


def surface_figure(
    xs: Any,
    ys: Any,
    values: Any,
    trajectories: Any = None,
    *,
    log: bool = False,
    clip: float | None = None,
    value_name: str = "loss",
    colorscale: str = "Viridis",
    title: str | None = None,
):
    """3-D surface with trajectories as lines; hover shows step, loss, projected loss and
    off-plane residual.

    Args:
        xs: (nx,) first grid axis.
        ys: (ny,) second grid axis.
        values: (ny, nx) ``values[j, i]`` at ``(xs[i], ys[j])``; NaN/inf are gaps.
        trajectories: None, one :class:`~weightspace.landscape.PlaneTrajectory` or a list of
            them (for bare coordinates, :func:`weightspace.render.plane_trajectory`). A path
            is drawn at its ``plane_loss`` (loss at the projection) where that has finite
            values, else at its true ``loss``, else on the surface; NaN shows as "n/a".
        log: show ``log10(values)``.
        clip: values above ``clip`` are shown at ``clip``.
        value_name: what the values are.
        colorscale: plotly colour scale of the surface.
        title: optional title.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    go = _go()
    xs, ys, values = check_grid(xs, ys, values)
    z = prepare_values(values, log, clip)
    trajs = check_trajectories(trajectories)
    zlabel = html.escape(value_label(value_name, log, clip))
    fig = go.Figure()
    fig.add_trace(
        go.Surface(
            x=xs,
            y=ys,
            z=z,
            colorscale=colorscale,
            opacity=0.9,
            colorbar={"title": {"text": zlabel}},
            hovertemplate=f"α %{{x:.3g}}<br>β %{{y:.3g}}<br>{zlabel} %{{z:.4g}}<extra></extra>",
            name="surface",
        )
    )
    for r, t in enumerate(trajs):
        tz = trajectory_z(t, xs, ys, z, log, clip)
        text = []
        for q in range(t.coords.shape[0]):
            lines = [f"step {_fmt(t.steps[q], '.0f')}"]
            lines.append(f"loss {_fmt(t.loss[q])}")
            lines.append(f"projected loss {_fmt(t.plane_loss[q])}")
            lines.append(f"off-plane residual {_fmt(t.residual[q], '.3g')}")
            text.append("<br>".join(lines))
        sizes = np.full(t.coords.shape[0], 3.0)
        sizes[-1] = 7.0
        fig.add_trace(
            go.Scatter3d(
                x=t.coords[:, 0],
                y=t.coords[:, 1],
                z=tz,
                mode="lines+markers",
                name=html.escape(str(t.name)),
                line={"color": run_color(r), "width": 5},
                marker={"size": sizes, "color": run_color(r)},
                text=text,
                hoverinfo="text+name",
            )
        )
    fig.update_layout(
        title={"text": html.escape(title)} if title else None,
        scene={"xaxis_title": "α", "yaxis_title": "β", "zaxis_title": zlabel, **SCENE},
        margin={**MARGIN, "t": 70 if title else 40},
        legend=LEGEND,
        showlegend=bool(trajs),
    )
    return fig


def scatter_figure(
    coords: Any,
    labels: Any = None,
    hover: Any = None,
    *,
    color: Any = None,
    color_label: str = "step",
    axis_titles: tuple[str, ...] = ("PC 1", "PC 2", "PC 3"),
    title: str | None = None,
):
    """Scatter of projected points (PCA scores, PHATE coordinates) with hover.

    Args:
        coords: (T, 2) or (T, 3) coordinates, or a list of per-run (T_r, 2|3) arrays;
            three columns give a 3-D scatter.
        labels: optional run labels, one per run.
        hover: optional name -> (T_r,) values shown on hover (e.g. ``{"step": steps,
            "loss": loss}``), one dict per run (a single dict for a single run).
        color: optional (T_r,) values (one array per run) to colour the markers by.
        color_label: what ``color`` is, for the colour bar.
        axis_titles: titles of the axes.
        title: optional title.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    go = _go()
    runs = as_runs(coords, "coords", min_cols=2)
    dims = runs[0].shape[1]
    if dims not in (2, 3):
        raise WeightspaceError(f"coords: expected 2 or 3 columns, got {dims}; pass scores[:, :2]")
    names = labels_for(labels, len(runs))
    hovers = _per_run(hover, runs, "hover")
    colors = _per_run(color, runs, "color")
    fig = go.Figure()
    for r, c in enumerate(runs):
        n = c.shape[0]
        text = [f"point {q}" for q in range(n)]
        for key, vals in (hovers[r] or {}).items():
            vals = as_array(vals, f"hover[{key!r}]", ndim=1, length=n)
            text = [f"{t}<br>{html.escape(str(key))} {_fmt(v)}" for t, v in zip(text, vals)]
        marker: dict[str, Any] = {"size": 5, "color": run_color(r)}
        if colors[r] is not None:
            marker.update(
                color=as_array(colors[r], "color", ndim=1, length=n),
                colorscale="Viridis",
                showscale=r == 0,
                colorbar={"title": {"text": html.escape(color_label)}},
            )
        common = {
            "mode": "lines+markers",
            "name": html.escape(names[r]),
            "text": text,
            "hoverinfo": "text+name",
            "marker": marker,
            "line": {"color": run_color(r), "width": 1},
        }
        if dims == 3:
            fig.add_trace(go.Scatter3d(x=c[:, 0], y=c[:, 1], z=c[:, 2], **common))
        else:
            fig.add_trace(go.Scatter(x=c[:, 0], y=c[:, 1], **common))
    titles = [html.escape(t) for t in axis_titles]
    if dims == 3:
        fig.update_layout(
            scene={
                "xaxis_title": titles[0],
                "yaxis_title": titles[1],
                "zaxis_title": titles[2],
                **SCENE,
            },
            margin={**MARGIN, "t": 70 if title else 40},
        )
    else:
        fig.update_layout(xaxis_title=titles[0], yaxis_title=titles[1])
    fig.update_layout(
        title={"text": html.escape(title)} if title else None,
        hovermode="closest",
        legend=LEGEND,
    )
    return fig


def _per_run(value: Any, runs: list[np.ndarray], name: str) -> list[Any]:
    if value is None:
        return [None] * len(runs)
    per_run = isinstance(value, (list, tuple)) and all(
        isinstance(v, Mapping) or np.ndim(v) >= 1 for v in value
    )
    if isinstance(value, Mapping) or (len(runs) == 1 and not per_run):
        value = [value]  # one run's values, not a list of them
    value = list(value)
    if len(value) != len(runs):
        raise WeightspaceError(
            f"{name}: expected one entry per run ({len(runs)}), got {len(value)}"
        )
    return value


def html_fragment(fig: Any, *, div_id: str | None = None, height: str = "520px") -> str:
    """A ``<div>`` with the figure, for a page that already holds plotly.js.

    Args:
        fig: a plotly figure.
        div_id: optional id of the ``<div>``.
        height: CSS height of the figure.

    Returns:
        HTML text; it references no script source and no CDN.
    """
    import plotly.io as pio

    if not hasattr(fig, "to_plotly_json"):
        raise WeightspaceError(
            f"fig: expected a plotly Figure, got {type(fig).__name__}; "
            "use interactive.surface_figure or scatter_figure"
        )
    return pio.to_html(
        fig,
        include_plotlyjs=False,
        include_mathjax=False,
        full_html=False,
        config=CONFIG,
        default_height=height,
        div_id=div_id,
    )


def plotly_js() -> str:
    """The plotly.js bundled with the installed plotly package, safe inside ``<script>``."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().replace("</script", "<\\/script")
