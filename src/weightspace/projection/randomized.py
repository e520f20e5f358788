"""Streaming randomized PCA (Halko, Martinsson & Tropp 2011, algorithms 4.4 and 5.1).

For runs with so many snapshots that a ``T × T`` Gram matrix is too large. The centred data
``D (T, n)`` is only ever touched in streamed column blocks: a sketch ``Y = D Ω`` with a
Gaussian ``Ω (n, l)``, ``n_iter`` power iterations ``Y ← D Dᵀ orth(Y)`` (one pass each), then
``M = Qᵀ D Dᵀ Q`` ``(l, l)`` whose eigenpairs give the top left singular vectors ``Q W`` and
eigenvalues. Passes: ``2 + n_iter``; memory: one block plus ``O(T·l)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..checks import numpy_rng
from .gram import Snapshots, block_center, centering_weights, syrk_into, top_eigen

if TYPE_CHECKING:
    from .pca import PCA


def _centred_blocks(pca: PCA, snaps: Snapshots, desc: str) -> Iterator[np.ndarray]:
    w = centering_weights(len(snaps), pca.centering).astype(snaps.dtype)
    for start, block in pca._blocks(snaps, desc):
        block -= block_center(block, snaps, start).astype(block.dtype)
        block -= w @ block
        yield block


def randomized_pca(pca: PCA, snaps: Snapshots, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Top ``k`` eigenpairs of the centred Gram matrix without forming it.

    Returns:
        ``(lam (k,), u (T, k), total)``: eigenvalues descending, orthonormal ``u``, and the
        trace of the centred Gram matrix (the total sum of squares).
    """
    t = len(snaps)
    dt = snaps.dtype
    sketch = min(t, k + int(pca.n_oversamples))
    rng = numpy_rng(pca.seed)
    y = np.zeros((t, sketch))
    total = 0.0
    for d in _centred_blocks(pca, snaps, "PCA sketch"):
        omega = rng.standard_normal((d.shape[1], sketch)).astype(dt)
        y += d @ omega
        total += float(np.einsum("ij,ij->i", d, d).sum(dtype=np.float64))
    for _ in range(int(pca.n_iter)):
        q = np.linalg.qr(y)[0].astype(dt)
        y = np.zeros((t, sketch))
        for d in _centred_blocks(pca, snaps, "PCA power iteration"):
            y += d @ (d.T @ q)
    q = np.linalg.qr(y)[0]
    q_t = np.ascontiguousarray(q.T.astype(dt))
    acc = np.zeros((sketch, sketch))
    for d in _centred_blocks(pca, snaps, "PCA projection"):
        syrk_into(acc, np.ascontiguousarray(q_t @ d))
    m = np.triu(acc) + np.triu(acc, 1).T
    lam, w = top_eigen(m, k)
    return lam, q @ w, total
