"""Report sections of landscapes and curvature: a surface, a line, a spectrum along a run.

Each function draws one typed result into a :class:`~weightspace.render.report.Report`;
captions say what is shown and how it was computed, from the result's own metadata. Nothing
here computes a loss or a curvature: the figures are the result's values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..curvature import CurvatureAlong
from ..errors import WeightspaceError
from ..landscape import Line, Surface
from . import animate, export, interactive, static
from .report import Report


def describe_objective(meta: dict[str, Any]) -> str:
    """``problem P, N samples, model in M mode`` from a result's metadata (what is known)."""
    obj = meta.get("objective", meta)
    parts = []
    if "problem" in obj:
        parts.append(f"problem {obj['problem']}")
    if "n_samples" in obj:
        parts.append(f"{obj['n_samples']} samples")
    if "mode" in obj:
        parts.append(f"model in {obj['mode']} mode")
    return ", ".join(parts)


def file_stem(name: str) -> str:
    """A result's name as a file name (``sub/surface pca`` -> ``sub-surface-pca``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "result"


MIN_FINITE_POINTS = 3  # fewer finite points than this: nothing to draw contours or a line of


def _diverged(n_finite: int, n: int, what: str) -> str:
    where = "everywhere" if n_finite == 0 else f"at {n - n_finite} of {n} points"
    return (
        f"Diverged {where} in this region: the loss is NaN or infinite, so the {what} "
        "cannot be drawn. Choose a smaller region (a smaller span) or check the model."
    )


# ---------------------------------------------------------------------------- surface
def surface_section(
    report: Report, name: str, surf: Surface, out_dir: Path, summary: Any, animations: bool
) -> None:
    """Contour, mesh, interactive view, plane-fit table, PLY/VTK files and an animation."""
    md = surf.metadata
    report.add_section(f"Loss landscape: {name}")
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
        report.add_note(_diverged(n_finite, values.size, "surface"))
        report.add_text(f"The {how}")
        return
    if n_finite < values.size:
        report.add_note(
            f"The loss diverged (NaN or infinite) at {values.size - n_finite} of "
            f"{values.size} grid points; they are left blank.",
            level="info",
        )
    log = bool(np.nanmin(values) > 0)  # a loss of exactly 0 somewhere: a linear scale
    fig, _ = static.plot_surface_contour(surf.xs, surf.ys, surf.values, trajs or None, log=log)
    report.add_figure(
        fig,
        f"Contours of {'log ' if log else ''}loss with the trajectories projected on the plane "
        f"by least squares; {how}",
    )
    fig, _ = static.plot_contour_and_mesh(surf.xs, surf.ys, surf.values, trajs or None)
    report.add_figure(fig, "The same surface as a mesh over its contours.")
    report.add_plotly(
        interactive.surface_figure(surf.xs, surf.ys, surf.values, trajs or None, title=name),
        "Interactive surface; hover a trajectory point for its step, true loss, "
        "loss at its projection and off-plane residual.",
    )
    if trajs:
        rows = [
            [t.name, float(np.max(t.residual)), float(t.loss[-1]), float(t.plane_loss[-1])]
            for t in trajs
        ]
        report.add_table(
            rows,
            ["run", "max off-plane residual", "final true loss", "final loss at projection"],
            "How well the plane represents each trajectory.",
        )
    stem = file_stem(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    _meshes(report, surf, out_dir / stem, summary)
    if animations and trajs:
        _animation(report, surf, out_dir / f"{stem}-path", summary)


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


def _animation(report: Report, surf: Surface, base: Path, summary: Any) -> None:
    first = surf.trajectories[0]
    res = animate.animate_trajectory(base, surf.xs, surf.ys, surf.values, first)
    for note in res.notes:
        report.add_note(note)
        summary.notes.append(note)
    if "gif" in res.paths:
        report.add_figure(
            res.paths["gif"].read_bytes(),
            f"{first.name} growing over the surface, one frame per checkpoint.",
        )
    summary.files += [str(p) for p in res.paths.values()]


# ---------------------------------------------------------------------------- line
def line_section(report: Report, name: str, line: Line) -> None:
    """The loss along a line, its barrier and whether it decreases monotonically."""
    report.add_section(f"Interpolation: {name}")
    n_finite = int(np.isfinite(np.asarray(line.values, dtype=np.float64)).sum())
    if n_finite < MIN_FINITE_POINTS:
        report.add_note(_diverged(n_finite, len(line.values), "line"))
        return
    fig, _ = static.plot_line(
        line.alphas, line.values, line.stderr, None if np.isnan(line.barrier) else line.barrier
    )
    verdict = {True: "monotonic", False: "not monotonic", None: "n/a"}[line.monotonic]
    report.add_figure(
        fig,
        f"Loss along θ(α) = start + α·(end − start) "
        f"({describe_objective(line.metadata)}); barrier "
        f"{line.barrier:.4g} above the straight line between the ends; "
        f"from 0 to 1 the loss is {verdict} (Goodfellow et al. 2015).",
    )


# ---------------------------------------------------------------------------- spectrum
def spectrum_section(report: Report, name: str, spec: CurvatureAlong) -> None:
    """Top eigenvalues (and trace) along the run; density heat map and last density."""
    report.add_section(f"Curvature: {name}")
    meta = spec.metadata
    pos, axis = np.asarray(spec.positions), spec.axis
    how = (
        f"Hessian of the mean loss ({describe_objective(meta)}), Lanczos with full "
        "reorthogonalisation"
    )
    eig = np.asarray(spec.eigenvalues)
    if eig.size:
        trace = np.asarray(spec.trace, dtype=np.float64)
        lr = meta.get("lr") if axis == "step" else None
        fig, _ = static.plot_top_eigenvalues(
            pos, eig, trace if np.isfinite(trace).any() else None, lr
        )
        report.add_figure(
            fig,
            f"Top Hessian eigenvalues (and Hutchinson trace where computed) against {axis}; {how}.",
        )
    if spec.densities:
        _densities(report, spec, pos, axis)


def _densities(report: Report, spec: CurvatureAlong, pos: np.ndarray, axis: str) -> None:
    sigma = float(spec.metadata.get("sigma") or spec.densities[0].sigma)
    grid = np.asarray(spec.densities[0].grid)
    dens = np.stack([np.asarray(d.density) for d in spec.densities])
    if len(pos) > 1:
        fig, _ = static.plot_density_heatmap(pos, grid, dens, sigma)
        report.add_figure(
            fig,
            f"Eigenvalue density (stochastic Lanczos quadrature, "
            f"Gaussian width σ = {sigma:.3g}) at each {axis}.",
        )
    spread = np.asarray(spec.densities[-1].stderr, dtype=np.float64)
    band = None
    if np.isfinite(spread).all():
        band = np.stack([np.clip(dens[-1] - spread, 1e-12, None), dens[-1] + spread])
    fig, _ = static.plot_density(grid, dens[-1], sigma, band)
    report.add_figure(
        fig,
        f"Eigenvalue density at the last point ({axis} {pos[-1]:g}); "
        f"σ = {sigma:.3g}; the band is the spread over probes.",
    )
