"""What the landscapes compute: surfaces, lines, and runs drawn on a plane (frozen results)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Line", "PlaneTrajectory", "Surface"]


@dataclass(frozen=True)
class Surface:
    """A 2-D loss landscape.

    Attributes:
        xs: ``(nx,)`` coordinates along ``d1``; ys: ``(ny,)`` along ``d2``.
        values: ``(ny, nx)`` mean loss, ``values[j, i]`` at ``(xs[i], ys[j])``; NaN where
            the loss was not finite.
        stderr: ``(ny, nx)`` standard error over batches (NaN with one batch).
        accuracy: ``(ny, nx)`` for classification, else None.
        n_nonfinite: how many points had a non-finite loss.
        metadata: objective, directions, grid, engine options and their deviations, timing.
        trajectories: runs drawn on the plane (:class:`PlaneTrajectory`).
        directions: ``(2, n)`` the plane's directions ``d1, d2`` (None when not kept).
    """

    xs: np.ndarray
    ys: np.ndarray
    values: np.ndarray
    stderr: np.ndarray
    accuracy: np.ndarray | None
    n_nonfinite: int
    metadata: dict[str, Any] = field(default_factory=dict)
    trajectories: tuple[PlaneTrajectory, ...] = ()
    directions: np.ndarray | None = None


@dataclass(frozen=True)
class Line:
    """A 1-D loss profile ``L(start + alpha*direction)``.

    Attributes:
        alphas: ``(P,)``; values, stderr: ``(P,)``; accuracy: ``(P,)`` or None.
        n_nonfinite: how many points had a non-finite loss.
        barrier: height of the loss above the straight line between the values at alpha=0
            and alpha=1, ``max_a L(a) - ((1-a) L(0) + a L(1))`` over the points in [0, 1]
            (Frankle et al. 2020); NaN unless 0 and 1 are among the alphas.
        monotonic: True when the loss never increases from alpha=0 to alpha=1 (Goodfellow
            et al. 2015's monotonic decrease); None unless 0 and 1 are among the alphas.
        metadata: as for :class:`Surface`.
    """

    alphas: np.ndarray
    values: np.ndarray
    stderr: np.ndarray
    accuracy: np.ndarray | None
    n_nonfinite: int
    barrier: float
    monotonic: bool | None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlaneTrajectory:
    """One run on a plane: coordinates in grid units, off-plane residual, losses.

    Attributes:
        name: the run's label; steps: ``(T,)``.
        coords: ``(T, 2)`` least-squares ``(a, b)`` of each snapshot.
        residual: ``(T,)`` relative off-plane distance ``||r|| / ||theta - c||``.
        loss: ``(T,)`` the true loss at each snapshot.
        plane_loss: ``(T,)`` the loss at its projection ``c + a d1 + b d2`` (what the
            surface shows there).
        distance: ``(T,)`` ``||theta - c||``, each snapshot's distance from the centre, so
            that ``residual * distance`` is the absolute off-plane distance (None: not
            known, e.g. results written before it was stored).
    """

    name: str
    steps: np.ndarray
    coords: np.ndarray
    residual: np.ndarray
    loss: np.ndarray
    plane_loss: np.ndarray
    distance: np.ndarray | None = None

    @property
    def off_plane(self) -> np.ndarray | None:
        """``(T,)`` the absolute off-plane distance ``||theta - c - a d1 - b d2||``."""
        return None if self.distance is None else self.residual * self.distance


@dataclass(frozen=True)
class Curve:
    """One run's loss (and accuracy) at its snapshots, on one objective.

    Attributes:
        label: the run's label; run: its directory.
        steps: ``(m,)`` the snapshots' steps.
        loss: ``(m,)`` mean loss over the objective's data; stderr: ``(m,)`` its standard
            error over batches (NaN with one batch).
        accuracy: ``(m,)`` for classification, else None.
    """

    label: str
    run: str
    steps: np.ndarray
    loss: np.ndarray
    stderr: np.ndarray
    accuracy: np.ndarray | None = None


@dataclass(frozen=True)
class Curves:
    """Loss and accuracy along runs, each snapshot with its own buffers (one objective:
    ``metadata["objective"]`` says which data and mode)."""

    runs: tuple[Curve, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
