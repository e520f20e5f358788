"""Jump and retrain (Horoi et al. 2021/22): sample the neighbourhood of an optimum by training.

From a recorded point ``theta*`` of a run (by default its last snapshot), every pair of a jump
size ``s`` and a seed draws a filter-normalised Gaussian direction ``d`` (Li et al. 2018:
every filter of ``d`` has the norm of the matching filter of ``theta*``, 1-D tensors zeroed),
starts at ``theta* + s·d`` and retrains for ``retrain_steps`` steps with recording. ``s`` is
therefore in units of the weights' own filter norms: ``s = 1`` moves every filter by its own
length. The direction depends on the seed only, so the runs of one seed lie on one ray.

The runs go to ``OUT/jump_<size>_seed<seed>/``, ordinary run directories; ``OUT/sampling.json``
holds the settings and each finished run's numbers. Rerunning with the same settings skips the
finished runs and redoes the others (new sizes or seeds add runs); a run counts as finished
only once all its snapshots are on disk and its entry is written, so a crash never leaves a
half-counted run.

Example::

    problem = ws.zoo.problem("digits-mlp")
    samples = jump_and_retrain(problem, "runs/sgd", "out/jumps", seeds=(0, 1))
    pca = ws.PCA(2).fit(samples.trajectories())   # the original run first
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._lock import DirectoryLock
from ._progress import progress_bar
from ._sampling_plan import (
    DEFAULT_SIZES,
    MANIFEST,
    check_seeds,
    check_sizes,
    is_complete,
    open_manifest,
    plan,
)
from .buffers import at_snapshot
from .checks import non_negative_int, one_of, positive_int
from .directions import random_directions
from .errors import WeightspaceError
from .objective import Objective
from .outputs import check_run_target
from .problems import Problem
from .store import LOCK, STORAGE_DTYPES, write_json
from .train import StartPoint, train
from .trajectory import Trajectory

__all__ = ["JumpSamples", "jump_and_retrain", "run_name"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JumpSamples:
    """The runs of one jump-and-retrain sampling, ``R = len(sizes) · len(seeds)`` of them.

    Attributes:
        out: the sampling directory.
        origin: the original run's directory.
        origin_step: the step of ``theta*`` in the original run.
        sizes: ``(S,)`` jump sizes, in units of the filter norms of ``theta*``.
        seeds: ``(K,)`` direction seeds.
        runs: ``(R,)`` run directories, size-major (all seeds of ``sizes[0]`` first).
        run_sizes: ``(R,)`` each run's jump size.
        run_seeds: ``(R,)`` each run's seed.
        distances: ``(R,)`` ``||s·d||``, the jump's length in parameter space.
        direction_norms: ``(R,)`` ``||d||``.
        start_losses: ``(R,)`` mean training loss right after the jump (eval mode).
        final_losses: ``(R,)`` mean training loss after retraining (eval mode).
        origin_loss: mean training loss at ``theta*``.
        skipped: ``(R,)`` whether a run was already complete and not retrained.
        settings: every setting (origin, sizes, seeds, optimizer, lr, ...).
    """

    out: Path
    origin: Path
    origin_step: int
    sizes: tuple[float, ...]
    seeds: tuple[int, ...]
    runs: tuple[Path, ...]
    run_sizes: np.ndarray
    run_seeds: np.ndarray
    distances: np.ndarray
    direction_norms: np.ndarray
    start_losses: np.ndarray
    final_losses: np.ndarray
    origin_loss: float
    skipped: tuple[bool, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def projection_runs(self) -> list[Path]:
        """Run directories for a joint projection: the original run first, then the samples."""
        return [self.origin, *self.runs]

    def trajectories(self) -> list[Trajectory]:
        """:meth:`projection_runs` loaded, for ``ws.PCA().fit(...)`` or ``ws.PHATE().fit(...)``."""
        return [Trajectory.load(p) for p in self.projection_runs()]


def run_name(size: float, seed: int) -> str:
    """The directory name of one sample, e.g. ``jump_0.25_seed0``."""
    return f"jump_{float(size)!r}_seed{int(seed)}"


# ---------------------------------------------------------------------------- sampling
def jump_and_retrain(
    problem: Problem,
    run: str | os.PathLike,
    out: str | os.PathLike,
    *,
    sizes: Sequence[float] = DEFAULT_SIZES,
    seeds: Sequence[int] = (0, 1, 2),
    retrain_steps: int = 100,
    at: int | None = None,
    data_seed: int | None = None,
    dtype: str | None = None,
    progress: bool = False,
    **retrain: Any,
) -> JumpSamples:
    """Jump from an optimum along filter-normalised random directions and retrain.

    Args:
        problem: the model, loss and training data of the original run (its layout must
            match the run's). Its model's weights and buffers are overwritten: every
            retraining starts from ``theta* + s·d`` with the buffers (BatchNorm statistics)
            recorded at ``theta*`` (the model's own for a run that recorded none).
        run: the original run.
        out: the sampling directory (created; an existing one with the same settings is
            resumed, and may gain new sizes or seeds: only their runs are trained).
        sizes: ``(S,)`` jump sizes ``s`` in units of the filter norms of ``theta*``.
        seeds: ``(K,)`` distinct non-negative seeds; seed ``k`` draws the direction (the same
            for every size) and, unless ``data_seed`` is given, the data order.
        retrain_steps: optimizer updates after each jump; a multiple of ``every``.
        at: the step of ``theta*`` in ``run`` (default: its last snapshot).
        data_seed: one data-order seed for all runs (default: each run's own seed).
        dtype: snapshot storage dtype (default: the original run's).
        progress: show a progress bar over the runs.
        **retrain: the retraining's ``optimizer``, ``lr``, ``momentum``, ``weight_decay``,
            ``batch_size``, ``every``; each defaults to the original run's (``run.json``).

    Returns:
        :class:`JumpSamples`.

    Raises:
        WeightspaceError: bad sizes, seeds or steps, a missing run or step, a problem whose
        layout does not match the run, or an ``out`` holding different settings. All are
        checked before any training.
    """
    sizes, seeds = check_sizes(sizes), check_seeds(seeds)
    positive_int(retrain_steps, "retrain_steps")
    for name, value in (("at", at), ("data_seed", data_seed)):
        if value is not None:
            non_negative_int(value, name)
    if not isinstance(problem, Problem):
        raise WeightspaceError(f"problem: expected a weightspace Problem, got {problem!r}")
    traj = Trajectory.load(run)
    i, settings = plan(problem, traj, at, sizes, seeds, retrain_steps, retrain)
    settings.update(data_seed=data_seed, dtype=dtype or str(traj.storage_dtype))
    one_of(settings["dtype"], STORAGE_DTYPES, "dtype")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WeightspaceError(f"out: {str(out)!r} is a file; give a directory")
    out.mkdir(parents=True, exist_ok=True)
    with DirectoryLock(out / LOCK, f"out {str(out)!r}"):  # one sampler per directory
        manifest = open_manifest(out, settings)
        origin = _Origin.of(problem, traj, i)
        step_every, origin_step = settings["every"], settings["origin_step"]
        expected = list(range(origin_step, origin_step + retrain_steps + 1, step_every))
        pairs = [(s, k) for s in sizes for k in seeds]
        records, skipped = [], []
        bar = progress_bar(pairs, enabled=progress, desc="jump and retrain", unit="run", leave=True)
        for size, seed in bar:
            name = run_name(size, seed)
            entry = manifest["runs"].get(name)
            done = is_complete(out / name, entry, expected)
            if not done:
                entry = _sample(problem, origin, out, manifest, size, seed, settings)
            records.append(entry)
            skipped.append(done)
    return _samples(out, traj, origin, pairs, records, skipped, settings)


@dataclass(frozen=True)
class _Origin:
    """``theta*``, its buffers and its loss; the base objective and the run it belongs to."""

    traj: Trajectory
    index: int
    theta: torch.Tensor
    buffers: dict[str, torch.Tensor]
    objective: Objective
    loss: float
    directions: dict[int, tuple[torch.Tensor, float]]

    @classmethod
    def of(cls, problem: Problem, traj: Trajectory, i: int) -> _Origin:
        base = Objective(problem, mode="eval")
        buffers = traj.buffers(i)
        if buffers is None:  # a run without recorded buffers: the model's own, as before
            buffers = {n: b.detach().clone() for n, b in problem.model.named_buffers()}
        theta = traj.theta(i, dtype=torch.float64)
        dtype = next(problem.model.parameters()).dtype
        with torch.no_grad():
            loss = float(at_snapshot(base, traj, i)(theta.to(dtype)))
        return cls(traj, i, theta, buffers, base, loss, {})

    def direction(self, seed: int) -> tuple[torch.Tensor, float]:
        """The seed's filter-normalised direction (one per seed, shared by every size)."""
        if seed not in self.directions:
            d = random_directions(
                self.theta, self.traj.layout, 1, normalization="filter", seed=seed
            )[0]
            self.directions[seed] = (d, float(torch.linalg.vector_norm(d)))
        return self.directions[seed]


def _sample(
    problem: Problem,
    origin: _Origin,
    out: Path,
    manifest: dict[str, Any],
    size: float,
    seed: int,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Train one jump (replacing an incomplete one) and record it in the manifest."""
    name = run_name(size, seed)
    run_dir = out / name
    manifest["runs"].pop(name, None)
    write_json(out / MANIFEST, manifest)
    if run_dir.is_symlink():
        raise WeightspaceError(
            f"out: {str(run_dir)!r} is a symbolic link; the sampling writes its own runs "
            "there; remove the link"
        )
    if run_dir.exists():
        log.info("%s is incomplete; retraining it", name)
        check_run_target(run_dir, overwrite=True, what="out")  # a run of ours, nothing else
    d, d_norm = origin.direction(seed)
    facts = {
        "origin": settings["origin"],
        "origin_step": settings["origin_step"],
        "size": size,
        "seed": seed,
        "direction_norm": d_norm,
        "distance": size * d_norm,
        "normalization": "filter",
        "ignore": "biasbn",
    }
    data_seed = settings["data_seed"]
    train(
        problem,
        run_dir,
        start=StartPoint(origin.theta + size * d, origin.buffers, settings["origin_step"]),
        **{k: settings[k] for k in ("optimizer", "lr", "momentum", "weight_decay", "every")},
        batch_size=settings["batch_size"],
        steps=settings["retrain_steps"],
        data_seed=seed if data_seed is None else data_seed,
        dtype=settings["dtype"],
        metadata={"label": f"jump {size:g} seed {seed}", "jump": facts},
    )
    done = Trajectory.load(run_dir)
    dtype = next(problem.model.parameters()).dtype
    with torch.no_grad():
        start_loss = float(at_snapshot(origin.objective, done, 0)(done.theta(0, dtype=dtype)))
        final_loss = float(at_snapshot(origin.objective, done, -1)(done.theta(-1, dtype=dtype)))
    entry = {**facts, "start_loss": start_loss, "final_loss": final_loss}
    manifest["runs"][name] = entry
    write_json(out / MANIFEST, manifest)
    return entry


def _samples(
    out: Path,
    traj: Trajectory,
    origin: _Origin,
    pairs: list[tuple[float, int]],
    records: list[dict[str, Any]],
    skipped: list[bool],
    settings: dict[str, Any],
) -> JumpSamples:
    def column(key: str, dtype=np.float64) -> np.ndarray:
        return np.array([r[key] for r in records], dtype=dtype)

    return JumpSamples(
        out=out,
        origin=traj.path,
        origin_step=settings["origin_step"],
        sizes=tuple(settings["sizes"]),
        seeds=tuple(settings["seeds"]),
        runs=tuple(out / run_name(s, k) for s, k in pairs),
        run_sizes=column("size"),
        run_seeds=column("seed", np.int64),
        distances=column("distance"),
        direction_norms=column("direction_norm"),
        start_losses=column("start_loss"),
        final_losses=column("final_loss"),
        origin_loss=origin.loss,
        skipped=tuple(skipped),
        settings=settings,
    )
