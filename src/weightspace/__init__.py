"""weightspace: see and measure neural-network training in weight space.

Trajectories (PCA, PHATE), loss landscapes and curvature, from recorded runs.
"""

from . import buffers, optimizers, zoo
from ._version import __version__
from .checkpoints import import_checkpoints
from .curvature import (
    CurvatureAlong,
    Eigenpairs,
    HessianOperator,
    SpectralDensity,
    TraceEstimate,
    curvature_along,
    curvature_between,
    hutchinson_trace,
    hutchpp_trace,
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
    Line,
    PlaneTrajectory,
    Surface,
    evaluate_line,
    evaluate_plane,
    load_line,
    load_surface,
    save_line,
    save_surface,
)
from .layout import ParamLayout
from .objective import Evaluation, Objective, Problem
from .overlay import plane_coordinates, points_losses, trajectories_on_plane
from .projection import PCA, PHATE, TSNE, UMAP, compare_to_random_walk, random_walk_null
from .record import Recorder
from .sampling import JumpSamples, jump_and_retrain
from .store import load_result, save_result
from .topology import (
    LossTopology,
    knn_graph,
    load_topology,
    loss_topology,
    save_topology,
    sublevel_persistence,
)
from .trajectory import Trajectory

__all__ = [
    "PCA",
    "PHATE",
    "TSNE",
    "UMAP",
    "CorruptRunError",
    "CurvatureAlong",
    "Directions",
    "Eigenpairs",
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
    "Recorder",
    "SpectralDensity",
    "Surface",
    "TraceEstimate",
    "Trajectory",
    "WeightspaceError",
    "__version__",
    "buffers",
    "compare_to_random_walk",
    "curvature_along",
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
    "load_directions",
    "load_line",
    "load_result",
    "load_surface",
    "load_topology",
    "loss_topology",
    "normalize_direction",
    "optimizers",
    "plane_coordinates",
    "plane_through",
    "points_losses",
    "random_directions",
    "random_walk_null",
    "save_line",
    "save_result",
    "save_surface",
    "save_topology",
    "spectral_density",
    "sublevel_persistence",
    "top_eigenpairs",
    "trajectories_on_plane",
    "zoo",
]
