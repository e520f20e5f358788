"""One offline HTML page from saved results (and runs): what ``weightspace report`` does."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ..errors import WeightspaceError
from ..outputs import claim_directory
from ..render.build import ReportSummary, SurfaceStyle, build_report, side_files
from ..results import Projection, load, result_paths
from ._runs import RunLike, as_runs
from .project import project_runs

__all__ = ["find_results", "report"]

# the result kinds a report draws
DRAWN = ("projection", "curves", "surface", "line", "spectrum", "connection")


def find_results(directory: str | os.PathLike) -> list[tuple[str, Path]]:
    """``(name, path)`` of every complete result of a kind a report draws under
    ``directory`` (recursively; a ``.npz`` whose sidecar is missing is skipped), by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise WeightspaceError(f"artifacts: {str(directory)!r} is not a directory")
    found = []
    for side in sorted(directory.rglob("*.json")):
        if not side.is_file():  # a FIFO or device named *.json would block
            continue
        try:
            kind = json.loads(side.read_text()).get("kind")
        except (ValueError, OSError, AttributeError):
            continue
        npz = result_paths(side)[0]
        if kind in DRAWN and (npz.exists() or npz.is_symlink()):  # unreadable: skipped later
            found.append((str(side.relative_to(directory).with_suffix("")), npz))
    return found


def report(
    out: str | os.PathLike,
    *,
    runs: RunLike | Sequence[RunLike] = (),
    artifacts: str | os.PathLike | None = None,
    results: Sequence[tuple[str, Any]] = (),
    title: str = "weightspace report",
    animations: bool = True,
    scale: Literal["auto", "log", "linear"] = "auto",
    vmax: float | None = None,
    levels: int = 20,
    overwrite: bool = False,
    progress: bool = False,
) -> ReportSummary:
    """Write a single-file HTML report from typed results, and optionally runs.

    Args:
        out: the ``.html`` file; meshes and animations go beside it.
        runs: run directories for the "Runs" overview (path metrics computed here); without
            them the overview comes from the first projection among the results.
        artifacts: a directory of saved results (searched recursively).
        results: more ``(name, result)`` pairs (Projection, Curves, Surface, Line,
            CurvatureAlong).
        title: the page title.
        animations: a GIF (and MP4 with ffmpeg) of the first trajectory on each surface.
        scale: how surfaces are drawn (contour, mesh, interactive view, animation):
            ``"log"``, ``"linear"``, or ``"auto"`` (log where the loss is positive).
        vmax: draw surface values above ``vmax`` at ``vmax`` (None: no clipping).
        levels: contour levels of the surfaces.
        overwrite: replace an earlier report at ``out`` (its page and ``OUT_files/``; files
            weightspace did not write are never replaced).
        progress: show progress bars.

    A result that cannot be read or drawn does not stop the page: it is listed, with the
    reason, in a "Skipped" section (and in the returned summary).

    Raises:
        WeightspaceError: nothing to report, or an artifacts directory without results.
    """
    style = SurfaceStyle(scale, vmax, levels)  # checked before any work
    out = Path(out)
    manifest = claim_directory(  # before any work: an earlier page needs overwrite
        out.parent, [out.name, side_files(out).name], overwrite=overwrite, what="out"
    )
    pairs = list(results)
    skipped: list[tuple[str, str]] = []
    if artifacts is not None:
        found = find_results(artifacts)
        if not found:
            raise WeightspaceError(
                f"artifacts: no results in {str(artifacts)!r}; write some with `weightspace "
                "project|surface|line|spectrum -o DIR/NAME`"
            )
        for name, path in found:
            try:
                pairs.append((name, load(path)))
            except WeightspaceError as e:  # one bad file must not cost the whole page
                skipped.append((name, str(e)))
    trajs = as_runs(runs) if runs not in ((), []) else []
    if not trajs and not pairs and not skipped:
        raise WeightspaceError("report: give at least one run or a directory of results")
    if trajs:
        overview = project_runs(trajs, progress=progress).runs
    else:
        first = next((r for _, r in pairs if isinstance(r, Projection)), None)
        overview = first.runs if first is not None else ()
    summary = build_report(
        out,
        runs=overview,
        results=pairs,
        title=title,
        animations=animations,
        skipped=skipped,
        surface_style=style,
    )
    manifest.add(out, *([side_files(out)] if side_files(out).is_dir() else []))
    return summary
