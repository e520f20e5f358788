"""``weightspace record``: train a model from a factory and record its trajectory."""

from __future__ import annotations

import argparse

from . import Output, _options, add_command, show_progress

__all__ = ["add_parser", "run"]

EXAMPLES = """
  weightspace record --problem digits-cnn --optimizer sgd --lr 0.1 --momentum 0.9 -o runs/sgd
  weightspace record --problem mymodule:make_problem --steps 2000 --every 20 -o runs/mine
  weightspace record --problem digits-cnn --data-seed 1 -o runs/shuffle1   # same init, new order
  weightspace record --problem digits-cnn --init-from runs/sgd:100 -o runs/clone   # clone at 100
  weightspace record --problem hf-causal-lm:my_gpt --data text.txt --seq-len 64 \\
      --optimizer adamw --lr 1e-4 --batch-size 8 -o runs/finetune   # fine-tune a saved model
"""


def add_parser(sub) -> None:
    p = add_command(sub, "record", "train a model and record its weights every k steps", EXAMPLES)
    _options.add_problem(p)
    p.add_argument(
        "--data",
        metavar="FILE",
        help="training data of an hf-*:DIR problem: text.txt, data.jsonl (text, label) or "
        "tokens.npy (other problems bring their own)",
    )
    p.add_argument(
        "--seq-len",
        type=_options.positive_int,
        default=128,
        help="tokens per sequence of the --data file (default 128)",
    )
    p.add_argument("-o", "--out", required=True, help="run directory to create")
    _options.add_overwrite(p, "a run at OUT")
    inherit = "; with --init-from: the run's"
    p.add_argument("--optimizer", help=f"a torch.optim optimizer (default sgd{inherit})")
    p.add_argument("--lr", type=float, help=f"learning rate (default 0.1{inherit})")
    p.add_argument("--momentum", type=float, help=f"SGD momentum (default 0{inherit})")
    p.add_argument("--weight-decay", type=float, help=f"default 0{inherit}")
    p.add_argument("--batch-size", type=_options.positive_int, help=f"default 64{inherit}")
    p.add_argument("--steps", type=_options.positive_int, default=500, help="optimizer updates")
    p.add_argument("--every", type=_options.positive_int, default=10, help="record every k steps")
    p.add_argument("--data-seed", type=_options.seed, default=0, help="seed of the data order")
    p.add_argument(
        "--init-from",
        type=_options.run_point,
        metavar="RUN[:STEP]",
        help="start from a recorded point (default step: the last)",
    )
    _options.add_storage_dtype(p, "default: float64 for a float64 model, else float32")
    p.set_defaults(func=run, flag_names={"dtype": "--storage-dtype", "run_dir": "--out"})


def run(args: argparse.Namespace) -> Output:
    from ..problems import load_problem
    from ..train import train
    from ..trajectory import Trajectory

    if args.init_from is not None:
        Trajectory.load(args.init_from[0])  # validate before building anything
    problem = load_problem(args.problem, seed=args.init_seed, data=args.data, seq_len=args.seq_len)
    given = {
        name: getattr(args, name)
        for name in ("optimizer", "lr", "momentum", "weight_decay", "batch_size")
        if getattr(args, name) is not None
    }
    out = train(
        problem,
        args.out,
        steps=args.steps,
        every=args.every,
        data_seed=args.data_seed,
        init_from=args.init_from,
        dtype=args.storage_dtype,
        metadata={
            "init_seed": args.init_seed,
            "problem_spec": args.problem,
            **({"data": args.data, "seq_len": args.seq_len} if args.data else {}),
        },
        overwrite=args.overwrite,
        progress=show_progress(args),
        **given,
    )
    traj = Trajectory.load(out)
    summary = {
        "snapshots": len(traj),
        "parameters": traj.n_params,
        "final_loss": float(traj.metrics["loss"][-1]) if "loss" in traj.metrics else None,
    }
    n, params = summary["snapshots"], summary["parameters"]
    line = f"recorded {n} snapshots of {params:,} parameters in {out}"
    return Output({"run": str(out)}, summary, str(out / "run.json"), [line])
