"""What lies between two solutions: the frozen result of :func:`weightspace.connect_runs`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..curvature import CurvatureAlong
from ..errors import WeightspaceError
from ..landscape.results import Line, Surface

__all__ = ["PATHS", "Connection"]

# the paths from A to B, in the order they are drawn
PATHS = ("line", "aligned", "curve")
PATH_LABELS = {
    "line": "straight line (unaligned)",
    "aligned": "straight line (aligned)",
    "curve": "trained curve",
}


@dataclass(frozen=True)
class Connection:
    """Two solutions A and B, the paths between them, and the loss along each.

    The paths are ``"line"``: ``(1 − t)θ_a + tθ_b``; ``"aligned"``: the same with B's
    hidden units permuted into A's order (Ainsworth et al. 2023); ``"curve"``: a trained
    Bézier curve or polygonal chain from A to (aligned) B (Garipov et al. 2018).

    Attributes:
        paths: the paths computed, a subset of ``("line", "aligned", "curve")`` in that order.
        splits: ``("train",)`` or ``("train", "test")``: the data of the profiles.
        profiles: ``"path/split"`` -> :class:`~weightspace.landscape.Line` along the path,
            ``alphas`` the ``t`` of its points ``(m,)`` (0 and 1 included), with loss,
            accuracy and ``barrier = max_t L(φ(t)) − [(1−t)L(0) + tL(1)]``.
        distance_before: ``‖θ_a − θ_b‖``.
        distance_after: ``‖θ_a − Pθ_b‖`` after alignment (NaN without alignment).
        perms: group -> ``(units,)`` the permutation of B's units (empty without alignment).
        bends: ``(b, n)`` the trained bend points (None without a curve).
        surface: the loss (training data) on the plane through ``θ_a``, the aligned ``θ_b``
            and the bend (orthonormalised, Garipov et al. 2018), centred on ``θ_a`` with
            ``d1 = θ_b − θ_a``, the paths drawn on it as trajectories (``steps`` are the
            ``t``); None when no three distinct points define a plane.
        spectra: path -> :class:`~weightspace.curvature.CurvatureAlong` at the chosen ``t``
            (``positions``; training data); empty when not asked for.
        metadata: the ends (runs, steps), the alignment's and the curve's settings, the
            BatchNorm rule, timings.
    """

    paths: tuple[str, ...]
    splits: tuple[str, ...]
    profiles: dict[str, Line]
    distance_before: float
    distance_after: float
    perms: dict[str, np.ndarray] = field(default_factory=dict)
    bends: np.ndarray | None = None
    surface: Surface | None = None
    spectra: dict[str, CurvatureAlong] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def profile(self, path: str, split: str = "train") -> Line:
        """The loss along ``path`` (``"line"``, ``"aligned"``, ``"curve"``) on ``split``."""
        key = f"{path}/{split}"
        if key not in self.profiles:
            have = ", ".join(self.profiles) or "none"
            raise WeightspaceError(f"path, split: no profile {key!r} in this result; have {have}")
        return self.profiles[key]

    @property
    def barriers(self) -> dict[str, dict[str, float]]:
        """``{path: {split: barrier}}`` for every profile (the numbers of the report's table)."""
        return {p: {s: self.profiles[f"{p}/{s}"].barrier for s in self.splits} for p in self.paths}

    def summary(self) -> dict[str, Any]:
        """The key numbers as JSON-ready values: barriers, distances, end losses."""
        out: dict[str, Any] = {
            "paths": list(self.paths),
            "barriers": self.barriers,
            "distance_before": self.distance_before,
            "distance_after": None if math.isnan(self.distance_after) else self.distance_after,
        }
        for p in self.paths:
            line = self.profiles[f"{p}/train"]
            out[f"max_loss_{p}"] = (
                float(np.nanmax(line.values)) if line.n_nonfinite < len(line.values) else None
            )
        return out
