"""weightspace: see and measure neural-network training in weight space.

Trajectories (PCA, PHATE), loss landscapes and curvature, from recorded runs.
"""

from . import zoo
from ._version import __version__
from .checkpoints import import_checkpoints
from .errors import CorruptRunError, LayoutMismatchError, WeightspaceError
from .layout import ParamLayout
from .objective import Evaluation, Objective, Problem
from .projection import PCA, PHATE, TSNE, UMAP, compare_to_random_walk, random_walk_null
from .record import Recorder
from .store import load_result, save_result
from .trajectory import Trajectory

__all__ = [
    "PCA",
    "PHATE",
    "TSNE",
    "UMAP",
    "CorruptRunError",
    "Evaluation",
    "LayoutMismatchError",
    "Objective",
    "ParamLayout",
    "Problem",
    "Recorder",
    "Trajectory",
    "WeightspaceError",
    "__version__",
    "compare_to_random_walk",
    "import_checkpoints",
    "load_result",
    "random_walk_null",
    "save_result",
    "zoo",
]
