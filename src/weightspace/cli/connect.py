"""``weightspace connect``: between two solutions: the straight line, the line after aligning
B's hidden units to A's, and a trained low-loss curve, with their barriers."""

from __future__ import annotations

import argparse

from . import Output, _options, add_command, show_progress

__all__ = ["add_parser", "run"]

EXAMPLES = """
  weightspace connect --problem digits-mlp runs/a runs/b -o out/a-b
  weightspace connect --problem digits-cnn-bn runs/a:500 runs/b:500 --align activations \\
      --curve polychain --steps 2000 --lr 0.05 -o out/a-b
  weightspace connect --problem digits-mlp runs/a runs/b --spectra-at 0 0.5 1 -o out/a-b
  weightspace connect --problem digits-mlp runs/a runs/b -o out/a-b --resume   # after a crash
"""


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "connect",
        "between two solutions: straight line, aligned line (Git Re-Basin) and trained curve",
        EXAMPLES,
    )
    p.add_argument("run_a", type=_options.run_point, metavar="RUN_A[:STEP]", help="solution A")
    p.add_argument("run_b", type=_options.run_point, metavar="RUN_B[:STEP]", help="solution B")
    p.add_argument(
        "-o", "--out", required=True,
        help="result path (OUT.npz + OUT.json); the curve's run goes to OUT.curve/",
    )  # fmt: skip
    _options.add_overwrite(p, "an existing result (and curve run) at OUT")
    p.add_argument("--resume", action="store_true", help="continue the curve run in OUT.curve/")
    p.add_argument(
        "--align", choices=("weights", "activations", "none"), default="weights",
        help="permutation alignment of B's hidden units to A's (default weights)",
    )  # fmt: skip
    p.add_argument(
        "--curve", choices=("bezier", "polychain", "none"), default="bezier",
        help="the trained curve from A to (aligned) B (default bezier)",
    )  # fmt: skip
    g = p.add_argument_group("curve training")
    g.add_argument("--steps", type=_options.positive_int, default=500, help="(default 500)")
    g.add_argument("--bends", type=_options.positive_int, default=1, help="(default 1)")
    g.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    g.add_argument("--momentum", type=float, default=0.9, help="(default 0.9)")
    g.add_argument(
        "--curve-batch-size", type=_options.positive_int, default=64, help="(default 64)"
    )
    g.add_argument("--seed", type=_options.seed, default=0,
                   help="the t draws and the alignment's order (default 0)")  # fmt: skip
    g = p.add_argument_group("evaluation")
    g.add_argument("--points", type=_options.positive_int, default=21,
                   help="points t on [0, 1] along each path (default 21)")  # fmt: skip
    g.add_argument("--no-test", action="store_true", help="training data only")
    g.add_argument("--grid", nargs=2, type=_options.positive_int, default=(21, 21),
                   metavar=("NX", "NY"), help="the plane's surface (default 21 21)")  # fmt: skip
    g.add_argument("--no-surface", action="store_true", help="no surface on the plane")
    g.add_argument("--spectra-at", nargs="+", type=float, metavar="T",
                   help="top Hessian eigenvalues at these t along every path")  # fmt: skip
    g.add_argument("--top-k", type=_options.positive_int, default=3, help="(default 3)")
    g.add_argument(
        "--recompute-bn", choices=("auto", "on", "off"), default="auto",
        help="re-estimate BatchNorm statistics at every point (auto: when the model has "
        "buffers)",
    )  # fmt: skip
    _options.add_problem(p)
    g = p.add_argument_group("objective")
    g.add_argument("--batch-size", type=_options.positive_int, help="evaluation batch size")
    g.add_argument("--dtype", choices=("float32", "float64"), help="compute dtype")
    g.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    _options.add_engine(p)
    p.set_defaults(
        func=run,
        flag_names={
            "run_a": "RUN_A", "run_b": "RUN_B", "step_a": "RUN_A", "step_b": "RUN_B",
            "curve_dir": "-o", "ts": "--points",
            "spec_or_model": "--align", "model": "--align", "grid": "--grid",
        },
    )  # fmt: skip


def run(args: argparse.Namespace) -> Output:
    from .. import parallel
    from ..between.results import PATH_LABELS
    from ..results import save
    from ..workflows.connect import connect_runs

    progress = show_progress(args)
    args.data, args.mode = "train", "eval"
    obj = _options.objective(args)  # the problem, on the device
    base = _options.result_base(args)
    conn = connect_runs(
        obj.problem,
        _options.point_arg(args.run_a),
        _options.point_arg(args.run_b),
        align=args.align,
        curve=args.curve,
        bends=args.bends,
        steps=args.steps,
        lr=args.lr,
        momentum=args.momentum,
        curve_batch_size=args.curve_batch_size,
        ts=args.points,
        test=False if args.no_test else None,
        spectra_at=args.spectra_at,
        top_k=args.top_k,
        grid=None if args.no_surface else tuple(args.grid),
        recompute_bn={"auto": None, "on": True, "off": False}[args.recompute_bn],
        seed=args.seed,
        batch_size=args.batch_size,
        device=obj.device,
        dtype=_options.compute_dtype(args),
        curve_dir=base.with_name(base.name + ".curve"),
        resume=args.resume,
        overwrite=args.overwrite,
        engine=_options.engine(args, progress),
        progress=progress,
        metadata=_options.problem_record(args, obj),
    )
    with parallel.rank_zero_writes() as writer:
        npz = save(conn, base) if writer else base.with_name(base.name + ".npz")
    summary = conn.summary()
    lines = [f"distance ||A - B|| {conn.distance_before:.4g}"]
    if summary["distance_after"] is not None:
        lines[0] += f", after alignment {conn.distance_after:.4g}"
    for path, row in conn.barriers.items():
        nums = ", ".join(f"{split} {v:.4g}" for split, v in row.items())
        lines.append(f"barrier along the {PATH_LABELS[path]}: {nums}")
    lines.append(f"-> {npz}")
    if not parallel.is_rank_zero():
        args.json, lines = False, []
    return Output({"connection": str(npz)}, summary, str(npz.with_suffix(".json")), lines)
