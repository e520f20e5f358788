"""Projections of training trajectories: PCA, the random-walk null, PHATE, t-SNE/UMAP.

The public surface is what this package exports (``__all__``); the modules ``pca``, ``phate``,
``embed`` and ``nulls`` are public too, each with its own ``__all__``. Modules with a leading
underscore (``_stream``: the snapshot streamer, ``_gram``: Gram matrices and distances,
``_randomized``: the randomized PCA solver) are internal.
"""

from ._gram import distance_matrix, gram_matrix
from ._stream import iter_blocks
from .embed import TSNE, UMAP, trajectory_preservation, trustworthiness
from .nulls import NullComparison, RandomWalkNull, compare_to_random_walk, random_walk_null
from .pca import PCA
from .phate import PHATE

__all__ = [
    "PCA",
    "PHATE",
    "TSNE",
    "UMAP",
    "NullComparison",
    "RandomWalkNull",
    "compare_to_random_walk",
    "distance_matrix",
    "gram_matrix",
    "iter_blocks",
    "random_walk_null",
    "trajectory_preservation",
    "trustworthiness",
]
