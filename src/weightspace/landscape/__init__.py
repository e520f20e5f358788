"""Exact 1-D and 2-D loss landscapes, and runs drawn on them.

* :mod:`.grid`: ``L(c + a·d1 + b·d2)`` on a grid (:func:`evaluate_plane`) and along a line
  (:func:`evaluate_line`), every point computed from the centre;
* :mod:`.overlay`: plane coordinates by least squares, losses at given points, runs on a plane;
* :mod:`.results`: the frozen results (:class:`Surface`, :class:`Line`, :class:`PlaneTrajectory`);
* ``_engine`` / ``_points`` (internal): the point engine and the sharded, checkpointed loop,
  configured by :class:`EngineOptions`.
"""

from ._engine import EngineOptions
from .grid import (
    MAX_POINTS,
    check_axis,
    check_point_count,
    evaluate_line,
    evaluate_plane,
    grid_axis,
)
from .overlay import (
    plane_coordinates,
    plane_extent,
    points_losses,
    snapshots_evaluation,
    trajectories_on_plane,
)
from .results import Curve, Curves, Line, PlaneTrajectory, Surface

__all__ = [
    "MAX_POINTS",
    "Curve",
    "Curves",
    "EngineOptions",
    "Line",
    "PlaneTrajectory",
    "Surface",
    "check_axis",
    "check_point_count",
    "evaluate_line",
    "evaluate_plane",
    "grid_axis",
    "plane_coordinates",
    "plane_extent",
    "points_losses",
    "snapshots_evaluation",
    "trajectories_on_plane",
]
