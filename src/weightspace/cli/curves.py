"""``weightspace curves``: loss and accuracy along runs, on the training or the test data."""

from __future__ import annotations

import argparse

from . import Output, _options, add_command, show_progress

__all__ = ["add_parser", "run"]

EXAMPLES = """
  weightspace curves --problem digits-cnn runs/sgd runs/adam --data test -o out/test-curves
  weightspace curves --problem digits-cnn runs/sgd --at every:5 -o out/train-curves
"""


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "curves",
        "loss and accuracy at every snapshot of runs (full data, each with its own buffers)",
        EXAMPLES,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (same model)")
    p.add_argument("-o", "--out", required=True, help="result path (OUT.npz + OUT.json)")
    _options.add_overwrite(p)
    p.add_argument(
        "--at",
        default="all",
        help="snapshots: all | final | every:K | STEP[,STEP...] (default all)",
    )
    _options.add_objective(p)
    _options.add_engine(p)
    p.set_defaults(func=run, flag_names={"runs": "RUN"})


def run(args: argparse.Namespace) -> Output:
    import numpy as np

    from .. import parallel
    from ..results import save
    from ..workflows import curves_of_runs

    progress = show_progress(args)
    obj = _options.objective(args)
    base = _options.result_base(args)
    curves = curves_of_runs(
        obj,
        args.runs,
        at=args.at,
        engine=_options.engine(args, progress),
        metadata=_options.problem_record(args, obj),
        progress=progress,
    )
    with parallel.rank_zero_writes() as writer:
        npz = save(curves, base) if writer else base.with_name(base.name + ".npz")
    runs = {}
    for c in curves.runs:
        row = {"snapshots": len(c.steps), "final_loss": float(c.loss[-1])}
        if c.accuracy is not None:
            row["final_accuracy"] = float(c.accuracy[-1])
        runs[c.label] = row
    summary = {"data": args.data, "runs": runs}
    lines = []
    if parallel.is_rank_zero():
        for c in curves.runs:
            acc = "" if c.accuracy is None else f", accuracy {c.accuracy[-1]:.4f}"
            best = float(np.nanmin(c.loss)) if np.isfinite(c.loss).any() else float("nan")
            lines.append(
                f"{c.label}: {len(c.steps)} snapshots on the {args.data} data, final loss "
                f"{c.loss[-1]:.4g}{acc} (lowest {best:.4g})"
            )
        lines.append(f"-> {npz}")
    else:
        args.json = False
    return Output({"curves": str(npz)}, summary, str(npz.with_suffix(".json")), lines)
