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

Example:
    >>> problem = ws.zoo.problem("digits-mlp")                                # doctest: +SKIP
    >>> samples = jump_and_retrain(problem, "runs/sgd", "out/jumps", seeds=(0, 1))  # doctest: +SKIP
    >>> pca = ws.PCA(2).fit(samples.trajectories())   # the original run first  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .buffers import at_snapshot
from .directions import random_directions
from .errors import WeightspaceError
from .layout import ParamLayout
from .objective import Objective, Problem
from .optimizers import canonical_name
from .store import STORAGE_DTYPES, list_snapshots, write_json
from .train import OPTIMIZERS, OptimizerName, _validate, train
from .trajectory import Trajectory

log = logging.getLogger(__name__)

MANIFEST = "sampling.json"
GROWABLE = ("sizes", "seeds")  # settings an existing sampling directory can gain values of
DEFAULT_SIZES = (0.25, 0.5, 0.75, 1.0)  # Horoi et al.'s jump sizes
# run.json keys of the origin's training settings, and what to use when a run lacks them
TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": None,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "batch_size": 64,
}


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


# ---------------------------------------------------------------------------- validation
def _check_sizes(sizes: Sequence[float]) -> tuple[float, ...]:
    try:
        out = tuple(float(s) for s in sizes)
    except (TypeError, ValueError):
        raise WeightspaceError(
            f"sizes: expected a sequence of positive numbers, got {sizes!r}"
        ) from None
    if not out or any(not (math.isfinite(s) and s > 0) for s in out):
        raise WeightspaceError(
            f"sizes: expected one or more positive finite numbers, got {list(out)}; "
            "e.g. 0.25,0.5,0.75,1.0"
        )
    if len(set(out)) != len(out):
        raise WeightspaceError(f"sizes: expected distinct values, got {list(out)}")
    return out


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    if isinstance(seeds, np.ndarray) and seeds.ndim == 1:
        seeds = seeds.tolist()
    ok = isinstance(seeds, Sequence) and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds
    )
    if not ok or not seeds:
        raise WeightspaceError(
            f"seeds: expected one or more non-negative integers, got {seeds!r}; e.g. 0,1,2"
        )
    out = tuple(int(s) for s in seeds)
    if len(set(out)) != len(out):
        raise WeightspaceError(f"seeds: expected distinct seeds, got {list(out)}")
    return out


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        kind = "a positive integer" if low == 1 else "a non-negative integer"
        raise WeightspaceError(f"{name}: expected {kind}, got {value!r}")


def _training_settings(traj: Trajectory, overrides: dict[str, Any]) -> dict[str, Any]:
    """The origin run's optimizer settings (``run.json``), each overridable."""
    out: dict[str, Any] = {}
    for key, fallback in TRAIN_DEFAULTS.items():
        value = overrides[key] if overrides[key] is not None else traj.metadata.get(key)
        if value is None and fallback is None:
            raise WeightspaceError(
                f"{key}: run {str(traj.path)!r} does not record its {key}; pass {key}= "
                f"(--{key.replace('_', '-')})"
            )
        out[key] = fallback if value is None else value
    every = overrides["every"] if overrides["every"] is not None else traj.recorder.get("every")
    out["every"] = int(every) if every is not None else 1
    out["optimizer"] = canonical_name(out["optimizer"]) or out["optimizer"]
    if out["optimizer"] not in OPTIMIZERS:
        raise WeightspaceError(
            f"optimizer: the run was trained with {out['optimizer']!r}, which weightspace cannot "
            f"build; pass optimizer= (--optimizer) one of {', '.join(OPTIMIZERS)}"
        )
    out["lr"], out["momentum"] = float(out["lr"]), float(out["momentum"])
    out["weight_decay"], out["batch_size"] = float(out["weight_decay"]), int(out["batch_size"])
    _validate(**{k: out[k] for k in ("lr", "momentum", "weight_decay", "batch_size", "every")})
    return out


def _open_manifest(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Read (same settings) or create ``OUT/sampling.json``. New sizes or seeds may be added
    to an existing directory (each run depends only on its own size and seed); the manifest
    then lists all of them."""
    path = out / MANIFEST
    if path.exists():
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise WeightspaceError(f"out: {str(path)!r} is unreadable ({e}); remove it") from None
        old = manifest.get("settings", {})
        for key, value in settings.items():
            if key not in GROWABLE and old.get(key) != value:
                raise WeightspaceError(
                    f"out: {str(out)!r} holds samples with {key}={old.get(key)!r}, got "
                    f"{value!r}; rerun with the same settings to resume (sizes and seeds may be "
                    "added), or choose a new directory"
                )
        for key in GROWABLE:
            known = list(old.get(key, []))
            old[key] = known + [v for v in settings[key] if v not in known]
        return manifest
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WeightspaceError(
            f"out: {str(out)!r} exists and is not a sampling directory; choose a new directory"
        )
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"kind": "jump_and_retrain", "settings": settings, "runs": {}}
    write_json(path, manifest)
    return manifest


def _is_complete(run_dir: Path, entry: dict | None, expected: list[int]) -> bool:
    if entry is None or not (run_dir / "run.json").exists():
        return False
    if [s for s, _ in list_snapshots(run_dir)] != expected:
        return False
    try:
        Trajectory.load(run_dir)  # every snapshot's header and size
    except WeightspaceError:
        return False
    return True


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
    optimizer: OptimizerName | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
    batch_size: int | None = None,
    every: int | None = None,
    data_seed: int | None = None,
    dtype: str | None = None,
    progress: bool = False,
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
        optimizer, lr, momentum, weight_decay, batch_size, every: the retraining's settings;
            None takes the original run's (``run.json``).
        data_seed: one data-order seed for all runs (default: each run's own seed).
        dtype: snapshot storage dtype (default: the original run's).
        progress: show a progress bar over the runs.

    Returns:
        :class:`JumpSamples`.

    Raises:
        WeightspaceError: bad sizes, seeds or steps, a missing run or step, a problem whose
        layout does not match the run, or an ``out`` holding different settings. All are
        checked before any training.
    """
    sizes, seeds = _check_sizes(sizes), _check_seeds(seeds)
    _check_int("retrain_steps", retrain_steps, 1)
    if at is not None:
        _check_int("at", at, 0)
    if data_seed is not None:
        _check_int("data_seed", data_seed, 0)
    if not isinstance(problem, Problem):
        raise WeightspaceError(f"problem: expected a weightspace Problem, got {problem!r}")
    traj = Trajectory.load(run)
    try:
        i = len(traj) - 1 if at is None else traj.index_of(at)
    except WeightspaceError as e:
        raise WeightspaceError(f"at (--at): {e}") from None
    origin_step = int(traj.steps[i])
    layout = ParamLayout.from_module(problem.model)
    what = f"problem (--problem) {problem.name!r} (here) against run {str(run)!r} (there)"
    layout.check_compatible(traj.layout, what=what)
    if traj.metadata.get("problem") not in (None, problem.name):
        log.warning(
            "run %s was trained on %r; retraining on %r",
            run,
            traj.metadata["problem"],
            problem.name,
        )
    opts = dict(optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay)
    train_opts = _training_settings(traj, {**opts, "batch_size": batch_size, "every": every})
    step_every = train_opts["every"]
    if origin_step % step_every or retrain_steps % step_every:
        raise WeightspaceError(
            f"every: the origin step {origin_step} and retrain_steps {retrain_steps} must be "
            f"multiples of every={step_every} so that the jump and the end are recorded; "
            "choose every (--every) dividing both"
        )
    dtype = dtype or str(traj.storage_dtype)
    if dtype not in STORAGE_DTYPES:
        raise WeightspaceError(f"dtype: expected one of {STORAGE_DTYPES}, got {dtype!r}")
    out = Path(out)
    settings = {
        "origin": str(traj.path.resolve()),
        "origin_step": origin_step,
        "problem": problem.name,
        "sizes": list(sizes),
        "seeds": list(seeds),
        "retrain_steps": int(retrain_steps),
        **train_opts,
        "data_seed": data_seed,
        "dtype": dtype,
        "normalization": "filter",
        "ignore": "biasbn",
    }
    manifest = _open_manifest(out, settings)

    param = next(problem.model.parameters())
    base = Objective(problem, mode="eval")
    buffers = traj.buffers(i)
    if buffers is None:  # a run without recorded buffers: the model's own, as before
        buffers = {n: b.detach().clone() for n, b in problem.model.named_buffers()}
    theta_star = traj.theta(i, dtype=torch.float64)
    with torch.no_grad():
        origin_loss = float(at_snapshot(base, traj, i)(theta_star.to(param.dtype)))
    expected = list(range(origin_step, origin_step + retrain_steps + 1, step_every))
    pairs = [(s, k) for s in sizes for k in seeds]
    records, skipped = [], []
    directions: dict[int, tuple[torch.Tensor, float]] = {}
    for size, seed in tqdm(pairs, disable=not progress, desc="jump and retrain", unit="run"):
        name = run_name(size, seed)
        run_dir = out / name
        entry = manifest["runs"].get(name)
        if _is_complete(run_dir, entry, expected):
            log.info("%s is complete; skipped", name)
            records.append(entry)
            skipped.append(True)
            continue
        manifest["runs"].pop(name, None)
        write_json(out / MANIFEST, manifest)
        if run_dir.exists():
            log.info("%s is incomplete; retraining it", name)
            shutil.rmtree(run_dir)
        if seed not in directions:  # one direction per seed, shared by every size
            d = random_directions(theta_star, layout, 1, normalization="filter", seed=seed)[0]
            directions[seed] = (d, float(torch.linalg.vector_norm(d)))
        d, d_norm = directions[seed]
        facts = {
            "origin": settings["origin"],
            "origin_step": origin_step,
            "size": size,
            "seed": seed,
            "direction_norm": d_norm,
            "distance": size * d_norm,
            "normalization": "filter",
            "ignore": "biasbn",
        }
        train(
            problem,
            run_dir,
            **{k: train_opts[k] for k in ("optimizer", "lr", "momentum", "weight_decay")},
            batch_size=train_opts["batch_size"],
            steps=retrain_steps,
            every=step_every,
            data_seed=seed if data_seed is None else data_seed,
            start_theta=theta_star + size * d,
            start_buffers=buffers,
            start_step=origin_step,
            dtype=dtype,
            metadata={"label": f"jump {size:g} seed {seed}", "jump": facts},
            progress=False,
        )
        done = Trajectory.load(run_dir)
        with torch.no_grad():
            start_loss = float(at_snapshot(base, done, 0)(done.theta(0, dtype=param.dtype)))
            final_loss = float(at_snapshot(base, done, -1)(done.theta(-1, dtype=param.dtype)))
        entry = {**facts, "start_loss": start_loss, "final_loss": final_loss}
        manifest["runs"][name] = entry
        write_json(out / MANIFEST, manifest)
        records.append(entry)
        skipped.append(False)

    def column(key: str, dtype=np.float64) -> np.ndarray:
        return np.array([r[key] for r in records], dtype=dtype)

    return JumpSamples(
        out=out,
        origin=traj.path,
        origin_step=origin_step,
        sizes=sizes,
        seeds=seeds,
        runs=tuple(out / run_name(s, k) for s, k in pairs),
        run_sizes=column("size"),
        run_seeds=column("seed", np.int64),
        distances=column("distance"),
        direction_norms=column("direction_norm"),
        start_losses=column("start_loss"),
        final_losses=column("final_loss"),
        origin_loss=origin_loss,
        skipped=tuple(skipped),
        settings=settings,
    )
