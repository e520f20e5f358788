"""``weightspace line``: the loss along a line between two points, or along a direction."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from .. import parallel
from ..buffers import at_snapshot
from ..directions import interpolation_directions, load_directions, random_directions
from ..errors import WeightspaceError
from ..landscape import evaluate_line, grid_axis, save_line
from ..trajectory import Trajectory
from . import add_command
from .record import parse_run_step
from .surface import (
    add_engine_options,
    build_objective,
    data_record,
    engine_options,
    normalization,
    out_base,
)

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
        "run", help="RUN[:STEP]; start point (default: first snapshot, or last with --to)"
    )
    p.add_argument("--to", metavar="RUN2[:STEP]", help="end point (default: RUN's last snapshot)")
    p.add_argument(
        "--direction",
        default="interp",
        help="interp (start -> end) | random | FILE.npy of shape (n,) (default interp)",
    )
    p.add_argument(
        "--alphas",
        nargs=2,
        type=float,
        default=None,
        metavar=("LO", "HI"),
        help="range of alpha (default -0.5 1.5 for interp, -1 1 otherwise)",
    )
    p.add_argument("--points", type=int, default=41, help="points on the line (default 41)")
    add_engine_options(p)
    p.set_defaults(func=run)


def _point(
    spec: str, dtype: torch.dtype, device, default: int
) -> tuple[torch.Tensor, dict, Trajectory, int]:
    path, step = parse_run_step(spec)
    traj = Trajectory.load(path)
    i = default if step is None else traj.index_of(step)
    i %= len(traj)
    info = {"run": str(traj.path), "step": int(traj.steps[i])}
    return traj.theta(i, dtype=dtype, device=device), info, traj, i


def run(args: argparse.Namespace) -> dict[str, Any]:
    kind = args.direction
    lo, hi = args.alphas or ((-0.5, 1.5) if kind == "interp" else (-1.0, 1.0))
    alphas = grid_axis(lo, hi, args.points, "--alphas")
    dtype = getattr(torch, args.dtype)
    start_spec = args.run
    start_traj = Trajectory.load(parse_run_step(start_spec)[0])
    trajs = [start_traj]
    if args.to:
        trajs.append(Trajectory.load(parse_run_step(args.to)[0]))
    obj = build_objective(args, trajs)
    default_start = -1 if (args.to or kind != "interp") else 0
    start, s_info, s_traj, s_i = _point(start_spec, dtype, obj.device, default_start)
    obj = at_snapshot(obj, s_traj, s_i)  # the start's buffers (BatchNorm statistics)
    points = {"start": s_info}
    end_buffers = None
    norm, ignore = normalization(args, "random" if kind == "random" else "other")
    if kind == "interp":
        end_spec = args.to or parse_run_step(start_spec)[0]
        end, points["end"], e_traj, e_i = _point(end_spec, dtype, obj.device, -1)
        direction = interpolation_directions(start, end)
        if len(obj.buffer_layout) and e_traj.records_buffers:
            end_buffers = e_traj.buffers(e_i)
    elif kind == "random":
        direction = random_directions(
            start, obj.layout, 1, normalization=norm, ignore=ignore, seed=args.seed
        )
    elif kind.endswith(".npy"):
        direction = load_directions(
            kind, theta=start, layout=obj.layout, normalization=norm, ignore=ignore
        )
    else:
        raise WeightspaceError(f"--direction: expected interp, random or a FILE.npy, got {kind!r}")
    meta = {**data_record(args, obj), "direction": direction.describe(), "points": points}
    base = out_base(args.out)
    line = evaluate_line(
        obj,
        start,
        direction[0],
        alphas,
        metadata=meta,
        checkpoint=base,
        resume=args.resume,
        keep_checkpoint=True,
        end_buffers=end_buffers,
        recompute_bn=args.recompute_bn,
        **engine_options(args),
    )
    npz = base.with_name(base.name + ".npz")
    with parallel.rank_zero_writes() as writer:
        if writer:
            npz = save_line(line, base)
            parallel.remove_partials(base, all_ranks=True)
    if not parallel.is_rank_zero():
        args.json = False  # one summary, from rank 0
    v = line.values
    summary = {
        "line": str(npz),
        "metadata": str(npz.with_suffix(".json")),
        "points": len(alphas),
        "alphas": [float(alphas[0]), float(alphas[-1])],
        "min_loss": float(np.nanmin(v)) if np.isfinite(v).any() else None,
        "max_loss": float(np.nanmax(v)) if np.isfinite(v).any() else None,
        "barrier": line.barrier,
        "monotonic": line.monotonic,
        "n_nonfinite": line.n_nonfinite,
        "seconds": line.metadata["engine"]["seconds"],
    }
    if not args.json and parallel.is_rank_zero():
        print(
            f"line of {summary['points']} points, loss {summary['min_loss']:.4g} .. "
            f"{summary['max_loss']:.4g}, barrier {summary['barrier']:.4g}, monotonic "
            f"{summary['monotonic']} -> {npz}"
        )
    return summary
