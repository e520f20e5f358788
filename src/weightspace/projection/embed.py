"""t-SNE and UMAP of trajectories on the same distances as PHATE, and how well an embedding
keeps trajectories intact.

Horoi et al. report that PHATE keeps training trajectories as paths while t-SNE and UMAP
shatter them; :func:`trajectory_preservation` measures it: the share of each snapshot's
nearest neighbours in the embedding that are also its neighbours in time (same run, within
``window`` recorded steps). :func:`trustworthiness` is scikit-learn's (Venna & Kaski 2001)
on the precomputed distances.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..checks import Seed, numpy_rng
from ..errors import WeightspaceError
from ._gram import Distance, distance_matrix
from ._stream import DEFAULT_MAX_BYTES, SnapshotInput, as_snapshots

__all__ = ["TSNE", "UMAP", "require_umap", "trajectory_preservation", "trustworthiness"]


def _neighbours(points: np.ndarray, k: int, *, precomputed: bool = False) -> np.ndarray:
    if precomputed:
        d = np.array(points, dtype=np.float64)
    else:
        sq = np.einsum("ij,ij->i", points, points)
        d = sq[:, None] + sq[None, :] - 2.0 * points @ points.T
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def trajectory_preservation(
    embedding: np.ndarray,
    *,
    n_neighbors: int = 5,
    window: int | None = None,
    runs: Sequence[int] | None = None,
) -> float:
    """Share of embedding nearest neighbours that are time neighbours, in ``[0, 1]``.

    For each point, its ``n_neighbors`` nearest other points in the embedding are found;
    a neighbour counts when it belongs to the same run and is at most ``window`` snapshots
    away in time. 1 means every neighbourhood is a stretch of the path; a random
    arrangement of one run of ``T`` points scores about ``2·window/T``.

    Args:
        embedding: ``(T, c)`` coordinates, rows in time order within each run.
        n_neighbors: neighbours per point.
        window: time distance that counts as a neighbour (default ``n_neighbors``).
        runs: run lengths when several runs are stacked (default: one run).

    Returns:
        the mean share over all points.
    """
    y = np.asarray(embedding, dtype=np.float64)
    lengths = [len(y)] if runs is None else [int(r) for r in runs]
    if y.ndim != 2 or sum(lengths) != len(y):
        raise WeightspaceError(
            f"embedding: expected (T, c) with T = sum(runs) = {sum(lengths)}, got {y.shape}"
        )
    if isinstance(n_neighbors, bool) or not 1 <= n_neighbors < len(y):
        raise WeightspaceError(f"n_neighbors: expected 1..{len(y) - 1}, got {n_neighbors!r}")
    window = n_neighbors if window is None else int(window)
    run_id = np.repeat(np.arange(len(lengths)), lengths)
    time = np.concatenate([np.arange(n) for n in lengths])
    nb = _neighbours(y, n_neighbors)
    same = (run_id[nb] == run_id[:, None]) & (np.abs(time[nb] - time[:, None]) <= window)
    return float(same.mean())


def trustworthiness(distances: np.ndarray, embedding: np.ndarray, n_neighbors: int = 5) -> float:
    """scikit-learn's trustworthiness of an embedding against precomputed distances."""
    from sklearn.manifold import trustworthiness as sk_trust

    d = np.asarray(distances, dtype=np.float64)
    if n_neighbors >= len(d) / 2:
        raise WeightspaceError(
            f"n_neighbors: expected fewer than T/2 = {len(d) / 2}, got {n_neighbors}"
        )
    return float(sk_trust(d, embedding, n_neighbors=n_neighbors, metric="precomputed"))


class _DistanceEmbedding:
    """Shared fit logic: distances from the Gram matrix, then a precomputed-metric method.

    The embedding is float64 whatever the input dtype; the constructor only stores its
    arguments and :meth:`fit` checks them.
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        distance: Distance = "cosine",
        n_pca: int | None = 100,
        seed: Seed = 0,
        chunk_size: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        progress: bool = False,
    ) -> None:
        self.n_components = n_components
        self.distance = distance
        self.n_pca = n_pca
        self.seed = seed
        self.chunk_size = chunk_size
        self.max_bytes = max_bytes
        self.progress = progress

    def _embed(self, d: np.ndarray, seed: int) -> np.ndarray:
        raise NotImplementedError

    def fit(self, x: SnapshotInput) -> _DistanceEmbedding:
        """Fit on a Trajectory, a list of Trajectories (one joint embedding) or an array."""
        if self.n_components not in (2, 3):
            raise WeightspaceError(f"n_components: expected 2 or 3, got {self.n_components!r}")
        snaps = as_snapshots(x, min_points=4)
        self._validate(len(snaps))
        d = distance_matrix(
            snaps,
            self.distance,
            n_pca=self.n_pca,
            chunk_size=self.chunk_size,
            max_bytes=self.max_bytes,
            progress=self.progress,
        )
        seed = int(numpy_rng(self.seed).integers(0, 2**31 - 1))
        self.distances_ = d
        self.embedding_ = np.asarray(self._embed(d, seed), dtype=np.float64)
        self.embedding_runs_ = snaps.split(self.embedding_)
        self.steps_, self.labels_ = list(snaps.steps), list(snaps.labels)
        self.run_lengths_ = list(snaps.run_lengths)
        return self

    def _validate(self, t: int) -> None:
        pass

    def fit_transform(self, x: SnapshotInput) -> np.ndarray:
        """Fit and return the embedding ``(T, n_components)`` float64 (``embedding_``)."""
        return self.fit(x).embedding_


class TSNE(_DistanceEmbedding):
    """scikit-learn's t-SNE on the trajectory distances (``metric="precomputed"``).

    Args:
        n_components: 2 or 3.
        perplexity: must be below the number of snapshots.
        distance, n_pca: as :class:`~weightspace.PHATE`.
        seed: t-SNE's random initialisation (the same seed gives the same embedding).
        chunk_size, max_bytes, progress: streaming of the Gram pass.

    Fitted attributes: ``embedding_`` ``(T, c)`` float64, ``embedding_runs_``,
    ``distances_``, ``steps_``, ``labels_``, ``run_lengths_``.
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        perplexity: float = 30.0,
        distance: Distance = "cosine",
        n_pca: int | None = 100,
        seed: Seed = 0,
        chunk_size: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        progress: bool = False,
    ) -> None:
        super().__init__(
            n_components, distance=distance, n_pca=n_pca, seed=seed, chunk_size=chunk_size,
            max_bytes=max_bytes, progress=progress,
        )  # fmt: skip
        self.perplexity = perplexity

    def _validate(self, t: int) -> None:
        if not 0 < self.perplexity < t:
            raise WeightspaceError(
                f"perplexity: expected a number in (0, {t}) (below the number of snapshots), "
                f"got {self.perplexity!r}; try perplexity={max(1, t // 4)}"
            )

    def _embed(self, d: np.ndarray, seed: int) -> np.ndarray:
        from sklearn.manifold import TSNE as SkTSNE

        return SkTSNE(
            n_components=self.n_components,
            perplexity=self.perplexity,
            metric="precomputed",
            init="random",
            random_state=seed,
        ).fit_transform(d)


class UMAP(_DistanceEmbedding):
    """UMAP (umap-learn, an optional extra) on the trajectory distances.

    Args:
        n_components: 2 or 3.
        n_neighbors: UMAP's neighbourhood size (below the number of snapshots).
        min_dist: UMAP's minimum embedding distance.
        distance, n_pca, seed, chunk_size, max_bytes, progress: as :class:`TSNE`.

    Fitted attributes: as :class:`TSNE`.

    Raises:
        WeightspaceError: umap-learn is not installed (``pip install umap-learn``).
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        distance: Distance = "cosine",
        n_pca: int | None = 100,
        seed: Seed = 0,
        chunk_size: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        progress: bool = False,
    ) -> None:
        super().__init__(
            n_components, distance=distance, n_pca=n_pca, seed=seed, chunk_size=chunk_size,
            max_bytes=max_bytes, progress=progress,
        )  # fmt: skip
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist

    def _validate(self, t: int) -> None:
        require_umap()
        if isinstance(self.n_neighbors, bool) or not 2 <= self.n_neighbors < t:
            raise WeightspaceError(
                f"n_neighbors: expected an integer in 2..{t - 1}, got {self.n_neighbors!r}"
            )

    def _embed(self, d: np.ndarray, seed: int) -> np.ndarray:
        umap = require_umap()
        # numba's OpenMP layer resets the process's OpenMP thread count, which is torch's:
        # the caller's torch.get_num_threads() must be what it was
        threads = torch.get_num_threads()
        try:
            return self._umap(umap, d, seed)
        finally:
            torch.set_num_threads(threads)

    def _umap(self, umap: Any, d: np.ndarray, seed: int) -> np.ndarray:
        with warnings.catch_warnings():  # precomputed metric / seeded single thread: expected
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            return umap.UMAP(
                n_components=self.n_components,
                n_neighbors=self.n_neighbors,
                min_dist=self.min_dist,
                metric="precomputed",
                random_state=seed,
            ).fit_transform(d)


def require_umap():
    """Import umap-learn, or fail with the line that installs it."""
    try:
        import umap
    except ImportError:
        raise WeightspaceError(
            "method 'umap' needs the optional package umap-learn; pip install umap-learn"
        ) from None
    return umap
