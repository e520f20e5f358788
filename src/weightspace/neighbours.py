"""Symmetric k-nearest-neighbour graphs of point clouds (exact, deterministic).

The graph the loss topology is computed on (:mod:`weightspace.topology`): ``{i, j}`` is an
edge when either point is among the ``k`` nearest others of the other. Up to
``KDTREE_MAX_DIM`` dimensions the search is an exact KD-tree (SciPy); above, exact distances
in row blocks. Ties at the k-th distance go to the lower index.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .checks import as_array
from .errors import WeightspaceError

__all__ = ["knn_graph"]

KDTREE_MAX_DIM = 16  # exact kNN by a KD-tree up to this dimension, by distance blocks above


def knn_graph(
    points: Any,
    k: int,
    *,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    chunk_size: int = 1024,
) -> np.ndarray:
    """Symmetric k-nearest-neighbour graph: ``{i, j}`` is an edge when either point is among
    the ``k`` nearest others of the other.

    Ties at the k-th distance go to the lower index, so the graph is deterministic.

    Args:
        points: (N, d) coordinates (an embedding, or raw vectors).
        k: neighbours per point, ``1 ≤ k < N``.
        metric: ``"euclidean"`` or ``"cosine"`` (``1 − cos``) distance.
        chunk_size: rows of the (chunk, N) distance block computed at once (points of more
            than 16 dimensions; up to 16, an exact KD-tree search is used).

    Returns:
        (E, 2) int64 edges ``i < j``, unique, sorted lexicographically.

    Raises:
        WeightspaceError: non-finite points, ``k`` out of range, an unknown metric, or a
            zero vector under the cosine metric.

    Example:
        >>> knn_graph(np.array([[0.0], [1.0], [3.0], [7.0]]), k=1).tolist()
        [[0, 1], [1, 2], [2, 3]]
    """
    x = as_array(points, "points", 2)
    n = x.shape[0]
    if not np.isfinite(x).all():
        raise WeightspaceError("points: expected finite coordinates, got NaN/inf; drop those rows")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise WeightspaceError(
            f"k: expected an integer in 1..{n - 1} (N − 1 for N={n} points), got {k!r}; "
            "lower k or pass more points"
        )
    if metric not in ("euclidean", "cosine"):
        raise WeightspaceError(
            f"metric: expected 'euclidean' or 'cosine', got {metric!r}; pick one of those"
        )
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise WeightspaceError(
                f"points: the cosine metric needs non-zero rows, got a zero row at index "
                f"{int(np.argmin(norms))}; use metric='euclidean'"
            )
        x = x / norms
    k = int(k)
    if x.shape[1] <= KDTREE_MAX_DIM:
        nbr, redo = _knn_kdtree(x, k)
    else:
        nbr, redo = np.empty((n, k), dtype=np.int64), np.arange(n)
    step = max(int(chunk_size), 1)
    for s in range(0, redo.size, step):
        nbr[redo[s : s + step]] = _knn_rows(x, redo[s : s + step], k)
    i, j = np.repeat(np.arange(n), k), nbr.ravel()
    pairs = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1).astype(np.int64)
    return np.unique(pairs, axis=0)


def _knn_rows(x: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """(len(rows), k) nearest others of ``x[rows]`` by exact distances; ties to the lower index."""
    sq = np.einsum("ij,ij->i", x, x)
    d = sq[rows, None] + sq[None, :] - 2.0 * (x[rows] @ x.T)
    np.maximum(d, 0.0, out=d)
    d[np.arange(rows.size), rows] = np.inf  # never one's own neighbour
    nbr = np.argpartition(d, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(d, nbr, axis=1).max(axis=1)
    for r in np.flatnonzero((d <= kth[:, None]).sum(axis=1) > k):  # a tie at the k-th distance
        nbr[r] = np.argsort(d[r], kind="stable")[:k]
    return nbr


def _knn_kdtree(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) nearest others by scipy's KD-tree, and the rows to redo exactly: those with a
    tie at the k-th distance (which the tree breaks arbitrarily)."""
    from scipy.spatial import cKDTree

    n = x.shape[0]
    dist, nbr = cKDTree(x).query(x, min(k + 2, n))
    own = nbr == np.arange(n)[:, None]
    order = np.argsort(own, axis=1, kind="stable")  # oneself last
    dist = np.take_along_axis(dist, order, axis=1)[:, :-1]
    nbr = np.take_along_axis(nbr, order, axis=1)[:, :-1]
    redo = ~own.any(axis=1)  # many duplicates hid the point itself
    if dist.shape[1] > k:
        redo |= dist[:, k - 1] == dist[:, k]
    return np.ascontiguousarray(nbr[:, :k], dtype=np.int64), np.flatnonzero(redo)
