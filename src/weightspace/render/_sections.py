"""Report sections of a line and of a spectrum along a run (a surface's is in ``_surface``).

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
from ..landscape import Line
from . import static
from ._spectra import stability_edge
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


def diverged_note(n_finite: int, n: int, what: str) -> str:
    where = "everywhere" if n_finite == 0 else f"at {n - n_finite} of {n} points"
    return (
        f"Diverged {where} in this region: the loss is NaN or infinite, so the {what} "
        "cannot be drawn. Choose a smaller region (a smaller span) or check the model."
    )


def point_words(point: Any) -> str:
    """``sgd (step 500)`` from a result's ``{"run": ..., "step": ...}`` record."""
    if not isinstance(point, dict) or "run" not in point:
        return "a point"
    name = Path(str(point["run"])).name
    return f"{name} (step {point['step']})" if "step" in point else name


def titled(meta: dict[str, Any], heading: str) -> str:
    """``heading`` after the result's subject, when its metadata names one
    (``metadata["subject"]``, e.g. ``"Transformer (text-gpt)"``): several models on one page."""
    subject = meta.get("subject")
    return f"{subject}: {heading}" if subject else heading


def pca_title(name: str, meta: dict[str, Any]) -> str:
    """A joint PCA's section title: its result name unless it is ``pca``, or its subject."""
    if meta.get("subject"):
        return titled(meta, "Trajectories by PCA")
    return "Trajectories: PCA" if name == "pca" else f"Trajectories: PCA ({name})"


def line_title(meta: dict[str, Any]) -> str:
    """A line's section title in words, from its metadata."""
    ends = meta.get("points", {})
    kind = meta.get("direction", {}).get("kind")
    if "end" in ends:
        return f"Interpolation from {point_words(ends.get('start'))} to {point_words(ends['end'])}"
    if "start" in ends:
        return f"Loss along a {kind or 'given'} direction from {point_words(ends['start'])}"
    return "Loss along a line"


def spectrum_title(meta: dict[str, Any]) -> str:
    """A spectrum's section title in words, from its metadata."""
    if "between" in meta:
        a = point_words({"run": meta.get("run", "?"), "step": meta.get("step_a", "?")})
        b = point_words({"run": meta["between"], "step": meta.get("step_b", "?")})
        return f"Curvature on the line from {a} to {b}"
    if "run" in meta:
        return f"Curvature along {Path(str(meta['run'])).name}"
    return "Curvature"


# ---------------------------------------------------------------------------- line
def line_section(report: Report, name: str, line: Line) -> None:
    """The loss along a line, its barrier and whether it decreases monotonically."""
    report.add_section(titled(line.metadata, line_title(line.metadata)), f"Result {name}.")
    n_finite = int(np.isfinite(np.asarray(line.values, dtype=np.float64)).sum())
    if n_finite < MIN_FINITE_POINTS:
        report.add_note(diverged_note(n_finite, len(line.values), "line"))
        return
    point = static.barrier_point(line.alphas, line.values)
    barrier = float(line.barrier)
    missing = (
        "α = 0 and α = 1 are not both among the alphas (or the loss between them is not finite)"
    )
    if np.isnan(barrier):
        barrier, where = None, f"no barrier: {missing}, so none is drawn"
    elif point is None:
        barrier, where = None, f"barrier {barrier:.4g} as recorded, not drawn: {missing}"
    else:
        where = (
            f"barrier {barrier:.4g} above the straight line between the ends, attained at "
            f"α = {point[0]:.4g} (the arrow; Frankle et al. 2020)"
        )
    fig, _ = static.plot_line(line.alphas, line.values, line.stderr, barrier)
    verdict = {True: "monotonic", False: "not monotonic", None: "n/a"}[line.monotonic]
    objective = describe_objective(line.metadata)
    report.add_figure(
        fig,
        f"Loss along θ(α) = start + α·(end − start)"
        f"{f' ({objective})' if objective else ''}; {where}; "
        f"from 0 to 1 the loss is {verdict} (Goodfellow et al. 2015).",
    )


# ---------------------------------------------------------------------------- spectrum
def spectrum_section(report: Report, name: str, spec: CurvatureAlong) -> None:
    """Top eigenvalues (and trace) along the run; density heat map and last density."""
    report.add_section(titled(spec.metadata, spectrum_title(spec.metadata)), f"Result {name}.")
    meta = spec.metadata
    pos, axis = np.asarray(spec.positions), spec.axis
    objective = describe_objective(meta)
    how = (
        f"Hessian of the mean loss{f' ({objective})' if objective else ''}, Lanczos with full "
        "reorthogonalisation"
    )
    eig = np.asarray(spec.eigenvalues)
    if eig.size:
        trace = np.asarray(spec.trace, dtype=np.float64)
        has_trace = bool(np.isfinite(trace).any())
        on_run = axis == "step"  # λ·lr against a threshold is about a run's updates
        optimizer = meta.get("optimizer") if on_run else None
        lr = meta.get("lr") if on_run else None
        xlabel = _X.get(axis, axis)
        fig, _ = static.plot_top_eigenvalues(
            pos, eig, trace if has_trace else None, lr, optimizer=optimizer, xlabel=xlabel
        )
        probes = meta.get("trace_probes")
        traced = (
            f"Hutchinson trace{f' ({probes} probes)' if probes else ''} on the right axis"
            if has_trace
            else "no trace computed, so no trace axis"
        )
        report.add_figure(
            fig,
            f"Top {eig.shape[1]} Hessian eigenvalues against {axis}; {traced}; "
            f"{_edge_words(optimizer, lr, on_run)}; {how}.",
        )
    if spec.densities:
        _densities(report, spec, pos, axis)


_X = {"step": "step", "alpha": "α"}


def _edge_words(optimizer: Any, lr: Any, on_run: bool) -> str:
    """What the stability line of the eigenvalue figure is, or why there is none."""
    if not on_run:
        return "no stability line: the points are on a line between two points, not a run's steps"
    if optimizer is None and lr is None:
        return "no stability line: no optimizer or learning rate recorded"
    value, label, rule = stability_edge(optimizer, lr)
    if value is None:
        return f"no stability line: {rule}"
    return f"dashed line: the edge of stability {label} (λ·lr threshold {rule}; Cohen et al. 2021)"


def _sigma_kind(dens: tuple[Any, ...], rule: Any) -> str:
    """How the densities' widths were chosen, checked against their quadrature nodes:
    ``"given"``, ``"all"`` (1 % of the node range over all points), ``"own"`` (1 % of each
    point's own node range), or ``"other"``."""
    sigmas = np.array([float(d.sigma) for d in dens])
    if rule == "given":
        return "given"
    if isinstance(rule, str) and "of each point" in rule:  # curvature_along's default
        return "own"
    ranges = np.array([d.range for d in dens])
    everywhere = 0.01 * (ranges[:, 1].max() - ranges[:, 0].min())
    if len(dens) > 1 and np.allclose(sigmas, everywhere, rtol=1e-9, atol=0):
        return "all"
    if np.allclose(sigmas, 0.01 * (ranges[:, 1] - ranges[:, 0]), rtol=1e-9, atol=0):
        return "own"
    return "other"


def _sigma_words(sigmas: np.ndarray, kind: str, rule: Any, axis: str) -> str:
    """The widths of the heat map in words."""
    lo, hi = float(sigmas.min()), float(sigmas.max())
    value = f"σ = {hi:.3g} at every {axis}" if lo == hi else f"σ from {lo:.3g} to {hi:.3g}"
    why = {
        "given": "as given",
        "all": f"1 % of the eigenvalue range over all {axis}s",
        "own": f"each {axis} smoothed with its own σ, 1 % of that {axis}'s eigenvalue range"
        + (" (at least two grid steps)" if isinstance(rule, str) and "grid" in rule else ""),
    }.get(kind, f"each {axis} smoothed with its own σ (rule: {rule or 'not recorded'})")
    return f"{value}, {why}"


def _common_grid(dens: tuple[Any, ...]) -> np.ndarray:
    """One eigenvalue grid for every density: theirs when they share one, else one that
    covers them all."""
    grids = [np.asarray(d.grid, dtype=np.float64) for d in dens]
    if all(np.array_equal(g, grids[0]) for g in grids):
        return grids[0]
    lo, hi = min(g[0] for g in grids), max(g[-1] for g in grids)
    return np.linspace(lo, hi, max(g.size for g in grids))


def _on_grid(d: Any, grid: np.ndarray) -> np.ndarray:
    """A density on ``grid``, smoothed with its own σ (its quadrature regridded if needed)."""
    if np.array_equal(np.asarray(d.grid, dtype=np.float64), grid):
        return np.asarray(d.density, dtype=np.float64)
    return np.asarray(d.regrid(grid, d.sigma).density, dtype=np.float64)


def _densities(report: Report, spec: CurvatureAlong, pos: np.ndarray, axis: str) -> None:
    dens = spec.densities
    sigmas = np.array([float(d.sigma) for d in dens])
    rule = spec.metadata.get("sigma_rule")
    kind = _sigma_kind(dens, rule)
    if len(pos) > 1:
        grid = _common_grid(dens)
        rows = np.stack([_on_grid(d, grid) for d in dens])
        fig, _ = static.plot_density_heatmap(pos, grid, rows, sigmas, xlabel=_X.get(axis, axis))
        report.add_figure(
            fig,
            f"Eigenvalue density (stochastic Lanczos quadrature) at each {axis}, one column "
            f"around each, its edges halfway to the neighbouring {axis}s; Gaussian width "
            f"{_sigma_words(sigmas, kind, rule, axis)}.",
        )
    last = dens[-1]
    density = np.asarray(last.density, dtype=np.float64)
    spread = np.asarray(last.stderr, dtype=np.float64)
    band = None
    if np.isfinite(spread).all():
        band = np.stack([np.clip(density - spread, 1e-12, None), density + spread])
    why = {
        "given": "as given",
        "all": f"1 % of the eigenvalue range over all {axis}s",
        "own": f"1 % of this {axis}'s eigenvalue range",
    }.get(kind, f"rule: {rule or 'not recorded'}")
    spread_words = (
        f"; the band is ± 1 standard error over the {last.n_probes} probes"
        if band is not None
        else ""
    )
    fig, _ = static.plot_density(last.grid, density, last.sigma, band)
    report.add_figure(
        fig,
        f"Eigenvalue density at the last point ({axis} {pos[-1]:g}); "
        f"σ = {float(last.sigma):.3g} ({why}){spread_words}.",
    )
