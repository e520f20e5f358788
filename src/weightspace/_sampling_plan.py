"""The settings of a jump-and-retrain sampling, checked before anything is trained, and its
manifest (``OUT/sampling.json``), which makes a sampling resumable and extensible."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import WeightspaceError
from .layout import ParamLayout
from .optimizers import canonical_name
from .problems import Problem
from .store import LOCK, list_snapshots, write_json
from .train import OPTIMIZERS, TrainSettings
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


def check_sizes(sizes: Sequence[float]) -> tuple[float, ...]:
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


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
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


def _training_settings(traj: Trajectory, overrides: dict[str, Any]) -> dict[str, Any]:
    """The origin run's optimizer settings (``run.json``), each overridable."""
    unknown = [k for k in overrides if k not in (*TRAIN_DEFAULTS, "every")]
    if unknown:
        raise WeightspaceError(
            f"{unknown[0]}: not a retraining setting; they are "
            f"{', '.join([*TRAIN_DEFAULTS, 'every'])}"
        )
    out: dict[str, Any] = {}
    for key, fallback in TRAIN_DEFAULTS.items():
        given = overrides.get(key)
        value = given if given is not None else traj.metadata.get(key)
        if value is None and fallback is None:
            raise WeightspaceError(
                f"{key}: run {str(traj.path)!r} does not record its {key}; pass {key}="
            )
        out[key] = fallback if value is None else value
    every = overrides.get("every") or traj.recorder.get("every")
    out["every"] = int(every) if every is not None else 1
    out["optimizer"] = canonical_name(out["optimizer"]) or out["optimizer"]
    if out["optimizer"] not in OPTIMIZERS:
        raise WeightspaceError(
            f"optimizer: the run was trained with {out['optimizer']!r}, which weightspace cannot "
            f"build; pass optimizer= one of {', '.join(OPTIMIZERS)}"
        )
    out["lr"], out["momentum"] = float(out["lr"]), float(out["momentum"])
    out["weight_decay"], out["batch_size"] = float(out["weight_decay"]), int(out["batch_size"])
    TrainSettings(**out)  # the same checks as training's, before any training
    return out


def open_manifest(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
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
    if out.exists() and (not out.is_dir() or any(p.name != LOCK for p in out.iterdir())):
        raise WeightspaceError(
            f"out: {str(out)!r} exists and is not a sampling directory; choose a new directory"
        )
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"kind": "jump_and_retrain", "settings": settings, "runs": {}}
    write_json(path, manifest)
    return manifest


def is_complete(run_dir: Path, entry: dict | None, expected: list[int]) -> bool:
    if entry is None or not (run_dir / "run.json").exists():
        return False
    if [s for s, _ in list_snapshots(run_dir)] != expected:
        return False
    try:
        Trajectory.load(run_dir)  # every snapshot's header and size
    except WeightspaceError:
        return False
    return True


def plan(
    problem: Problem,
    traj: Trajectory,
    at: int | None,
    sizes: tuple[float, ...],
    seeds: tuple[int, ...],
    retrain_steps: int,
    retrain: dict[str, Any],
) -> tuple[int, dict[str, Any]]:
    """The origin's index and every setting, checked before anything is trained."""
    try:
        i = len(traj) - 1 if at is None else traj.index_of(at)
    except WeightspaceError as e:
        raise WeightspaceError(f"at: {e}") from None
    origin_step = int(traj.steps[i])
    layout = ParamLayout.from_module(problem.model)
    what = f"problem {problem.name!r} (here) against run {str(traj.path)!r} (there)"
    layout.check_compatible(traj.layout, what=what)
    if traj.metadata.get("problem") not in (None, problem.name):
        log.warning(
            "run %s was trained on %r; retraining on %r",
            traj.path,
            traj.metadata["problem"],
            problem.name,
        )
    train_opts = _training_settings(traj, retrain)
    step_every = train_opts["every"]
    if origin_step % step_every or retrain_steps % step_every:
        raise WeightspaceError(
            f"every: the origin step {origin_step} and retrain_steps {retrain_steps} must be "
            f"multiples of every={step_every} so that the jump and the end are recorded; "
            "choose every dividing both"
        )
    settings = {
        "origin": str(traj.path.resolve()),
        "origin_step": origin_step,
        "problem": problem.name,
        "sizes": list(sizes),
        "seeds": list(seeds),
        "retrain_steps": int(retrain_steps),
        **train_opts,
        "normalization": "filter",
        "ignore": "biasbn",
    }
    return i, settings
