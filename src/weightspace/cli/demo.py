"""``weightspace demo``: the main job on the embedded data."""

from __future__ import annotations

import argparse
from typing import Any

from ..demo import run_demo
from . import add_command, show_progress

EXAMPLES = """
  weightspace demo                 # full demo into ./demo-out (a few minutes on a laptop CPU)
  weightspace demo --quick -o /tmp/demo
  weightspace demo --overwrite     # replace earlier demo output
"""


def add_parser(sub) -> None:
    p = add_command(
        sub, "demo", "record, project, measure and report on the embedded data", EXAMPLES
    )
    p.add_argument("-o", "--out", default="demo-out", help="output directory (default demo-out)")
    p.add_argument("--quick", action="store_true", help="a small, fast version (tests)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier demo output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    summary = run_demo(
        args.out, quick=args.quick, overwrite=args.overwrite, progress=show_progress(args)
    )
    if not args.json:
        for stage, seconds in summary["timings"].items():
            print(f"{stage:<14} {seconds:7.1f} s")
        print(f"report: {summary['report']}")
    return summary
