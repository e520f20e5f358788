"""``weightspace spectrum``: Hessian eigenvalues, trace and density of a run's checkpoints."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..buffers import at_snapshot
from ..curvature import CurvatureAlong, curvature_along, curvature_between
from ..errors import WeightspaceError
from ..objective import Objective
from ..problems import load_problem
from ..store import save_array, save_result
from ..trajectory import Trajectory
from . import add_command, show_progress
from .record import add_problem_option, parse_run_step, positive_int

EXAMPLES = """
  weightspace spectrum --problem digits-cnn runs/sgd --at final --top-k 5 -o out/spec
  weightspace spectrum --problem digits-cnn runs/sgd --at every:10 --trace --density -o out/along
  weightspace spectrum --problem digits-cnn runs/sgd --between runs/adam --points 11 -o out/line
  weightspace spectrum --problem digits-cnn runs/sgd --at 500 --include 'head.*' -o out/head
"""


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "spectrum",
        "Hessian eigenvalues, eigenvectors, trace and spectral density at checkpoints",
        EXAMPLES,
    )
    add_problem_option(p)
    p.add_argument("run", help="a run directory")
    p.add_argument(
        "--at",
        default="final",
        help="which snapshots: final (default), all, every:K (every K-th and the last) or a "
        "recorded STEP",
    )
    p.add_argument("-o", "--out", required=True, help="result path (writes OUT.npz + OUT.json)")
    p.add_argument("--top-k", type=int, default=5, help="eigenpairs per point (0: none)")
    p.add_argument("--which", choices=("largest", "smallest", "both"), default="largest")
    p.add_argument("--tol", type=float, help="eigenpair residual tolerance (relative)")
    p.add_argument("--block-size", type=positive_int, default=1, help="Lanczos block size")
    p.add_argument("--trace", action="store_true", help="Hutchinson trace estimate")
    p.add_argument("--trace-probes", type=positive_int, default=100)
    p.add_argument("--density", action="store_true", help="SLQ spectral density")
    p.add_argument("--probes", type=positive_int, default=10, help="SLQ probes (default 10)")
    p.add_argument("--lanczos-steps", type=positive_int, default=80, help="SLQ steps (80)")
    p.add_argument("--sigma", type=float, help="SLQ Gaussian width (default 1%% of the range)")
    p.add_argument("--seed", type=int, default=0, help="seed of every probe (same at all points)")
    p.add_argument(
        "--between",
        metavar="RUN2[:STEP]",
        help="instead: points on the line from RUN (at --at) to RUN2 (default its last step)",
    )
    p.add_argument("--points", type=positive_int, default=11, help="points on the --between line")
    p.add_argument("--mode", choices=("eval", "train"), default="eval", help="model mode")
    p.add_argument("--data", choices=("train", "test"), default="train", help="evaluation data")
    p.add_argument("--batch-size", type=positive_int, help="evaluation batch size (memory)")
    p.add_argument("--include", help="only parameters matching this glob (e.g. 'head.*')")
    p.add_argument("--float64", action="store_true", help="compute in float64")
    p.add_argument(
        "--hvp", choices=("auto", "forward", "double-backward"), default="auto", help="HVP method"
    )
    p.add_argument(
        "--split",
        default="auto",
        metavar="auto|none|GLOB",
        help="split a small block of parameters off the Hessian products (exact; cheaper "
        "products after one product per coordinate): auto (the first layer, when it pays), "
        "none, or the parameters matching GLOB (e.g. 'features.0.*')",
    )
    p.set_defaults(func=run)


def select_indices(traj: Trajectory, at: str) -> list[int]:
    """Snapshot indices for ``--at``: final, all, every:K or a recorded step."""
    T = len(traj)
    if at == "final":
        return [T - 1]
    if at == "all":
        return list(range(T))
    if at.startswith("every:"):
        k = at.removeprefix("every:")
        if not k.isdigit() or int(k) < 1:
            raise WeightspaceError(f"--at: expected every:K with K a positive integer, got {at!r}")
        out = list(range(0, T, int(k)))
        return out if out[-1] == T - 1 else [*out, T - 1]
    if at.isdigit():
        return [traj.index_of(int(at))]
    raise WeightspaceError(
        f"--at: expected final, all, every:K or a recorded step, got {at!r}; e.g. --at every:10"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    traj = Trajectory.load(args.run)
    indices = select_indices(traj, args.at)
    other = None
    if args.between:
        other_path, other_step = parse_run_step(args.between)
        other = Trajectory.load(other_path)
        j = len(other) - 1 if other_step is None else other.index_of(other_step)
        if len(indices) != 1:
            raise WeightspaceError(
                f"--at: --between needs one point of RUN, got {args.at!r} ({len(indices)} "
                "points); use --at final or --at STEP"
            )
    problem = load_problem(args.problem)
    if args.data == "test" and problem.test_data is None:
        raise WeightspaceError(f"--data test: problem {args.problem!r} has no test_data")
    objective = Objective(
        problem,
        mode=args.mode,
        data=problem.test_data if args.data == "test" else None,
        batch_size=args.batch_size,
    )
    dtype = torch.float64 if args.float64 else None
    settings = {
        "top_k": args.top_k,
        "which": args.which,
        "tol": args.tol,
        "block_size": args.block_size,
        "trace_probes": args.trace_probes if args.trace else 0,
        "density": args.density,
        "n_probes": args.probes,
        "n_steps": args.lanczos_steps,
        "sigma": args.sigma,
        "seed": args.seed,
        "dtype": dtype,
        "include": args.include,
        "method": args.hvp,
        "split": None if args.split == "none" else args.split,
        "progress": show_progress(args),
    }
    if other is None:
        result = curvature_along(objective, traj, indices=indices, **settings)
    else:
        other.layout.check_compatible(objective.layout, what=f"run {args.between!r} vs --problem")
        traj.layout.check_compatible(objective.layout, what=f"run {args.run!r} vs --problem")
        dt = dtype or objective.theta0.dtype
        a = traj.theta(indices[0], dtype=dt, device=objective.device)
        b = other.theta(j, dtype=dt, device=objective.device)
        objective = at_snapshot(objective, traj, indices[0])
        buffers_b = other.buffers(j) if len(objective.buffer_layout) else None
        result = curvature_between(objective, a, b, args.points, buffers_b=buffers_b, **settings)
        result = dataclasses.replace(
            result,
            metadata={
                **result.metadata,
                "run": str(traj.path),
                "step_a": int(traj.steps[indices[0]]),
                "between": str(other.path),
                "step_b": int(other.steps[j]),
            },
        )
    return _write(args, result)


def _write(args: argparse.Namespace, result: CurvatureAlong) -> dict[str, Any]:
    meta = {
        **result.metadata,
        "problem_spec": args.problem,
        "at": args.at,
        "data": args.data,
        "dtype": "float64" if args.float64 else result.metadata.get("dtype"),
        "block_size": args.block_size,
        "n_matvecs": result.n_matvecs,
    }
    out = Path(args.out)
    if out.suffix in (".npz", ".json"):
        out = out.with_suffix("")
    directions = None
    if result.eigenvectors is not None and len(result.eigenvectors) >= 2:
        directions = out.with_name(out.name + ".directions.npy")
        out.parent.mkdir(parents=True, exist_ok=True)
        save_array(directions, result.eigenvectors[:2].detach().cpu().float().numpy())
        meta["directions"] = str(directions)
    npz = save_result(out, "spectrum", result.to_arrays(), meta)
    summary: dict[str, Any] = {
        "result": str(npz),
        "metadata": str(npz.with_suffix(".json")),
        "directions": str(directions) if directions else None,
        "axis": result.axis,
        "positions": result.positions.tolist(),
        "loss": result.loss.tolist(),
        "eigenvalues": result.eigenvalues.tolist(),
        "trace": None if np.isnan(result.trace).all() else result.trace.tolist(),
        "sigma": result.metadata.get("sigma"),
        "lambda_max_lr": None if result.lambda_max_lr is None else result.lambda_max_lr.tolist(),
        "stability_threshold": result.stability_threshold,
        "n_matvecs": result.n_matvecs,
    }
    if not args.json:
        for i, pos in enumerate(result.positions):
            parts = [f"{result.axis} {pos:g}", f"loss {result.loss[i]:.4g}"]
            if result.eigenvalues.shape[1]:
                parts.append("λ " + " ".join(f"{v:.4g}" for v in result.eigenvalues[i]))
            if not np.isnan(result.trace[i]):
                parts.append(f"trace {result.trace[i]:.4g} ± {result.trace_stderr[i]:.2g}")
            if result.lambda_max_lr is not None:
                parts.append(
                    f"λmax·lr {result.lambda_max_lr[i]:.3g} (vs {result.stability_threshold:g})"
                )
            print("  ".join(parts))
        print(f"wrote {npz}" + (f" and {directions}" if directions else ""))
    return summary
