"""PCA of training trajectories (Lorch 2016; Lipton 2016), exact and streaming.

The exact solver never forms a ``T × n`` matrix: it accumulates the ``T × T`` Gram matrix in
float64 over streamed parameter columns (:func:`~weightspace.projection.gram_matrix`), centres
it, and takes its eigendecomposition; scores are ``U·sqrt(λ)``. Directions in parameter space
(``components_``) need a second streaming pass and are computed only when asked. The
randomized solver (Halko, Martinsson & Tropp 2011) streams the data ``2 + n_iter`` times and
never holds more than ``T × (k + oversamples)`` numbers, for runs with very many snapshots.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import torch

from ..checks import Seed, non_negative_int, one_of, positive_int
from ..errors import WeightspaceError
from ._gram import centering_weights, gram_matrix, top_eigen
from ._randomized import randomized_pca
from ._stream import (
    DEFAULT_MAX_BYTES,
    SnapshotInput,
    Snapshots,
    as_snapshots,
    block_center,
    iter_blocks,
)

__all__ = ["PCA", "fix_signs", "pca_from_gram"]

log = logging.getLogger(__name__)

Solver = Literal["exact", "randomized", "auto"]
AUTO_EXACT_MAX_T = 5000


def fix_signs(u: np.ndarray) -> np.ndarray:
    """Deterministic signs: in each column, the first entry (in time order) whose magnitude
    is at least a tenth of the column's largest is made negative, so that the trajectory
    moves towards +PC over training. Flips columns in place and returns the signs ``(k,)``.
    """
    signs = np.ones(u.shape[1])
    for j in range(u.shape[1]):
        col = u[:, j]
        big = np.abs(col) >= 0.1 * np.abs(col).max()
        if big.any() and col[np.argmax(big)] > 0:
            signs[j] = -1.0
    u *= signs
    return signs


def pca_from_gram(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of centred data from its Gram matrix ``G: (T, T)``.

    Returns:
        ``(lam (k,), u (T, k), scores (T, k))`` with eigenvalues ``lam`` descending
        (clipped at 0), left singular vectors ``u`` with :func:`fix_signs` applied, and
        scores ``u·sqrt(lam)``.
    """
    lam, u = top_eigen(g, k)
    lam = np.maximum(lam, 0.0)
    u = np.ascontiguousarray(u)
    fix_signs(u)
    return lam, u, u * np.sqrt(lam)


class PCA:
    """Principal components of one trajectory, several (one joint PCA), or an array.

    Args:
        n_components: components to keep (at most ``T − 1``); None keeps ``min(12, T − 1)``.
        centering: ``"mean"`` (centre over time, default) or ``"final"`` (``θᵢ − θ_T``, the
            convention of Li et al. and GradVis; in a joint fit θ_T is the last snapshot of
            the last run).
        solver: ``"exact"`` (Gram matrix + ``eigh``), ``"randomized"``, or ``"auto"``
            (exact up to 5,000 snapshots).
        n_oversamples, n_iter: randomized solver settings (sketch size ``k + n_oversamples``,
            power iterations).
        seed: randomness of the randomized solver.
        chunk_size: parameter columns per streamed block; default from ``max_bytes``.
        max_bytes: memory budget of a streamed block (memory-mapped snapshot pages are page
            cache and not counted).
        progress: show progress bars.

    Fitted attributes: ``n_components_``, ``explained_variance_`` ``(k,)`` (``λ/(T−1)``),
    ``explained_variance_ratio_`` ``(k,)`` (against the total variance, the trace of the
    centred Gram matrix), ``singular_values_`` ``(k,)``, ``total_variance_``, ``scores_``
    ``(T, k)``, ``transform_runs_`` (one ``(T_i, k)`` array per run), ``steps_``,
    ``labels_``, ``gram_`` (the centred ``(T, T)`` Gram matrix; exact solver only), and,
    computed on first access by a second streaming pass, ``components_`` ``(k, n)`` (unit
    rows; zero rows beyond the rank of the data) and ``center_``/``mean_`` ``(n,)``.

    Signs are deterministic (see :func:`fix_signs`): each score series starts on the
    negative side, so the run moves towards +PC. Scores, components and :meth:`transform`
    are float64 whatever the input dtype (float32 snapshots are multiplied in float32 and
    accumulated in float64). The constructor only stores its arguments; :meth:`fit` checks
    them.

    Example:
        >>> t = np.arange(6.0)[:, None]
        >>> x = np.hstack([t, t**2, np.zeros((6, 3))])
        >>> pca = PCA(n_components=2).fit(x)
        >>> bool(np.allclose(pca.inverse_transform(pca.transform(x)), x))
        True
        >>> pca.transform(x[0]).shape  # a point is one snapshot
        (1, 2)
    """

    def __init__(
        self,
        n_components: int | None = None,
        *,
        centering: Literal["mean", "final"] = "mean",
        solver: Solver = "auto",
        n_oversamples: int = 10,
        n_iter: int = 4,
        seed: Seed = 0,
        chunk_size: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        progress: bool = False,
    ) -> None:
        self.n_components = n_components
        self.centering = centering
        self.solver = solver
        self.n_oversamples = n_oversamples
        self.n_iter = n_iter
        self.seed = seed
        self.chunk_size = chunk_size
        self.max_bytes = max_bytes
        self.progress = progress

    # ------------------------------------------------------------------ fitting
    def _check_params(self, t: int) -> int:
        one_of(self.centering, ("mean", "final"), "centering")
        one_of(self.solver, ("exact", "randomized", "auto"), "solver")
        k = min(12, t - 1) if self.n_components is None else self.n_components
        k = positive_int(k, "n_components", "; or None for min(12, T − 1)")
        if k > t - 1:
            raise WeightspaceError(
                f"n_components: at most T − 1 = {t - 1} components exist for {t} snapshots, "
                f"got {k}; ask for fewer components or record more snapshots"
            )
        non_negative_int(self.n_iter, "n_iter")
        non_negative_int(self.n_oversamples, "n_oversamples")
        return k

    def fit(self, x: SnapshotInput) -> PCA:
        """Fit on a Trajectory, a list of Trajectories (joint PCA) or a ``(T, n)`` array.

        Raises:
            WeightspaceError: fewer than 2 snapshots, too many components, NaN snapshots.
            LayoutMismatchError: runs of different models in a joint fit.
        """
        snaps = as_snapshots(x)
        t = len(snaps)
        k = self._check_params(t)
        solver = self.solver
        if solver == "auto":
            solver = "exact" if t <= AUTO_EXACT_MAX_T else "randomized"
        if solver == "exact":
            g = gram_matrix(snaps, center=self.centering, **self._stream())
            total = float(np.trace(g))
            lam, u, scores = pca_from_gram(g, k)
            self.gram_ = g
        else:
            lam, u, total = randomized_pca(
                snaps, k, centering=self.centering, n_oversamples=self.n_oversamples,
                n_iter=self.n_iter, seed=self.seed, **self._stream(),
            )  # fmt: skip
            lam = np.maximum(lam, 0.0)
            fix_signs(u)
            scores = u * np.sqrt(lam)
            self.gram_ = None
        if total <= 0:
            raise WeightspaceError(
                "X: all snapshots are identical (zero variance); nothing to project"
            )
        self._snaps, self._u, self._lam = snaps, u, lam
        self.solver_ = solver
        self.n_components_ = k
        self.n_samples_, self.n_features_ = t, snaps.n
        self.total_variance_ = total / (t - 1)
        self.explained_variance_ = lam / (t - 1)
        self.explained_variance_ratio_ = lam / total
        self.singular_values_ = np.sqrt(lam)
        self.scores_ = scores
        self.transform_runs_ = snaps.split(scores)
        self.steps_ = list(snaps.steps)
        self.labels_ = list(snaps.labels)
        self.run_slices_ = snaps.run_slices
        self._components: np.ndarray | None = None
        self._center: np.ndarray | None = None
        self._mean: np.ndarray | None = None
        return self

    def fit_transform(self, x: SnapshotInput) -> np.ndarray:
        """Fit, and return the scores ``(T, k)`` float64 of the fitted snapshots."""
        return self.fit(x).scores_

    def _stream(self) -> dict[str, Any]:
        """The streaming settings, as keyword arguments of ``iter_blocks``."""
        return {"chunk_size": self.chunk_size, "max_bytes": self.max_bytes,
                "progress": self.progress}  # fmt: skip

    def _blocks(self, snaps: Snapshots, desc: str):
        return iter_blocks(snaps, desc=desc, **self._stream())

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_components_"):
            raise WeightspaceError("PCA: not fitted yet; call fit(trajectory) first")

    # ------------------------------------------------------------------ directions
    def compute_components(self) -> np.ndarray:
        """Second streaming pass: ``components_ (k, n)`` and the centre ``(n,)``.

        ``components_[j] = Xcᵀ u_j / sqrt(λ_j)``, renormalised to unit length; rows whose
        eigenvalue is numerically zero (beyond the rank of the data) are zero.
        """
        self._check_fitted()
        if self._components is not None:
            return self._components
        snaps, t, k = self._snaps, self.n_samples_, self.n_components_
        tol = 10.0 * np.finfo(snaps.dtype).eps * self.total_variance_ * (t - 1)
        live = self._lam > tol
        if not live.all():
            log.warning(
                "PCA: the data have rank %d < %d components; components beyond it are zero",
                int(live.sum()),
                k,
            )
        a = np.zeros((t, k))
        a[:, live] = self._u[:, live] / np.sqrt(self._lam[live])
        a_t = np.ascontiguousarray(a.T.astype(snaps.dtype))
        w = centering_weights(t, self.centering)
        comps = np.zeros((k, snaps.n))
        center = np.empty(snaps.n)
        mean = np.empty(snaps.n)
        for start, block in self._blocks(snaps, "PCA components"):
            stop = start + block.shape[1]
            m = block_center(block, snaps, start)
            mean[start:stop] = m
            m_used = m.astype(block.dtype)
            block -= m_used  # centred up to a translation ...
            shift = (w.astype(block.dtype) @ block).astype(np.float64)  # ... removed here
            center[start:stop] = m_used + shift
            comps[:, start:stop] = a_t @ block - np.outer(a_t.sum(axis=1), shift)
        norms = np.sqrt(np.einsum("ij,ij->i", comps, comps))
        comps[live] /= norms[live, None]
        self._components, self._center, self._mean = comps, center, mean
        return comps

    @property
    def components_(self) -> np.ndarray:
        """Principal directions in parameter space ``(k, n)``, unit rows (lazy)."""
        return self.compute_components()

    @property
    def center_(self) -> np.ndarray:
        """The centre ``(n,)``: the mean snapshot, or the final one (``centering="final"``)."""
        self.compute_components()
        return self._center

    @property
    def mean_(self) -> np.ndarray:
        """The mean snapshot ``(n,)``."""
        self.compute_components()
        return self._mean

    def directions(
        self,
        k: int = 2,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The centre and the first ``k`` directions as torch tensors, for a loss landscape.

        Returns:
            ``(center (n,), directions (k, n))``, unit-norm rows, ``dtype`` on ``device``.
        """
        self._check_fitted()
        if not 1 <= k <= self.n_components_:
            raise WeightspaceError(
                f"k: expected 1..{self.n_components_} (the fitted components), got {k}"
            )
        comps = torch.from_numpy(self.components_[:k]).to(device=device, dtype=dtype)
        center = torch.from_numpy(self.center_).to(device=device, dtype=dtype)
        return center, comps

    # ------------------------------------------------------------------ projecting
    def transform(self, x: SnapshotInput) -> np.ndarray:
        """Coordinates ``(x − center_)·components_ᵀ`` of snapshots on the fitted axes.

        Args:
            x: a Trajectory, a ``(m, n)`` array or tensor, a list of runs (stacked in run
                order, as in a joint fit), or one point ``(n,)`` (one snapshot).

        Returns:
            ``(m, k)`` float64, always one array (``(1, k)`` for a point); per-run arrays
            come from :meth:`transform_runs`.

        Raises:
            WeightspaceError: not fitted, or a different number of parameters.
        """
        return self._project(self._as_input(x, "x"))

    def transform_runs(self, runs: SnapshotInput) -> list[np.ndarray]:
        """:meth:`transform`, split by run: one ``(T_r, k)`` float64 array per run.

        Args:
            runs: a list of Trajectories or ``(T_r, n)`` arrays (one run: a list of one).

        Example:
            >>> a, b = np.eye(4)[:3], np.eye(4)[1:]
            >>> pca = PCA(2).fit([a, b])
            >>> [s.shape for s in pca.transform_runs([a, b])]
            [(3, 2), (3, 2)]
        """
        snaps = self._as_input(runs, "runs")
        return snaps.split(self._project(snaps))

    def _as_input(self, x: SnapshotInput, what: str) -> Snapshots:
        self._check_fitted()
        if isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 1:
            x = x[None, :]
        snaps = as_snapshots(x, what=what, min_points=1)
        if snaps.n != self.n_features_:
            raise WeightspaceError(
                f"{what}: has {snaps.n} parameters but the PCA was fitted on "
                f"{self.n_features_}; project runs of the same model"
            )
        if self._snaps.layout is not None and snaps.layout is not None:
            self._snaps.layout.check_compatible(snaps.layout, what=what)
        return snaps

    def _project(self, snaps: Snapshots) -> np.ndarray:
        comps = self.components_
        out = np.zeros((len(snaps), self.n_components_))
        center = self._center
        for start, block in self._blocks(snaps, "PCA transform"):
            stop = start + block.shape[1]
            block -= center[start:stop].astype(block.dtype)
            out += block @ comps[:, start:stop].T.astype(block.dtype)
        return out

    def inverse_transform(self, y: np.ndarray) -> np.ndarray:
        """Points in parameter space ``center_ + y·components_``: ``(m, k) -> (m, n)``."""
        self._check_fitted()
        y = np.asarray(y, dtype=np.float64)
        if y.shape[-1] != self.n_components_:
            raise WeightspaceError(
                f"y: expected last dimension {self.n_components_} (the components), got "
                f"shape {y.shape}"
            )
        return self.center_ + y @ self.components_
