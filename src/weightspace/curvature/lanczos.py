"""Extreme eigenpairs by thick-restart block Lanczos with full reorthogonalisation.

It takes any symmetric operator with ``@``, ``.shape``, ``.dtype`` and
``.device`` (a :class:`~weightspace.HessianOperator`, or a dense ``torch`` matrix) and runs
on the operator's device. Eigenpairs come from thick-restart Lanczos (Wu & Simon 2000) with a
stopping test against the spectral scale, ``‖H x − λ x‖ ≤ tol·max|λ|``: unlike ARPACK's test
relative to ``|λ|``, it converges on zero eigenvalues (``method="arpack"`` is kept for
comparison; see ``benchmarks/results/hessian.txt``).

The limit: a Krylov method resolves the end of the spectrum at a rate set by the gap there
relative to the spread. When many eigenvalues crowd in ``[λ_min, λ_min + tol·max|λ|]`` (the
smallest end of a Hessian with a cluster of exact zeros, e.g. logistic regression on inputs
with dead pixels), it needs a Krylov degree of order ``1/√tol``, which a small restarted basis
does not build: such runs end with ``converged`` False (and a ``not_converged`` note in the
metadata) unless ``max_basis`` is raised (and ``block_size`` to ``k`` for repeated zeros).
Operators with at most :data:`DENSE_MAX` rows switch to the dense route (``n`` more products,
``eigh``) once Lanczos has spent ``n`` products without converging, when the budget leaves
room for it; ``metadata["eigen_route"]`` says which route answered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .._progress import progress_bar
from ..checks import Seed, as_generator, positive_int
from ..errors import WeightspaceError
from ._krylov import breakdown_threshold, orthogonalize
from .protocol import apply, check_operator, random_vectors

__all__ = ["DENSE_MAX", "Eigenpairs", "default_basis", "top_eigenpairs"]

log = logging.getLogger(__name__)

Which = Literal["largest", "smallest", "both"]

DENSE_MAX = 4096  # largest operator formed densely when Lanczos stalls (128 MiB in float64)


@dataclass(frozen=True)
class Eigenpairs:
    """Extreme eigenpairs of a symmetric operator.

    Attributes:
        eigenvalues: ``(k,)`` float64; ``"largest"`` descending, ``"smallest"`` ascending,
            ``"both"``: the k largest descending then the k smallest ascending.
        eigenvectors: ``(k, n)`` unit rows in the operator's dtype and device, sign fixed
            so that each row's largest-magnitude entry is positive (landscape directions).
        residuals: ``(k,)`` ``‖H x − λ x‖``, computed with one final product per pair.
        converged: ``(k,)`` whether ``residual ≤ tol·scale``.
        scale: the spectral scale ``max|λ|`` seen (the stopping test's reference).
        n_matvecs: operator products used (the final residual check included).
        which, tol, method: the settings.
        metadata: the operator's metadata (problem, mode, data, dtype, ...), plus
            ``eigen_route`` (``"lanczos"``, ``"dense"``, ``"lanczos, then dense after N
            products"`` or ``"arpack"``) and, when a pair is not converged, ``not_converged``
            (a one-line note: how many, after how many products, what to raise).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    residuals: torch.Tensor
    converged: torch.Tensor
    scale: float
    n_matvecs: int
    which: str
    tol: float
    method: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _wanted(theta: torch.Tensor, k: int, which: Which) -> torch.Tensor:
    order = torch.argsort(theta, descending=True)
    if which == "largest":
        return order[:k]
    if which == "smallest":
        return order.flip(0)[:k]
    return torch.cat([order[:k], order.flip(0)[:k]])


def _keep(theta: torch.Tensor, which: Which, count: int) -> torch.Tensor:
    """Indices of ``count`` Ritz values to keep at a restart, nearest the wanted end(s)."""
    order = torch.argsort(theta, descending=True)
    if which == "largest":
        return order[:count]
    if which == "smallest":
        return order.flip(0)[:count]
    top = (count + 1) // 2
    return torch.cat([order[:top], order.flip(0)[: count - top]])


def _orthonormalize(
    W: torch.Tensor, basis: torch.Tensor, thresh: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``W: (b, n)`` made orthonormal to ``basis`` and each other: ``W = Rᵀ Q``.

    A row that vanishes (an invariant subspace was reached) is replaced by a random unit
    vector orthogonal to everything, with a zero coupling in ``R``.
    """
    b, n = W.shape
    Q = torch.zeros_like(W)
    R = torch.zeros(b, b, dtype=torch.float64)
    for i in range(b):
        w, c = orthogonalize(W[i : i + 1], Q[:i])
        R[:i, i] += c[0].to(torch.float64).cpu()
        r = float(w.norm())
        if r <= thresh:
            w = random_vectors(n, 1, gen, dtype=W.dtype, device=W.device).T
            w = orthogonalize(w, torch.cat([basis, Q[:i]]))[0]
            r, R[i, i] = float(w.norm()), 0.0
        else:
            R[i, i] = r
        Q[i] = w[0] / r
    return Q, R


def _thick_restart(
    op: Any,
    V0: torch.Tensor,
    k: int,
    which: Which,
    tol: float,
    m: int,
    max_matvecs: int,
    gen: torch.Generator,
    bar: Any,
) -> tuple[torch.Tensor, torch.Tensor, float, int, str]:
    """Thick-restart block Lanczos, full reorthogonalisation; blocks of ``b = V0.shape[1]``.

    Not converged after ``n`` products, an operator of at most :data:`DENSE_MAX` rows is
    formed densely instead when ``n`` more products fit in ``max_matvecs``.
    """
    n, b = V0.shape
    kw = 2 * k if which == "both" else k
    V = torch.zeros(m + b, n, dtype=op.dtype, device=op.device)
    V[:b] = _orthonormalize(V0.T.contiguous(), V[:0], 0.0, gen)[0]
    T = torch.zeros(m, m, dtype=torch.float64)
    kept, used, scale = 0, 0, 0.0
    while True:
        j, R = kept, torch.zeros(b, b, dtype=torch.float64)
        while j + b <= m:
            W = apply(op, V[j : j + b].T).T  # (b, n)
            used += b
            bar.update(b)
            W, H = orthogonalize(W, V[: j + b])  # CGS2 against the whole basis
            H64 = H.to(torch.float64).cpu()
            T[j : j + b, : j + b] = H64
            T[: j + b, j : j + b] = H64.T
            scale = max(scale, float(H64.abs().max()), float(W.norm(dim=1).max()))
            thresh = breakdown_threshold(op.dtype, j + b, scale)
            V[j + b : j + 2 * b], R = _orthonormalize(W, V[: j + b], thresh, gen)
            j += b
        size = j
        theta, S = torch.linalg.eigh(0.5 * (T[:size, :size] + T[:size, :size].T))
        scale = max(scale, float(theta.abs().max()))
        est = (R.T @ S[size - b : size]).norm(dim=0)  # ‖H y − θ y‖ of each Ritz pair
        idx = _wanted(theta, k, which)
        done = bool((est[idx] <= tol * scale).all())
        if not done and n <= DENSE_MAX and used >= n and used + n <= max_matvecs:
            log.info("top_eigenpairs: not converged after %d products; dense route", used)
            theta, Y, scale, extra = _dense(op, k, which, bar)
            return theta, Y, scale, used + extra, f"lanczos, then dense after {used} products"
        if done or used >= max_matvecs:
            if not done:
                log.warning(
                    "top_eigenpairs: not converged after %d products (largest residual "
                    "estimate %.3g, tol·scale %.3g); raise max_matvecs or tol",
                    used,
                    float(est[idx].max()),
                    tol * scale,
                )
            Y = S[:, idx].T.to(device=op.device, dtype=op.dtype) @ V[:size]
            return theta[idx], Y, scale, used, "lanczos"
        count = min(max(kw + (size - kw) // 2, kw), size - b)
        keep = _keep(theta, which, count)
        Y = S[:, keep].T.to(device=op.device, dtype=op.dtype) @ V[:size]
        V[count : count + b] = V[size : size + b].clone()
        V[:count] = Y
        T.zero_()
        T[:count, :count] = torch.diag(theta[keep])
        kept = count


def _dense(
    op: Any, k: int, which: Which, bar: Any
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Small operators: the full matrix, ``n`` products, and ``eigh``."""
    n = op.shape[0]
    eye = torch.eye(n, dtype=op.dtype, device=op.device)
    A = torch.cat([apply(op, eye[:, a : a + 64]) for a in range(0, n, 64)], dim=1)
    bar.update(n)
    theta, S = torch.linalg.eigh(0.5 * (A + A.T).to(torch.float64).cpu())
    idx = _wanted(theta, k, which)
    return theta[idx], S[:, idx].T.to(device=op.device, dtype=op.dtype), float(theta.abs().max()), n


def _arpack(
    op: Any, v0: torch.Tensor, k: int, which: Which, tol: float, m: int, max_matvecs: int, bar
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    from scipy.sparse.linalg import ArpackError, LinearOperator, eigsh

    n = op.shape[0]
    count = [0]

    def mv(x: np.ndarray) -> np.ndarray:
        count[0] += 1
        bar.update(1)
        v = torch.from_numpy(np.asarray(x, dtype=np.float64).ravel())
        return apply(op, v.to(op.device, op.dtype).unsqueeze(1)).squeeze(1).double().cpu().numpy()

    lin = LinearOperator((n, n), matvec=mv, dtype=np.float64)
    x0 = v0.double().cpu().numpy()
    vals, vecs = [], []
    for mode in {"largest": ["LA"], "smallest": ["SA"], "both": ["LA", "SA"]}[which]:
        try:
            w, U = eigsh(lin, k=k, which=mode, tol=tol, ncv=min(m, n), v0=x0, maxiter=max_matvecs)
        except ArpackError as e:  # ArpackNoConvergence included
            raise WeightspaceError(
                f"method='arpack': {e} (its test is relative to |λ|: it cannot stop at zero "
                "eigenvalues); raise max_matvecs or tol, or use method='lanczos'"
            ) from None
        order = np.argsort(-w) if mode == "LA" else np.argsort(w)
        vals.append(w[order])
        vecs.append(U[:, order].T)
    theta = torch.from_numpy(np.concatenate(vals))
    Y = torch.from_numpy(np.concatenate(vecs)).to(op.device, op.dtype)
    return theta, Y, float(theta.abs().max()), count[0]


def default_basis(k: int, which: Which = "largest", block_size: int = 1) -> int:
    """The Lanczos basis :func:`top_eigenpairs` keeps between restarts by default:
    ``max(2·k_wanted + 10, 20) + block_size`` (``k_wanted = 2k`` for ``"both"``)."""
    kw = 2 * k if which == "both" else k
    return max(2 * kw + 10, 20) + block_size


def top_eigenpairs(
    op: Any,
    k: int = 5,
    which: Which = "largest",
    *,
    tol: float | None = None,
    max_basis: int | None = None,
    max_matvecs: int | None = None,
    block_size: int = 1,
    v0: torch.Tensor | None = None,
    seed: Seed = 0,
    method: Literal["lanczos", "arpack"] = "lanczos",
    progress: bool = False,
) -> Eigenpairs:
    """The ``k`` largest, smallest, or both, eigenpairs of a symmetric operator.

    Args:
        op: ``(n, n)`` symmetric operator (a HessianOperator or a torch matrix).
        k: eigenpairs per end, ``1 ≤ k < n`` (``2k ≤ n`` for ``"both"``).
        which: ``"largest"``, ``"smallest"`` or ``"both"`` (algebraic order; the most
            negative curvature is ``"smallest"``).
        tol: residual tolerance relative to the spectral scale: stop when every wanted
            ``‖H x − λ x‖ ≤ tol·max|λ|`` (eigenvalue errors are then about ``tol²``); default
            1e-8 in float64, 1e-4 in lower precision.
        max_basis: Lanczos basis size between restarts; default :func:`default_basis`. An
            operator no larger than the basis is formed densely (``n`` products) and solved
            with ``eigh``.
        max_matvecs: budget of products; default ``30·max_basis``, and for ``"lanczos"`` at
            least ``2n + max_basis`` when ``n ≤`` :data:`DENSE_MAX` (room for the dense
            switch). A warning when reached (ARPACK reads it as its ``maxiter``). Lanczos
            not converged after ``n`` products switches to the dense route (``n`` more
            products) when ``n ≤ DENSE_MAX`` and the budget allows.
        block_size: vectors per Lanczos block (products per ``matmat``). A Krylov method
            sees an eigenvalue of multiplicity above ``block_size`` once only: raise it when
            extreme eigenvalues may repeat (e.g. ``"smallest"`` at a flat minimum).
        v0: ``(n,)`` starting vector (e.g. the previous checkpoint's eigenvectors summed);
            default random from ``seed``.
        seed: randomness of the start (and of restarts at an invariant subspace).
        method: ``"lanczos"`` (thick restart, on the operator's device) or ``"arpack"``
            (SciPy ``eigsh``, float64 on the CPU; its ``tol`` is relative to ``|λ|``).
        progress: show progress of the products (out of the budget: ``n`` when dense,
            else ``max_matvecs``; ARPACK's is not known).

    Returns:
        :class:`Eigenpairs`.

    Raises:
        WeightspaceError: ``k`` out of range, a bad operator or start vector.

    Example:
        >>> A = torch.diag(torch.tensor([-2.0, 0.0, 1.0, 3.0, 5.0], dtype=torch.float64))
        >>> [round(x, 10) for x in top_eigenpairs(A, k=2).eigenvalues.tolist()]
        [5.0, 3.0]
    """
    n = check_operator(op)
    room = max_matvecs is None and method == "lanczos" and n <= DENSE_MAX
    tol, b, m, max_matvecs = _settings(op, n, k, which, tol, max_basis, max_matvecs, block_size)
    max_matvecs = max(max_matvecs, 2 * n + m) if room else max_matvecs  # for the dense switch
    if method not in ("lanczos", "arpack"):
        raise WeightspaceError(f"method: expected 'lanczos' or 'arpack', got {method!r}")
    gen = as_generator(seed)
    V0 = random_vectors(n, b, gen, dtype=op.dtype, device=op.device, kind="gaussian")
    if v0 is not None:
        if v0.shape != (n,) or not bool(torch.isfinite(v0).all()) or float(v0.norm()) == 0:
            raise WeightspaceError(f"v0: expected a finite non-zero vector of shape ({n},)")
        V0[:, 0] = v0.detach().to(device=op.device, dtype=op.dtype)
    dense = method == "lanczos" and m + b >= n
    budget = n if dense else max_matvecs if method == "lanczos" else None
    with progress_bar(total=budget, desc="eigenpairs", unit="product", enabled=progress) as bar:
        if dense:
            theta, Y, scale, used = _dense(op, k, which, bar)
            route = "dense"
        elif method == "lanczos":
            out = _thick_restart(op, V0, k, which, tol, m, max_matvecs, gen, bar)
            theta, Y, scale, used, route = out
        else:
            theta, Y, scale, used = _arpack(op, V0[:, 0], k, which, tol, m, max_matvecs, bar)
            route = "arpack"
    return _result(op, theta, Y, scale, used, which, tol, method, route)


def _settings(
    op: Any,
    n: int,
    k: Any,
    which: Any,
    tol: Any,
    max_basis: Any,
    max_matvecs: Any,
    block_size: Any,
) -> tuple[float, int, int, int]:
    """The checked ``(tol, block_size, max_basis, max_matvecs)`` of :func:`top_eigenpairs`."""
    if which not in ("largest", "smallest", "both"):
        raise WeightspaceError(f"which: expected 'largest', 'smallest' or 'both', got {which!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise WeightspaceError(
            f"k: expected an integer with 1 <= k < n={n} (the operator's size), got {k!r}; "
            "use a smaller k or torch.linalg.eigh on the dense matrix"
        )
    if which == "both" and 2 * k > n:
        raise WeightspaceError(f"k: which='both' needs 2k <= n={n}, got k={k}; lower k")
    kw = 2 * k if which == "both" else k
    if tol is None:
        tol = 1e-8 if op.dtype == torch.float64 else 1e-4
    if not tol >= 0:
        raise WeightspaceError(f"tol: expected a non-negative number, got {tol!r}")
    b = positive_int(block_size, "block_size")
    m = default_basis(k, which, b) if max_basis is None else positive_int(max_basis, "max_basis")
    if m < kw + 2 * b:
        raise WeightspaceError(
            f"max_basis: expected at least {kw + 2 * b} (pairs wanted + two blocks), got {m}"
        )
    max_matvecs = 30 * m if max_matvecs is None else positive_int(max_matvecs, "max_matvecs")
    return float(tol), b, m, max_matvecs


def _result(
    op: Any,
    theta: torch.Tensor,
    Y: torch.Tensor,
    scale: float,
    used: int,
    which: str,
    tol: float,
    method: str,
    route: str,
) -> Eigenpairs:
    """Unit rows with the sign rule, explicit residuals (one product per pair), the route."""
    Y = Y / Y.norm(dim=1, keepdim=True)
    pivot = Y.abs().argmax(dim=1)
    Y = Y * torch.sign(Y.gather(1, pivot.unsqueeze(1)))
    HY = apply(op, Y.T).T
    residuals = (HY - theta.to(Y).unsqueeze(1) * Y).norm(dim=1).to(torch.float64).cpu()
    converged = residuals <= tol * scale * 1.01 + 10 * torch.finfo(op.dtype).eps * scale
    metadata = {**getattr(op, "metadata", {}), "eigen_route": route}
    if not bool(converged.all()):
        metadata["not_converged"] = (
            f"{int((~converged).sum())} of {len(theta)} pairs have residuals above "
            f"tol·scale={tol * scale:.3g} after {used} products; eigenvalues crowded within "
            "tol·scale of the wanted end need a larger max_basis or max_matvecs"
        )
    return Eigenpairs(
        eigenvalues=theta.to(torch.float64).cpu(),
        eigenvectors=Y,
        residuals=residuals,
        converged=converged,
        scale=scale,
        n_matvecs=used + len(theta),
        which=which,
        tol=float(tol),
        method=method,
        metadata=metadata,
    )
