"""``weightspace line``: the loss along a line between two points, or along a direction."""

from __future__ import annotations

import argparse

from . import Output, _options, add_command, show_progress

__all__ = ["add_parser", "run"]

EXAMPLES = """
  weightspace line --problem digits-cnn runs/sgd -o out/init-to-final      # Goodfellow et al.
  weightspace line --problem digits-cnn runs/sgd --to runs/adam -o out/sgd-to-adam
  weightspace line --problem digits-cnn runs/sgd:100 --to runs/sgd:500 --points 81 -o out/seg
  weightspace line --problem digits-cnn runs/sgd --direction random --alphas -1 1 -o out/rand
"""


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "line",
        "1-D loss profile: initial -> final, run A -> run B, or along a direction",
        EXAMPLES,
    )
    p.add_argument(
        "run",
        type=_options.run_point,
        metavar="RUN[:STEP]",
        help="start point (default: the first snapshot, or the last with --to or a direction)",
    )
    p.add_argument(
        "--to",
        type=_options.run_point,
        metavar="RUN2[:STEP]",
        help="end point (default: RUN's last snapshot)",
    )
    p.add_argument("-o", "--out", required=True, help="result path (OUT.npz + OUT.json)")
    _options.add_overwrite(p)
    p.add_argument(
        "--direction",
        default="interp",
        help="interp (start -> end) | random | FILE.npy of shape (n,) (default interp)",
    )
    p.add_argument(
        "--alphas",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        help="range of alpha (default -0.5 1.5 for interp, -1 1 otherwise)",
    )
    p.add_argument(
        "--points", type=_options.positive_int, default=41, help="points on the line (default 41)"
    )
    _options.add_directions(p)
    _options.add_point_state(p, "the ends' recorded statistics, interpolated between them")
    _options.add_objective(p)
    _options.add_engine(p)
    p.set_defaults(func=run, flag_names={"start": "RUN", "end": "--to", "alphas": "--alphas"})


def run(args: argparse.Namespace) -> Output:
    import numpy as np

    from .. import parallel
    from ..results import save
    from ..workflows import line_between

    progress = show_progress(args)
    obj = _options.objective(args)
    base = _options.result_base(args)
    line = line_between(
        obj,
        _options.point_arg(args.run),
        None if args.to is None else _options.point_arg(args.to),
        direction=args.direction,
        alphas=None if args.alphas is None else tuple(args.alphas),
        points=args.points,
        seed=args.seed,
        normalization=args.normalization,
        ignore=None if args.ignore == "none" else args.ignore,
        dtype=_options.compute_dtype(args),
        engine=_options.engine(args, progress),
        recompute_bn=args.recompute_bn,
        checkpoint=base,
        resume=args.resume,
        metadata=_options.problem_record(args, obj),
    )
    with parallel.rank_zero_writes() as writer:
        npz = save(line, base) if writer else base.with_name(base.name + ".npz")
    v = line.values
    finite = np.isfinite(v).any()
    summary = {
        "points": len(line.alphas),
        "alphas": [float(line.alphas[0]), float(line.alphas[-1])],
        "min_loss": float(np.nanmin(v)) if finite else None,
        "max_loss": float(np.nanmax(v)) if finite else None,
        "barrier": line.barrier,
        "monotonic": line.monotonic,
        "n_nonfinite": line.n_nonfinite,
        "seconds": line.metadata["engine"]["seconds"],
    }
    lines = []
    if parallel.is_rank_zero():
        lo = f"{summary['min_loss']:.4g}" if finite else "nan"
        hi = f"{summary['max_loss']:.4g}" if finite else "nan"
        lines.append(
            f"line of {summary['points']} points, loss {lo} .. {hi}, barrier "
            f"{summary['barrier']:.4g}, monotonic {summary['monotonic']} -> {npz}"
        )
    else:
        args.json = False  # one summary, from rank 0
    return Output({"line": str(npz)}, summary, str(npz.with_suffix(".json")), lines)
