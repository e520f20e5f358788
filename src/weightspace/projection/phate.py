"""PHATE (Moon et al., Nature Biotechnology 2019), implemented from the paper.

Steps: pairwise distances (from the Gram matrix; cosine between centred PCA scores by
default, as Horoi et al. use for trajectories; the reference package uses the raw vectors' cosine
at ≤ 100 snapshots or parameters, ``distance="cosine_raw"`` here) → α-decaying kNN kernel
``K(x, y) = ½ exp(−(d/ε_k(x))^α) + ½ exp(−(d/ε_k(y))^α)`` with ``ε_k(x)`` the distance from
``x`` to its k-th *nearest* other point → diffusion operator ``P = D⁻¹K`` → diffusion time
``t`` at the knee of the von Neumann entropy of ``Pᵗ`` → potential ``−log(Pᵗ + ε)`` →
metric MDS of the Euclidean distances between potential rows (classical MDS, then SMACOF).

Everything is dense ``T × T``: fine to a few thousand snapshots; beyond ``max_points`` the
fit refuses (no landmarks) and says so.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.spatial.distance import cdist

from ..errors import WeightspaceError
from ._gram import Distance, dense_solver_threads, distance_matrix, top_eigen
from ._stream import DEFAULT_MAX_BYTES, SnapshotInput, as_snapshots
from .pca import fix_signs

__all__ = [
    "PHATE",
    "alpha_decay_kernel",
    "classical_mds",
    "knee_point",
    "smacof",
    "von_neumann_entropy",
]

T_MAX = 100  # largest diffusion time searched by t="auto" (the reference's t_max)
POTENTIAL_EPS = 1e-7  # ε of the log potential −log(Pᵗ + ε) (the reference's constant)
KERNEL_THRESHOLD = 1e-4  # kernel affinities below this are dropped (graphtools' thresh)


def alpha_decay_kernel(
    d: np.ndarray, knn: int = 5, decay: float = 40.0, thresh: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """The symmetric α-decay kernel from a distance matrix.

    Args:
        d: ``(T, T)`` pairwise distances.
        knn: the bandwidth of point ``x`` is its distance to its ``knn``-th nearest other
            point (``ε_k(x)``).
        decay: ``α``.
        thresh: affinities below this are set to 0 before symmetrising.

    Returns:
        ``(K (T, T), bandwidth (T,))``.
    """
    t = len(d)
    off = d + np.diag(np.full(t, np.inf))
    bandwidth = np.partition(off, knn - 1, axis=1)[:, knn - 1]
    zero = bandwidth <= 0  # duplicates: use the nearest positive distance
    if zero.any():
        pos = np.where(off > 0, off, np.inf)
        bandwidth[zero] = pos[zero].min(axis=1)
    bandwidth = np.where(np.isfinite(bandwidth) & (bandwidth > 0), bandwidth, 1.0)
    with np.errstate(over="ignore"):
        a = np.exp(-np.power(d / bandwidth[:, None], decay))
    a[a < thresh] = 0.0
    return 0.5 * (a + a.T), bandwidth


def von_neumann_entropy(eigenvalues: np.ndarray, t_max: int = 100) -> np.ndarray:
    """``H(t) = −Σ ηᵢ log ηᵢ`` with ``η = |λ|ᵗ / Σ|λ|ᵗ``, for ``t = 1..t_max``: ``(t_max,)``."""
    lam = np.abs(np.asarray(eigenvalues, dtype=np.float64))
    lam = lam[lam > 0]
    out = np.empty(t_max)
    logl = np.log(lam)
    for i in range(t_max):
        logp = (i + 1) * logl
        logp -= logp.max()
        p = np.exp(logp)
        p /= p.sum()
        nz = p > 0
        out[i] = -np.sum(p[nz] * np.log(p[nz]))
    return out


def knee_point(y: np.ndarray) -> int:
    """Index of the knee of a curve: the breakpoint ``b`` minimising the total absolute
    error of two least-squares lines fitted to ``y[:b+1]`` and ``y[b:]``."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) < 3:
        raise WeightspaceError(f"y: expected a curve of at least 3 points, got {y.shape}")
    x = np.arange(len(y), dtype=np.float64)
    errors = np.full(len(y), np.inf)
    for b in range(1, len(y) - 1):
        err = 0.0
        for xs, ys in ((x[: b + 1], y[: b + 1]), (x[b:], y[b:])):
            coef = np.polyfit(xs, ys, 1)
            err += float(np.abs(np.polyval(coef, xs) - ys).sum())
        errors[b] = err
    return int(np.argmin(errors))


def classical_mds(d: np.ndarray, n_components: int) -> np.ndarray:
    """Classical (Torgerson) MDS: top eigenvectors of ``−½ J D² J``; ``(T, c)``."""
    d2 = d**2
    b = -0.5 * (d2 - d2.mean(axis=0) - d2.mean(axis=1)[:, None] + d2.mean())
    lam, v = top_eigen(b, n_components)
    return v * np.sqrt(np.maximum(lam, 0.0))


def smacof(
    d: np.ndarray, init: np.ndarray, *, max_iter: int = 300, tol: float = 1e-6
) -> tuple[np.ndarray, float]:
    """Metric MDS by SMACOF (Guttman transform iterations) from ``init``; returns
    ``(embedding (T, c), stress)`` with stress ``Σ_{i<j} (d_ij − ‖y_i − y_j‖)²``."""
    y = np.array(init, dtype=np.float64)
    t = len(d)
    d_sq = float(np.vdot(d, d))
    prev = np.inf
    ratio = np.empty_like(d)
    for it in range(max_iter + 1):
        dy = cdist(y, y)
        yc = y - y.mean(axis=0)
        dy_sq = 2.0 * t * float(np.vdot(yc, yc))  # Σ_ij ‖y_i − y_j‖²
        stress = 0.25 * (dy_sq - 2.0 * float(np.vdot(dy, d)) + d_sq)  # pairs counted twice
        if it == max_iter or (np.isfinite(prev) and prev - stress <= tol * prev):
            break
        prev = stress
        np.fill_diagonal(dy, np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(d, dy, out=ratio)
        rowsum = ratio.sum(axis=1)
        if not np.isfinite(rowsum).all():  # coincident points: no pull between them
            ratio[~np.isfinite(ratio)] = 0.0
            rowsum = ratio.sum(axis=1)
        y = (rowsum[:, None] * y - ratio @ y) / t  # Guttman transform B(y)·y / T
    return y, max(stress, 0.0)


class PHATE:
    """PHATE embedding of one trajectory or several (one joint embedding).

    Args:
        n_components: 2 or 3.
        knn: neighbours defining each point's bandwidth (reference default 5).
        decay: ``α`` of the kernel (reference default 40).
        t: diffusion time, or ``"auto"`` (knee of the von Neumann entropy over
            ``t = 1..100``, :data:`T_MAX`).
        distance: ``"cosine"`` between centred PCA scores (default), ``"euclidean"``
            between them, or ``"cosine_raw"`` between the raw parameter vectors. The
            reference package with ``knn_dist="cosine"`` computes ``"cosine"`` when it has
            more than ``n_pca`` (100) snapshots and more than 100 parameters, and
            ``"cosine_raw"`` otherwise (it skips its PCA step there): pick ``"cosine_raw"``
            to reproduce it on short runs.
        n_pca: PCA components behind ``cosine``/``euclidean`` (None: all, exact).
        mds_max_iter, mds_tol: SMACOF iterations and relative stress tolerance.
        max_points: refuse more snapshots than this (dense ``T × T`` work).
        chunk_size, max_bytes, progress: streaming of the Gram pass.

    The potential's ``ε`` (1e-7) and the kernel threshold (1e-4) are the reference
    package's constants (:data:`POTENTIAL_EPS`, :data:`KERNEL_THRESHOLD`).

    Fitted attributes: ``embedding_ (T, c)``, ``embedding_runs_`` (one ``(T_i, c)`` per
    run), ``steps_``, ``labels_``, ``distances_ (T, T)`` (input), ``bandwidth_ (T,)``,
    ``kernel_ (T, T)``, ``diff_op_ (T, T)``, ``entropy_ (100,)`` (auto only), ``t_``,
    ``potential_distances_ (T, T)``, ``stress_``. The embedding is rotated to its principal
    axes, with :func:`~weightspace.projection.pca.fix_signs` signs, so it is deterministic
    (PHATE has no randomness, hence no seed). It is float64 whatever the input dtype. The
    constructor only stores its arguments; :meth:`fit` checks them.

    Example:
        >>> x = np.cumsum(np.random.default_rng(0).normal(size=(60, 50)) + 0.5, axis=0)
        >>> PHATE().fit_transform(x).shape
        (60, 2)
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        knn: int = 5,
        decay: float = 40.0,
        t: int | Literal["auto"] = "auto",
        distance: Distance = "cosine",
        n_pca: int | None = 100,
        mds_max_iter: int = 300,
        mds_tol: float = 1e-6,
        max_points: int = 5000,
        chunk_size: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        progress: bool = False,
    ) -> None:
        self.n_components = n_components
        self.knn = knn
        self.decay = decay
        self.t = t
        self.distance = distance
        self.n_pca = n_pca
        self.mds_max_iter = mds_max_iter
        self.mds_tol = mds_tol
        self.max_points = max_points
        self.chunk_size = chunk_size
        self.max_bytes = max_bytes
        self.progress = progress

    def _check(self, n: int) -> None:
        if self.n_components not in (2, 3):
            raise WeightspaceError(f"n_components: expected 2 or 3, got {self.n_components!r}")
        if n > self.max_points:
            raise WeightspaceError(
                f"PHATE: {n} snapshots exceed max_points={self.max_points} (dense T×T "
                f"matrices, ~{40 * n * n / 2**30:.1f} GiB); project every k-th snapshot or "
                "raise max_points"
            )
        if isinstance(self.knn, bool) or not isinstance(self.knn, int) or not 1 <= self.knn < n:
            raise WeightspaceError(
                f"knn: expected an integer in 1..{n - 1} (T − 1), got {self.knn!r}; "
                "lower knn or project more snapshots"
            )
        if not self.decay > 0:
            raise WeightspaceError(f"decay: expected a positive number, got {self.decay!r}")
        if self.t != "auto" and (isinstance(self.t, bool) or not isinstance(self.t, int)
                                 or self.t < 1):  # fmt: skip
            raise WeightspaceError(f"t: expected 'auto' or a positive integer, got {self.t!r}")

    def fit(self, x: SnapshotInput) -> PHATE:
        """Fit on a Trajectory, a list of Trajectories, or a ``(T, n)`` array.

        Raises:
            WeightspaceError: bad settings, too few or too many snapshots, NaN snapshots.
            LayoutMismatchError: runs of different models in a joint fit.
        """
        snaps = as_snapshots(x, min_points=3)
        self._check(len(snaps))
        d = distance_matrix(
            snaps,
            self.distance,
            n_pca=self.n_pca,
            chunk_size=self.chunk_size,
            max_bytes=self.max_bytes,
            progress=self.progress,
        )
        return self._fit_distances(d, snaps.split, list(snaps.steps), list(snaps.labels))

    def fit_distances(self, d: np.ndarray) -> PHATE:
        """Fit on a precomputed ``(T, T)`` distance matrix."""
        d = np.asarray(d, dtype=np.float64)
        if d.ndim != 2 or d.shape[0] != d.shape[1] or not np.isfinite(d).all():
            raise WeightspaceError(f"d: expected a finite square distance matrix, got {d.shape}")
        self._check(len(d))
        return self._fit_distances(d, lambda v: [v], [np.arange(len(d))], ["run0"])

    def _fit_distances(self, d, split, steps, labels) -> PHATE:
        with dense_solver_threads(len(d)):  # memory-bound T×T work: threads only contend
            return self._fit_dense(d, split, steps, labels)

    def _fit_dense(self, d, split, steps, labels) -> PHATE:
        k, bandwidth = alpha_decay_kernel(d, self.knn, self.decay, KERNEL_THRESHOLD)
        deg = k.sum(axis=1)
        sym = k / np.sqrt(np.outer(deg, deg))  # D^-½ K D^-½, similar to P
        if self.t == "auto":
            self.entropy_ = von_neumann_entropy(np.linalg.eigvalsh(sym), T_MAX)
            t = knee_point(self.entropy_) + 1
        else:
            self.entropy_ = None
            t = int(self.t)
        scale = np.sqrt(deg)
        p_t = np.linalg.matrix_power(sym, t) * (scale[None, :] / scale[:, None])
        potential = -np.log(np.clip(p_t, 0.0, None) + POTENTIAL_EPS)
        sq = np.einsum("ij,ij->i", potential, potential)
        pd = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * potential @ potential.T, 0.0))
        pd = 0.5 * (pd + pd.T)
        np.fill_diagonal(pd, 0.0)
        y, stress = smacof(
            pd, classical_mds(pd, self.n_components), max_iter=self.mds_max_iter, tol=self.mds_tol
        )
        y -= y.mean(axis=0)
        _, _, axes = np.linalg.svd(y, full_matrices=False)
        y = y @ axes.T
        fix_signs(y)
        self.distances_, self.bandwidth_, self.kernel_ = d, bandwidth, k
        self.diff_op_ = k / deg[:, None]
        self.t_ = t
        self.potential_distances_ = pd
        self.stress_ = stress
        self.embedding_ = y
        self.embedding_runs_ = split(y)
        self.steps_, self.labels_ = steps, labels
        return self

    def fit_transform(self, x: SnapshotInput) -> np.ndarray:
        """Fit and return the embedding ``(T, n_components)`` float64 (``embedding_``)."""
        return self.fit(x).embedding_
