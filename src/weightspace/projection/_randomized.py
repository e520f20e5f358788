"""Streaming randomized PCA (Halko, Martinsson & Tropp 2011, algorithms 4.4 and 5.1).

For runs with so many snapshots that a ``T × T`` Gram matrix is too large. The centred data
``D (T, n)`` is only ever touched in streamed column blocks: a sketch ``Y = D Ω`` with a
Gaussian ``Ω (n, l)``, ``n_iter`` power iterations ``Y ← D Dᵀ orth(Y)`` (one pass each), then
``M = Qᵀ D Dᵀ Q`` ``(l, l)`` whose eigenpairs give the top left singular vectors ``Q W`` and
eigenvalues. Passes: ``2 + n_iter``; memory: one block plus ``O(T·l)``.

The solver takes the snapshots and its settings as arguments and streams through the
module-level :func:`~weightspace.projection._stream.iter_blocks`; it knows nothing of
:class:`~weightspace.PCA`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..checks import Seed, numpy_rng
from ._gram import Centering, centering_weights, syrk_into, top_eigen
from ._stream import DEFAULT_MAX_BYTES, Snapshots, block_center, iter_blocks


def _centred_blocks(
    snaps: Snapshots, centering: Centering, stream: dict[str, Any], desc: str
) -> Iterator[np.ndarray]:
    w = centering_weights(len(snaps), centering).astype(snaps.dtype)
    for start, block in iter_blocks(snaps, desc=desc, **stream):
        block -= block_center(block, snaps, start).astype(block.dtype)
        block -= w @ block
        yield block


def randomized_pca(
    snaps: Snapshots,
    k: int,
    *,
    centering: Centering = "mean",
    n_oversamples: int = 10,
    n_iter: int = 4,
    seed: Seed = 0,
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Top ``k`` eigenpairs of the centred Gram matrix without forming it.

    Args:
        snaps: the snapshots (see :func:`~weightspace.projection._stream.as_snapshots`).
        k: eigenpairs wanted.
        centering: ``"mean"`` or ``"final"`` (as :class:`~weightspace.PCA`).
        n_oversamples, n_iter: sketch size ``k + n_oversamples`` and power iterations.
        seed: randomness of the sketch.
        chunk_size, max_bytes, progress: streaming (see ``iter_blocks``).

    Returns:
        ``(lam (k,), u (T, k), total)``: eigenvalues descending, orthonormal ``u``, and the
        trace of the centred Gram matrix (the total sum of squares).
    """
    stream = {"chunk_size": chunk_size, "max_bytes": max_bytes, "progress": progress}
    t = len(snaps)
    dt = snaps.dtype
    sketch = min(t, k + int(n_oversamples))
    rng = numpy_rng(seed)
    y = np.zeros((t, sketch))
    total = 0.0
    for d in _centred_blocks(snaps, centering, stream, "PCA sketch"):
        omega = rng.standard_normal((d.shape[1], sketch)).astype(dt)
        y += d @ omega
        total += float(np.einsum("ij,ij->i", d, d).sum(dtype=np.float64))
    for _ in range(int(n_iter)):
        q = np.linalg.qr(y)[0].astype(dt)
        y = np.zeros((t, sketch))
        for d in _centred_blocks(snaps, centering, stream, "PCA power iteration"):
            y += d @ (d.T @ q)
    q = np.linalg.qr(y)[0]
    q_t = np.ascontiguousarray(q.T.astype(dt))
    acc = np.zeros((sketch, sketch))
    for d in _centred_blocks(snaps, centering, stream, "PCA projection"):
        syrk_into(acc, np.ascontiguousarray(q_t @ d))
    m = np.triu(acc) + np.triu(acc, 1).T
    lam, w = top_eigen(m, k)
    return lam, q @ w, total
