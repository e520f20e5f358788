"""``weightspace record``: train a model from a factory and record its trajectory."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import WeightspaceError
from ..problems import load_problem
from ..store import STORAGE_DTYPES
from ..train import OPTIMIZERS, train
from ..trajectory import Trajectory
from . import add_command, show_progress

EXAMPLES = """
  weightspace record --problem digits-cnn --optimizer sgd --lr 0.1 --momentum 0.9 -o runs/sgd
  weightspace record --problem mymodule:make_problem --steps 2000 --every 20 -o runs/mine
  weightspace record --problem digits-cnn --data-seed 1 -o runs/shuffle1   # same init, new order
  weightspace record --problem digits-cnn --init-from runs/sgd:100 -o runs/clone   # clone at 100
"""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_problem_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--problem",
        required=True,
        help="embedded name (digits-mlp, digits-cnn, digits-cnn-bn, mnist1d-mlp), "
        "module:function or path/to/file.py:function returning a weightspace.Problem",
    )


def add_parser(sub) -> None:
    p = add_command(sub, "record", "train a model and record its weights every k steps", EXAMPLES)
    add_problem_option(p)
    p.add_argument("-o", "--out", required=True, help="run directory to create")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--steps", type=positive_int, default=500, help="optimizer updates")
    p.add_argument("--every", type=positive_int, default=10, help="record every k steps")
    p.add_argument("--init-seed", type=int, default=0, help="seed of the initialisation")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the data order")
    p.add_argument(
        "--init-from",
        metavar="RUN[:STEP]",
        help="start from a recorded point (default step: the last)",
    )
    p.add_argument(
        "--dtype",
        choices=STORAGE_DTYPES,
        help="snapshot storage dtype (default: float64 for a float64 model, else float32; "
        "float16 halves the disk)",
    )
    p.set_defaults(func=run)


def parse_run_step(text: str) -> tuple[str, int | None]:
    """``RUN`` or ``RUN:STEP``."""
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit():
        return head, int(tail)
    if sep and not tail.isdigit() and "/" not in tail:
        raise WeightspaceError(f"--init-from: expected RUN or RUN:STEP, got {text!r}")
    return text, None


def run(args: argparse.Namespace) -> dict[str, Any]:
    init_from = parse_run_step(args.init_from) if args.init_from else None
    if init_from is not None:
        Trajectory.load(init_from[0])  # validate before building anything
    problem = load_problem(args.problem, seed=args.init_seed)
    out = train(
        problem,
        args.out,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        steps=args.steps,
        every=args.every,
        data_seed=args.data_seed,
        init_from=init_from,
        dtype=args.dtype,
        metadata={"init_seed": args.init_seed, "problem_spec": args.problem},
        progress=show_progress(args),
    )
    traj = Trajectory.load(out)
    summary = {
        "run": str(out),
        "snapshots": len(traj),
        "parameters": traj.n_params,
        "final_loss": float(traj.metrics["loss"][-1]) if "loss" in traj.metrics else None,
    }
    if not args.json:
        print(
            f"recorded {summary['snapshots']} snapshots of {summary['parameters']:,} "
            f"parameters in {out}"
        )
    return summary
