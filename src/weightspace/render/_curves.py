"""Report sections of loss and accuracy against step: what a run recorded while training
(minibatch values) and what :func:`~weightspace.curves_of_runs` measured at its snapshots
(full data, train or test)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..landscape import Curves
from ..results import RunProjection
from . import static
from ._sections import describe_objective
from .report import Report

ACCURACY_NAMES = ("acc", "accuracy")


def recorded_metrics(report: Report, runs: Sequence[RunProjection]) -> None:
    """The loss (log scale) and accuracy each run recorded while training, against step."""
    panel: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for run in runs:
        steps = np.asarray(run.steps)
        loss = run.metrics.get("loss")
        if loss is not None and np.isfinite(loss).any():
            keep = np.isfinite(loss)
            panel.setdefault("training loss (minibatch)", {})[run.label] = (
                steps[keep],
                np.asarray(loss)[keep],
            )
        acc = next((run.metrics[k] for k in ACCURACY_NAMES if k in run.metrics), None)
        if acc is not None and np.isfinite(acc).any():
            keep = np.isfinite(acc)
            panel.setdefault("training accuracy (minibatch)", {})[run.label] = (
                steps[keep],
                np.asarray(acc)[keep],
            )
    if not panel:
        return
    fig, axes = static.plot_metrics_panel(panel, ncols=2)
    _log_loss_axes(axes, list(panel))
    report.add_figure(
        fig,
        "Loss and accuracy each run recorded while training, on the minibatch of each "
        "recorded step (noisy; full-data values at the snapshots are in a curves result).",
    )


def curves_section(report: Report, name: str, curves: Curves) -> None:
    """Full-data loss and accuracy at each run's snapshots, and a table of final values."""
    meta = curves.metadata
    obj = meta.get("objective", {})
    split = meta.get("data", {}).get("split") if isinstance(meta.get("data"), dict) else None
    data = f"the {split} data" if split else "the objective's data"
    report.add_section(f"Loss and accuracy along training ({data})", f"Result {name}.")
    panel: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for c in curves.runs:
        keep = np.isfinite(c.loss)
        if keep.any():
            panel.setdefault(f"loss on {data}", {})[c.label] = (c.steps[keep], c.loss[keep])
        if c.accuracy is not None and np.isfinite(c.accuracy).any():
            panel.setdefault(f"accuracy on {data}", {})[c.label] = (c.steps, c.accuracy)
    if panel:
        fig, axes = static.plot_metrics_panel(panel, ncols=2)
        _log_loss_axes(axes, list(panel))
        report.add_figure(
            fig,
            f"Mean loss and accuracy over {data} at every evaluated snapshot, each with its "
            f"own recorded buffers ({describe_objective(obj)}).",
        )
    rows = [
        [
            c.label,
            len(c.steps),
            float(c.loss[-1]),
            float(np.nanmin(c.loss)) if np.isfinite(c.loss).any() else None,
            None if c.accuracy is None else float(c.accuracy[-1]),
        ]
        for c in curves.runs
    ]
    report.add_table(
        rows,
        ["run", "snapshots", "final loss", "lowest loss", "final accuracy"],
        f"Values on {data}.",
    )


def _log_loss_axes(axes: Any, names: list[str]) -> None:
    """Loss panels on a log scale where every value is positive."""
    for ax, name in zip(np.ravel(axes), names):
        if not name.startswith(("loss", "training loss")):
            continue
        ys = np.concatenate([line.get_ydata() for line in ax.get_lines()] or [np.ones(1)])
        if np.all(np.asarray(ys, dtype=float) > 0):
            ax.set_yscale("log")
