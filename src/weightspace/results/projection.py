"""The projection result: runs placed jointly in a low-dimensional space, each tested.

What ``weightspace project`` (and :func:`weightspace.project_runs`) computes: one joint fit of
all the runs' snapshots (PCA, PHATE, t-SNE or UMAP), the joint PCA's explained variance, and
for every run its coordinates, its own PCA against the random-walk null (Antognini &
Sohl-Dickstein 2018), Lorch's checks on its PC scores, its path metrics (Lipton 2016) and its
recorded metrics; and the distances between the runs' final points, also after permutation
alignment when asked; so that a report can be drawn from the file alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis import Oscillations, PathMetrics
from ..projection.nulls import NullComparison

__all__ = ["Projection", "RunProjection"]


@dataclass(frozen=True)
class RunProjection:
    """One run in a projection.

    Attributes:
        label: the run's label (its metadata's ``label``, else the directory name).
        run: the run directory.
        steps: ``(T,)`` the recorded steps.
        coords: ``(T, k)`` the run's snapshots in the joint embedding.
        metrics: recorded metrics by name, each ``(T,)`` (NaN where a step has none).
        paths: distances, step lengths, straightness, layer norms (:class:`PathMetrics`).
        null: the run's own PCA against the random-walk null (:class:`NullComparison`).
        pc1_monotonicity: Spearman correlation of PC 1 with time (None under 4 snapshots).
        oscillations: Lorch's oscillation checks on the PC scores (None under 4 snapshots).
        metadata: the run's own metadata (optimizer, lr, seeds, ...).
    """

    label: str
    run: str
    steps: np.ndarray
    coords: np.ndarray
    metrics: dict[str, np.ndarray]
    paths: PathMetrics
    null: NullComparison
    pc1_monotonicity: float | None = None
    oscillations: Oscillations | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The run's key numbers (JSON-able), as ``weightspace project --json`` prints them."""
        n = self.null.n_checked
        out: dict[str, Any] = {
            "label": self.label,
            "run": self.run,
            "snapshots": len(self.steps),
            "verdict": self.null.verdict,
            "indistinguishable_from_random_walk": bool(self.null.indistinguishable),
            "ratios": [round(float(v), 6) for v in self.null.ratios[:n]],
            "null_ratios": [round(float(v), 6) for v in self.null.null_ratios[:n]],
            "path_length": float(self.paths.path_length),
            "displacement": float(self.paths.displacement),
            "straightness": float(self.paths.straightness),
        }
        if self.pc1_monotonicity is not None:
            out["pc1_monotonicity"] = float(self.pc1_monotonicity)
        if self.oscillations is not None:
            out["dominant_frequency"] = [float(f) for f in self.oscillations.frequency]
            out["lissajous_pairs"] = [[int(i) + 1, int(j) + 1] for i, j in self.oscillations.pairs]
        return out


@dataclass(frozen=True)
class Projection:
    """A joint projection of runs.

    Attributes:
        method: ``"pca"``, ``"phate"``, ``"tsne"`` or ``"umap"``.
        runs: one :class:`RunProjection` per run, in the order given.
        explained_variance_ratio: ``(k,)`` of the joint PCA (computed for every method: the
            PCA spectrum and the null are reported whatever the embedding).
        explained_variance: ``(k,)`` the joint PCA's variances.
        components: ``(k, n)`` the joint PCA's directions, when kept (large), else None.
        center: ``(n,)`` the joint PCA's centre, when kept, else None.
        entropy: PHATE's von Neumann entropy against diffusion time, else None.
        endpoint_distances: ``(R, R)`` ``‖θ_r − θ_s‖`` between the runs' final points
            (Lipton 2016), or None for a single run.
        aligned_distances: ``(R, R)`` the same after every run's final point was aligned to
            the reference run's by a permutation of its hidden units (``align=``), or None.
        metadata: every setting (components, centring, solver, distance, seed, ...), the
            number of parameters, the total variance, for embeddings their
            ``trajectory_preservation`` score, and ``align``: ``None``, or the alignment's
            method, reference run, seed, group sizes and, per aligned run, its distance to
            the reference before and after and the units moved.
    """

    method: str
    runs: tuple[RunProjection, ...]
    explained_variance_ratio: np.ndarray
    explained_variance: np.ndarray
    components: np.ndarray | None = None
    center: np.ndarray | None = None
    entropy: np.ndarray | None = None
    endpoint_distances: np.ndarray | None = None
    aligned_distances: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.runs]

    @property
    def coords(self) -> list[np.ndarray]:
        """Each run's ``(T_r, k)`` coordinates."""
        return [r.coords for r in self.runs]

    @property
    def steps(self) -> list[np.ndarray]:
        return [r.steps for r in self.runs]
