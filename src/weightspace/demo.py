"""The main job: ``weightspace demo`` on the embedded digits CNN.

Stage 1 (this module so far): record the runs the report compares: SGD at momentum 0.5, 0.9
and 0.99 and Adam from one initialisation (Lorch 2016), and two more SGD runs from the same
initialisation with different data orders (Lipton 2016).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import zoo
from .errors import WeightspaceError
from .train import train


@dataclass(frozen=True)
class DemoRun:
    name: str
    optimizer: str
    lr: float
    momentum: float = 0.0
    data_seed: int = 0


RUNS = (
    DemoRun("sgd-m0.5", "sgd", 0.05, 0.5),
    DemoRun("sgd-m0.9", "sgd", 0.05, 0.9),
    DemoRun("sgd-m0.99", "sgd", 0.005, 0.99),
    DemoRun("adam", "adam", 0.002),
    DemoRun("sgd-m0.9-order1", "sgd", 0.05, 0.9, data_seed=1),
    DemoRun("sgd-m0.9-order2", "sgd", 0.05, 0.9, data_seed=2),
)


def run_demo(
    out: str | os.PathLike,
    *,
    quick: bool = False,
    problem: str = "digits-cnn",
    init_seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Record the demo's runs under ``out/runs``.

    Args:
        out: output directory.
        quick: few steps (for tests; well under a minute).
        problem: embedded problem name.
        init_seed: the shared initialisation seed.
        overwrite: replace an existing ``out/runs``.
        progress: progress bars.

    Returns:
        a summary: run directories and final losses.
    """
    out = Path(out)
    runs_dir = out / "runs"
    if runs_dir.exists():
        if not overwrite:
            raise WeightspaceError(
                f"-o: {str(runs_dir)!r} already exists; pass --overwrite or choose another -o"
            )
        shutil.rmtree(runs_dir)
    steps, every = (60, 5) if quick else (600, 10)
    summary: dict[str, Any] = {"out": str(out), "runs": {}}
    for spec in tqdm(RUNS, desc="demo: training", unit="run", disable=not progress):
        p = zoo.problem(problem, seed=init_seed)
        run_dir = train(
            p,
            runs_dir / spec.name,
            optimizer=spec.optimizer,
            lr=spec.lr,
            momentum=spec.momentum,
            batch_size=64,
            steps=steps,
            every=every,
            data_seed=spec.data_seed,
            metadata={"label": spec.name, "init_seed": init_seed},
        )
        summary["runs"][spec.name] = str(run_dir)
    return summary
