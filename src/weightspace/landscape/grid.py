"""Exact 1-D and 2-D loss landscapes: ``L(c + a*d1 + b*d2)`` on a grid, and lines.

Grid semantics (Li et al. 2018, done right): ``xs`` and ``ys`` include both endpoints, values
have shape ``(ny, nx)`` with ``values[j, i] = L(c + xs[i]*d1 + ys[j]*d2)`` (matplotlib's
``contour(xs, ys, values)``), and every point is computed from the centre into one
preallocated flat buffer, never by walking. Each point carries the mean loss over the
evaluation set, its standard error over batches and, for classification, the accuracy.
Non-finite losses are kept as NaN and counted. The centre check and the determinism probe
run before the loop. Points are evaluated by :mod:`weightspace.engine` (compiled when it
pays, options recorded with their deviations), resume from per-rank checkpoints and shard
across ``torchrun`` ranks (:mod:`weightspace.parallel`). Losses at given points and runs
drawn on a plane are in :mod:`weightspace.overlay`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .. import parallel
from ..buffers import INTERPOLATION_RULE, RECOMPUTE_RULE, interpolated, recomputed
from ..checks import as_vector
from ..directions import cosine
from ..errors import WeightspaceError
from ..objective import Objective
from ._engine import EngineOptions, StateFn, aggregate, resolve_channels_last
from ._points import evaluate_points
from .results import Line, Surface

__all__ = ["check_axis", "evaluate_line", "evaluate_plane", "grid_axis"]

logger = logging.getLogger(__name__)
CENTRE_RULE = "the centre's at every point (the objective's buffers)"


# ---------------------------------------------------------------------------- inputs
MAX_POINTS = 10_000_000  # a 3162 x 3162 grid: days of work for any real model


def check_axis(values: Any, name: str) -> np.ndarray:
    """A grid axis: 1-D, at least 2 finite, strictly increasing values (float64)."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise WeightspaceError(f"{name}: expected numbers, got {type(values).__name__}") from None
    if a.ndim != 1 or a.size < 2:
        raise WeightspaceError(
            f"{name}: expected at least 2 grid points in a 1-D array, got shape {a.shape}; "
            "use e.g. numpy.linspace(-1, 1, 25)"
        )
    if not np.isfinite(a).all():
        raise WeightspaceError(f"{name}: holds NaN or inf; give finite coordinates")
    if not (np.diff(a) > 0).all():
        raise WeightspaceError(
            f"{name}: expected strictly increasing values, got {a[0]:g} .. {a[-1]:g} "
            "(reversed or repeated); give the span as low, high"
        )
    return a


def check_point_count(n: int, name: str) -> None:
    """At most :data:`MAX_POINTS` points in one landscape (each is a pass over the data)."""
    if isinstance(n, (int, np.integer)) and n > MAX_POINTS:  # other types: refused later
        raise WeightspaceError(
            f"{name}: {n:,} points, more than the {MAX_POINTS:,} one landscape may have (each "
            "is a full pass over the data); use fewer points"
        )


def grid_axis(lo: float, hi: float, n: int, name: str = "span") -> np.ndarray:
    """``linspace(lo, hi, n)`` with both endpoints, validated (``lo < hi``,
    ``2 <= n <= MAX_POINTS``)."""
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise WeightspaceError(f"{name}: expected at least 2 grid points, got {n!r}")
    check_point_count(int(n), name)
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise WeightspaceError(
            f"{name}: expected low < high, got {lo:g} {hi:g}; give the span as low high, e.g. -1 1"
        )
    return np.linspace(lo, hi, int(n))


def _prepare(
    objective: Objective, center: Any, dirs: Mapping[str, Any]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    if not isinstance(objective, Objective):
        raise WeightspaceError(
            f"objective: expected a weightspace Objective, got {type(objective).__name__}"
        )
    n = objective.layout.numel
    dtype = center.dtype if isinstance(center, torch.Tensor) else torch.float32
    c = as_vector(center, n, "center", dtype=dtype, device=objective.device)
    vecs = []
    for name, d in dirs.items():
        v = as_vector(d, n, name, dtype=c.dtype, device=objective.device)
        if not bool(v.abs().max() > 0):
            raise WeightspaceError(
                f"{name}: zero-norm direction; give a nonzero direction (with "
                "ignore='biasbn' a model of only 1-D tensors has none)"
            )
        vecs.append(v)
    return c, vecs


def _run(
    objective: Objective,
    c: torch.Tensor,
    write: Callable[[np.ndarray, torch.Tensor], None],
    n_points: int,
    key_parts: tuple[Any, ...],
    desc: str,
    *,
    check: bool,
    engine: EngineOptions,
    state: StateFn | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int, dict[str, Any]]:
    """Evaluate ``n_points`` points written by ``write`` (reading the buffers ``state``
    gives, when given); values, stderr, accuracy, info."""
    if check:
        objective.check()  # the objective reproduces the model's own loss
        center_loss = objective.check(c)  # determinism probe, finite loss at the centre
    else:
        center_loss = objective.evaluate(c).loss
    key = parallel.fingerprint(
        *key_parts,
        objective.metadata,
        objective.buffer_vector(),
        str(c.dtype),
        [engine.precision],
        resolve_channels_last(objective, engine.channels_last),
        engine.points_per_pass,
    )
    data, info = evaluate_points(
        objective,
        write,
        n_points,
        dtype=c.dtype,
        key=key,
        engine=engine,
        checkpoint=checkpoint,
        resume=resume,
        desc=desc,
        state=state,
    )
    info["center_loss"] = center_loss
    cls = objective.metadata["task"] == "classification"
    weights = objective.batch_weights.numpy()
    values, stderr, acc = aggregate(data, weights, objective.n_samples, cls)
    n_bad = int(np.isnan(values).sum())
    if n_bad:
        logger.warning("%d of %d points have a non-finite loss (kept as NaN)", n_bad, len(values))
    return values, stderr, acc, n_bad, info


def _affine_writer(
    c: torch.Tensor, basis: list[torch.Tensor], coeffs: np.ndarray
) -> Callable[[np.ndarray, torch.Tensor], None]:
    """``write(idx, out)``: ``out[r] = c + sum_k coeffs[idx[r], k] * basis[k]``, from c."""
    cols = [[float(v) for v in coeffs[:, k]] for k in range(coeffs.shape[1])]

    def write(idx: np.ndarray, out: torch.Tensor) -> None:
        for r, p in enumerate(idx.tolist()):
            torch.add(c, basis[0], alpha=cols[0][p], out=out[r])
            for k in range(1, len(basis)):
                out[r].add_(basis[k], alpha=cols[k][p])

    return write


# ---------------------------------------------------------------------------- public API
def evaluate_plane(
    objective: Objective,
    center: Any,
    d1: Any,
    d2: Any,
    xs: Any,
    ys: Any,
    *,
    engine: EngineOptions | Mapping[str, Any] | None = None,
    check: bool = True,
    recompute_bn: bool = False,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> Surface:
    """The loss on the plane ``center + x*d1 + y*d2`` at every grid point.

    Every point reads the objective's buffers (give it the centre's:
    :func:`weightspace.buffers.at_snapshot`), or, with ``recompute_bn``, BatchNorm statistics
    re-estimated at the point; the rule is in ``metadata["buffers_rule"]``.

    Args:
        objective: the loss (model, data, mode, buffers).
        center: ``(n,)``; its dtype (float32 or float64) is the evaluation dtype.
        d1, d2: ``(n,)`` directions (e.g. ``random_directions(...)[0]``).
        xs: ``(nx,)``, ys: ``(ny,)`` strictly increasing coordinates, both endpoints
            included (:func:`grid_axis`); any ``nx``, ``ny >= 2``.
        check: run the centre check and the determinism probe first.
        recompute_bn: re-estimate BatchNorm statistics at every point (one pass over the
            training data per point; :func:`weightspace.buffers.recompute_batchnorm`).
        metadata: extra facts to record (directions, runs, data subset).
        engine: how to evaluate (:class:`EngineOptions`, or a mapping of its fields):
            compilation, bf16, channels-last, points per pass, checkpoint cadence, progress.
        checkpoint: path prefix of per-rank partial files, written as points complete and
            removed when the surface is done (None: no checkpoints).
        resume: continue from the partial files of the same work at ``checkpoint``.

    Returns:
        :class:`Surface` with ``values[j, i] = L(center + xs[i]*d1 + ys[j]*d2)``.

    Raises:
        WeightspaceError: shapes that do not match the objective's layout, a zero
        direction, fewer than 2 points or a reversed axis, a non-deterministic objective.

    Example::

        surf = evaluate_plane(obj, c, d[0], d[1], np.linspace(-1, 1, 31),
                              np.linspace(-1, 1, 21))
        surf.values.shape
        # -> (21, 31)
    """
    engine = EngineOptions.of(engine)  # a misspelt option fails here, before any evaluation
    xs, ys = check_axis(xs, "xs"), check_axis(ys, "ys")
    check_point_count(len(xs) * len(ys), "xs, ys")
    c, (v1, v2) = _prepare(objective, center, {"d1": d1, "d2": d2})
    gx, gy = np.meshgrid(xs, ys)  # (ny, nx): row-major point p = j*nx + i
    coeffs = np.stack([gx.ravel(), gy.ravel()], axis=1)
    write = _affine_writer(c, [v1, v2], coeffs)
    state, rule = (recomputed(objective), RECOMPUTE_RULE) if recompute_bn else (None, CENTRE_RULE)
    key = (c, v1, v2, coeffs, rule)
    values, stderr, acc, n_bad, info = _run(
        objective,
        c,
        write,
        len(coeffs),
        key,
        "surface",
        check=check,
        engine=engine,
        state=state,
        checkpoint=checkpoint,
        resume=resume,
    )
    shape = (len(ys), len(xs))
    meta = {
        "objective": objective.metadata,
        "grid": {"nx": len(xs), "ny": len(ys), "x": [xs[0], xs[-1]], "y": [ys[0], ys[-1]]},
        "dtype": str(c.dtype).removeprefix("torch."),
        "d1_norm": float(torch.linalg.vector_norm(v1.double())),
        "d2_norm": float(torch.linalg.vector_norm(v2.double())),
        "cosine": cosine(v1, v2),
        "engine": info,
        "n_nonfinite": n_bad,
        "buffers_rule": rule if len(objective.buffer_layout) else "the model has no buffers",
        **dict(metadata or {}),
    }
    return Surface(
        xs,
        ys,
        values.reshape(shape),
        stderr.reshape(shape),
        None if acc is None else acc.reshape(shape),
        n_bad,
        meta,
        directions=torch.stack([v1, v2]).cpu().numpy(),
    )


def evaluate_line(
    objective: Objective,
    start: Any,
    direction: Any,
    alphas: Any = None,
    *,
    engine: EngineOptions | Mapping[str, Any] | None = None,
    check: bool = True,
    end_buffers: Mapping[str, torch.Tensor] | None = None,
    recompute_bn: bool = False,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> Line:
    """The loss along ``start + alpha*direction`` (Goodfellow et al. 2015).

    With ``direction = end - start`` (:func:`~weightspace.interpolation_directions`) alpha=0
    is ``start`` and alpha=1 is ``end``; the result carries the barrier height and the
    monotonicity verdict on [0, 1].

    Every point reads the objective's buffers (the start's), or with ``end_buffers`` the
    interpolation ``(1 - t)·B_start + t·B_end``, ``t = clip(alpha, 0, 1)``, so that both ends
    are exact; or with ``recompute_bn`` statistics re-estimated at the point. The rule is in
    ``metadata["buffers_rule"]``.

    Args:
        objective: the loss (with the start's buffers).
        start: ``(n,)``; direction: ``(n,)``.
        alphas: ``(P,)`` strictly increasing; default ``linspace(-0.5, 1.5, 41)``.
        end_buffers: the end point's buffers (name -> tensor), e.g.
            ``traj.buffers(-1)``.
        engine, check, recompute_bn, checkpoint, resume, metadata: as in
            :func:`evaluate_plane`.

    Returns:
        :class:`Line`.
    """
    engine = EngineOptions.of(engine)  # a misspelt option fails here, before any evaluation
    alphas = check_axis(np.linspace(-0.5, 1.5, 41) if alphas is None else alphas, "alphas")
    c, (d,) = _prepare(objective, start, {"direction": direction})
    coeffs = alphas[:, None]
    write = _affine_writer(c, [d], coeffs)
    state, rule, extra = None, CENTRE_RULE.replace("centre", "start"), None
    if recompute_bn:
        state, rule = recomputed(objective), RECOMPUTE_RULE
    elif end_buffers is not None:
        state, extra = interpolated(objective, end_buffers, alphas)
        rule = INTERPOLATION_RULE
    key = (c, d, coeffs, rule, extra)
    values, stderr, acc, n_bad, info = _run(
        objective,
        c,
        write,
        len(alphas),
        key,
        "line",
        check=check,
        engine=engine,
        state=state,
        checkpoint=checkpoint,
        resume=resume,
    )
    barrier, monotonic = _barrier(alphas, values)
    meta = {
        "objective": objective.metadata,
        "alphas": {"n": len(alphas), "range": [alphas[0], alphas[-1]]},
        "dtype": str(c.dtype).removeprefix("torch."),
        "direction_norm": float(torch.linalg.vector_norm(d.double())),
        "engine": info,
        "n_nonfinite": n_bad,
        "barrier": barrier,
        "monotonic": monotonic,
        "buffers_rule": rule if len(objective.buffer_layout) else "the model has no buffers",
        **dict(metadata or {}),
    }
    return Line(alphas, values, stderr, acc, n_bad, barrier, monotonic, meta)


def _barrier(alphas: np.ndarray, values: np.ndarray) -> tuple[float, bool | None]:
    """Barrier height and monotonic decrease on the points with alpha in [0, 1]."""
    i0 = np.flatnonzero(np.isclose(alphas, 0.0, rtol=0, atol=1e-9))
    i1 = np.flatnonzero(np.isclose(alphas, 1.0, rtol=0, atol=1e-9))
    if not len(i0) or not len(i1):
        return math.nan, None
    a, v = alphas[i0[0] : i1[0] + 1], values[i0[0] : i1[0] + 1]
    if not np.isfinite(v).all():
        return math.nan, None
    chord = (1 - a) * v[0] + a * v[-1]
    tol = 1e-6 * max(1.0, float(np.abs(v).max()))
    return float((v - chord).max()), bool((np.diff(v) <= tol).all())
