"""Jump and retrain around an optimum, then project the original run and the samples jointly
(what ``weightspace sample`` computes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import WeightspaceError
from ..problems import Problem
from ..results import save
from ..sampling import JumpSamples, jump_and_retrain
from ._runs import as_run
from .project import METHODS, check_snapshot_counts, project_runs

__all__ = ["projection_path", "sample_around"]

PROJECTIONS = ("pca", "phate")


def projection_path(out: str | os.PathLike, method: str) -> Path:
    """Where :func:`sample_around` writes the joint ``method`` projection of a sampling."""
    return Path(out) / f"projection_{method}"


def sample_around(
    problem: Problem,
    run: str | os.PathLike,
    out: str | os.PathLike,
    *,
    project: Sequence[str] = PROJECTIONS,
    progress: bool = False,
    **retrain: Any,
) -> JumpSamples:
    """:func:`~weightspace.jump_and_retrain`, then one joint projection per method in
    ``project`` of the original run and every sample, saved as ``OUT/projection_METHOD``
    (:func:`projection_path`; ``kind: "projection"`` results).

    Args:
        problem, run, out: as in :func:`~weightspace.jump_and_retrain`.
        project: projection methods (``()``: none).
        progress: show progress bars.
        **retrain: the settings of :func:`~weightspace.jump_and_retrain` (``sizes``,
            ``seeds``, ``retrain_steps``, ``at``, ``optimizer``, ``lr``, ...).

    Returns:
        the :class:`~weightspace.JumpSamples`.
    """
    bad = [m for m in project if m not in METHODS]
    if bad:
        raise WeightspaceError(f"project: expected methods among {METHODS}, got {bad[0]!r}")
    if project:  # before the retraining: the original run is projected with the samples
        check_snapshot_counts([as_run(run)], "run")
    samples = jump_and_retrain(problem, run, out, progress=progress, **retrain)
    for method in project:
        proj = project_runs(samples.projection_runs(), method, progress=progress)
        save(proj, projection_path(samples.out, method))
    return samples
