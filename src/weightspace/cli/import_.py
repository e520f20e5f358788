"""``weightspace import``: build a run from existing checkpoint files."""

from __future__ import annotations

import argparse
from typing import Any

from ..checkpoints import import_checkpoints
from ..problems import load_problem
from ..store import STORAGE_DTYPES
from ..trajectory import Trajectory
from . import add_command

EXAMPLES = """
  weightspace import 'ckpt/epoch_*.pt' -o runs/imported
  weightspace import ckpt/ -o runs/imported --problem mymodule:make_problem
  weightspace import a.safetensors b.safetensors -o runs/ab --steps order
"""


def add_parser(sub) -> None:
    p = add_command(
        sub, "import", "import torch.save state dicts or safetensors files as a run", EXAMPLES
    )
    p.add_argument("paths", nargs="+", help="files, directories or quoted glob patterns")
    p.add_argument("-o", "--out", required=True, help="run directory to create")
    p.add_argument(
        "--problem",
        help="the model the checkpoints belong to (defines the layout and the buffers); "
        "without it every floating tensor except BatchNorm statistics is a parameter",
    )
    p.add_argument(
        "--steps",
        choices=("names", "order"),
        default="names",
        help="steps from the last number in each file name, or 0, 1, 2, ...",
    )
    p.add_argument(
        "--dtype",
        choices=STORAGE_DTYPES,
        help="parameter storage dtype (default: float64 for float64 checkpoints, else float32)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = load_problem(args.problem).model if args.problem else None
    out = import_checkpoints(args.paths, args.out, model=model, steps=args.steps, dtype=args.dtype)
    traj = Trajectory.load(out)
    summary = {
        "run": str(out),
        "snapshots": len(traj),
        "parameters": traj.n_params,
        "steps": [int(s) for s in traj.steps],
    }
    if not args.json:
        print(f"imported {len(traj)} checkpoints ({traj.n_params:,} parameters) into {out}")
    return summary
