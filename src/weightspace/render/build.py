"""Gather runs and result artifacts into one report page.

:func:`build_report` reads what ``weightspace project | surface | line | spectrum`` wrote into
an artifacts directory (``.npz`` + ``.json`` pairs, recognised by their ``kind``) and the runs
themselves, draws every figure the results support, and writes one self-contained HTML file.
Each caption says what is shown and how it was computed, from the result's own metadata.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..errors import WeightspaceError
from ..landscape import load_line, load_surface
from ..store import load_result
from ..trajectory import Trajectory
from . import animate, export, interactive, static
from .report import Report

log = logging.getLogger(__name__)
KINDS = ("projection", "surface", "line", "spectrum")


@dataclass
class ReportSummary:
    """What :func:`build_report` wrote: the page, side files, and notes."""

    path: Path
    results: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def find_results(directory: str | os.PathLike) -> dict[str, list[Path]]:
    """Result sidecars in ``directory`` (recursively) grouped by kind, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise WeightspaceError(f"--artifacts: {str(directory)!r} is not a directory")
    found: dict[str, list[Path]] = {k: [] for k in KINDS}
    for side in sorted(directory.rglob("*.json")):
        try:
            kind = json.loads(side.read_text()).get("kind")
        except (ValueError, OSError, AttributeError):
            continue
        if kind in found and side.with_suffix(".npz").exists():
            found[kind].append(side.with_suffix(""))
    return found


def _label(traj: Trajectory) -> str:
    return str(traj.metadata.get("label") or traj.path.name)


def _describe_objective(meta: dict[str, Any]) -> str:
    obj = meta.get("objective", meta)
    parts = []
    if "problem" in obj:
        parts.append(f"problem {obj['problem']}")
    if "n_samples" in obj:
        parts.append(f"{obj['n_samples']} samples")
    if "mode" in obj:
        parts.append(f"model in {obj['mode']} mode")
    return ", ".join(parts)


# ---------------------------------------------------------------------------- sections
def _overview(report: Report, trajs: list[Trajectory]) -> None:
    from ..analysis import path_metrics

    report.add_section("Runs", "The recorded runs this report is about.")
    rows, panel = [], {}
    for traj in trajs:
        md = traj.metadata
        loss = traj.metrics.get("loss")
        pm = path_metrics(traj)
        rows.append(
            [
                _label(traj),
                md.get("optimizer", ""),
                md.get("lr", ""),
                md.get("momentum", ""),
                len(traj),
                f"{traj.steps[0]}..{traj.steps[-1]}",
                float(loss[-1]) if loss is not None else float("nan"),
                pm.path_length,
                pm.displacement,
                pm.straightness,
            ]
        )
        label = _label(traj)
        panel.setdefault("distance from init", {})[label] = (traj.steps, pm.distance_from_init)
        panel.setdefault("distance to final", {})[label] = (traj.steps, pm.distance_to_final)
        panel.setdefault("weight norm", {})[label] = (traj.steps, pm.norm)
    report.add_table(
        rows,
        [
            "run",
            "optimizer",
            "lr",
            "momentum",
            "snapshots",
            "steps",
            "last minibatch loss",
            "path length",
            "displacement",
            "straightness",
        ],
        f"{trajs[0].n_params:,} parameters per snapshot. Straightness is the "
        "displacement over the path length (1 for a straight line).",
    )
    fig, _ = static.plot_metrics_panel(panel)
    report.add_figure(fig, "Euclidean distances in weight space along each run.")


def _projection(report: Report, base: Path, embeddings: dict[str, Any]) -> None:
    """PCA sections now; other methods are collected into ``embeddings`` for one figure."""
    arrays, meta = load_result(base)
    labels = meta.get("labels", [])
    runs = meta.get("runs", [])
    n = len(labels)
    coords = [arrays[f"coords_{r}"] for r in range(n)]
    steps = [arrays[f"steps_{r}"] for r in range(n)]
    method = meta.get("method", "pca")
    if method != "pca":
        name = {"phate": "PHATE", "tsne": "t-SNE", "umap": "UMAP"}.get(method, method)
        embeddings[name] = (meta, coords, steps, labels)
        return
    report.add_section("Trajectories: PCA", "One PCA of all runs' snapshots (Lorch 2016).")
    ratios = arrays["explained_variance_ratio"]
    how = (
        f"{meta.get('solver')} PCA of {sum(len(s) for s in steps)} snapshots × "
        f"{meta.get('parameters', 0):,} parameters, centring '{meta.get('centering')}'"
    )

    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.9 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for r in range(n):
        static.plot_pca_spectrum(
            arrays[f"ratios_{r}"],
            arrays[f"null_ratios_{r}"],
            arrays.get(f"correlations_{r}"),
            title=labels[r],
            ax=axes[r],
        )
    for a in axes[n:]:
        a.set_visible(False)
    report.add_figure(
        fig,
        "Each run's explained-variance ratios of its own PCs (bars) beside the random-walk null "
        "of Antognini & Sohl-Dickstein (2018) for the same number of snapshots (grey), with "
        "each PC score's |correlation| with cos(πk(t−½)/T) (diamonds); the verdicts are in the "
        "table below.",
    )
    k = min(4, coords[0].shape[1])
    fig, _ = static.plot_pc_pairs(coords, labels, k=k)
    report.add_figure(
        fig,
        f"Every pair of the top {k} joint PCs; {how}. Joint explained "
        f"variance: {', '.join(f'{v:.1%}' for v in ratios[:k])}.",
    )
    losses = [arrays.get(f"metric_{r}_loss") for r in range(n)]
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
            [{"step": s} for s in steps],
            title="Joint PCA (hover for step)",
        ),
        f"Interactive view of the joint PCA; {how}.",
    )
    rows = [
        [
            run.get("label"),
            run.get("verdict"),
            run.get("path_length"),
            run.get("straightness"),
            run.get("pc1_monotonicity"),
        ]
        for run in runs
    ]
    report.add_table(
        rows,
        ["run", "random-walk test", "path length", "straightness", "PC1 monotonicity"],
        "Per-run checks.",
    )


def _embeddings(report: Report, embeddings: dict[str, Any]) -> None:
    """PHATE, t-SNE and UMAP side by side, each with its trajectory-preservation score."""
    report.add_section("Trajectories: " + ", ".join(embeddings))
    points = {name: np.concatenate(coords) for name, (_, coords, _, _) in embeddings.items()}
    scores = {
        name: meta["trajectory_preservation"]
        for name, (meta, *_) in embeddings.items()
        if meta.get("trajectory_preservation") is not None
    }
    first = next(iter(embeddings.values()))
    fig, _ = static.plot_embeddings(
        points, scores or None, color=np.concatenate(first[2]).astype(float)
    )
    how = "; ".join(
        f"{name}: distance {meta.get('distance')}" for name, (meta, *_) in embeddings.items()
    )
    report.add_figure(
        fig,
        f"Embeddings of all runs' snapshots ({how}). The score in each title "
        "is the share of each snapshot's nearest neighbours in the embedding that "
        "are its time neighbours: high when trajectories stay intact.",
    )
    for name, (_, coords, steps, labels) in embeddings.items():
        report.add_plotly(
            interactive.scatter_figure(
                coords,
                labels,
                [{"step": s} for s in steps],
                axis_titles=(f"{name} 1", f"{name} 2", ""),
                title=f"{name} (hover for step)",
            ),
            f"Interactive {name} embedding.",
        )


def _surface(
    report: Report, base: Path, out_dir: Path, summary: ReportSummary, animate_ok: bool
) -> None:
    surf = load_surface(base)
    md = surf.metadata
    report.add_section(f"Loss landscape: {base.name}")
    trajs = list(surf.trajectories)  # the renderers take PlaneTrajectory objects as they are
    d = md.get("directions", {})
    how = (
        f"{len(surf.ys)}×{len(surf.xs)} grid of the mean loss at c + α·d1 + β·d2 "
        f"(directions: {d.get('kind', '?')}, normalisation {d.get('normalization', '?')}; "
        f"{_describe_objective(md)}); every point computed from the centre."
    )
    fig, _ = static.plot_surface_contour(surf.xs, surf.ys, surf.values, trajs or None, log=True)
    report.add_figure(
        fig,
        f"Contours of log loss with the trajectories projected on the plane "
        f"by least squares; {how}",
    )
    fig, _ = static.plot_contour_and_mesh(surf.xs, surf.ys, surf.values, trajs or None)
    report.add_figure(fig, "The same surface as a mesh over its contours.")
    report.add_plotly(
        interactive.surface_figure(surf.xs, surf.ys, surf.values, trajs or None, title=base.name),
        "Interactive surface; hover a trajectory point for its step, true loss, "
        "loss at its projection and off-plane residual.",
    )
    if trajs:
        rows = [
            [t.name, float(np.max(t.residual)), float(t.loss[-1]), float(t.plane_loss[-1])]
            for t in surf.trajectories
        ]
        report.add_table(
            rows,
            ["run", "max off-plane residual", "final true loss", "final loss at projection"],
            "How well the plane represents each trajectory.",
        )
    for fmt, writer in (("ply", export.write_ply), ("vtk", export.write_vtk)):
        path = out_dir / f"{base.name}.{fmt}"
        try:
            if fmt == "vtk":
                writer(path, surf.xs, surf.ys, surf.values, trajs or None)
            else:
                writer(path, surf.xs, surf.ys, surf.values)
            summary.files.append(str(path))
        except WeightspaceError as e:
            summary.notes.append(str(e))
            report.add_note(f"{fmt.upper()} export skipped: {e}")
    if animate_ok and trajs:
        res = animate.animate_trajectory(
            out_dir / f"{base.name}-path",
            surf.xs,
            surf.ys,
            surf.values,
            trajs[0].coords,
            steps=trajs[0].steps,
        )
        for note in res.notes:
            report.add_note(note)
            summary.notes.append(note)
        if "gif" in res.paths:
            report.add_figure(
                res.paths["gif"].read_bytes(),
                f"{trajs[0].name} growing over the surface, one frame per checkpoint.",
            )
        summary.files += [str(p) for p in res.paths.values()]


def _line(report: Report, base: Path) -> None:
    line = load_line(base)
    report.add_section(f"Interpolation: {base.name}")
    fig, _ = static.plot_line(
        line.alphas, line.values, line.stderr, None if np.isnan(line.barrier) else line.barrier
    )
    verdict = {True: "monotonic", False: "not monotonic", None: "n/a"}[line.monotonic]
    report.add_figure(
        fig,
        f"Loss along θ(α) = start + α·(end − start) "
        f"({_describe_objective(line.metadata)}); barrier "
        f"{line.barrier:.4g} above the straight line between the ends; "
        f"from 0 to 1 the loss is {verdict} (Goodfellow et al. 2015).",
    )


def _spectrum(report: Report, base: Path) -> None:
    arrays, meta = load_result(base)
    report.add_section(f"Curvature: {base.name}")
    pos = arrays["positions"]
    axis = meta.get("axis", "step")
    sigma = meta.get("sigma")
    eig = arrays.get("eigenvalues")
    how = (
        f"Hessian of the mean loss ({_describe_objective(meta)}), Lanczos with full "
        "reorthogonalisation"
    )
    if eig is not None and eig.size:
        fig, _ = static.plot_top_eigenvalues(
            pos, eig, arrays.get("trace"), meta.get("lr") if axis == "step" else None
        )
        report.add_figure(
            fig,
            f"Top Hessian eigenvalues (and Hutchinson trace where computed) against {axis}; {how}.",
        )
    if "density" in arrays and sigma:
        dens = arrays["density"]
        if len(pos) > 1:
            fig, _ = static.plot_density_heatmap(pos, arrays["grid"], dens, float(sigma))
            report.add_figure(
                fig,
                f"Eigenvalue density (stochastic Lanczos quadrature, "
                f"Gaussian width σ = {float(sigma):.3g}) at each {axis}.",
            )
        band = None
        if "density_stderr" in arrays:
            spread = arrays["density_stderr"][-1]
            band = np.stack([np.clip(dens[-1] - spread, 1e-12, None), dens[-1] + spread])
        fig, _ = static.plot_density(arrays["grid"], dens[-1], float(sigma), band)
        report.add_figure(
            fig,
            f"Eigenvalue density at the last point ({axis} {pos[-1]:g}); "
            f"σ = {float(sigma):.3g}; the band is the spread over probes.",
        )


# ---------------------------------------------------------------------------- entry point
def build_report(
    runs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    artifacts: str | os.PathLike | None = None,
    title: str = "weightspace report",
    animations: bool = True,
) -> ReportSummary:
    """Write a single-file HTML report on ``runs`` and the results in ``artifacts``.

    Args:
        runs: run directories (their layouts must match).
        out: the ``.html`` file to write; meshes and animations go beside it.
        artifacts: a directory of results (``weightspace project|surface|line|spectrum -o``).
        title: the page title.
        animations: write a GIF (and MP4 with ffmpeg) of the first trajectory on each surface.

    Raises:
        WeightspaceError: no runs and no results, an artifacts directory without results, or
        runs of different models.
    """
    trajs = [Trajectory.load(r) for r in runs]
    for t in trajs[1:]:
        trajs[0].layout.check_compatible(t.layout, what=f"run {str(t.path)!r}")
    found = find_results(artifacts) if artifacts is not None else {k: [] for k in KINDS}
    if artifacts is not None and not any(found.values()):
        raise WeightspaceError(
            f"--artifacts: no results in {str(artifacts)!r}; write some with `weightspace "
            "project|surface|line|spectrum -o DIR/NAME`"
        )
    if not trajs and not any(found.values()):
        raise WeightspaceError("report: give at least one run or an --artifacts directory")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = ReportSummary(out, {k: [str(p) for p in v] for k, v in found.items() if v})
    report = Report(title)
    if trajs:
        _overview(report, trajs)
    embeddings: dict[str, Any] = {}
    for base in found["projection"]:
        _projection(report, base, embeddings)
    if embeddings:
        _embeddings(report, embeddings)
    for base in found["surface"]:
        _surface(report, base, out.parent, summary, animations)
    for base in found["line"]:
        _line(report, base)
    for base in found["spectrum"]:
        _spectrum(report, base)
    report.write(out)
    return summary
