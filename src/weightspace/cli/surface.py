"""``weightspace surface``: a 2-D loss landscape around a run, with the runs drawn on it."""

from __future__ import annotations

import argparse

from . import Output, _options, add_command, show_progress

__all__ = ["add_parser", "run"]

EXAMPLES = """
  weightspace surface --problem digits-cnn runs/sgd -o out/sgd-surface
  weightspace surface --problem digits-cnn runs/sgd runs/adam --directions pca --grid 51 -o out/pca
  weightspace surface --problem digits-cnn runs/sgd:300 --grid 41 --grid-y 21 --span -1 1 \\
      --span-y -0.5 0.5 --seed 3 --resume -o out/wide
  weightspace surface --problem digits-cnn runs/a runs/b runs/c --directions interp -o out/3pts
  weightspace surface --problem digits-cnn runs/sgd --directions out/spec.npz -o out/eigen
  torchrun --nproc-per-node 4 -m weightspace surface --problem digits-cnn runs/sgd -o out/big
"""


def add_parser(sub) -> None:
    p = add_command(
        sub, "surface", "2-D loss landscape around a run, with trajectories on it", EXAMPLES
    )
    p.add_argument(
        "runs",
        nargs="+",
        type=_options.run_point,
        metavar="RUN[:STEP]",
        help="runs; the centre is the first's last snapshot (or STEP)",
    )
    p.add_argument(
        "--runs", dest="more_runs", nargs="+", default=[], metavar="RUN", help="more runs to draw"
    )
    p.add_argument("-o", "--out", required=True, help="result path (OUT.npz + OUT.json)")
    _options.add_overwrite(p)
    p.add_argument(
        "--directions",
        default="random",
        help="random | pca | eigen | interp | FILE.npy of shape (2, n) | a surface or "
        "spectrum result .npz (default random)",
    )
    p.add_argument("--grid", type=_options.positive_int, default=25, help="points along x")
    p.add_argument("--grid-y", type=_options.positive_int, help="points along y (default --grid)")
    p.add_argument(
        "--span",
        nargs="+",
        default=["auto"],
        metavar="LO HI | auto",
        help="span along x (default auto: -1 1 for random directions, else covering the "
        "trajectories with --margin)",
    )
    p.add_argument("--span-y", nargs=2, type=float, metavar=("LO", "HI"), help="span along y")
    p.add_argument("--margin", type=float, default=0.1, help="auto span margin (default 0.1)")
    p.add_argument("--no-trajectories", action="store_true", help="do not draw the runs")
    _options.add_directions(p)
    _options.add_point_state(p, "the centre's recorded statistics everywhere")
    _options.add_objective(p)
    _options.add_engine(p)
    p.set_defaults(func=run, flag_names={"span": "--span", "grid": "--grid", "runs": "RUN"})


def _span(args: argparse.Namespace):
    from ..errors import WeightspaceError

    if args.span == ["auto"]:
        if args.span_y is not None:
            raise WeightspaceError("span: give --span LO HI with --span-y, not auto")
        return ("auto", args.margin)
    try:
        lo, hi = (float(v) for v in args.span)
    except ValueError:
        raise WeightspaceError(f"span: expected LO HI or auto, got {' '.join(args.span)}") from None
    return (lo, hi) if args.span_y is None else ((lo, hi), tuple(args.span_y))


def run(args: argparse.Namespace) -> Output:
    from .. import parallel
    from ..results import save
    from ..workflows import surface_around

    progress = show_progress(args)
    obj = _options.objective(args)
    base = _options.result_base(args)
    surf = surface_around(
        obj,
        [_options.point_arg(args.runs[0]), *(r for r, _ in args.runs[1:]), *args.more_runs],
        directions=args.directions,
        span=_span(args),
        grid=(args.grid, args.grid_y or args.grid),
        seed=args.seed,
        normalization=args.normalization,
        ignore=None if args.ignore == "none" else args.ignore,
        trajectories=not args.no_trajectories,
        dtype=_options.compute_dtype(args),
        engine=_options.engine(args, progress),
        recompute_bn=args.recompute_bn,
        checkpoint=base,
        resume=args.resume,
        metadata=_options.problem_record(args, obj),
    )
    with parallel.rank_zero_writes() as writer:
        npz = save(surf, base) if writer else base.with_name(base.name + ".npz")
    return _output(surf, npz, quiet=not parallel.is_rank_zero(), args=args)


def _output(surf, npz, quiet: bool, args: argparse.Namespace) -> Output:
    import numpy as np

    v = surf.values
    eng = surf.metadata["engine"]
    finite = np.isfinite(v).any()
    summary = {
        "grid": [len(surf.ys), len(surf.xs)],
        "span": {"x": [surf.xs[0], surf.xs[-1]], "y": [surf.ys[0], surf.ys[-1]]},
        "min_loss": float(np.nanmin(v)) if finite else None,
        "max_loss": float(np.nanmax(v)) if finite else None,
        "center_loss": eng["center_loss"],
        "n_nonfinite": surf.n_nonfinite,
        "cosine": surf.metadata["cosine"],
        "seconds": eng["seconds"],
        "compiled": eng["compiled"],
        "trajectories": [
            {
                "name": t.name,
                "snapshots": len(t.steps),
                "max_residual": float(np.max(t.residual)),
                "final_loss": float(t.loss[-1]),
                "final_plane_loss": float(t.plane_loss[-1]),
            }
            for t in surf.trajectories
        ],
    }
    lines = [] if quiet else _lines(summary, npz)
    if quiet:
        args.json = False  # one summary, from rank 0
    sidecar = str(npz.with_suffix(".json"))
    return Output({"surface": str(npz)}, summary, sidecar, lines)


def _lines(s: dict, npz) -> list[str]:
    lo, hi = s["min_loss"], s["max_loss"]
    span = f"loss {lo:.4g} .. {hi:.4g}" if lo is not None else "no finite loss"
    lines = [
        f"surface {s['grid'][0]}x{s['grid'][1]} in {s['seconds']:.1f} s "
        f"(compiled: {s['compiled']}), {span}, {s['n_nonfinite']} non-finite -> {npz}"
    ]
    for t in s["trajectories"]:
        lines.append(
            f"  {t['name']}: {t['snapshots']} snapshots, max off-plane residual "
            f"{t['max_residual']:.3g}, final loss {t['final_loss']:.4g} "
            f"(on the plane {t['final_plane_loss']:.4g})"
        )
    return lines
