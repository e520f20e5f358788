"""The T×T Gram matrix of snapshots, its centring, eigenpairs and the distances from it.

Every projection here works on the ``T × T`` Gram matrix of the snapshots, never on a dense
``T × n`` copy: parameter columns are streamed in blocks across all snapshots by
:func:`~weightspace.projection.iter_blocks`, each block is multiplied with BLAS ``syrk`` in the
block's dtype and added to a float64 accumulator. Before the multiplication a block is
translated by its own column mean, which leaves every centred quantity unchanged (centring is
then applied exactly to the Gram matrix) and keeps float32 round-off relative to the spread
of the trajectory instead of to the size of the weights.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import numpy as np
from scipy.linalg import blas, eigh
from threadpoolctl import threadpool_limits

from ..checks import one_of, positive_int
from ._stream import (
    DEFAULT_MAX_BYTES,
    SnapshotInput,
    Snapshots,
    as_snapshots,
    block_center,
    iter_blocks,
)

SINGLE_THREAD_EIGEN_MAX_T = 2000
Centering = Literal["mean", "final", "none"]
Distance = Literal["cosine", "euclidean", "cosine_raw"]


def syrk_into(acc: np.ndarray, block: np.ndarray) -> None:
    """``acc += block @ block.T`` (upper triangle), BLAS syrk in the block's dtype."""
    fn = blas.dsyrk if block.dtype == np.float64 else blas.ssyrk
    acc += fn(1.0, block.T, trans=1, lower=0)


def centering_weights(t: int, center: Centering) -> np.ndarray | None:
    """``w (T,)`` with the centre ``w @ X``: the mean, the final snapshot, or None."""
    if center == "mean":
        return np.full(t, 1.0 / t)
    if center == "final":
        w = np.zeros(t)
        w[-1] = 1.0
        return w
    return None


def center_gram(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Gram of ``X − 1 wᵀX`` from the Gram of any translate of ``X``: ``(I−1wᵀ) G (I−w1ᵀ)``."""
    gw = g @ w
    return g - gw[None, :] - gw[:, None] + float(w @ gw)


def gram_matrix(
    x: SnapshotInput | Snapshots,
    *,
    center: Centering = "mean",
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = False,
) -> np.ndarray:
    """The ``(T, T)`` float64 Gram matrix of the snapshots, in one streaming pass.

    Args:
        x: a Trajectory, a list of them (rows in run order), or a ``(T, n)`` array.
        center: ``"mean"`` (``X − mean``), ``"final"`` (``X − θ_T``, the last snapshot of
            the last run) or ``"none"`` (raw inner products).
        chunk_size: parameter columns per streamed block; default from ``max_bytes``.
        max_bytes: memory budget of the streamed block.
        progress: show a progress bar.

    Returns:
        ``G: (T, T)``, ``G[i, j] = (x_i − c)·(x_j − c)``.

    Raises:
        WeightspaceError: fewer than 2 snapshots, NaN/inf snapshots, mismatched runs.

    Example:
        >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
        >>> gram_matrix(x).round(6).tolist()
        [[1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 1.0]]
    """
    one_of(center, ("mean", "final", "none"), "center")
    snaps = as_snapshots(x)
    t = len(snaps)
    acc = np.zeros((t, t), dtype=np.float64)
    for start, block in iter_blocks(
        snaps, chunk_size=chunk_size, max_bytes=max_bytes, progress=progress, desc="Gram"
    ):
        mean = block_center(block, snaps, start)
        if center != "none":
            block -= mean.astype(block.dtype)
        syrk_into(acc, block)
    g = np.triu(acc) + np.triu(acc, 1).T
    w = centering_weights(t, center)
    return g if w is None else center_gram(g, w)


def dense_solver_threads(t: int):
    """Context for dense ``T × T`` work (eigensolvers, MDS): one BLAS thread up to T = 2000.

    At this size symmetric eigensolvers are chains of small BLAS calls and the MDS loop is
    memory-bound; with several threads on a busy machine their synchronisation costs far
    more than it saves (measured on a loaded 2-core host: a 1000 × 1000 ``eigvalsh`` took
    0.2 s on one thread and 4–7 s on two; a ``(1000, 1000) @ (1000, 2)`` product 1.2 ms and
    12 ms).
    """
    return threadpool_limits(1) if t <= SINGLE_THREAD_EIGEN_MAX_T else contextlib.nullcontext()


def top_eigen(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest ``k`` eigenpairs of a symmetric ``(T, T)`` matrix, descending."""
    t = len(g)
    with dense_solver_threads(t):
        if k > t // 2:
            lam, u = np.linalg.eigh(g)
        else:
            lam, u = eigh(g, subset_by_index=(t - k, t - 1), driver="evr")
    order = np.argsort(lam)[::-1][:k]
    return lam[order], u[:, order]


def distances_from_gram(g: np.ndarray, metric: Literal["cosine", "euclidean"]) -> np.ndarray:
    """Pairwise distances ``(T, T)`` from a Gram matrix (zero diagonal, symmetric).

    ``cosine`` is ``1 − cos``; a zero vector has distance 1 to every other point.
    """
    d = np.diag(g).copy()
    if metric == "euclidean":
        out = np.sqrt(np.maximum(d[:, None] + d[None, :] - 2.0 * g, 0.0))
    else:
        norms = np.sqrt(np.maximum(d, 0.0))
        denom = norms[:, None] * norms[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.where(denom > 0, g / np.where(denom > 0, denom, 1.0), 0.0)
        out = np.clip(1.0 - cos, 0.0, 2.0)
    out = 0.5 * (out + out.T)
    np.fill_diagonal(out, 0.0)
    return out


def distance_matrix(
    x: SnapshotInput | Snapshots,
    distance: Distance = "cosine",
    *,
    n_pca: int | None = 100,
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = False,
) -> np.ndarray:
    """Pairwise snapshot distances ``(T, T)`` computed from the Gram matrix.

    Args:
        x: snapshots (see :func:`gram_matrix`).
        distance: ``"cosine"`` or ``"euclidean"`` between centred PCA scores (the top
            ``n_pca`` components), or ``"cosine_raw"`` between the raw parameter vectors.
            The PHATE reference package computes ``"cosine"`` above 100 snapshots and 100
            parameters and ``"cosine_raw"`` at or below either (it skips its PCA there).
        n_pca: components kept for ``cosine``/``euclidean``; None keeps all (exact).

    Returns:
        ``D: (T, T)`` float64, symmetric, zero diagonal.
    """
    one_of(distance, ("cosine", "euclidean", "cosine_raw"), "distance")
    if n_pca is not None:
        positive_int(n_pca, "n_pca", "; or None to keep every component")
    center: Centering = "none" if distance == "cosine_raw" else "mean"
    g = gram_matrix(x, center=center, chunk_size=chunk_size, max_bytes=max_bytes, progress=progress)
    if center == "mean" and n_pca is not None and n_pca < len(g) - 1:
        lam, u = top_eigen(g, int(n_pca))
        g = (u * np.maximum(lam, 0.0)) @ u.T
    return distances_from_gram(g, "euclidean" if distance == "euclidean" else "cosine")
