"""``weightspace info RUN``: what a run holds."""

from __future__ import annotations

import argparse
import math
from typing import Any

from . import Output, add_command

__all__ = ["add_parser", "run"]

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


def summarize(traj) -> dict[str, Any]:
    """Facts about a run, JSON-serialisable."""
    import numpy as np

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


def run(args: argparse.Namespace) -> Output:
    from ..trajectory import Trajectory

    s = summarize(Trajectory.load(args.run))
    st = s["steps"]
    lines = [
        f"run        {s['run']}",
        f"snapshots  {s['snapshots']} (steps {st['first']}..{st['last']}, every {st['every']})",
        f"parameters {s['parameters']:,} in {s['tensors']} tensors, stored as {s['storage_dtype']}",
    ]
    b = s["buffers"]
    if b is None:
        lines.append("buffers    not recorded (format 1): eval-mode analyses use the problem's")
    elif b["tensors"]:
        lines.append(
            f"buffers    {b['values']:,} values in {b['tensors']} tensors, at every snapshot"
        )
    lines.append(f"on disk    {_size(s['bytes_on_disk'])}")
    for name, m in s["metrics"].items():
        lines.append(
            f"{name:<10} first {m['first']:.4g}  last {m['last']:.4g}  "
            f"min {m['min']:.4g}  max {m['max']:.4g}"
        )
    lines += [f"  {k}: {v}" for k, v in s["metadata"].items()]
    return Output({"run": s["run"]}, s, s["run"] + "/run.json", lines)
