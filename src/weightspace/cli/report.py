"""``weightspace report``: one self-contained HTML page from runs and results."""

from __future__ import annotations

import argparse
from typing import Any

from ..render.build import build_report
from . import add_command

EXAMPLES = """
  weightspace report runs/sgd runs/adam --artifacts out -o report.html
  weightspace report runs/sgd -o sgd.html                   # runs only: paths and distances
  weightspace report --artifacts out -o results.html --no-animations
"""


def add_parser(sub) -> None:
    p = add_command(sub, "report", "gather runs and results into one offline HTML page", EXAMPLES)
    p.add_argument("runs", nargs="*", help="run directories (same model)")
    p.add_argument(
        "--artifacts",
        help="directory of results written by project, surface, "
        "line and spectrum (searched recursively)",
    )
    p.add_argument("-o", "--out", required=True, help="the .html file to write")
    p.add_argument("--title", default="weightspace report")
    p.add_argument(
        "--no-animations",
        action="store_true",
        help="skip the GIF/MP4 of the trajectory over each surface",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    summary = build_report(
        args.runs,
        args.out,
        artifacts=args.artifacts,
        title=args.title,
        animations=not args.no_animations,
    )
    if not args.json:
        print(f"report: {summary.path}")
        for note in summary.notes:
            print(f"note: {note}")
    return {
        "report": str(summary.path),
        "results": summary.results,
        "files": summary.files,
        "notes": summary.notes,
    }
