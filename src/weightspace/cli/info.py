"""``weightspace info RUN``: what a run holds."""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

from ..trajectory import Trajectory
from . import add_command

EXAMPLES = """
  weightspace info runs/sgd
  weightspace info runs/sgd --json
"""


def add_parser(sub) -> None:
    p = add_command(
        sub, "info", "show a run's snapshots, steps, parameters, size and metrics", EXAMPLES
    )
    p.add_argument("run", help="a run directory")
    p.set_defaults(func=run)


def summarize(traj: Trajectory) -> dict[str, Any]:
    """Facts about a run, JSON-serialisable."""
    metrics = {}
    for name, values in traj.metrics.items():
        finite = values[np.isfinite(values)]
        if finite.size:
            metrics[name] = {
                "first": float(finite[0]),
                "last": float(finite[-1]),
                "min": float(finite.min()),
                "max": float(finite.max()),
            }
    return {
        "run": str(traj.path),
        "snapshots": len(traj),
        "steps": {
            "first": int(traj.steps[0]),
            "last": int(traj.steps[-1]),
            "every": traj.recorder.get("every"),
        },
        "parameters": traj.n_params,
        "tensors": len(traj.layout),
        "storage_dtype": str(traj.storage_dtype),
        "format_version": traj.format_version,
        "buffers": None
        if traj.buffer_layout is None
        else {"tensors": len(traj.buffer_layout), "values": traj.buffer_layout.numel},
        "bytes_on_disk": traj.nbytes,
        "metrics": metrics,
        "metadata": traj.metadata,
    }


def _size(n: int) -> str:
    if n == 0:
        return "0 B"
    k = min(int(math.log(n, 1024)), 3)
    return f"{n / 1024**k:.1f} {['B', 'KiB', 'MiB', 'GiB'][k]}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    s = summarize(Trajectory.load(args.run))
    if not args.json:
        st = s["steps"]
        print(f"run        {s['run']}")
        print(
            f"snapshots  {s['snapshots']} (steps {st['first']}..{st['last']}, every {st['every']})"
        )
        print(
            f"parameters {s['parameters']:,} in {s['tensors']} tensors, "
            f"stored as {s['storage_dtype']}"
        )
        b = s["buffers"]
        if b is None:
            print("buffers    not recorded (format 1): eval-mode analyses use the problem's")
        elif b["tensors"]:
            print(f"buffers    {b['values']:,} values in {b['tensors']} tensors, at every snapshot")
        print(f"on disk    {_size(s['bytes_on_disk'])}")
        for name, m in s["metrics"].items():
            print(
                f"{name:<10} first {m['first']:.4g}  last {m['last']:.4g}  "
                f"min {m['min']:.4g}  max {m['max']:.4g}"
            )
        for k, v in s["metadata"].items():
            print(f"  {k}: {v}")
    return s
