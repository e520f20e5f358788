"""Curvature along a recorded run and on the line between two minima (GradVis §3.4).

At every chosen point: the top eigenpairs, a trace estimate and an SLQ density, all with
common random numbers (the same probes and the same evaluation data everywhere), so that
differences between points are differences in the Hessian, not in the noise. Densities are
smoothed with one width on one grid. Consecutive top-k eigenvector sets are compared by
their subspace overlap ``‖U_t U_{t+1}ᵀ‖_F² / k`` (1: same subspace, ~k/n: unrelated; Gur-Ari
et al. 2018), and ``λ_max·lr`` is set against the stability threshold of the run's update
rule (Cohen et al. 2021: 2 for gradient descent, ``2 + 2β`` with heavy-ball momentum ``β``;
:func:`weightspace.optimizers.stability`). Each point reads its own buffers (a snapshot's
BatchNorm statistics), or on a line between two points their interpolation.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from ..buffers import INTERPOLATION_RULE, at_snapshot, interpolated
from ..checks import Seed, as_generator
from ..errors import WeightspaceError
from ..layout import NameFilter
from ..objective import Objective
from ..optimizers import OPTIMIZER_KEYS, stability
from ..trajectory import Trajectory
from .hvp import HessianOperator, Method, _subset
from .lanczos import Which, top_eigenpairs
from .slq import SIGMA_RULE, SpectralDensity, spectral_density
from .trace import hutchinson_trace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurvatureAlong:
    """Curvature at a sequence of points (checkpoints, or points on a line).

    Attributes:
        positions: ``(T,)`` the recorded steps, or the line coordinates ``α``.
        axis: ``"step"`` or ``"alpha"``.
        loss: ``(T,)`` the objective at each point.
        eigenvalues: ``(T, k)`` (``k = 0`` when not computed), ordered as in
            :class:`~weightspace.curvature.Eigenpairs`.
        residuals: ``(T, k)`` their residuals ``‖H x − λ x‖``.
        overlap: ``(T − 1,)`` subspace overlap of consecutive eigenvector sets.
        eigenvectors: ``(k, n)`` eigenvectors at the last point (landscape directions), or
            None.
        trace, trace_stderr: ``(T,)`` Hutchinson estimates (NaN when not computed).
        densities: one :class:`SpectralDensity` per point on a common grid and ``σ``
            (empty when not computed).
        lambda_max_lr: ``(T,)`` ``λ_max·lr`` when a learning rate is known, else None.
        stability_threshold: the value of ``λ_max·lr`` where the run's update diverges
            (2, ``2 + 2β`` for SGD with momentum ``β``, ...), or None when the optimizer has
            no classical threshold (Adam-type) or is unknown; ``metadata["stability_rule"]``
            says which and why.
        n_matvecs: Hessian-vector products used in all.
        metadata: the operator's metadata and every setting.
    """

    positions: np.ndarray
    axis: str
    loss: np.ndarray
    eigenvalues: np.ndarray
    residuals: np.ndarray
    overlap: np.ndarray
    eigenvectors: torch.Tensor | None
    trace: np.ndarray
    trace_stderr: np.ndarray
    densities: tuple[SpectralDensity, ...]
    lambda_max_lr: np.ndarray | None
    stability_threshold: float | None
    n_matvecs: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every value as numpy arrays, for :func:`weightspace.save_result`."""
        out = {
            "positions": self.positions,
            "loss": self.loss,
            "eigenvalues": self.eigenvalues,
            "residuals": self.residuals,
            "overlap": self.overlap,
            "trace": self.trace,
            "trace_stderr": self.trace_stderr,
        }
        if self.eigenvectors is not None:
            out["eigenvectors"] = self.eigenvectors.detach().cpu().numpy()
        if self.lambda_max_lr is not None:
            out["lambda_max_lr"] = self.lambda_max_lr
        if self.densities:
            out["grid"] = self.densities[0].grid
            for name in ("density", "stderr", "nodes", "weights"):
                out[name if name != "stderr" else "density_stderr"] = np.stack(
                    [getattr(d, name) for d in self.densities]
                )
        return out


def subspace_overlap(U: torch.Tensor, W: torch.Tensor) -> float:
    """``‖U Wᵀ‖_F² / k`` for orthonormal rows ``U, W: (k, n)``: 1 for the same subspace."""
    return float((U.to(torch.float64) @ W.to(torch.float64).T).pow(2).sum() / U.shape[0])


def _int_seed(seed: Seed) -> int:
    """One integer seed, reused at every point (common random numbers)."""
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    return int(torch.randint(0, 2**62, (1,), generator=as_generator(seed)))


def curvature_at(
    objective: Objective,
    points: Iterable[tuple[float, torch.Tensor]],
    *,
    axis: Literal["step", "alpha"] = "step",
    top_k: int = 5,
    which: Which = "largest",
    trace_probes: int = 0,
    density: bool = False,
    n_probes: int = 10,
    n_steps: int = 80,
    sigma: float | None = None,
    grid_points: int = 1000,
    seed: Seed = 0,
    tol: float | None = None,
    block_size: int = 1,
    dtype: torch.dtype | None = None,
    include: NameFilter = None,
    method: Method = "auto",
    split: NameFilter | Literal["auto"] = "auto",
    lr: float | None = None,
    momentum: float = 0.0,
    optimizer: Mapping[str, Any] | None = None,
    n_points: int | None = None,
    progress: bool = False,
) -> CurvatureAlong:
    """Top-k eigenpairs, trace and density at each of ``points``, with common random numbers.

    Args:
        objective: the mean loss (fixed data: the same at every point).
        points: ``(position, theta)`` pairs, ``theta: (n,)`` in the objective's layout, or
            ``(position, theta, objective)`` triples giving the objective to use at that
            point (the same data, other buffers: e.g. the snapshot's BatchNorm statistics).
        axis: what the positions are.
        top_k: eigenpairs per point (0: none); ``which`` as in :func:`top_eigenpairs`.
        trace_probes: Hutchinson probes per point (0: no trace).
        density: compute an SLQ density with ``n_probes`` probes of ``n_steps`` steps.
        sigma: common Gaussian width; default ``0.01 ×`` the range of all nodes.
        grid_points: size of the common density grid.
        seed: one seed for every point's probes (common random numbers).
        tol, block_size, dtype, include, method, split: as in :func:`top_eigenpairs` and
            :class:`HessianOperator`.
        lr, momentum: shorthand for ``optimizer={"optimizer": "sgd", "lr": lr,
            "momentum": momentum}``.
        optimizer: the run's optimizer settings (a run's metadata, or
            :func:`weightspace.optimizers.optimizer_settings`), for ``λ_max·lr`` and its
            stability threshold.
        n_points: the number of points (for the progress bar).
        progress: show a progress bar over points.

    Returns:
        :class:`CurvatureAlong`.

    Raises:
        WeightspaceError: bad settings (checked before the first point), or a point where
            the loss is not finite (the error names the point).
    """
    sub = _subset(objective.layout, include)
    m = sub.numel
    _validate(m, top_k, which, trace_probes, density, n_probes, n_steps, sigma)
    seed_int = _int_seed(seed)
    positions, losses, eigs, resid, overlap, traces, stderrs, dens = [], [], [], [], [], [], [], []
    prev, used, meta, sources = None, 0, {}, []
    bar = tqdm(points, total=n_points, disable=not progress, desc="curvature", unit="point")
    for point in bar:
        pos, theta = point[0], point[1]
        at = point[2] if len(point) > 2 else objective
        sources.append(at.buffers_source)
        try:
            op = HessianOperator(
                at,
                theta,
                include=include,
                dtype=dtype,
                method=method,
                split=split,
                progress=progress,
            )
        except WeightspaceError as e:
            raise WeightspaceError(f"at {axis} {pos}: {e}") from None
        positions.append(pos)
        losses.append(op.loss)
        if top_k:
            v0 = prev.sum(0) if prev is not None else None  # warm start from the last point
            eig = top_eigenpairs(
                op, top_k, which, tol=tol, block_size=block_size, v0=v0, seed=seed_int
            )
            eigs.append(eig.eigenvalues.numpy())
            resid.append(eig.residuals.numpy())
            if prev is not None:
                overlap.append(subspace_overlap(prev, eig.eigenvectors))
            prev = eig.eigenvectors
        if trace_probes:
            tr = hutchinson_trace(op, trace_probes, seed=seed_int)
            traces.append(tr.estimate)
            stderrs.append(tr.stderr)
        if density:
            dens.append(spectral_density(op, n_probes, n_steps, sigma, seed=seed_int, grid=2))
        used += op.n_matvecs + op.n_checks
        meta = op.metadata  # after the products: the route and split they took
        op.release()
    bar.close()
    if not positions:
        raise WeightspaceError("points: expected at least one point, got none")
    T = len(positions)
    k = (2 * top_k if which == "both" else top_k) if top_k else 0
    eigenvalues = np.array(eigs).reshape(T, k) if k else np.zeros((T, 0))
    sigma_used, densities = _common_grid(dens, sigma, grid_points)
    if optimizer is None and lr is not None:
        optimizer = {"optimizer": "sgd", "lr": lr, "momentum": momentum}
    stab = stability(optimizer)
    threshold = stab.threshold
    lam_lr = None
    if stab.lr is not None and k and which != "smallest":
        lam_lr = eigenvalues[:, 0] * stab.lr
    nan = np.full(T, np.nan)
    settings = {
        "axis": axis,
        "top_k": top_k,
        "which": which,
        "tol": tol,
        "block_size": block_size,
        "trace_probes": trace_probes,
        "density": density,
        "n_probes": n_probes if density else None,
        "n_steps": n_steps if density else None,
        "sigma": sigma_used,
        "sigma_rule": None if not density else ("given" if sigma is not None else SIGMA_RULE),
        "seed": seed_int,
        "common_random_numbers": True,
        "lr": stab.lr,
        "optimizer": None
        if optimizer is None
        else {k: optimizer[k] for k in OPTIMIZER_KEYS if k in optimizer},
        "stability_threshold": threshold,
        "stability_rule": stab.rule,
        "buffers": sources if len(set(sources)) > 1 else sources[0],
    }
    return CurvatureAlong(
        positions=np.asarray(positions),
        axis=axis,
        loss=np.asarray(losses, dtype=np.float64),
        eigenvalues=eigenvalues,
        residuals=np.array(resid).reshape(T, k) if k else np.zeros((T, 0)),
        overlap=np.asarray(overlap, dtype=np.float64),
        eigenvectors=prev,
        trace=np.asarray(traces, dtype=np.float64) if trace_probes else nan,
        trace_stderr=np.asarray(stderrs, dtype=np.float64) if trace_probes else nan.copy(),
        densities=densities,
        lambda_max_lr=lam_lr,
        stability_threshold=threshold,
        n_matvecs=used,
        metadata={**meta, **settings},
    )


def _validate(
    m: int,
    top_k: int,
    which: str,
    trace_probes: int,
    density: bool,
    n_probes: int,
    n_steps: int,
    sigma: float | None,
) -> None:
    """The settings' checks, before the first (expensive) point."""
    if which not in ("largest", "smallest", "both"):
        raise WeightspaceError(f"which: expected 'largest', 'smallest' or 'both', got {which!r}")
    kw = 2 * top_k if which == "both" else top_k
    if not isinstance(top_k, int) or top_k < 0 or (top_k and kw >= m):
        raise WeightspaceError(
            f"top_k: expected 0 <= k < n={m} (the operator's size; 2k <= n for 'both'), "
            f"got {top_k!r}"
        )
    if not isinstance(trace_probes, int) or trace_probes < 0:
        raise WeightspaceError(f"trace_probes: expected an integer >= 0, got {trace_probes!r}")
    if density:
        if not isinstance(n_probes, int) or n_probes < 1:
            raise WeightspaceError(f"n_probes: expected a positive integer, got {n_probes!r}")
        if not isinstance(n_steps, int) or not 1 <= n_steps <= m:
            raise WeightspaceError(
                f"n_steps: expected 1..{m} (the operator's size), got {n_steps!r}"
            )
        if sigma is not None and not (isinstance(sigma, (int, float)) and sigma > 0):
            raise WeightspaceError(f"sigma: expected a positive width, got {sigma!r}")
    if not (top_k or trace_probes or density):
        raise WeightspaceError(
            "nothing to compute: set top_k > 0, trace_probes > 0 or density=True"
        )


def _common_grid(
    dens: list[SpectralDensity], sigma: float | None, grid_points: int
) -> tuple[float | None, tuple[SpectralDensity, ...]]:
    if not dens:
        return None, ()
    live = np.concatenate([d.nodes[d.weights > 0] for d in dens])
    lo, hi = float(live.min()), float(live.max())
    if sigma is None:
        sigma = 0.01 * (hi - lo) or 1e-3 * max(abs(lo), abs(hi), 1.0)
    grid = np.linspace(lo - 6 * sigma, hi + 6 * sigma, grid_points)
    return sigma, tuple(d.regrid(grid, sigma) for d in dens)


def curvature_along(
    objective: Objective,
    traj: Trajectory,
    *,
    indices: Sequence[int] | None = None,
    every: int = 1,
    **kwargs: Any,
) -> CurvatureAlong:
    """:func:`curvature_at` every ``every``-th snapshot of a run (or at ``indices``).

    The last snapshot is always included. Each snapshot is evaluated with its own recorded
    buffers (:func:`weightspace.buffers.at_snapshot`). The optimizer settings come from the
    run's metadata (unless ``optimizer=`` or ``lr=`` is given), for ``λ_max·lr`` against the
    stability threshold of that optimizer.

    Raises:
        LayoutMismatchError: the objective's model is not the run's.
    """
    traj.layout.check_compatible(objective.layout, what=f"run {str(traj.path)!r} vs --problem")
    T = len(traj)
    if indices is None:
        if not isinstance(every, int) or every < 1:
            raise WeightspaceError(f"every: expected a positive integer, got {every!r}")
        indices = list(range(0, T, every))
        if indices[-1] != T - 1:
            indices.append(T - 1)
    indices = [int(i) % T if -T <= int(i) < T else _bad_index(i, T) for i in indices]
    if "lr" not in kwargs and "optimizer" not in kwargs:
        kwargs["optimizer"] = traj.metadata
    dtype = kwargs.get("dtype") or objective.theta0.dtype
    points = (
        (
            int(traj.steps[i]),
            traj.theta(i, dtype=dtype, device=objective.device),
            at_snapshot(objective, traj, i),
        )
        for i in indices
    )
    out = curvature_at(objective, points, axis="step", n_points=len(indices), **kwargs)
    return dataclasses.replace(
        out, metadata={**out.metadata, "run": str(traj.path), "snapshot_indices": indices}
    )


def _bad_index(i: int, T: int) -> int:
    raise WeightspaceError(f"indices: snapshot index {i} is out of range for {T} snapshots")


def curvature_between(
    objective: Objective,
    theta_a: torch.Tensor,
    theta_b: torch.Tensor,
    alphas: Sequence[float] | np.ndarray | int = 11,
    *,
    buffers_b: Mapping[str, torch.Tensor] | None = None,
    **kwargs: Any,
) -> CurvatureAlong:
    """:func:`curvature_at` the points ``(1 − α)·θ_a + α·θ_b`` (GradVis §3.4).

    Args:
        objective: the mean loss, reading ``θ_a``'s buffers.
        theta_a, theta_b: ``(n,)`` the two minima.
        alphas: the line coordinates, or their number on ``[0, 1]`` (both ends included).
        buffers_b: ``θ_b``'s buffers; the point at ``α`` then reads
            ``(1 − t)·B_a + t·B_b`` with ``t = clip(α, 0, 1)`` (both ends exact).
        **kwargs: as for :func:`curvature_at`.
    """
    n = objective.layout.numel
    for name, t in (("theta_a", theta_a), ("theta_b", theta_b)):
        if not isinstance(t, torch.Tensor) or t.shape != (n,):
            raise WeightspaceError(f"{name}: expected a tensor of shape ({n},) in the layout")
    if isinstance(alphas, int):
        if alphas < 2:
            raise WeightspaceError(f"alphas: expected at least 2 points, got {alphas}")
        alphas = np.linspace(0.0, 1.0, alphas)
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not np.isfinite(alphas).all():
        raise WeightspaceError("alphas: expected a 1-D array of finite line coordinates")
    dtype = kwargs.get("dtype") or theta_a.dtype
    a = theta_a.detach().to(objective.device, dtype)
    d = theta_b.detach().to(objective.device, dtype) - a
    state = None
    if buffers_b is not None:
        state, _ = interpolated(objective, buffers_b, alphas)
    layout = objective.buffer_layout

    def at(k: int) -> Objective:
        if state is None:
            return objective
        flat = state(np.array([k]), a[None])[0]
        return objective.with_buffers(
            layout.unflatten(flat), source=f"interpolated at alpha {alphas[k]:g}"
        )

    points = ((float(al), a + float(al) * d, at(k)) for k, al in enumerate(alphas))
    out = curvature_at(objective, points, axis="alpha", n_points=len(alphas), **kwargs)
    rule = INTERPOLATION_RULE if state is not None else "theta_a's at every point"
    return dataclasses.replace(
        out, metadata={**out.metadata, "distance": float(d.norm()), "buffers_rule": rule}
    )
