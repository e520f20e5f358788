"""One report page from typed results.

:func:`build_report` draws what it is given: per-run projections (:class:`RunProjection`) for
the "Runs" overview, and named results (:class:`~weightspace.results.Projection`,
:class:`~weightspace.landscape.Surface`, :class:`~weightspace.landscape.Line`,
:class:`~weightspace.curvature.CurvatureAlong`), each dispatched on its type. It reads no run
directory and computes nothing: every number on the page is a field of a result. Finding and
loading saved results is the workflows' job (:func:`weightspace.workflows.report.report`).

Example::

    proj = project_runs(["runs/sgd", "runs/adam"])
    build_report("report.html", runs=proj.runs,
                 results=[("pca", proj), ("surface", ws.load("out/surface"))])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..between.results import Connection
from ..curvature import CurvatureAlong
from ..errors import WeightspaceError
from ..landscape import Curves, Line, Surface
from ..results import Projection, RunProjection
from . import interactive, static
from ._connect import connection_section
from ._curves import curves_section, recorded_metrics
from ._endpoints import endpoint_tables
from ._sections import line_section, pca_title, spectrum_section
from ._surface import SurfaceStyle, surface_section
from .report import Report

__all__ = ["ReportSummary", "SurfaceStyle", "build_report"]

log = logging.getLogger(__name__)

KINDS: dict[type, str] = {
    Projection: "projection",
    Surface: "surface",
    Line: "line",
    Curves: "curves",
    CurvatureAlong: "spectrum",
    Connection: "connection",
}
EMBEDDING_NAMES = {"phate": "PHATE", "tsne": "t-SNE", "umap": "UMAP"}


@dataclass
class ReportSummary:
    """What :func:`build_report` wrote: the page, the results drawn (kind -> names), side
    files (meshes, animations), notes (parts left out, such as an MP4 without ffmpeg) and
    ``(name, reason)`` of every result that could not be drawn."""

    path: Path
    results: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------- input checks
def _check_runs(runs: Any) -> list[RunProjection]:
    if isinstance(runs, (str, os.PathLike, RunProjection)):
        runs = [runs]
    runs = list(runs)
    for r, run in enumerate(runs):
        if not isinstance(run, RunProjection):
            raise WeightspaceError(
                f"runs[{r}]: expected a weightspace.results.RunProjection, got "
                f"{type(run).__name__}; pass project_runs(dirs).runs (the report reads no "
                "run directory)"
            )
    return runs


def _check_results(results: Any) -> list[tuple[str, Any]]:
    if isinstance(results, tuple) and len(results) == 2 and isinstance(results[0], str):
        results = [results]
    pairs = []
    for q, pair in enumerate(results):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise WeightspaceError(
                f"results[{q}]: expected a (name, result) pair, got {type(pair).__name__}; "
                "pass [('pca', projection), ('surface', surface), ...]"
            )
        name, result = pair
        if type(result) not in KINDS:
            raise WeightspaceError(
                f"results[{q}] {name!r}: expected a Projection, Surface, Line, Curves, "
                f"CurvatureAlong or Connection, got {type(result).__name__}; pass a result of "
                "one of these kinds (ws.load gives them)"
            )
        pairs.append((name, result))
    return pairs


# ---------------------------------------------------------------------------- overview
def _last_finite(values: np.ndarray | None) -> float:
    if values is None:
        return float("nan")
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite[-1]) if finite.size else float("nan")


def _overview(report: Report, runs: list[RunProjection], n_params: int | None) -> None:
    report.add_section("Runs", "The recorded runs this report is about.")
    rows, panel = [], {}
    for run in runs:
        md, pm, steps = run.metadata, run.paths, np.asarray(run.steps)
        rows.append(
            [
                run.label,
                md.get("optimizer", ""),
                md.get("lr", ""),
                md.get("momentum", ""),
                len(steps),
                f"{steps[0]}..{steps[-1]}",
                _last_finite(run.metrics.get("loss")),
                pm.path_length,
                pm.displacement,
                pm.straightness,
            ]
        )
        panel.setdefault("distance from init", {})[run.label] = (steps, pm.distance_from_init)
        panel.setdefault("distance to final", {})[run.label] = (steps, pm.distance_to_final)
        panel.setdefault("weight norm", {})[run.label] = (steps, pm.norm)
    columns = ["run", "optimizer", "lr", "momentum", "snapshots", "steps"]
    columns += ["last minibatch loss", "path length", "displacement", "straightness"]
    size = f"{n_params:,} parameters per snapshot. " if n_params else ""
    report.add_table(
        rows,
        columns,
        f"{size}Straightness is the displacement over the path length (1 for a straight line).",
    )
    fig, _ = static.plot_metrics_panel(panel)
    report.add_figure(fig, "Euclidean distances in weight space along each run.")
    recorded_metrics(report, runs)


# ---------------------------------------------------------------------------- projections
def _pca(report: Report, name: str, proj: Projection) -> None:
    """Per-run spectra against the null, PC pairs, the 3-D parametric plot, the scatter and
    the per-run checks of one joint PCA (Lorch 2016)."""
    runs, meta = proj.runs, proj.metadata
    labels, coords = proj.labels, proj.coords
    report.add_section(pca_title(name, meta), "One PCA of all runs' snapshots (Lorch 2016).")
    how = (
        f"{meta.get('solver')} PCA of {sum(len(r.steps) for r in runs)} snapshots × "
        f"{meta.get('parameters', 0):,} parameters, centring '{meta.get('centering')}'"
    )
    _null_spectra(report, runs)
    k = min(4, coords[0].shape[1])
    fig, _ = static.plot_pc_pairs(coords, labels, k=k)
    ratios = proj.explained_variance_ratio
    report.add_figure(
        fig,
        f"Every pair of the top {k} joint PCs; {how}. Joint explained "
        f"variance: {', '.join(f'{v:.1%}' for v in ratios[:k])}.",
    )
    losses = [r.metrics.get("loss") for r in runs]
    if all(x is not None for x in losses) and coords[0].shape[1] >= 2:
        fig, _ = static.plot_parametric_3d(coords, losses, labels)
        report.add_figure(
            fig,
            "PC 1, PC 2 and −loss (the recorded minibatch loss), coloured "
            "on one absolute loss scale shared by all runs.",
        )
    report.add_plotly(
        interactive.scatter_figure(
            [c[:, :3] for c in coords],
            labels,
            [{"step": s} for s in proj.steps],
            title="Joint PCA (hover for step)",
        ),
        f"Interactive view of the joint PCA; {how}.",
    )
    rows = [
        [r.label, r.null.verdict, r.paths.path_length, r.paths.straightness, r.pc1_monotonicity]
        for r in runs
    ]
    report.add_table(
        rows,
        ["run", "random-walk test", "path length", "straightness", "PC1 monotonicity"],
        "Per-run checks.",
    )
    endpoint_tables(report, proj)


def _null_spectra(report: Report, runs: Sequence[RunProjection]) -> None:
    n = len(runs)
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.9 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, run in zip(axes, runs):
        null = run.null
        static.plot_pca_spectrum(
            null.ratios, null.null_ratios, null.correlations, title=run.label, ax=ax
        )
    for ax in axes[n:]:
        ax.set_visible(False)
    report.add_figure(
        fig,
        "Each run's explained-variance ratios of its own PCs (bars) beside the random-walk null "
        "of Antognini & Sohl-Dickstein (2018) for the same number of snapshots (grey), with "
        "each PC score's |correlation| with cos(πk(t−½)/T) (diamonds); the verdicts are in the "
        "table below.",
    )


def _embeddings(report: Report, embeddings: dict[str, Projection]) -> None:
    """PHATE, t-SNE and UMAP side by side, each with its trajectory-preservation score."""
    report.add_section("Trajectories: " + ", ".join(embeddings))
    paths = {title: [c[:, :2] for c in p.coords] for title, p in embeddings.items()}
    labels = {title: list(p.labels) for title, p in embeddings.items()}
    scores = {
        title: p.metadata["trajectory_preservation"]
        for title, p in embeddings.items()
        if p.metadata.get("trajectory_preservation") is not None
    }
    fig, _ = static.plot_embeddings(paths, scores or None, labels=labels)
    how = "; ".join(f"{t}: distance {p.metadata.get('distance')}" for t, p in embeddings.items())
    report.add_figure(
        fig,
        f"Embeddings of all runs' snapshots, each run in its own colour from its start "
        f"(circle) to its end (star) ({how}). The score in each title is the share of each "
        "snapshot's nearest neighbours in the embedding that are its time neighbours: high "
        "when trajectories stay intact.",
    )
    for title, p in embeddings.items():
        report.add_plotly(
            interactive.scatter_figure(
                p.coords,
                p.labels,
                [{"step": s} for s in p.steps],
                axis_titles=(f"{title} 1", f"{title} 2", ""),
                title=f"{title} (hover for step)",
            ),
            f"Interactive {title} embedding.",
        )
        endpoint_tables(report, p)


def _embedding_title(name: str, proj: Projection, taken: dict[str, Projection]) -> str:
    title = EMBEDDING_NAMES.get(proj.method, proj.method)
    return title if title not in taken else f"{title} ({name})"


# ---------------------------------------------------------------------------- entry point
def build_report(
    out: str | os.PathLike,
    *,
    runs: Sequence[RunProjection] = (),
    results: Sequence[tuple[str, Any]] = (),
    title: str = "weightspace report",
    animations: bool = True,
    skipped: Sequence[tuple[str, str]] = (),
    surface_style: SurfaceStyle | None = None,
) -> ReportSummary:
    """Write a single-file HTML report from typed results.

    Args:
        out: the ``.html`` file to write; meshes and animations go into a folder beside
            it, ``OUT_files/`` (:func:`side_files`).
        runs: the runs of the "Runs" overview (table of settings and path metrics, and the
            distances and norm along each run): :class:`~weightspace.results.RunProjection`
            objects, e.g. ``project_runs(dirs).runs``.
        results: ``(name, result)`` pairs, each a
            :class:`~weightspace.results.Projection` (method ``"pca"``: the PCA sections;
            PHATE, t-SNE, UMAP: one embeddings section), a
            :class:`~weightspace.landscape.Surface`, a :class:`~weightspace.landscape.Line`,
            :class:`~weightspace.landscape.Curves` (loss and accuracy along runs), a
            :class:`~weightspace.curvature.CurvatureAlong` (a spectrum along a run) or a
            :class:`~weightspace.between.results.Connection` (between two solutions).
        title: the page title.
        animations: write a GIF (and MP4 with ffmpeg) of the first trajectory on each surface.
        skipped: ``(name, reason)`` of results the caller could not load; listed with those
            that fail to draw in a "Skipped" section at the end of the page.
        surface_style: how surfaces are drawn (:class:`SurfaceStyle`: scale, clipping,
            contour levels; default: log scale where the loss is positive).

    Returns:
        :class:`ReportSummary`: the page, the results drawn by kind, side files, notes and
        what was skipped.

    Raises:
        WeightspaceError: nothing to report, a run that is not a RunProjection, or a result
            of another type (named in the message).
    """
    run_list = _check_runs(runs)
    pairs = _check_results(results)
    if not run_list and not pairs:
        raise WeightspaceError(
            "runs, results: expected at least one RunProjection or (name, result) pair, got "
            "none; pass runs=projection.runs or results=[('pca', projection)]"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = ReportSummary(out, skipped=[(str(n), str(r)) for n, r in skipped])
    report = Report(title)
    if run_list:
        sizes = [p.metadata.get("parameters") for _, p in pairs if isinstance(p, Projection)]
        size = next((s for s in sizes if s), None)
        _guarded(report, summary, "runs overview", lambda: _overview(report, run_list, size))
    style = surface_style or SurfaceStyle()
    _draw_results(report, pairs, side_files(out), summary, animations, style)
    failed = {name for name, _ in summary.skipped}
    for name, result in pairs:
        if name not in failed:
            summary.results.setdefault(KINDS[type(result)], []).append(name)
    if summary.skipped:
        _skipped_section(report, summary.skipped)
    report.write(out)
    return summary


def side_files(out: str | os.PathLike) -> Path:
    """The folder beside a report page that holds its meshes and animations."""
    out = Path(out)
    return out.with_name(f"{out.stem}_files")


def _draw_results(
    report: Report,
    pairs: list[tuple[str, Any]],
    out_dir: Path,
    summary: Any,
    animations: bool,
    style: SurfaceStyle,
) -> None:
    """Projections first (PCA, then the embeddings together), curves, surfaces, lines,
    spectra; a result that cannot be drawn is left out (its partial section removed) and
    listed in ``summary.skipped``."""
    embeddings: dict[str, Projection] = {}
    for name, proj in pairs:
        if isinstance(proj, Projection) and proj.method == "pca":
            _guarded(report, summary, name, lambda n=name, p=proj: _pca(report, n, p))
        elif isinstance(proj, Projection):
            embeddings[_embedding_title(name, proj, embeddings)] = proj
    if embeddings:
        drawn = [id(p) for p in embeddings.values()]
        names = ", ".join(n for n, p in pairs if id(p) in drawn)
        _guarded(report, summary, names, lambda: _embeddings(report, embeddings))
    draw: dict[type, Callable[[str, Any], None]] = {
        Surface: lambda n, r: surface_section(report, n, r, out_dir, summary, animations, style),
        Line: lambda n, r: line_section(report, n, r),
        Curves: lambda n, r: curves_section(report, n, r),
        CurvatureAlong: lambda n, r: spectrum_section(report, n, r),
        Connection: lambda n, r: connection_section(report, n, r, out_dir, summary, style),
    }
    for kind in (Curves, Surface, Line, CurvatureAlong, Connection):
        for name, result in pairs:
            if type(result) is kind:
                _guarded(report, summary, name, lambda n=name, r=result, f=draw[kind]: f(n, r))


def _guarded(report: Report, summary: Any, name: str, draw: Callable[[], None]) -> None:
    """Run one section's ``draw``; on failure remove what it added and note it as skipped.

    A :class:`WeightspaceError` is the result's own problem (its message is the reason);
    anything else is a weightspace bug, said so on the page and logged with its traceback.
    """
    mark = report.mark()
    n_files = len(summary.files)
    try:
        draw()
    except WeightspaceError as e:
        reason = str(e)
    except Exception as e:  # a bug must not cost the user the rest of the page
        log.warning("drawing %r failed", name, exc_info=True)
        reason = f"internal error {type(e).__name__}: {e}; please report this as a bug"
    else:
        return
    report.rollback(mark)
    for path in summary.files[n_files:]:
        Path(path).unlink(missing_ok=True)
    del summary.files[n_files:]
    summary.skipped.append((name, reason))


def _skipped_section(report: Report, skipped: list[tuple[str, str]]) -> None:
    report.add_section(
        "Skipped", f"{len(skipped)} result(s) could not be drawn; the rest of the page is complete."
    )
    for name, reason in skipped:
        report.add_note(f"skipped {name}: {reason}")
