"""The report section of a connection between two solutions: the barrier table, loss and
accuracy against ``t`` along the three paths, spectra along them, and the plane through A,
B and the bend with the paths drawn on it (its own surface section, PLY/VTK included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..between.results import PATH_LABELS, Connection
from . import static
from ._sections import describe_objective, point_words
from ._surface import SurfaceStyle, surface_section
from .report import Report

SPLIT_WORDS = {"train": "training data", "test": "test data"}


def _panel(conn: Connection, what: str) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    panel: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for split in conn.splits:
        for p in conn.paths:
            line = conn.profiles[f"{p}/{split}"]
            values = line.values if what == "loss" else line.accuracy
            if values is None or not np.isfinite(values).any():
                continue
            panel.setdefault(f"{what} ({SPLIT_WORDS[split]})", {})[PATH_LABELS[p]] = (
                np.asarray(line.alphas),
                np.asarray(values),
            )
    return panel


def _barrier_table(report: Report, conn: Connection) -> None:
    rows = []
    for p in conn.paths:
        row: list[Any] = [PATH_LABELS[p]]
        for split in conn.splits:
            line = conn.profiles[f"{p}/{split}"]
            acc = None if line.accuracy is None else float(np.nanmin(line.accuracy))
            row += [line.barrier, float(np.nanmax(line.values)), acc]
        rows.append(row)
    columns = ["path"]
    for split in conn.splits:
        columns += [f"barrier ({split})", f"max loss ({split})", f"min accuracy ({split})"]
    report.add_table(
        rows,
        columns,
        "Barrier height max_t L(φ(t)) − [(1 − t)·L(0) + t·L(1)] along each path (Frankle et "
        "al. 2020), over the evaluated t; the straight line before and after aligning B's "
        "hidden units to A's (Ainsworth et al. 2023), and the trained curve (Garipov et al. "
        "2018).",
    )


def connection_section(
    report: Report,
    name: str,
    conn: Connection,
    out_dir: Path,
    summary: Any,
    style: SurfaceStyle | None = None,
) -> None:
    """Barriers, loss along ``t`` for every path, spectra along them, and the plane."""
    meta = conn.metadata
    a, b = point_words(meta.get("a")), point_words(meta.get("b"))
    report.add_section(f"Between {a} and {b}", f"Result {name}.")
    dist = f"‖θ_A − θ_B‖ = {conn.distance_before:.4g}"
    if np.isfinite(conn.distance_after):
        method = meta.get("align", {}).get("method", "?")
        dist += f"; after aligning B's units to A's ({method} matching) {conn.distance_after:.4g}"
    curve = meta.get("curve") or {}
    trained = (
        f" The curve is a {curve.get('curve', '?')} with {curve.get('bends', '?')} bend(s), "
        f"trained for {curve.get('steps_done', '?')} steps (lr {curve.get('lr', '?')}) on the "
        "training data with its ends fixed."
        if curve
        else ""
    )
    report.add_text(
        f"{dist}.{trained} BatchNorm statistics: {meta.get('buffers_rule', '?')}; "
        f"{describe_objective(conn.profiles[f'{conn.paths[0]}/train'].metadata)}."
    )
    _barrier_table(report, conn)
    for what in ("loss", "accuracy"):
        panel = _panel(conn, what)
        if not panel:
            continue
        fig, axes = static.plot_metrics_panel(panel, ncols=2)
        for ax in axes:
            ax.set_xlabel("t (0: A, 1: B)")
        report.add_figure(
            fig,
            f"Full-data {what} at {len(conn.profiles[f'{conn.paths[0]}/train'].alphas)} "
            "points t along each path from A (t = 0) to B (t = 1).",
        )
    if conn.spectra:
        panel = {
            f"λ_{k + 1}": {
                PATH_LABELS[p]: (np.asarray(s.positions), np.asarray(s.eigenvalues)[:, k])
                for p, s in conn.spectra.items()
                if np.asarray(s.eigenvalues).shape[1] > k
            }
            for k in range(max(np.asarray(s.eigenvalues).shape[1] for s in conn.spectra.values()))
        }
        fig, axes = static.plot_metrics_panel(panel, ncols=3)
        for ax in axes:
            ax.set_xlabel("t")
        report.add_figure(
            fig,
            "Top Hessian eigenvalues of the training loss at points along each path "
            "(GradVis §3.4, on the aligned line and the curve too); Lanczos with full "
            "reorthogonalisation.",
        )
    if conn.surface is not None:
        surface_section(report, f"{name} plane", conn.surface, out_dir, summary, False, style)
        report.add_text(
            "The plane through θ_A, the aligned θ_B and the bend (Garipov et al. 2018): "
            "α along θ_B − θ_A, β orthogonal to it in the plane, in units of ‖θ_B − θ_A‖; "
            "the paths are drawn at their projections (the colour numbers the points along "
            "t); the unaligned line generally lies off the plane (its residual is in the "
            "table)."
        )
