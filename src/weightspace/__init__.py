"""weightspace: see and measure neural-network training in weight space.

Trajectories (PCA, PHATE), loss landscapes and curvature, from recorded runs.

Importing the package is cheap: each public name (and each submodule) is imported on first
use, so ``weightspace -h`` answers without loading torch.

>>> import weightspace as ws
>>> ws.zoo.names()[:2]
['digits-mlp', 'digits-cnn']
>>> ws.Trajectory is ws.trajectory.Trajectory
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import CorruptRunError, LayoutMismatchError, WeightspaceError

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports
    from . import buffers, optimizers, zoo
    from ._threads import ThreadChoice, set_threads
    from .between import Connection, align, connect
    from .buffer_layout import BufferLayout
    from .checkpoints import import_checkpoints
    from .curvature import (
        CurvatureAlong,
        CurvatureSettings,
        Eigenpairs,
        HessianOperator,
        SpectralDensity,
        SplitHessianOperator,
        TraceEstimate,
        curvature_along,
        curvature_at,
        curvature_between,
        hutchinson_trace,
        hutchpp_trace,
        plan_hessian,
        spectral_density,
        top_eigenpairs,
    )
    from .directions import (
        Directions,
        directions_from_vectors,
        interpolation_directions,
        load_directions,
        normalize_direction,
        plane_through,
        random_directions,
    )
    from .landscape import (
        Curves,
        EngineOptions,
        Line,
        PlaneTrajectory,
        Surface,
        evaluate_line,
        evaluate_plane,
        plane_coordinates,
        points_losses,
        trajectories_on_plane,
    )
    from .layout import ParamLayout
    from .objective import Evaluation, Objective
    from .problems import Problem, load_problem
    from .projection import PCA, PHATE, TSNE, UMAP, compare_to_random_walk, random_walk_null
    from .record import Recorder
    from .results import Projection, RunProjection, load, save
    from .sampling import JumpSamples, jump_and_retrain
    from .topology import LossTopology, knn_graph, loss_topology, sublevel_persistence
    from .trajectory import Trajectory
    from .workflows import (
        DemoSummary,
        connect_runs,
        curves_of_runs,
        line_between,
        project_runs,
        report,
        run_demo,
        sample_around,
        spectrum_of_run,
        surface_around,
    )


__all__ = [
    "PCA",
    "PHATE",
    "TSNE",
    "UMAP",
    "BufferLayout",
    "Connection",
    "CorruptRunError",
    "CurvatureAlong",
    "CurvatureSettings",
    "Curves",
    "DemoSummary",
    "Directions",
    "Eigenpairs",
    "EngineOptions",
    "Evaluation",
    "HessianOperator",
    "JumpSamples",
    "LayoutMismatchError",
    "Line",
    "LossTopology",
    "Objective",
    "ParamLayout",
    "PlaneTrajectory",
    "Problem",
    "Projection",
    "Recorder",
    "RunProjection",
    "SpectralDensity",
    "SplitHessianOperator",
    "Surface",
    "ThreadChoice",
    "TraceEstimate",
    "Trajectory",
    "WeightspaceError",
    "__version__",
    "align",
    "buffers",
    "compare_to_random_walk",
    "connect",
    "connect_runs",
    "curvature_along",
    "curvature_at",
    "curvature_between",
    "curves_of_runs",
    "directions_from_vectors",
    "evaluate_line",
    "evaluate_plane",
    "hutchinson_trace",
    "hutchpp_trace",
    "import_checkpoints",
    "interpolation_directions",
    "jump_and_retrain",
    "knn_graph",
    "line_between",
    "load",
    "load_directions",
    "load_problem",
    "loss_topology",
    "normalize_direction",
    "optimizers",
    "plan_hessian",
    "plane_coordinates",
    "plane_through",
    "points_losses",
    "project_runs",
    "random_directions",
    "random_walk_null",
    "report",
    "run_demo",
    "sample_around",
    "save",
    "set_threads",
    "spectral_density",
    "spectrum_of_run",
    "sublevel_persistence",
    "surface_around",
    "top_eigenpairs",
    "trajectories_on_plane",
    "zoo",
]

# Importing the package costs nothing heavy (``weightspace -h`` must not import torch): each
# public name is imported from the submodule below on first access (PEP 562), then cached.
# Keep this table and the TYPE_CHECKING imports above the same (tests/test_cli_startup.py).
_LAZY: dict[str, tuple[str, ...]] = {
    ".between": ("Connection", "align", "connect"),
    ".buffer_layout": ("BufferLayout",),
    ".checkpoints": ("import_checkpoints",),
    ".curvature": (
        "CurvatureAlong",
        "CurvatureSettings",
        "Eigenpairs",
        "HessianOperator",
        "SpectralDensity",
        "SplitHessianOperator",
        "TraceEstimate",
        "curvature_along",
        "curvature_at",
        "curvature_between",
        "hutchinson_trace",
        "hutchpp_trace",
        "plan_hessian",
        "spectral_density",
        "top_eigenpairs",
    ),
    ".directions": (
        "Directions",
        "directions_from_vectors",
        "interpolation_directions",
        "load_directions",
        "normalize_direction",
        "plane_through",
        "random_directions",
    ),
    ".landscape": (
        "Curves",
        "EngineOptions",
        "Line",
        "PlaneTrajectory",
        "Surface",
        "evaluate_line",
        "evaluate_plane",
        "plane_coordinates",
        "points_losses",
        "trajectories_on_plane",
    ),
    ".layout": ("ParamLayout",),
    ".objective": ("Evaluation", "Objective"),
    ".problems": ("Problem", "load_problem"),
    ".projection": ("PCA", "PHATE", "TSNE", "UMAP", "compare_to_random_walk", "random_walk_null"),
    ".record": ("Recorder",),
    ".results": ("Projection", "RunProjection", "load", "save"),
    "._threads": ("ThreadChoice", "set_threads"),
    ".sampling": ("JumpSamples", "jump_and_retrain"),
    ".topology": ("LossTopology", "knn_graph", "loss_topology", "sublevel_persistence"),
    ".trajectory": ("Trajectory",),
    ".workflows": (
        "DemoSummary",
        "connect_runs",
        "curves_of_runs",
        "line_between",
        "project_runs",
        "report",
        "run_demo",
        "sample_around",
        "spectrum_of_run",
        "surface_around",
    ),
}
_SOURCES = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    """A public name (``ws.Trajectory``) or a submodule (``ws.zoo``), imported on first use."""
    if name in _SOURCES:
        value = getattr(importlib.import_module(_SOURCES[name], __name__), name)
    elif name.isidentifier() and not name.startswith("__"):
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise  # the submodule exists; something it imports is missing
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
