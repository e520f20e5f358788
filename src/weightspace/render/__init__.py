"""Pictures of weightspace results, from arrays and typed results.

- :mod:`~weightspace.render.static`: matplotlib figures (``fn(..., ax=None) -> (fig, ax)``)
  and :func:`~weightspace.render.static.save_figure`.
- :mod:`~weightspace.render.interactive`: plotly figures and HTML fragments.
- :mod:`~weightspace.render.animate`: GIF/MP4 of a trajectory growing over a surface.
- :mod:`~weightspace.render.export`: PLY and VTK meshes for MeshLab and ParaView.
- :mod:`~weightspace.render.report`: a single-file, offline HTML report.

Import it explicitly: ``from weightspace import render``. ``render.new_figure(size)`` gives
a pyplot-free figure for panels of your own. Paths on a plane are
:class:`~weightspace.landscape.PlaneTrajectory` objects (a surface's ``trajectories``);
``render.plane_trajectory(coords, name=..., loss=...)`` makes one from bare coordinates.
Render functions draw what they are given and compute nothing beyond placement (colour
scales, interpolation under a path); :func:`~weightspace.render.build.build_report` draws a
page from typed results.
"""

from __future__ import annotations

from . import animate, export, interactive, report, static
from ._common import new_figure, plane_trajectory
from ._topology import plot_barcode, plot_persistence
from .report import Report
from .static import save_figure

__all__ = [
    "Report",
    "animate",
    "export",
    "interactive",
    "new_figure",
    "plane_trajectory",
    "plot_barcode",
    "plot_persistence",
    "report",
    "save_figure",
    "static",
]
