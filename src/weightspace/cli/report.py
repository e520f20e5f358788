"""``weightspace report``: one self-contained HTML page from results and runs."""

from __future__ import annotations

import argparse

from . import Output, _options, add_command, show_progress

__all__ = ["add_parser", "run"]

EXAMPLES = """
  weightspace report runs/sgd runs/adam --artifacts out -o report.html
  weightspace report runs/sgd -o sgd.html                   # runs only: paths and distances
  weightspace report --artifacts out -o results.html --no-animations
  weightspace report --artifacts out -o linear.html --scale linear --vmax 5 --levels 30
"""


def add_parser(sub) -> None:
    p = add_command(sub, "report", "gather runs and results into one offline HTML page", EXAMPLES)
    p.add_argument("runs", nargs="*", help="run directories (same model)")
    p.add_argument(
        "--artifacts",
        help="directory of results written by project, surface, line and spectrum "
        "(searched recursively)",
    )
    p.add_argument("-o", "--out", required=True, help="the .html file to write")
    _options.add_overwrite(p, "an earlier report at OUT and its OUT_files/")
    p.add_argument("--title", default="weightspace report")
    p.add_argument(
        "--no-animations",
        action="store_true",
        help="skip the GIF/MP4 of the trajectory over each surface",
    )
    p.add_argument(
        "--scale",
        choices=("auto", "log", "linear"),
        default="auto",
        help="surfaces' colour and height scale, the same in every view (default auto: log "
        "where the loss is positive)",
    )
    p.add_argument(
        "--vmax", type=float, help="draw surface values above VMAX at VMAX (default: no clipping)"
    )
    p.add_argument(
        "--levels", type=_options.positive_int, default=20, help="contour levels (default 20)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Output:
    from ..workflows import report

    summary = report(
        args.out,
        runs=args.runs,
        artifacts=args.artifacts,
        title=args.title,
        animations=not args.no_animations,
        scale=args.scale,
        vmax=args.vmax,
        levels=args.levels,
        overwrite=args.overwrite,
        progress=show_progress(args),
    )
    files = {f"file{k}": f for k, f in enumerate(summary.files)}
    skipped = [{"name": n, "reason": r} for n, r in summary.skipped]
    out = {"results": summary.results, "notes": summary.notes, "skipped": skipped}
    lines = [f"report: {summary.path}", *(f"note: {n}" for n in summary.notes)]
    lines += [f"skipped {n}: {r}" for n, r in summary.skipped]
    return Output({"report": str(summary.path), **files}, out, None, lines)
