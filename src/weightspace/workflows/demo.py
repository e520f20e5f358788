"""The main job: ``weightspace demo`` on the embedded digits data.

Records SGD at momentum 0.5, 0.9 and 0.99 and Adam from one initialisation (Lorch 2016) and two
more SGD runs from the same initialisation with different data orders (Lipton 2016); projects
them jointly by PCA (with the random-walk null), PHATE and t-SNE; evaluates the loss on the PCA
plane with every trajectory on it; interpolates between the two same-initialisation solutions;
computes Hessian spectra along one run. Next to it, the embedded transformer (``text-gpt``, a
byte-level language model) trains with Adam, and its trajectory, a loss surface around it and its
top Hessian eigenvalues form the report's transformer sections. Then the report. Each stage is the
workflow its ``weightspace`` command calls.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import zoo
from .._progress import progress_note
from ..objective import Objective
from ..outputs import claim_directory
from ..render.build import side_files
from ..results import save
from ..train import train
from .curves import curves_of_runs
from .line import line_between
from .project import project_runs
from .report import report
from .spectrum import spectrum_of_run
from .surface import surface_around

__all__ = ["DemoRun", "DemoSummary", "Settings", "TextSettings", "run_demo"]


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


@dataclass(frozen=True)
class TextSettings:
    """The transformer part: one Adam run of ``steps`` steps recorded every ``every``, a
    ``grid``×``grid`` PCA-plane surface, ``top_k`` Hessian eigenvalues at the snapshots ``at``,
    both of the mean loss over the first ``windows`` training windows (None: all 256)."""

    steps: int
    every: int
    grid: int
    at: str
    top_k: int
    windows: int | None = None


TEXT_PROBLEM = "text-gpt"
TEXT_SUBJECT = "Transformer (text-gpt)"  # the words before each of its report sections
TEXT_QUICK = TextSettings(steps=30, every=5, grid=5, at="final", top_k=2, windows=64)
TEXT_FULL = TextSettings(steps=150, every=10, grid=11, at="every:15", top_k=2, windows=128)


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`run_demo` wrote.

    Attributes:
        out: the output directory.
        runs: run name -> run directory.
        artifacts: the results directory (one ``.npz`` + ``.json`` per result).
        report: the HTML page.
        timings: stage -> seconds.
        notes: what the report could not draw, and why.
    """

    out: Path
    runs: dict[str, Path]
    artifacts: Path
    report: Path
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _stages(
    cfg: Settings, problem: str, init_seed: int, out: Path, runs: dict[str, Path], progress: bool
):
    art = out / "artifacts"
    lorch = [runs[s.name] for s in RUNS[:4]]

    def objective() -> Objective:
        return Objective(zoo.problem(problem, seed=init_seed))

    def record() -> None:
        for spec in RUNS:
            train(
                zoo.problem(problem, seed=init_seed), runs[spec.name], optimizer=spec.optimizer,
                lr=spec.lr, momentum=spec.momentum, batch_size=64, steps=cfg.steps,
                every=cfg.every, data_seed=spec.data_seed,
                metadata={"label": spec.name, "init_seed": init_seed}, progress=progress,
            )  # fmt: skip

    center = runs["sgd-m0.9"]
    plane = [center, *(r for r in lorch if r != center)]

    def curves() -> None:
        data = zoo.problem(problem, seed=init_seed)
        test = Objective(data, data=data.test_data)
        result = curves_of_runs(
            test,
            list(runs.values()),
            engine={"progress": progress},
            metadata={"data": {"split": "test"}},
            progress=progress,
        )
        save(result, art / "curves-test")

    def surface() -> None:
        surf = surface_around(
            objective(), plane, directions="pca", grid=cfg.grid, engine={"progress": progress}
        )
        save(surf, art / "surface-pca")

    def interpolation() -> None:
        a, b = runs["sgd-m0.9-order1"], runs["sgd-m0.9-order2"]
        line = line_between(
            objective(), a, b, points=cfg.line_points, engine={"progress": progress}
        )
        save(line, art / "line-order1-order2")

    def spectrum() -> None:
        spec = spectrum_of_run(
            objective(),
            center,
            at=f"every:{cfg.spectrum_every}",
            top_k=3,
            density=True,
            n_probes=cfg.probes,
            n_steps=cfg.lanczos_steps,
            progress=progress,
        )
        save(spec, art / "spectrum-sgd-m0.9")

    stages: list[tuple[str, Callable[[], Any]]] = [
        ("record", record),
        ("curves", curves),
        ("pca", lambda: save(project_runs(list(runs.values()), progress=progress), art / "pca")),
        ("phate", lambda: save(project_runs(lorch, "phate", progress=progress), art / "phate")),
        ("tsne", lambda: save(project_runs(lorch, "tsne", progress=progress), art / "tsne")),
        ("surface", surface),
        ("interpolation", interpolation),
        ("spectrum", spectrum),
    ]
    return stages


def _text_stages(cfg: TextSettings, init_seed: int, run: Path, art: Path, progress: bool):
    """Record, project, surface and spectrum of the embedded transformer; every result is
    labelled with :data:`TEXT_SUBJECT` (``metadata["subject"]``) for the report."""

    def labelled(result: Any, name: str) -> None:
        meta = {**result.metadata, "subject": TEXT_SUBJECT}
        save(dataclasses.replace(result, metadata=meta), art / name)

    def objective() -> Objective:
        problem = zoo.problem(TEXT_PROBLEM, seed=init_seed)
        X, y = problem.data
        return Objective(problem, data=(X[: cfg.windows], y[: cfg.windows]))

    def record() -> None:
        train(
            zoo.problem(TEXT_PROBLEM, seed=init_seed), run, optimizer="adam", lr=0.003,
            batch_size=32, steps=cfg.steps, every=cfg.every,
            metadata={"label": f"{TEXT_PROBLEM} adam", "init_seed": init_seed},
            progress=progress,
        )  # fmt: skip

    def surface() -> None:
        surf = surface_around(
            objective(), [run], directions="pca", grid=cfg.grid, engine={"progress": progress}
        )
        labelled(surf, "surface-pca")

    def spectrum() -> None:
        spec = spectrum_of_run(objective(), run, at=cfg.at, top_k=cfg.top_k, progress=progress)
        labelled(spec, "spectrum")

    return [
        (f"{TEXT_PROBLEM} record", record),
        (f"{TEXT_PROBLEM} pca", lambda: labelled(project_runs([run], progress=progress), "pca")),
        (f"{TEXT_PROBLEM} surface", surface),
        (f"{TEXT_PROBLEM} spectrum", spectrum),
    ]


def run_demo(
    out: str | os.PathLike,
    *,
    quick: bool = False,
    problem: str | None = None,
    init_seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> DemoSummary:
    """Record, project, measure and report on the embedded problem.

    Args:
        out: output directory: ``runs/``, ``artifacts/`` and ``report.html``; the
            transformer's run in ``text-gpt/adam`` and its results in ``artifacts/text-gpt/``.
        quick: a small version (tests; well under a minute).
        problem: embedded problem name (default: digits-mlp when quick, else digits-cnn).
        init_seed: the shared initialisation seed.
        overwrite: replace an earlier demo output in ``out`` (only what weightspace wrote
            there: anything else in its folders is refused, and nothing is deleted).
        progress: say when each stage starts and show its progress (see
            :mod:`weightspace._progress`).

    Returns:
        :class:`DemoSummary`: run directories, artifacts, the report, timings per stage.
    """
    out = Path(out)
    owned = ["runs", TEXT_PROBLEM, "artifacts", "report.html"]
    owned.append(side_files(out / "report.html").name)
    manifest = claim_directory(out, owned, overwrite=overwrite, what="out")
    cfg = QUICK if quick else FULL
    problem = problem or cfg.problem
    runs = {spec.name: out / "runs" / spec.name for spec in RUNS}
    timings: dict[str, float] = {}
    stages = _stages(cfg, problem, init_seed, out, runs, progress)
    text_run = out / TEXT_PROBLEM / "adam"
    text_cfg = TEXT_QUICK if quick else TEXT_FULL
    stages += _text_stages(
        text_cfg, init_seed, text_run, out / "artifacts" / TEXT_PROBLEM, progress
    )
    title = f"weightspace demo: {problem} and {TEXT_PROBLEM}"
    stages.append(
        ("report", lambda: report(out / "report.html", artifacts=out / "artifacts", title=title))
    )
    summary = None
    for i, (name, stage) in enumerate(stages, 1):
        progress_note(f"demo: stage {i}/{len(stages)} {name}", enabled=progress)
        start = time.perf_counter()
        try:
            result = stage()
        finally:  # what the stage wrote is the demo's, even when it failed halfway
            written = (out / "runs", out / TEXT_PROBLEM, out / "artifacts")
            manifest.add(*(p for p in written if p.exists()))
        timings[name] = round(time.perf_counter() - start, 2)
        if name == "report":
            summary = result
    return DemoSummary(
        out=out,
        runs={**runs, f"{TEXT_PROBLEM}-adam": text_run},
        artifacts=out / "artifacts",
        report=summary.path,
        timings=timings,
        notes=tuple(summary.notes) + tuple(f"skipped {n}: {r}" for n, r in summary.skipped),
    )
