"""Spectral density by stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani et al.
2019; GradVis §3.3).

For unit probes ``v_p``, ``m`` Lanczos steps give Gauss quadrature nodes ``θ_pi`` (eigenvalues
of the tridiagonal ``T_p``) and weights ``τ_pi`` (squared first components of its
eigenvectors), and ``φ(t) = (1/P) Σ_p Σ_i τ_pi g_σ(t − θ_pi)`` with a Gaussian ``g_σ`` of
explicit width ``σ``. The weights of each probe sum to 1, so ``φ`` integrates to 1; with
normalised Rademacher probes its mean is ``tr(H)/n`` in expectation (exactly for a diagonal
``H``). Probes advance together through ``matmat``; under ``torchrun`` they are split
across ranks, each rank running whole Lanczos iterations on its probes (GradVis's
iteration-parallel scheme), and gathered on every rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from .. import parallel
from .._progress import progress_bar
from ..checks import Seed, as_generator, positive_int
from ..errors import WeightspaceError
from ._krylov import breakdown_threshold, orthogonalize
from .protocol import announce, apply, check_operator, random_vectors

__all__ = [
    "POINT_SIGMA_RULE",
    "SpectralDensity",
    "Tridiagonal",
    "default_grid",
    "gaussian_density",
    "lanczos_tridiagonal",
    "on_common_grid",
    "spectral_density",
]

SIGMA_RULE = "0.01 × (max node − min node)"


@dataclass(frozen=True)
class Tridiagonal:
    """Lanczos tridiagonal matrices of ``p`` starting vectors, advanced together.

    Attributes:
        alpha: ``(p, m)`` diagonals (float64).
        beta: ``(p, m - 1)`` off-diagonals (float64).
        lengths: ``(p,)`` steps taken by each vector (fewer than ``m`` at an invariant
            subspace, where the quadrature is exact); entries past a length are zero.
        n_matvecs: operator products used.
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    lengths: torch.Tensor
    n_matvecs: int

    def nodes_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Gauss quadrature ``(nodes, weights)``, each ``(p, m)``, from ``T = S Θ Sᵀ``.

        Nodes are the eigenvalues of each ``T``; weights the squared first components of its
        eigenvectors, so ``Σ_i w_i θ_iʲ = vᵀAʲv`` for ``j ≤ 2·length − 1`` and unit ``v``.
        Padding past a vector's length has weight 0 (and node 0).
        """
        p, m = self.alpha.shape
        nodes = torch.zeros(p, m, dtype=torch.float64)
        weights = torch.zeros(p, m, dtype=torch.float64)
        for i in range(p):
            L = int(self.lengths[i])
            T = torch.diag(self.alpha[i, :L])
            if L > 1:
                off = torch.diag(self.beta[i, : L - 1], 1)
                T = T + off + off.T
            theta, S = torch.linalg.eigh(T)
            nodes[i, :L] = theta
            weights[i, :L] = S[0] ** 2
        return nodes, weights


def lanczos_tridiagonal(
    op: Any, V0: torch.Tensor, n_steps: int, *, progress: bool = False
) -> Tridiagonal:
    """Run ``n_steps`` Lanczos steps from each column of ``V0``, all through one ``matmat``.

    Full reorthogonalisation (classical Gram-Schmidt after the three-term recurrence, a
    second pass where the first lost more than half the norm:
    :func:`~weightspace.curvature._krylov.orthogonalize`) against each vector's own basis,
    which is kept on the operator's device: memory ``p·(n_steps+1)·n`` numbers.

    Args:
        op: symmetric operator ``(n, n)``.
        V0: ``(n,)`` or ``(n, p)`` starting vectors (normalised here).
        n_steps: Lanczos steps ``m`` (at most ``n``).
        progress: show a progress bar.

    Returns:
        the tridiagonal factors; see :class:`Tridiagonal`.

    Example:
        >>> A = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        >>> nodes, w = lanczos_tridiagonal(A, torch.ones(3, dtype=torch.float64), 3).nodes_weights()
        >>> [round(x, 6) for x in nodes[0].tolist()], [round(x, 6) for x in w[0].tolist()]
        ([1.0, 2.0, 3.0], [0.333333, 0.333333, 0.333333])
    """
    n = check_operator(op)
    m = positive_int(n_steps, "n_steps")
    if m > n:
        raise WeightspaceError(f"n_steps: expected at most n={n} Lanczos steps, got {m}")
    V0 = V0.reshape(n, -1) if V0.ndim == 1 else V0
    if V0.ndim != 2 or V0.shape[0] != n:
        raise WeightspaceError(f"V0: expected shape ({n},) or ({n}, p), got {tuple(V0.shape)}")
    p = V0.shape[1]
    Q = torch.zeros(p, m + 1, n, dtype=op.dtype, device=op.device)
    q = V0.T.to(device=op.device, dtype=op.dtype)
    Q[:, 0] = q / q.norm(dim=1, keepdim=True)
    alpha = torch.zeros(p, m, dtype=torch.float64)
    beta = torch.zeros(p, max(m - 1, 0), dtype=torch.float64)
    lengths = torch.full((p,), m, dtype=torch.int64)
    active = torch.ones(p, dtype=torch.bool)
    scale = torch.zeros(p, dtype=torch.float64)
    used = 0
    for j in progress_bar(range(m), desc="lanczos", unit="step", enabled=progress):
        if bool(active.all()):  # views, no copies of the basis (the usual case)
            idx = torch.arange(p)
            q_j, basis = Q[:, j], Q[:, : j + 1]  # (a, n), (a, j+1, n)
        else:
            idx = active.nonzero().flatten()
            q_j, basis = Q[idx, j], Q[idx, : j + 1]
        W = apply(op, q_j.T).T  # (a, n)
        used += len(idx)
        # the three-term recurrence, then full reorthogonalisation against the basis
        a_j = (q_j * W).sum(1)
        W = W - a_j.unsqueeze(1) * q_j
        if j > 0:
            W = W - beta[idx, j - 1].to(W).unsqueeze(1) * basis[:, j - 1]
        W, C = orthogonalize(W, basis, dgks=True)
        a_j = a_j + C[:, j]
        a_j = a_j.to(torch.float64).cpu()
        b_j = W.norm(dim=1).to(torch.float64).cpu()
        alpha[idx, j] = a_j
        scale[idx] = torch.maximum(scale[idx], torch.maximum(a_j.abs(), b_j))
        if j == m - 1:
            break
        thresh = breakdown_threshold(op.dtype, j + 1, scale[idx])
        done = b_j <= thresh
        lengths[idx[done]] = j + 1
        active[idx[done]] = False
        keep = ~done
        beta[idx[keep], j] = b_j[keep]
        Q[idx[keep], j + 1] = W[keep] / b_j[keep].to(W).unsqueeze(1)
        if not active.any():
            break
    return Tridiagonal(alpha, beta, lengths, used)


@dataclass(frozen=True)
class SpectralDensity:
    """A smoothed spectral density and the quadrature it came from.

    Attributes:
        grid: ``(G,)`` eigenvalue axis.
        density: ``(G,)`` the mean over probes; integrates to 1 over a grid that covers the
            nodes ± 6σ (to 1e-8).
        per_probe: ``(P, G)`` each probe's density (the spread over probes).
        stderr: ``(G,)`` standard error of ``density`` over probes (a band: ± 2·stderr).
        nodes: ``(P, m)`` quadrature nodes (Ritz values) of each probe.
        weights: ``(P, m)`` quadrature weights; each row sums to 1 (0 past an early stop).
        sigma: the Gaussian width used.
        n_steps, n_probes, n_matvecs, seed: the settings and the cost.
        metadata: the operator's metadata plus the settings.
    """

    grid: np.ndarray
    density: np.ndarray
    per_probe: np.ndarray
    stderr: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    n_steps: int
    n_probes: int
    n_matvecs: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        """``Σ τ θ / P``: the quadrature's estimate of ``tr(H)/n`` (exact in the nodes)."""
        return float((self.weights * self.nodes).sum() / self.n_probes)

    @property
    def range(self) -> tuple[float, float]:
        """Smallest and largest node with positive weight (extreme eigenvalue estimates)."""
        mask = self.weights > 0
        return float(self.nodes[mask].min()), float(self.nodes[mask].max())

    def regrid(self, grid: np.ndarray, sigma: float | None = None) -> SpectralDensity:
        """The same quadrature smoothed onto another ``grid`` (e.g. one shared by many
        checkpoints), optionally with another ``sigma``."""
        sigma = self.sigma if sigma is None else _check_sigma(sigma)
        grid = np.asarray(grid, dtype=np.float64)
        per = gaussian_density(self.nodes, self.weights, sigma, grid)
        meta = {**self.metadata, "sigma": sigma}
        return replace(
            self, grid=grid, sigma=sigma, metadata=meta, **_summaries(per, self.n_probes)
        )


def _summaries(per: np.ndarray, n_probes: int) -> dict[str, np.ndarray]:
    std = per.std(axis=0, ddof=1) if n_probes > 1 else np.full(per.shape[1], np.nan)
    return {"per_probe": per, "density": per.mean(axis=0), "stderr": std / math.sqrt(n_probes)}


def _check_sigma(sigma: Any) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise WeightspaceError(f"sigma: expected a positive width, got {sigma!r}")
    if not math.isfinite(sigma):
        raise WeightspaceError(f"sigma: expected a finite width, got {sigma!r}")
    return float(sigma)


def gaussian_density(
    nodes: np.ndarray, weights: np.ndarray, sigma: float, grid: np.ndarray
) -> np.ndarray:
    """``(P, G)`` densities ``Σ_i τ_pi g_σ(t − θ_pi)`` of each probe on ``grid``."""
    d = (grid[None, None, :] - nodes[:, :, None]) / sigma
    g = np.exp(-0.5 * d**2) / (sigma * math.sqrt(2 * math.pi))
    return np.einsum("pm,pmg->pg", weights, g)


def default_grid(nodes: np.ndarray, weights: np.ndarray, sigma: float, n: int) -> np.ndarray:
    """``n`` points from the smallest to the largest node (positive weight), ± 6σ."""
    live = nodes[weights > 0]
    return np.linspace(live.min() - 6 * sigma, live.max() + 6 * sigma, n)


def spectral_density(
    op: Any,
    n_probes: int = 10,
    n_steps: int = 80,
    sigma: float | None = None,
    seed: Seed = 0,
    *,
    grid: np.ndarray | int = 1000,
    probes: Literal["rademacher", "gaussian"] = "rademacher",
    probes_per_pass: int | None = None,
    distributed: bool | None = None,
    progress: bool = False,
) -> SpectralDensity:
    """Spectral density of a symmetric operator by stochastic Lanczos quadrature.

    Args:
        op: ``(n, n)`` symmetric operator (a HessianOperator or a torch matrix); its
            optional ``expect(n)`` hook hears of the products coming.
        n_probes: probe vectors ``P`` (Ghorbani et al. use 10 or fewer).
        n_steps: Lanczos steps ``m`` per probe, ``≤ n`` (80–100 in Ghorbani et al.;
            moments up to ``2m − 1`` are exact).
        sigma: Gaussian width; default ``0.01 × (max node − min node)``, stored in the
            result either way.
        seed: the probes' randomness; the same seed gives the same probes (common random
            numbers across checkpoints).
        grid: an explicit ``(G,)`` grid, or the number of points of the default grid.
        probes: ``"rademacher"`` (default) or ``"gaussian"``, normalised to unit length.
        probes_per_pass: probes advanced together (memory ``probes_per_pass·(m+1)·n``);
            default all.
        distributed: split probes across ranks of an initialised ``torch.distributed``
            group (:mod:`weightspace.parallel`); default when one is initialised. Every rank
            returns the same result.
        progress: show progress over probes, and over the Lanczos steps of each pass.

    Returns:
        :class:`SpectralDensity`.

    Raises:
        WeightspaceError: bad counts, ``n_steps > n``, a non-positive ``sigma``, a bad grid.

    Example:
        >>> A = torch.diag(torch.tensor([-1.0, 0.0, 2.0, 5.0], dtype=torch.float64))
        >>> dens = spectral_density(A, n_probes=3, n_steps=4, sigma=0.1, seed=0)
        >>> round(dens.mean, 12), round(float(np.trapezoid(dens.density, dens.grid)), 6)
        (1.5, 1.0)
    """
    n = check_operator(op)
    P = positive_int(n_probes, "n_probes")
    m = positive_int(n_steps, "n_steps")
    if m > n:
        raise WeightspaceError(f"n_steps: expected at most n={n} (the operator's size), got {m}")
    sigma = None if sigma is None else _check_sigma(sigma)
    grid = _check_grid(grid)
    chunk = P if probes_per_pass is None else positive_int(probes_per_pass, "probes_per_pass")
    rank, world = _ranks(distributed)
    V = random_vectors(n, P, as_generator(seed), dtype=op.dtype, device=op.device, kind=probes)
    mine = parallel.shard(P, rank, world)
    announce(op, len(mine) * m)
    nodes, weights, used = _quadrature(op, V, mine, m, chunk, progress)
    if world > 1:  # each rank holds its probes' rows: merged by a sum over ranks
        both = parallel.merge_rows(np.concatenate([nodes, weights], axis=1), mine)
        nodes, weights = both[:, :m].copy(), both[:, m:].copy()
        used = int(parallel.all_reduce_sum(np.array([used]))[0])
    rule = "given" if sigma is not None else SIGMA_RULE
    sigma = _default_sigma(nodes, weights) if sigma is None else sigma
    grid = default_grid(nodes, weights, sigma, grid) if isinstance(grid, int) else grid
    meta = {
        **dict(getattr(op, "metadata", {})),
        **{"sigma": sigma, "sigma_rule": rule, "n_probes": P, "n_steps": m, "probes": probes},
        **{"seed": seed if isinstance(seed, int) else None, "world_size": world},
    }
    per = gaussian_density(nodes, weights, sigma, grid)
    return SpectralDensity(
        grid=grid, sigma=sigma, nodes=nodes, weights=weights, n_steps=m, n_probes=P,
        n_matvecs=used, metadata=meta, **_summaries(per, P),
    )  # fmt: skip


def _quadrature(
    op: Any, V: torch.Tensor, mine: np.ndarray, m: int, chunk: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(nodes, weights, products)``: ``(P, m)`` quadratures of the probes ``V[:, mine]``
    (rows of other probes zero), ``chunk`` probes advanced together."""
    P = V.shape[1]
    nodes, weights, used = np.zeros((P, m)), np.zeros((P, m)), 0
    with progress_bar(total=len(mine), desc="slq", unit="probe", enabled=progress) as bar:
        for a in range(0, len(mine), chunk):
            idx = mine[a : a + chunk]
            tri = lanczos_tridiagonal(op, V[:, torch.as_tensor(idx)], m, progress=progress)
            nodes[idx], weights[idx] = (x.numpy() for x in tri.nodes_weights())
            used += tri.n_matvecs
            bar.update(len(idx))
    return nodes, weights, used


def _ranks(distributed: bool | None) -> tuple[int, int]:
    """``(rank, world size)`` the probes are split over (``(0, 1)`` when not distributed)."""
    if distributed is False:
        return 0, 1
    if distributed and not (
        torch.distributed.is_available() and torch.distributed.is_initialized()
    ):
        raise WeightspaceError(
            "distributed=True: no torch.distributed process group is initialised; launch "
            "with torchrun and call torch.distributed.init_process_group first"
        )
    return parallel.rank(), parallel.world_size()


def _check_grid(grid: Any) -> np.ndarray | int:
    """A point count, or an increasing ``(G,)`` float64 grid."""
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        return positive_int(int(grid), "grid")
    arr = np.asarray(grid, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2 or not np.all(np.diff(arr) > 0):
        raise WeightspaceError("grid: expected an increasing 1-D array of at least 2 points")
    return arr


def _default_sigma(nodes: np.ndarray, weights: np.ndarray) -> float:
    """:data:`SIGMA_RULE` (or a small width when every node is the same)."""
    live = nodes[weights > 0]
    return 0.01 * float(live.max() - live.min()) or 1e-3 * max(float(abs(live).max()), 1.0)


# the default width of each point's density along a run: its own, never below the grid's
# resolution
POINT_SIGMA_RULE = f"{SIGMA_RULE} of each point, at least 2 steps of the common grid"


def on_common_grid(
    dens: list[SpectralDensity], sigma: float | None, grid_points: int
) -> tuple[float | list[float] | None, tuple[SpectralDensity, ...]]:
    """Every point's density on one grid covering all of them. A given ``sigma`` smooths
    them all; by default each point keeps its own width (:data:`POINT_SIGMA_RULE`), so an
    outlier at one point does not blur every other point's spectrum."""
    if not dens:
        return None, ()
    live = np.concatenate([d.nodes[d.weights > 0] for d in dens])
    lo, hi = float(live.min()), float(live.max())
    if sigma is not None:
        grid = np.linspace(lo - 6 * sigma, hi + 6 * sigma, grid_points)
        return sigma, tuple(d.regrid(grid, sigma) for d in dens)
    own = np.array([_own_sigma(d) for d in dens])
    grid = np.linspace(lo - 6 * own.max(), hi + 6 * own.max(), grid_points)
    floor = 2 * (grid[1] - grid[0])  # narrower than the grid's spacing: peaks fall between
    widths = np.maximum(own, floor)
    return [float(w) for w in widths], tuple(d.regrid(grid, float(w)) for d, w in zip(dens, widths))


def _own_sigma(d: SpectralDensity) -> float:
    """1 % of a point's own node range (as :func:`spectral_density` chooses by default)."""
    live = d.nodes[d.weights > 0]
    lo, hi = float(live.min()), float(live.max())
    return 0.01 * (hi - lo) or 1e-3 * max(abs(lo), abs(hi), 1.0)
