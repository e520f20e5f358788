"""``weightspace sample``: jump and retrain around an optimum (Horoi et al.), projected jointly.

Writes one run directory per (size, seed) under ``OUT``, ``OUT/sampling.json``, and, unless
``--no-project``, ``OUT/projection_pca`` and ``OUT/projection_phate`` (``kind: "projection"``
results over the original run and the samples, written by ``weightspace project``'s code).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..problems import load_problem
from ..sampling import DEFAULT_SIZES, jump_and_retrain
from ..store import STORAGE_DTYPES
from ..train import OPTIMIZERS
from ..trajectory import Trajectory
from . import add_command, project, show_progress
from .record import add_problem_option, positive_int

EXAMPLES = """
  weightspace sample --problem digits-mlp runs/sgd --retrain-steps 100 -o out/jumps
  weightspace sample --problem digits-cnn runs/sgd --step-sizes 0.25,0.5,0.75,1.0 \\
      --seeds 0,1,2 --retrain-steps 200 --at 500 -o out/jumps --json
  weightspace sample --problem digits-mlp runs/sgd --lr 0.05 --no-project -o out/jumps_lr
"""

PROJECTIONS = ("pca", "phate")


def size_list(text: str) -> list[float]:
    """``0.25,0.5,1`` -> distinct positive numbers."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive numbers (e.g. 0.25,0.5,1.0), got {text!r}"
        ) from None
    if any(not v > 0 or v == float("inf") for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(
            f"expected distinct positive finite numbers (e.g. 0.25,0.5,1.0), got {text!r}"
        )
    return values


def seed_list(text: str) -> list[int]:
    """``0,1,2`` -> distinct non-negative integers."""
    parts = text.split(",")
    if not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated non-negative integers (e.g. 0,1,2), got {text!r}"
        )
    values = [int(p) for p in parts]
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
    return values


def non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def add_parser(sub) -> None:
    p = add_command(
        sub, "sample", "jump from an optimum, retrain, and project the runs jointly", EXAMPLES
    )
    add_problem_option(p)
    p.add_argument("run", metavar="RUN", help="the original run")
    p.add_argument("-o", "--out", required=True, help="sampling directory (resumed if present)")
    p.add_argument(
        "--step-sizes",
        "--steps-sizes",
        dest="sizes",
        type=size_list,
        default=list(DEFAULT_SIZES),
        help="jump sizes in filter-norm units (default 0.25,0.5,0.75,1.0)",
    )
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2], help="default 0,1,2")
    p.add_argument(
        "--retrain-steps", type=positive_int, default=100, help="updates per jump (default 100)"
    )
    p.add_argument("--at", type=non_negative_int, help="origin step (default: the last)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="default: the run's")
    p.add_argument("--lr", type=float, help="default: the run's")
    p.add_argument("--momentum", type=float, help="default: the run's")
    p.add_argument("--weight-decay", type=float, help="default: the run's")
    p.add_argument("--batch-size", type=positive_int, help="default: the run's")
    p.add_argument("--every", type=positive_int, help="record every k steps (default: the run's)")
    p.add_argument(
        "--data-seed", type=non_negative_int, help="one data order for all (default: each seed)"
    )
    p.add_argument("--dtype", choices=STORAGE_DTYPES, help="storage dtype (default: the run's)")
    p.add_argument("--init-seed", type=int, default=0, help="seed for building the problem")
    p.add_argument("--no-project", action="store_true", help="skip the joint PCA and PHATE")
    p.set_defaults(func=run)


def _project(runs: list[Path], out: Path, method: str, progress: bool) -> dict[str, Any]:
    """``weightspace project RUNS --method METHOD -o OUT``, with its defaults."""
    sub = argparse.ArgumentParser().add_subparsers()
    project.add_parser(sub)
    argv = ["project", *map(str, runs), "-o", str(out), "--method", method, "--json"]
    args = sub.choices["project"].parse_args(argv[1:])
    args.no_progress = not progress
    return project.run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    Trajectory.load(args.run)  # a missing run fails before the problem is built
    problem = load_problem(args.problem, seed=args.init_seed)
    progress = show_progress(args)
    samples = jump_and_retrain(
        problem,
        args.run,
        args.out,
        sizes=args.sizes,
        seeds=args.seeds,
        retrain_steps=args.retrain_steps,
        at=args.at,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        every=args.every,
        data_seed=args.data_seed,
        dtype=args.dtype,
        progress=progress,
    )
    runs = [
        {
            "run": str(path),
            "size": float(samples.run_sizes[r]),
            "seed": int(samples.run_seeds[r]),
            "distance": float(samples.distances[r]),
            "start_loss": float(samples.start_losses[r]),
            "final_loss": float(samples.final_losses[r]),
            "skipped": samples.skipped[r],
        }
        for r, path in enumerate(samples.runs)
    ]
    projections: dict[str, str] = {}
    if not args.no_project:
        for method in PROJECTIONS:
            res = _project(
                samples.projection_runs(), samples.out / f"projection_{method}", method, progress
            )
            projections[method] = res["result"]
    summary = {
        "out": str(samples.out),
        "origin": str(samples.origin),
        "origin_step": samples.origin_step,
        "origin_loss": samples.origin_loss,
        "trained": samples.skipped.count(False),
        "skipped": samples.skipped.count(True),
        "runs": runs,
        "projections": projections,
    }
    if not args.json:
        print(
            f"{len(runs)} jump-and-retrain runs from {samples.origin} at step "
            f"{samples.origin_step} (loss {samples.origin_loss:.4f}) in {samples.out} "
            f"({summary['trained']} trained, {summary['skipped']} already complete)"
        )
        for info in runs:
            print(
                f"  size {info['size']:g} seed {info['seed']}: jump {info['distance']:.3f}, "
                f"loss {info['start_loss']:.4f} -> {info['final_loss']:.4f}"
            )
        for method, path in projections.items():
            print(f"joint {method} -> {path}")
    return summary
