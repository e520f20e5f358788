"""The report section of a surface: contours (and accuracy), mesh, interactive view, how
far each run is from the plane, PLY/VTK meshes and an animation, all drawn with one
:class:`SurfaceStyle`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..checks import positive_int
from ..errors import WeightspaceError
from ..landscape import Surface
from . import animate, export, interactive, static
from ._sections import MIN_FINITE_POINTS, describe_objective, diverged_note, file_stem, titled
from .report import Report

# ---------------------------------------------------------------------------- surface
PLANES = {
    "random": "a random plane",
    "pca": "the PCA plane of the trajectories",
    "eigen": "the top Hessian eigenvectors",
    "interpolation": "the plane through the runs' end points",
    "file": "a given plane",
    "vectors": "a given plane",
}
FAR_OFF_PLANE = 0.5  # a run whose off-plane share exceeds this is not where it is drawn


@dataclass(frozen=True)
class SurfaceStyle:
    """How surfaces are drawn, the same in the contour, the mesh, the interactive view and
    the animation.

    Attributes:
        scale: ``"log"`` (log10 of the loss), ``"linear"``, or ``"auto"``: log when every
            finite value is positive.
        vmax: draw values above ``vmax`` at ``vmax`` (None: no clipping).
        levels: contour levels.
    """

    scale: Literal["auto", "log", "linear"] = "auto"
    vmax: float | None = None
    levels: int = 20

    def __post_init__(self) -> None:
        if self.scale not in ("auto", "log", "linear"):
            raise WeightspaceError(f"scale: expected 'auto', 'log' or 'linear', got {self.scale!r}")
        finite = isinstance(self.vmax, (int, float)) and math.isfinite(self.vmax)
        if self.vmax is not None and not finite:
            raise WeightspaceError(f"vmax: expected a finite number or None, got {self.vmax!r}")
        positive_int(self.levels, "levels")

    def log_for(self, values: np.ndarray) -> bool:
        """Whether to draw ``values`` on a log scale (``"log"`` needs them positive)."""
        positive = bool(np.nanmin(values) > 0)
        if self.scale == "log" and not positive:
            raise WeightspaceError(
                "scale: 'log' needs positive values, the surface has a minimum of "
                f"{np.nanmin(values):.3g}; use scale='linear' or 'auto'"
            )
        return self.scale == "log" or (self.scale == "auto" and positive)


def plane_words(surf: Surface) -> str:
    """The plane of a surface in words, from its metadata (``"a random plane"``)."""
    kind = surf.metadata.get("directions", {}).get("kind")
    return PLANES.get(kind, "a plane")


def surface_section(
    report: Report,
    name: str,
    surf: Surface,
    out_dir: Path,
    summary: Any,
    animations: bool,
    style: SurfaceStyle | None = None,
) -> None:
    """Contour (and accuracy), mesh, interactive view, plane-fit table, PLY/VTK files and
    an animation, all drawn with one :class:`SurfaceStyle`."""
    style = style or SurfaceStyle()
    md = surf.metadata
    heading = titled(md, f"Loss landscape on {plane_words(surf)}")
    report.add_section(heading, f"Result {name}.")
    trajs = list(surf.trajectories)
    d = md.get("directions", {})
    how = (
        f"{len(surf.ys)}×{len(surf.xs)} grid of the mean loss at c + α·d1 + β·d2 "
        f"(directions: {d.get('kind', '?')}, normalisation {d.get('normalization', '?')}; "
        f"{describe_objective(md)}); every point computed from the centre."
    )
    values = np.asarray(surf.values, dtype=np.float64)
    n_finite = int(np.isfinite(values).sum())
    if n_finite < MIN_FINITE_POINTS:
        report.add_note(diverged_note(n_finite, values.size, "surface"))
        report.add_text(f"The {how}")
        return
    if n_finite < values.size:
        report.add_note(
            f"The loss diverged (NaN or infinite) at {values.size - n_finite} of "
            f"{values.size} grid points; they are left blank.",
            level="info",
        )
    log = style.log_for(values)
    look = {"log": log, "clip": style.vmax}
    scale = ("log10 of the loss" if log else "the loss") + (
        f", clipped at {style.vmax:g}" if style.vmax is not None else ""
    )
    fig, _ = static.plot_surface_contour(
        surf.xs, surf.ys, values, trajs or None, levels=style.levels, **look
    )
    report.add_figure(
        fig,
        f"Contours of {scale} with the trajectories projected on the plane by least squares; {how}",
    )
    if surf.accuracy is not None and np.isfinite(surf.accuracy).any():
        fig, _ = static.plot_surface_contour(
            surf.xs, surf.ys, surf.accuracy, trajs or None, levels=style.levels,
            axis_titles=("α (direction 1)", "β (direction 2)", "accuracy"), cmap="magma",
        )  # fmt: skip
        report.add_figure(fig, "Accuracy on the same grid (the share of samples classified right).")
    fig, _ = static.plot_contour_and_mesh(surf.xs, surf.ys, values, trajs or None, **look)
    report.add_figure(fig, f"The same surface as a mesh over its contours ({scale}).")
    report.add_plotly(
        interactive.surface_figure(surf.xs, surf.ys, values, trajs or None, title=name, **look),
        f"Interactive surface ({scale}); hover a trajectory point for its step, true loss, "
        "loss at its projection and relative off-plane residual.",
    )
    if trajs:
        _plane_fit(report, trajs, surf)
    stem = file_stem(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    _meshes(report, surf, out_dir / stem, summary)
    if animations and trajs:
        _animation(report, surf, out_dir / f"{stem}-path", summary, look)


def _plane_fit(report: Report, trajs: list[Any], surf: Surface) -> None:
    """How far each run is from the plane it is drawn on: the table, and a warning for runs
    whose drawn path is not where they were."""
    rows, far = [], []
    for t in trajs:
        off = t.off_plane
        share = off_plane_share(t)
        rows.append(
            [
                t.name,
                float(np.nanmax(t.residual)),
                float(np.nanmax(off)) if off is not None else None,
                float(np.nanmax(t.distance)) if t.distance is not None else None,
                share,
                float(t.loss[-1]),
                float(t.plane_loss[-1]),
            ]
        )
        if share is not None and share > FAR_OFF_PLANE:
            far.append(t.name)
    report.add_table(
        rows,
        [
            "run",
            "max relative residual",
            "max off-plane distance",
            "max distance from centre",
            "off-plane share",
            "final true loss",
            "final loss at projection",
        ],
        "How well the plane represents each trajectory. A snapshot θ is drawn at its "
        "least-squares projection c + α·d1 + β·d2 on the plane; its off-plane distance is "
        "‖θ − c − α·d1 − β·d2‖, its relative residual that distance over ‖θ − c‖ (0: on the "
        "plane, 1: orthogonal to it; large near the centre, where ‖θ − c‖ is small), and the "
        "run's off-plane share its largest off-plane distance over its largest distance from "
        "the centre.",
    )
    if far:
        cure = (
            "more of the path is captured by projecting each run on its own PCA plane"
            if surf.metadata.get("directions", {}).get("kind") == "pca"
            else "a PCA plane of the runs keeps them close"
        )
        report.add_note(
            f"{', '.join(far)}: most of the path lies off {plane_words(surf)} (off-plane "
            f"share above {FAR_OFF_PLANE:g}), so the drawn path shows where its projection "
            "is, not where the run was; compare the true loss with the loss at the projection "
            f"in the table; {cure}."
        )


def off_plane_share(t: Any) -> float | None:
    """A run's largest off-plane distance over its largest distance from the centre (None
    when the distances were not stored)."""
    if t.distance is None or not np.isfinite(t.distance).any() or np.nanmax(t.distance) == 0:
        return None
    return float(np.nanmax(t.off_plane) / np.nanmax(t.distance))


def _meshes(report: Report, surf: Surface, base: Path, summary: Any) -> None:
    trajs = list(surf.trajectories) or None
    for fmt in ("ply", "vtk"):
        path = base.with_name(f"{base.name}.{fmt}")
        try:
            if fmt == "vtk":
                export.write_vtk(path, surf.xs, surf.ys, surf.values, trajs)
            else:
                export.write_ply(path, surf.xs, surf.ys, surf.values)
            summary.files.append(str(path))
        except WeightspaceError as e:
            summary.notes.append(str(e))
            report.add_note(f"{fmt.upper()} export skipped: {e}")


def _animation(
    report: Report, surf: Surface, base: Path, summary: Any, look: dict[str, Any]
) -> None:
    first = surf.trajectories[0]
    res = animate.animate_trajectory(base, surf.xs, surf.ys, surf.values, first, **look)
    for note in res.notes:
        report.add_note(note)
        summary.notes.append(note)
    if "gif" in res.paths:
        report.add_figure(
            res.paths["gif"].read_bytes(),
            f"{first.name} growing over the surface, one frame per checkpoint.",
        )
    summary.files += [str(p) for p in res.paths.values()]
