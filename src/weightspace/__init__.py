"""weightspace: see and measure neural-network training in weight space.

Trajectories (PCA, PHATE), loss landscapes and curvature, from recorded runs.
"""

from . import buffers, optimizers, zoo
from ._version import __version__
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
from .errors import CorruptRunError, LayoutMismatchError, WeightspaceError
from .landscape import (
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
from .problems import Problem
from .projection import PCA, PHATE, TSNE, UMAP, compare_to_random_walk, random_walk_null
from .record import Recorder
from .results import Projection, RunProjection, load, save
from .sampling import JumpSamples, jump_and_retrain
from .topology import LossTopology, knn_graph, loss_topology, sublevel_persistence
from .trajectory import Trajectory
from .workflows import (
    DemoSummary,
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
    "CorruptRunError",
    "CurvatureAlong",
    "CurvatureSettings",
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
    "TraceEstimate",
    "Trajectory",
    "WeightspaceError",
    "__version__",
    "buffers",
    "compare_to_random_walk",
    "curvature_along",
    "curvature_at",
    "curvature_between",
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
    "spectral_density",
    "spectrum_of_run",
    "sublevel_persistence",
    "surface_around",
    "top_eigenpairs",
    "trajectories_on_plane",
    "zoo",
]
