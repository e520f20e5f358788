"""``weightspace sample``: jump and retrain around an optimum (Horoi et al.), projected jointly.

Writes one run directory per (size, seed) under ``OUT``, ``OUT/sampling.json``, and, unless
``--no-project``, ``OUT/projection_pca`` and ``OUT/projection_phate`` (``projection`` results
over the original run and the samples).
"""

from __future__ import annotations

import argparse

from . import Output, _options, add_command, show_progress

__all__ = ["add_parser", "run"]

EXAMPLES = """
  weightspace sample --problem digits-mlp runs/sgd --retrain-steps 100 -o out/jumps
  weightspace sample --problem digits-cnn runs/sgd:500 --step-sizes 0.25,0.5,0.75,1.0 \\
      --seeds 0,1,2 --retrain-steps 200 -o out/jumps --json
  weightspace sample --problem digits-mlp runs/sgd --lr 0.05 --no-project -o out/jumps_lr
"""


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


def add_parser(sub) -> None:
    p = add_command(
        sub, "sample", "jump from an optimum, retrain, and project the runs jointly", EXAMPLES
    )
    _options.add_problem(p)
    p.add_argument(
        "run", type=_options.run_point, metavar="RUN[:STEP]", help="the original run (and step)"
    )
    p.add_argument("-o", "--out", required=True, help="sampling directory (resumed if present)")
    p.add_argument(
        "--step-sizes",
        "--steps-sizes",
        dest="sizes",
        type=size_list,
        default=[0.25, 0.5, 0.75, 1.0],
        help="jump sizes in filter-norm units (default 0.25,0.5,0.75,1.0)",
    )
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2], help="default 0,1,2")
    p.add_argument(
        "--retrain-steps",
        type=_options.positive_int,
        default=100,
        help="updates per jump (default 100)",
    )
    p.add_argument(
        "--at",
        type=_options.non_negative_int,
        action=_options.Deprecated,
        new="RUN:STEP",
        help=argparse.SUPPRESS,
    )
    p.add_argument("--optimizer", help="a torch.optim optimizer (default: the run's)")
    p.add_argument("--lr", type=float, help="default: the run's")
    p.add_argument("--momentum", type=float, help="default: the run's")
    p.add_argument("--weight-decay", type=float, help="default: the run's")
    p.add_argument("--batch-size", type=_options.positive_int, help="default: the run's")
    p.add_argument("--every", type=_options.positive_int, help="record every k steps")
    p.add_argument(
        "--data-seed",
        type=_options.non_negative_int,
        help="one data order for all (default: each seed)",
    )
    _options.add_storage_dtype(p, "default: the run's")
    p.add_argument("--no-project", action="store_true", help="skip the joint PCA and PHATE")
    p.set_defaults(func=run, flag_names={"sizes": "--step-sizes", "dtype": "--storage-dtype"})


def run(args: argparse.Namespace) -> Output:
    from ..errors import WeightspaceError
    from ..problems import load_problem
    from ..trajectory import Trajectory
    from ..workflows import projection_path, sample_around

    run_dir, step = args.run
    if step is not None and args.at is not None:
        raise WeightspaceError("at: give RUN:STEP, not both RUN:STEP and --at")
    Trajectory.load(run_dir)  # a missing run fails before the problem is built
    problem = load_problem(args.problem, seed=args.init_seed)
    project = () if args.no_project else ("pca", "phate")
    samples = sample_around(
        problem,
        run_dir,
        args.out,
        project=project,
        progress=show_progress(args),
        sizes=args.sizes,
        seeds=args.seeds,
        retrain_steps=args.retrain_steps,
        at=step if step is not None else args.at,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        every=args.every,
        data_seed=args.data_seed,
        dtype=args.storage_dtype,
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
    artifacts = {"samples": str(samples.out), "manifest": str(samples.out / "sampling.json")}
    for method in project:
        artifacts[f"projection_{method}"] = str(projection_path(samples.out, method)) + ".npz"
    summary = {
        "origin": str(samples.origin),
        "origin_step": samples.origin_step,
        "origin_loss": samples.origin_loss,
        "trained": samples.skipped.count(False),
        "skipped": samples.skipped.count(True),
        "runs": runs,
    }
    lines = [
        f"{len(runs)} jump-and-retrain runs from {samples.origin} at step "
        f"{samples.origin_step} (loss {samples.origin_loss:.4f}) in {samples.out} "
        f"({summary['trained']} trained, {summary['skipped']} already complete)",
        *(
            f"  size {i['size']:g} seed {i['seed']}: jump {i['distance']:.3f}, "
            f"loss {i['start_loss']:.4f} -> {i['final_loss']:.4f}"
            for i in runs
        ),
        *(f"joint {m} -> {artifacts[f'projection_{m}']}" for m in project),
    ]
    return Output(artifacts, summary, None, lines)
