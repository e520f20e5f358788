"""The main job: ``weightspace demo`` on the embedded digits data.

Records SGD at momentum 0.5, 0.9 and 0.99 and Adam from one initialisation (Lorch 2016) and two
more SGD runs from the same initialisation with different data orders (Lipton 2016); projects
them jointly by PCA (with the random-walk null) and PHATE; evaluates the loss on the PCA plane
with every trajectory on it; interpolates between the two same-initialisation solutions;
computes Hessian spectra along one run; and writes the report. Each stage runs the same code
as its ``weightspace`` command.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
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


@dataclass(frozen=True)
class Settings:
    problem: str
    steps: int
    every: int
    grid: int
    line_points: int
    spectrum_every: int
    probes: int
    lanczos_steps: int


# quick: the small MLP, for tests; full: the digits CNN, a few minutes on a 2-core CPU
QUICK = Settings(
    problem="digits-mlp", steps=60, every=5, grid=9, line_points=11, spectrum_every=6,
    probes=2, lanczos_steps=20,
)  # fmt: skip
FULL = Settings(
    problem="digits-cnn", steps=600, every=10, grid=25, line_points=41, spectrum_every=30,
    probes=3, lanczos_steps=30,
)  # fmt: skip


def _command(*argv: str) -> dict[str, Any]:
    """Run one ``weightspace`` subcommand in-process and return its summary."""
    from .cli import build_parser

    args = build_parser().parse_args([*argv, "--json", "--no-progress"])
    return args.func(args)


def run_demo(
    out: str | os.PathLike,
    *,
    quick: bool = False,
    problem: str | None = None,
    init_seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Record, project, measure and report on the embedded problem.

    Args:
        out: output directory: ``runs/``, ``artifacts/`` and ``report.html``.
        quick: a small version (tests; well under a minute).
        problem: embedded problem name (default: digits-mlp when quick, else digits-cnn).
        init_seed: the shared initialisation seed.
        overwrite: replace an existing demo output in ``out``.
        progress: show a progress bar over the stages.

    Returns:
        a summary: run directories, artifacts, the report path, timings per stage.
    """
    out = Path(out)
    if (out / "runs").exists() or (out / "artifacts").exists():
        if not overwrite:
            raise WeightspaceError(
                f"-o: {str(out)!r} already holds demo output; pass --overwrite or choose another -o"
            )
        shutil.rmtree(out / "runs", ignore_errors=True)
        shutil.rmtree(out / "artifacts", ignore_errors=True)
    cfg = QUICK if quick else FULL
    problem = problem or cfg.problem
    art = out / "artifacts"
    runs = {spec.name: str(out / "runs" / spec.name) for spec in RUNS}
    lorch = [runs[s.name] for s in RUNS[:4]]
    summary: dict[str, Any] = {"out": str(out), "runs": runs, "timings": {}}

    def record() -> None:
        for spec in RUNS:
            train(
                zoo.problem(problem, seed=init_seed),
                runs[spec.name],
                optimizer=spec.optimizer,
                lr=spec.lr,
                momentum=spec.momentum,
                batch_size=64,
                steps=cfg.steps,
                every=cfg.every,
                data_seed=spec.data_seed,
                metadata={"label": spec.name, "init_seed": init_seed},
            )

    stages: list[tuple[str, Callable[[], Any]]] = [
        ("record", record),
        ("pca", lambda: _command("project", *runs.values(), "-o", str(art / "pca"))),
        (
            "phate",
            lambda: _command("project", *lorch, "--method", "phate", "-o", str(art / "phate")),
        ),
        ("tsne", lambda: _command("project", *lorch, "--method", "tsne", "-o", str(art / "tsne"))),
        (
            "surface",
            lambda: _command(
                "surface",
                "--problem",
                problem,
                runs["sgd-m0.9"],
                "--runs",
                *[r for r in lorch if r != runs["sgd-m0.9"]],
                "--directions",
                "pca",
                "--grid",
                str(cfg.grid),
                "-o",
                str(art / "surface-pca"),
            ),
        ),
        (
            "interpolation",
            lambda: _command(
                "line",
                "--problem",
                problem,
                runs["sgd-m0.9-order1"],
                "--to",
                runs["sgd-m0.9-order2"],
                "--points",
                str(cfg.line_points),
                "-o",
                str(art / "line-order1-order2"),
            ),
        ),
        (
            "spectrum",
            lambda: _command(
                "spectrum",
                "--problem",
                problem,
                runs["sgd-m0.9"],
                "--at",
                f"every:{cfg.spectrum_every}",
                "--top-k",
                "3",
                "--density",
                "--probes",
                str(cfg.probes),
                "--lanczos-steps",
                str(cfg.lanczos_steps),
                "-o",
                str(art / "spectrum-sgd-m0.9"),
            ),
        ),
        (
            "report",
            lambda: _command(
                "report",
                *runs.values(),
                "--artifacts",
                str(art),
                "-o",
                str(out / "report.html"),
                "--title",
                "weightspace demo: digits CNN",
            ),
        ),
    ]
    bar = tqdm(stages, desc="demo", unit="stage", disable=not progress)
    for name, stage in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        result = stage()
        summary["timings"][name] = round(time.perf_counter() - start, 2)
        if name == "report":
            summary["report"] = result["report"]
            summary["notes"] = result["notes"]
    summary["artifacts"] = str(art)
    return summary
