"""``weightspace import``: build a run from existing checkpoint files."""

from __future__ import annotations

import argparse

from . import Output, _options, add_command

__all__ = ["add_parser", "run"]

EXAMPLES = """
  weightspace import 'ckpt/epoch_*.pt' -o runs/imported
  weightspace import ckpt/ -o runs/imported --problem mymodule:make_problem
  weightspace import a.safetensors b.safetensors -o runs/ab --steps order
  weightspace import 'lightning_logs/version_0/checkpoints/*.ckpt' -o runs/lit --problem m.py:make
  weightspace import trainer_out/ -o runs/hf --problem m.py:make   # its checkpoint-N/ folders
"""


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "import",
        "import checkpoints (torch.save, Lightning, safetensors, Hugging Face, distributed) "
        "as a run",
        EXAMPLES,
    )
    p.add_argument(
        "paths",
        nargs="+",
        help="files, checkpoint folders (Hugging Face, torch.distributed.checkpoint), "
        "directories of them, or quoted glob patterns",
    )
    p.add_argument("-o", "--out", required=True, help="run directory to create")
    _options.add_overwrite(p, "a run at OUT")
    _options.add_problem(p, required=False)
    p.add_argument(
        "--steps",
        choices=("names", "order"),
        default="names",
        help="steps from the last number in each file name, or 0, 1, 2, ...",
    )
    _options.add_storage_dtype(p, "default: float64 for float64 checkpoints, else float32")
    p.set_defaults(func=run, flag_names={"dtype": "--storage-dtype", "run_dir": "--out"})


def run(args: argparse.Namespace) -> Output:
    from ..checkpoints import import_checkpoints
    from ..problems import load_model
    from ..trajectory import Trajectory

    model = load_model(args.problem, seed=args.init_seed) if args.problem else None
    out = import_checkpoints(
        args.paths,
        args.out,
        model=model,
        steps=args.steps,
        dtype=args.storage_dtype,
        overwrite=args.overwrite,
    )
    traj = Trajectory.load(out)
    summary = {
        "snapshots": len(traj),
        "parameters": traj.n_params,
        "steps": [int(s) for s in traj.steps],
        "buffers": traj.records_buffers,
    }
    line = f"imported {len(traj)} checkpoints ({traj.n_params:,} parameters) into {out}"
    return Output({"run": str(out)}, summary, str(out / "run.json"), [line])
