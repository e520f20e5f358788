"""The result of :func:`~weightspace.curvature.curvature_at` (and along a run, and between
two points): :class:`CurvatureAlong`, and the subspace overlap of eigenvector sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .slq import SpectralDensity

__all__ = ["CurvatureAlong", "subspace_overlap"]


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
        densities: one :class:`SpectralDensity` per point on a common grid, each with its
            own ``sigma`` (one for all when given; empty when not computed).
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


def subspace_overlap(U: torch.Tensor, W: torch.Tensor) -> float:
    """``‖U Wᵀ‖_F² / k`` for orthonormal rows ``U, W: (k, n)``: 1 for the same subspace."""
    return float((U.to(torch.float64) @ W.to(torch.float64).T).pow(2).sum() / U.shape[0])
