"""Lipton's table of distances between runs' final points, with and without permutation
alignment (what :func:`~weightspace.workflows.project_runs` adds to a projection).

Two networks trained from different seeds differ partly by a permutation of their hidden
units (Entezari et al. 2022; Ainsworth, Hayase & Srinivasa 2023). Aligning every run's final
point to a reference run's final point first (:func:`weightspace.between.align`) asks Lipton's
question, "are all pairs equally far apart?", modulo those permutations.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .._progress import progress_bar
from ..buffer_layout import BufferLayout
from ..errors import WeightspaceError
from ..layout import ParamLayout
from ..problems import Problem
from ..trajectory import Trajectory

__all__ = ["EndpointAlignment", "check_alignment", "endpoint_distances"]

ALIGN_METHODS = ("weights", "activations")
ACTIVATION_SAMPLES = 1024  # samples whose unit activations are correlated (a sample suffices)
CHUNK = 1 << 20  # parameters per chunk of a distance (8 MiB of float64 per operand)


def distance_matrix(points: Sequence[Any]) -> np.ndarray:
    """``(R, R)`` ``‖p_r − p_s‖`` of flat vectors (arrays, memory maps or tensors), each
    difference taken in float64 chunk by chunk: exact to rounding, memory O(chunk)."""
    r = len(points)
    out = np.zeros((r, r))
    for i in range(r):
        for j in range(i + 1, r):
            total = 0.0
            for k in range(0, len(points[i]), CHUNK):
                a = np.asarray(points[i][k : k + CHUNK], dtype=np.float64)
                d = a - np.asarray(points[j][k : k + CHUNK], dtype=np.float64)
                total += float(d @ d)
            out[i, j] = out[j, i] = np.sqrt(total)
    return out


def reference_index(trajs: Sequence[Trajectory], reference: Any) -> int:
    """The position of the reference run: an index into the runs, or one of the runs (a
    directory or a Trajectory among them)."""
    if isinstance(reference, (int, np.integer)) and not isinstance(reference, bool):
        if not -len(trajs) <= reference < len(trajs):
            raise WeightspaceError(
                f"align.reference: expected a run index in 0..{len(trajs) - 1} or one of the "
                f"runs, got {reference!r}"
            )
        return int(reference) % len(trajs)
    if isinstance(reference, (str, os.PathLike, Trajectory)):
        path = reference.path if isinstance(reference, Trajectory) else reference
        key = os.path.realpath(path)
        for i, t in enumerate(trajs):
            if os.path.realpath(t.path) == key:
                return i
        raise WeightspaceError(
            f"align.reference: {str(path)!r} is not one of the runs given; give one of them "
            "(or its index)"
        )
    raise WeightspaceError(
        f"align.reference: expected a run index or one of the runs, got {type(reference).__name__}"
    )


def _sample_inputs(problem: Problem, n: int) -> torch.Tensor | None:
    """Up to ``n`` inputs of the problem's training data (a tensor ``X``), or None when its
    inputs are not one tensor."""
    data = problem.data
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return data[0][:n]
    if isinstance(data, torch.Tensor):
        return data[:n]
    try:
        first = next(iter(data))
    except (TypeError, StopIteration):
        return None
    x = first[0] if isinstance(first, (tuple, list)) else first
    return x[:n] if isinstance(x, torch.Tensor) else None


def _check_alignable(
    method: str, problem: Any, trajs: Sequence[Trajectory], x: torch.Tensor | None
) -> tuple[ParamLayout, BufferLayout]:
    if not isinstance(problem, Problem):
        raise WeightspaceError(
            f"align.problem: expected the runs' weightspace.Problem (its model gives the "
            f"permutation structure), got {type(problem).__name__}"
        )
    layout = ParamLayout.from_module(problem.model)
    for t in trajs:
        t.layout.check_compatible(layout, what=f"run {str(t.path)!r} vs the problem's model")
    buffers = BufferLayout.from_module(problem.model)
    if method == "activations":
        if x is None:
            raise WeightspaceError(
                "align.problem: method 'activations' needs the problem's inputs as one tensor X "
                "(data=(X, y) or batches of tensors); use method 'weights'"
            )
        for t in trajs:
            own = t.buffer_layout
            if buffers.numel and (own is None or tuple(own.names) != tuple(buffers.names)):
                raise WeightspaceError(
                    f"align: run {str(t.path)!r} did not record the model's buffers (BatchNorm "
                    "statistics), which activation matching reads; use method 'weights'"
                )
    return layout, buffers


@dataclass(frozen=True)
class EndpointAlignment:
    """How :func:`~weightspace.workflows.project_runs` aligns the runs' final points before
    it measures the distances between them (Lipton's table, modulo permutations).

    Args:
        method: ``"weights"``: weight matching (Ainsworth et al. 2023); ``"activations"``:
            the correlation of unit activations on up to 1,024 of the problem's training
            inputs (runs of a model with buffers must have recorded them).
        problem: the runs' :class:`~weightspace.Problem`; its model gives the permutation
            structure (:func:`weightspace.between.permutation_spec`), its inputs the shapes
            and the activations.
        reference: the run every other run is aligned to: an index into the runs (default
            0, the first) or one of the runs (a directory or a Trajectory).
        seed: the order of weight matching's coordinate steps.

    Example::

        align = EndpointAlignment("weights", ws.zoo.problem("digits-mlp"))
        proj = ws.project_runs(["runs/s0", "runs/s1", "runs/s2"], align=align)
        proj.endpoint_distances[0], proj.aligned_distances[0]
    """

    method: Literal["weights", "activations"]
    problem: Problem
    reference: int | str | os.PathLike | Trajectory = 0
    seed: int = 0


def check_alignment(trajs: Sequence[Trajectory], align: Any) -> int | None:
    """The reference run's index (None without ``align``); refuses a bad ``align`` before
    any work is done."""
    if align is None:
        return None
    if not isinstance(align, EndpointAlignment):
        raise WeightspaceError(
            "align: expected None or EndpointAlignment(method, problem, reference=0), got "
            f"{type(align).__name__}"
        )
    if align.method not in ALIGN_METHODS:
        raise WeightspaceError(
            f"align.method: expected 'weights' or 'activations', got {align.method!r}"
        )
    if len(trajs) < 2:
        raise WeightspaceError(
            f"align: aligning runs needs at least 2 runs, got {len(trajs)}; give more runs or "
            "align=None"
        )
    ref = reference_index(trajs, align.reference)
    problem = align.problem
    x = _sample_inputs(problem, ACTIVATION_SAMPLES) if isinstance(problem, Problem) else None
    _check_alignable(align.method, problem, trajs, x)
    return ref


def endpoint_distances(
    trajs: Sequence[Trajectory], align: EndpointAlignment | None = None, progress: bool = False
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any] | None]:
    """``‖θ_r − θ_s‖`` between the runs' final points, unaligned and aligned.

    Args:
        trajs: the runs (one model).
        align: None, or how every run's final point is aligned to the reference run's.
        progress: a bar over the runs aligned.

    Returns:
        ``(distances, aligned, record)``: ``(R, R)`` distances between final points (None for
        a single run); ``(R, R)`` distances after every final point was aligned to the
        reference's (None without ``align``); what the alignment did (None without).
    """
    ref = check_alignment(trajs, align)
    if len(trajs) < 2:
        return None, None, None
    distances = distance_matrix([t.snapshot(-1) for t in trajs])
    if align is None:
        return distances, None, None
    from ..between import align as align_pair
    from ..between import permutation_spec

    method, problem = align.method, align.problem
    x = _sample_inputs(problem, ACTIVATION_SAMPLES)
    layout, buffers = _check_alignable(method, problem, trajs, x)
    example = None if x is None else x[:2]
    target = problem.model if method == "activations" else permutation_spec(problem.model, example)
    finals = [torch.from_numpy(np.asarray(t.snapshot(-1), dtype=np.float64)) for t in trajs]
    reads = method == "activations" and buffers.numel  # weight matching reads no buffers
    bufs = [t.buffer_array(-1) if reads else None for t in trajs]
    aligned, runs = list(finals), []
    for i in progress_bar(range(len(trajs)), desc="align", unit="run", enabled=progress):
        if i == ref:
            continue
        result = align_pair(
            target,
            finals[ref],
            finals[i],
            layout=layout,
            method=method,
            data=x,
            buffers_a=bufs[ref],
            buffers_b=bufs[i],
            buffer_layout=buffers,
            seed=align.seed,
        )
        aligned[i] = result.apply(finals[i])
        runs.append(
            {
                "run": str(trajs[i].path),
                "distance_before": result.distance_before,
                "distance_after": result.distance_after,
                "units_moved": result.metadata["units_moved"],
                **{k: result.metadata[k] for k in ("sweeps", "converged") if k in result.metadata},
            }
        )
    after = distance_matrix([v.numpy() for v in aligned])
    record = {
        "method": method,
        "reference": str(trajs[ref].path),
        "reference_index": ref,
        "seed": align.seed,
        "groups": {g: len(p) for g, p in result.perms.items()},
        "n_samples": None if method == "weights" else int(x.shape[0]),
        "runs": runs,
    }
    return distances, after, record
