"""Curvature along a recorded run and on the line between two minima (GradVis §3.4).

At every chosen point: the top eigenpairs, a trace estimate and an SLQ density, all with
common random numbers (the same probes and the same evaluation data everywhere), so that
differences between points are differences in the Hessian, not in the noise. Densities share
one grid; each is smoothed with its own width (1 % of its own eigenvalue range, at least two
grid steps), or with one ``sigma`` when given, so that an outlier at one point does not blur
the others. Consecutive top-k eigenvector sets are compared by
their subspace overlap ``‖U_t U_{t+1}ᵀ‖_F² / k`` (1: same subspace, ~k/n: unrelated; Gur-Ari
et al. 2018), and ``λ_max·lr`` is set against the stability threshold of the run's update
rule (Cohen et al. 2021: 2 for gradient descent, ``2 + 2β`` with heavy-ball momentum ``β``;
:func:`weightspace.optimizers.stability`). Each point reads its own buffers (a snapshot's
BatchNorm statistics), or on a line between two points their interpolation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .._progress import progress_bar
from ..buffers import INTERPOLATION_RULE, at_snapshot, interpolated
from ..checks import Seed, as_generator
from ..errors import WeightspaceError
from ..objective import Objective
from ..optimizers import OPTIMIZER_KEYS, Stability, stability
from ..trajectory import Trajectory
from . import settings as _settings
from ._autodiff import sub_layout
from .along_result import CurvatureAlong, subspace_overlap
from .lanczos import top_eigenpairs
from .plan import plan_hessian
from .settings import CurvatureSettings
from .slq import POINT_SIGMA_RULE, SpectralDensity, on_common_grid, spectral_density
from .trace import hutchinson_trace

__all__ = ["curvature_along", "curvature_at", "curvature_between"]


def _int_seed(seed: Seed) -> int:
    """One integer seed, reused at every point (common random numbers)."""
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    return int(torch.randint(0, 2**62, (1,), generator=as_generator(seed)))


@dataclass(frozen=True)
class _Point:
    """What :func:`curvature_at` measured at one point (its eigenvectors kept apart)."""

    position: Any
    loss: float
    eigenvalues: np.ndarray | None
    residuals: np.ndarray | None
    overlap: float | None
    trace: float
    trace_stderr: float
    density: SpectralDensity | None
    n_matvecs: int
    buffers: str | None
    plan: dict[str, Any]
    metadata: dict[str, Any]


def curvature_at(
    objective: Objective,
    points: Iterable[tuple[float, torch.Tensor] | tuple[float, torch.Tensor, Objective]],
    settings: CurvatureSettings | None = None,
    *,
    axis: Literal["step", "alpha"] = "step",
    lr: float | None = None,
    momentum: float = 0.0,
    optimizer: Mapping[str, Any] | None = None,
    n_points: int | None = None,
    progress: bool = False,
    **overrides: Any,
) -> CurvatureAlong:
    """Top-k eigenpairs, trace and density at each of ``points``, with common random numbers.

    At each point :func:`~weightspace.curvature.plan_hessian` builds the operator for the
    products planned there (:meth:`CurvatureSettings.n_products`); its decision is in the
    metadata (``hvp_plan`` of the last point, ``hvp_plans`` of all).

    Args:
        objective: the mean loss (fixed data: the same at every point).
        points: ``(position, theta)`` pairs, ``theta: (n,)`` in the objective's layout, or
            ``(position, theta, objective)`` triples giving the objective to use at that
            point (the same data, other buffers: e.g. the snapshot's BatchNorm statistics).
        settings: what to compute (:class:`CurvatureSettings`); default its defaults.
        axis: what the positions are.
        lr, momentum: shorthand for ``optimizer={"optimizer": "sgd", "lr": lr,
            "momentum": momentum}``.
        optimizer: the run's optimizer settings (a run's metadata, or
            :func:`weightspace.optimizers.optimizer_settings`), for ``λ_max·lr`` and its
            stability threshold.
        n_points: the number of points (for the progress bar).
        progress: show progress over points, and within each point over its Hessian
            columns, Lanczos products, trace probes and SLQ probes and steps.
        **overrides: fields of :class:`CurvatureSettings` (``top_k=3``, ``density=True``,
            ``n_probes=``, ``n_steps=``, ``sigma=``, ``grid_points=``, ``seed=``, ``tol=``,
            ``block_size=``, ``which=``, ``trace_probes=``, ``dtype=``, ``include=``,
            ``method=``, ``split=``) replacing those of ``settings``.

    Returns:
        :class:`CurvatureAlong`.

    Raises:
        WeightspaceError: bad settings (checked before the first point), or a point where
            the loss is not finite (the error names the point).
    """
    s = _settings.resolve(settings, overrides)
    s.check(sub_layout(objective.layout, s.include))
    seed = _int_seed(s.seed)
    rows: list[_Point] = []
    vectors = None
    bar = progress_bar(
        points, total=n_points, desc="curvature", unit="point", enabled=progress, leave=True
    )
    for point in bar:
        row, vectors = _at_point(objective, point, s, seed, vectors, axis, progress)
        rows.append(row)
    if not rows:
        raise WeightspaceError("points: expected at least one point, got none")
    if optimizer is None and lr is not None:
        optimizer = {"optimizer": "sgd", "lr": lr, "momentum": momentum}
    return _assemble(rows, vectors, s, seed, axis, optimizer)


def _at_point(
    objective: Objective,
    point: tuple[Any, ...],
    s: CurvatureSettings,
    seed: int,
    prev: torch.Tensor | None,
    axis: str,
    progress: bool,
) -> tuple[_Point, torch.Tensor | None]:
    """Measure one point; returns it and its eigenvectors (``prev`` when none)."""
    pos, theta = point[0], point[1]
    at = point[2] if len(point) > 2 else objective
    try:
        op = plan_hessian(
            at, theta, s.n_products(), include=s.include, dtype=s.dtype, method=s.method,
            split=s.split, progress=progress,
        )  # fmt: skip
    except WeightspaceError as e:
        raise WeightspaceError(f"at {axis} {pos}: {e}") from None
    eig = tr = dens = None
    if s.top_k:
        v0 = prev.sum(0) if prev is not None else None  # warm start from the last point
        eig = top_eigenpairs(
            op, s.top_k, s.which, tol=s.tol, block_size=s.block_size, v0=v0, seed=seed,
            progress=progress,
        )  # fmt: skip
    if s.trace_probes:
        tr = hutchinson_trace(op, s.trace_probes, seed=seed, progress=progress)
    if s.density:
        dens = spectral_density(
            op, s.n_probes, s.n_steps, s.sigma, seed=seed, grid=2, progress=progress
        )
    op.release()
    row = _Point(
        position=pos,
        loss=op.loss,
        eigenvalues=None if eig is None else eig.eigenvalues.numpy(),
        residuals=None if eig is None else eig.residuals.numpy(),
        overlap=None if eig is None or prev is None else subspace_overlap(prev, eig.eigenvectors),
        trace=float("nan") if tr is None else tr.estimate,
        trace_stderr=float("nan") if tr is None else tr.stderr,
        density=dens,
        n_matvecs=op.n_matvecs + op.n_checks + op.plan["planning_products"],
        buffers=at.buffers_source,
        plan={"route": op.plan["route"], "block": op.plan["block"]},
        metadata=op.metadata,  # after the products
    )
    return row, prev if eig is None else eig.eigenvectors


def _assemble(
    rows: list[_Point],
    vectors: torch.Tensor | None,
    s: CurvatureSettings,
    seed: int,
    axis: str,
    optimizer: Mapping[str, Any] | None,
) -> CurvatureAlong:
    """The points' measurements as one :class:`CurvatureAlong`."""
    T, k = len(rows), s.k_wanted if s.top_k else 0
    sigma, densities = on_common_grid(
        [r.density for r in rows if r.density], s.sigma, s.grid_points
    )
    stab = stability(optimizer)
    eigenvalues = np.array([r.eigenvalues for r in rows]).reshape(T, k) if k else np.zeros((T, 0))
    lam_lr = None
    if stab.lr is not None and k and s.which != "smallest":
        lam_lr = eigenvalues[:, 0] * stab.lr
    sources = [r.buffers for r in rows]
    return CurvatureAlong(
        positions=np.asarray([r.position for r in rows]),
        axis=axis,
        loss=np.asarray([r.loss for r in rows], dtype=np.float64),
        eigenvalues=eigenvalues,
        residuals=np.array([r.residuals for r in rows]).reshape(T, k) if k else np.zeros((T, 0)),
        overlap=np.asarray([r.overlap for r in rows if r.overlap is not None], dtype=np.float64),
        eigenvectors=vectors,
        trace=np.asarray([r.trace for r in rows], dtype=np.float64),
        trace_stderr=np.asarray([r.trace_stderr for r in rows], dtype=np.float64),
        densities=densities,
        lambda_max_lr=lam_lr,
        stability_threshold=stab.threshold,
        n_matvecs=sum(r.n_matvecs for r in rows),
        metadata={
            **rows[-1].metadata,
            **_settings_metadata(s, seed, axis, sigma, stab, optimizer),
            "buffers": sources if len(set(sources)) > 1 else sources[0],
            "hvp_plans": [r.plan for r in rows],
        },
    )


def _settings_metadata(
    s: CurvatureSettings,
    seed: int,
    axis: str,
    sigma: float | list[float] | None,
    stab: Stability,
    optimizer: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        "axis": axis,
        "top_k": s.top_k,
        "which": s.which,
        "tol": s.tol,
        "block_size": s.block_size,
        "trace_probes": s.trace_probes,
        "density": s.density,
        "n_probes": s.n_probes if s.density else None,
        "n_steps": s.n_steps if s.density else None,
        "sigma": sigma,
        "sigma_rule": None
        if not s.density
        else ("given" if s.sigma is not None else POINT_SIGMA_RULE),
        "seed": seed,
        "common_random_numbers": True,
        "lr": stab.lr,
        "optimizer": None
        if optimizer is None
        else {k: optimizer[k] for k in OPTIMIZER_KEYS if k in optimizer},
        "stability_threshold": stab.threshold,
        "stability_rule": stab.rule,
    }


def curvature_along(
    objective: Objective,
    traj: Trajectory,
    settings: CurvatureSettings | None = None,
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

    Args:
        objective: the mean loss (fixed data).
        traj: the run.
        settings: what to compute (:class:`CurvatureSettings`).
        indices: snapshot indices (negative ones count from the end); default every
            ``every``-th and the last.
        every: the stride when ``indices`` is not given.
        **kwargs: settings fields and the other keywords of :func:`curvature_at`.

    Raises:
        LayoutMismatchError: the objective's model is not the run's.

    Example:
        ``curvature_along(objective, traj, every=5, top_k=3, density=True, seed=0)``: the
        top 3 eigenpairs and an SLQ density at every 5th snapshot and the last.
    """
    what = f"run {str(traj.path)!r} vs the problem's model"
    traj.layout.check_compatible(objective.layout, what=what)
    s = _settings.take(settings, kwargs)
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
    dtype = s.dtype or objective.theta0.dtype
    points = (
        (
            int(traj.steps[i]),
            traj.theta(i, dtype=dtype, device=objective.device),
            at_snapshot(objective, traj, i),
        )
        for i in indices
    )
    out = curvature_at(objective, points, s, axis="step", n_points=len(indices), **kwargs)
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
    settings: CurvatureSettings | None = None,
    *,
    buffers_b: Mapping[str, torch.Tensor] | None = None,
    **kwargs: Any,
) -> CurvatureAlong:
    """:func:`curvature_at` the points ``(1 − α)·θ_a + α·θ_b`` (GradVis §3.4).

    Args:
        objective: the mean loss, reading ``θ_a``'s buffers.
        theta_a, theta_b: ``(n,)`` the two minima.
        alphas: the line coordinates, or their number on ``[0, 1]`` (both ends included).
        settings: what to compute (:class:`CurvatureSettings`).
        buffers_b: ``θ_b``'s buffers; the point at ``α`` then reads
            ``(1 − t)·B_a + t·B_b`` with ``t = clip(α, 0, 1)`` (both ends exact).
        **kwargs: settings fields and the other keywords of :func:`curvature_at`.
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
    s = _settings.take(settings, kwargs)
    dtype = s.dtype or theta_a.dtype
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
    out = curvature_at(objective, points, s, axis="alpha", n_points=len(alphas), **kwargs)
    rule = INTERPOLATION_RULE if state is not None else "theta_a's at every point"
    return dataclasses.replace(
        out, metadata={**out.metadata, "distance": float(d.norm()), "buffers_rule": rule}
    )
