"""The projection section's table of distances between the runs' final points (Lipton 2016),
before and after permutation alignment (Ainsworth et al. 2023)."""

from __future__ import annotations

from pathlib import Path

from ..results import Projection
from .report import Report

__all__ = ["endpoint_tables"]

METHOD_WORDS = {
    "weights": "weight matching",
    "activations": "matching the correlation of unit activations",
}


def endpoint_tables(report: Report, proj: Projection) -> None:
    """The ``(R, R)`` distances between final points, and beside them the same after every
    run was aligned to the reference run (when the projection was asked to align)."""
    if proj.endpoint_distances is None:
        return
    labels = proj.labels
    rows = [[lab, *row] for lab, row in zip(labels, proj.endpoint_distances)]
    report.add_table(
        rows,
        ["run", *labels],
        "Euclidean distances ‖θ_r − θ_s‖ between the runs' final points (Lipton 2016), as "
        "recorded, without alignment.",
    )
    align = proj.metadata.get("align")
    if proj.aligned_distances is None or not align:
        return
    ref = int(align["reference_index"])
    how = METHOD_WORDS.get(align["method"], align["method"])
    rows = [[lab, *row] for lab, row in zip(labels, proj.aligned_distances)]
    report.add_table(
        rows,
        ["run", *labels],
        f"The same distances after every run's hidden units were permuted to match the "
        f"reference run {labels[ref]} ({how}; Ainsworth et al. 2023, Entezari et al. 2022; "
        "each run computes the same function as before). Distances to the reference never "
        "grow under weight matching; those between two other runs are measured in the "
        "reference's unit order.",
    )
    moved = {Path(r["run"]).as_posix(): r for r in align.get("runs", ())}
    rows = []
    for i, run in enumerate(proj.runs):
        if i == ref:
            continue
        info = moved.get(Path(run.run).as_posix(), {})
        rows.append(
            [
                run.label,
                proj.endpoint_distances[ref, i],
                proj.aligned_distances[ref, i],
                sum(info.get("units_moved", {}).values()) if info else None,
            ]
        )
    report.add_table(
        rows,
        ["run", f"to {labels[ref]}, unaligned", "aligned", "units moved"],
        f"Each run's distance to the reference {labels[ref]}, before and after alignment.",
    )
