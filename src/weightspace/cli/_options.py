"""Options shared by the commands, each with one meaning everywhere, and their conversion into
the library's arguments.

* ``--problem SPEC`` (+ ``--init-seed``): the model, loss and data;
* the objective: ``--data train|test|FILE`` (+ ``--seq-len`` for a file), ``--batch-size``,
  ``--mode eval|train``, ``--dtype`` (the compute dtype, in every command), ``--device``;
* the engine: ``--compile``, ``--precision``, ``--channels-last``, ``--points-per-pass``,
  ``--workers``;
* points of runs: ``RUN`` or ``RUN:STEP`` wherever a run's snapshot is meant, and ``--at
  final|all|every:K|STEP[,STEP...]`` wherever several are;
* ``--storage-dtype``: how snapshots are stored (record, import, sample).

Nothing here imports torch: the library is imported when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

STORAGE_DTYPES = ("float16", "float32", "float64")


# ---------------------------------------------------------------------------- value types
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def seed(text: str) -> int:
    """A seed the generators take: an integer in [0, 2**64)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**64), got {text}")
    return value


def run_point(text: str) -> tuple[str, int | None]:
    """``RUN`` or ``RUN:STEP``."""
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit():
        return head, int(tail)
    return text, None


def point_arg(point: tuple[str, int | None]) -> Any:
    """The library's form of a point: the run alone, or ``(run, step)``."""
    run, step = point
    return run if step is None else (run, step)


class Deprecated(argparse.Action):
    """An old spelling: warns once on stderr and stores into the new option's ``dest``."""

    def __init__(self, option_strings, dest, new: str, value: Any = None, **kwargs) -> None:
        self.new, self.value = new, value
        nargs = 0 if value is not None else None
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(
            f"weightspace: warning: {option_string} is deprecated and will be removed; use "
            f"{self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, self.value if self.value is not None else values)


# ---------------------------------------------------------------------------- option groups
def add_problem(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument(
        "--problem",
        required=required,
        help="embedded name (digits-mlp, digits-cnn, digits-cnn-bn, mnist1d-mlp, text-gpt), "
        "module:function or path/to/file.py:function returning a weightspace.Problem, or a "
        "save_pretrained folder with --data FILE: hf-causal-lm:DIR, hf-masked-lm:DIR, "
        "hf-sequence-classification:DIR",
    )
    p.add_argument("--init-seed", type=seed, default=0, help="seed of the model's initialisation")


def add_objective(p: argparse.ArgumentParser) -> None:
    add_problem(p)
    g = p.add_argument_group("objective")
    g.add_argument(
        "--data",
        default="train",
        metavar="train|test|FILE",
        help="evaluation data: the problem's train or test split, or, with --problem hf-*:DIR, "
        "a file: text.txt, data.jsonl (text, label) or tokens.npy (default train)",
    )
    g.add_argument(
        "--seq-len",
        type=positive_int,
        default=128,
        help="tokens per sequence of a --data file (default 128)",
    )
    g.add_argument("--batch-size", type=positive_int, help="evaluation batch size (memory)")
    g.add_argument("--mode", choices=("eval", "train"), default="eval", help="model mode")
    g.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help="compute dtype (default: the model's; float64 for accuracy)",
    )
    g.add_argument(
        "--device", help="cpu, cuda or cuda:N (default: CUDA when available, else the CPU)"
    )


def add_engine(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation engine")
    g.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch.compile the point function (auto: when the grid repays it)",
    )
    g.add_argument("--precision", choices=("full", "bf16"), default="full")
    g.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="channels-last image inputs (auto: on for images on the CPU)",
    )
    g.add_argument(
        "--points-per-pass", type=positive_int, default=1, help="grid points per forward (vmap)"
    )
    g.add_argument(
        "--workers",
        type=positive_int,
        help="points evaluated at once on the CPU, each by a single-threaded worker on a copy "
        "of the model (default: one per thread when they prove faster on the first points; "
        "1: one point at a time on all threads)",
    )


def add_point_state(p: argparse.ArgumentParser, buffers_default: str) -> None:
    """The buffers the points read, and resuming from the partial results (surface, line)."""
    p.add_argument(
        "--recompute-bn",
        action="store_true",
        help="re-estimate BatchNorm statistics at every point (one pass over the training "
        f"data per point; default: {buffers_default})",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")


def add_overwrite(p: argparse.ArgumentParser, what: str = "an existing result at OUT") -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} (only what weightspace wrote; anything else is refused)",
    )


def add_directions(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=seed, default=0, help="seed of random directions")
    p.add_argument(
        "--normalization",
        choices=("filter", "layer", "none"),
        help="direction normalisation (default: filter for random, none otherwise)",
    )
    p.add_argument(
        "--ignore", choices=("biasbn", "none"), default="biasbn", help="1-D tensors: zero or keep"
    )


def add_storage_dtype(p: argparse.ArgumentParser, default_help: str) -> None:
    p.add_argument(
        "--storage-dtype",
        choices=STORAGE_DTYPES,
        help=f"snapshot storage dtype ({default_help}; float16 halves the disk)",
    )
    p.add_argument(
        "--dtype",
        dest="storage_dtype",
        choices=STORAGE_DTYPES,
        action=Deprecated,
        new="--storage-dtype",
        help=argparse.SUPPRESS,
    )


# ---------------------------------------------------------------------------- conversions
def objective(args: argparse.Namespace):
    """``--problem`` and the objective options -> an Objective on the chosen device."""
    import torch

    from .. import parallel
    from ..errors import WeightspaceError
    from ..objective import Objective
    from ..problems import load_problem

    try:
        device = torch.device(args.device) if args.device else parallel.local_device()
    except RuntimeError:
        raise WeightspaceError(
            f"device: expected cpu, cuda or cuda:N, got {args.device!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WeightspaceError(f"device: {args.device!r} asked for, but CUDA is not available")
    parallel.init_from_env(device)
    args.device_used = str(device)  # said in the command's output
    split = args.data in ("train", "test")
    problem = load_problem(
        args.problem,
        seed=args.init_seed,
        data=None if split else args.data,
        seq_len=getattr(args, "seq_len", 128),
    )
    problem.model.to(device)
    data = None
    if args.data == "test":
        if problem.test_data is None:
            raise WeightspaceError(f"data: problem {args.problem!r} has no test data")
        data = problem.test_data
    return Objective(problem, args.mode, data=data, batch_size=args.batch_size, device=device)


def compute_dtype(args: argparse.Namespace):
    import torch

    return None if args.dtype is None else getattr(torch, args.dtype)


def engine(args: argparse.Namespace, progress: bool):
    from ..landscape import EngineOptions

    return EngineOptions(
        compile=args.compile,
        precision=args.precision,
        channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
        points_per_pass=args.points_per_pass,
        workers=args.workers,
        progress=progress,
    )


def problem_record(args: argparse.Namespace, obj: Any) -> dict[str, Any]:
    """What a result records about how the CLI built its objective."""
    return {
        "problem_spec": args.problem,
        "init_seed": args.init_seed,
        "data": {"split": args.data, "n_samples": obj.n_samples, "batch_size": args.batch_size},
    }


def result_base(args: argparse.Namespace):
    """``-o`` without a ``.npz``/``.json`` suffix, checked before any work: an existing
    result needs ``--overwrite``, and only a weightspace result is replaced."""
    from pathlib import Path

    from ..outputs import check_result_target

    base = Path(args.out)
    base = base.with_suffix("") if base.suffix in (".npz", ".json") else base
    resume = getattr(args, "resume", False)
    check_result_target(base, overwrite=args.overwrite or resume, what="out")
    return base
