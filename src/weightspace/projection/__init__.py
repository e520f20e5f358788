"""Projections of training trajectories: PCA, the random-walk null, PHATE, t-SNE/UMAP."""

from .embed import TSNE, UMAP, trajectory_preservation, trustworthiness
from .gram import distance_matrix, gram_matrix
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
    "random_walk_null",
    "trajectory_preservation",
    "trustworthiness",
]
