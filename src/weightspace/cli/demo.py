"""``weightspace demo``: the main job on the embedded data."""

from __future__ import annotations

import argparse

from . import Output, add_command, show_progress

__all__ = ["add_parser", "run"]

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


def run(args: argparse.Namespace) -> Output:
    from ..workflows import run_demo

    demo = run_demo(
        args.out, quick=args.quick, overwrite=args.overwrite, progress=show_progress(args)
    )
    artifacts = {
        "report": str(demo.report),
        "artifacts": str(demo.artifacts),
        **{f"run:{name}": str(path) for name, path in demo.runs.items()},
    }
    summary = {"timings": demo.timings, "notes": list(demo.notes)}
    lines = [*_stage_table(demo.timings), f"report: {demo.report}"]
    return Output(artifacts, summary, None, lines)


def _stage_table(timings: dict[str, float]) -> list[str]:
    """The time of each stage and the total, aligned.

    Example:
        >>> print("\\n".join(_stage_table({"record": 12.5, "surface": 3.25})))
        stage    seconds
        record      12.5
        surface      3.2
        total       15.8
    """
    rows = [*timings.items(), ("total", sum(timings.values()))]
    width = max(len("stage"), *(len(name) for name, _ in rows))
    return [f"{'stage':<{width}}  seconds"] + [f"{n:<{width}}  {s:7.1f}" for n, s in rows]
