"""The loop over many points: sharded over ``torchrun`` ranks, checkpointed per rank, resumable.

:func:`evaluate_points` asks :mod:`._engine` for the fastest engine that agrees with the plain
evaluation, then evaluates every point this rank owns in passes of ``points_per_pass``,
keeping the rows on the device until a checkpoint (no host sync per point).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import parallel
from .._lock import DirectoryLock
from .._progress import progress_bar
from ..errors import WeightspaceError
from ..objective import Objective
from ._engine import (
    COMPILE_TOL,
    EngineOptions,
    PointEngine,
    StateFn,
    _deviation,
    _sync,
    build_engine,
    note_eager,
)
from ._workers import WORKER_FACTS, WorkerPool, choose_workers, race

logger = logging.getLogger(__name__)


@dataclass
class _Progress:
    """The points' rows and which are done; flushed to the per-rank partial file."""

    data: np.ndarray
    done: np.ndarray
    checkpoint: str | os.PathLike | None
    key: str
    mine: np.ndarray
    engine: dict[str, Any]
    pending: list[tuple[np.ndarray, torch.Tensor]] = dataclasses.field(default_factory=list)

    def flush(self) -> None:
        if self.pending:
            rows = np.concatenate([r for r, _ in self.pending])
            self.data[rows] = torch.cat([v for _, v in self.pending]).cpu().numpy()
            self.done[rows] = True
            self.pending.clear()
        if self.checkpoint is not None:
            owned = _owned(len(self.done), self.mine)
            parallel.save_partial(
                self.checkpoint, self.key, self.done & owned, self.data, self.engine
            )


def _start(
    n_points: int,
    n_fields: int,
    checkpoint: str | os.PathLike | None,
    resume: bool,
    key: str,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """``(done, data, engine)``: from the partial files when resuming (with the engine
    settings they were computed with), else empty (old ones removed)."""
    done = np.zeros(n_points, dtype=bool)
    data = np.zeros((n_points, n_fields), dtype=np.float64)
    engine = None
    if checkpoint is not None and resume:
        done, data, files = parallel.load_partials(checkpoint, key, n_points, n_fields)
        engine = parallel.stored_engine(files) if done.any() else None
        logger.info("resuming: %d of %d points done in %d files", done.sum(), n_points, len(files))
    elif checkpoint is not None:
        if parallel.is_rank_zero():
            parallel.remove_partials(checkpoint, all_ranks=True)
        parallel.barrier()
    return done, data, engine


def _as_before(opts: EngineOptions, engine: dict[str, Any] | None) -> EngineOptions:
    """``opts`` with the automatic choices fixed to those of the interrupted run, so that
    the resumed points are computed like the stored ones (bit for bit)."""
    if engine is None:
        return opts
    changes: dict[str, Any] = {}
    if opts.compile == "auto" and isinstance(engine.get("compiled"), bool):
        changes["compile"] = "on" if engine["compiled"] else "off"
    if opts.channels_last is None and isinstance(engine.get("channels_last"), bool):
        changes["channels_last"] = engine["channels_last"]
    if opts.workers is None and isinstance(engine.get("workers"), int):
        changes["workers"] = engine["workers"]  # thread counts may change the last bits
    if changes:
        logger.info("resuming with the interrupted run's engine: %s", changes)
    return dataclasses.replace(opts, **changes)


def evaluate_points(
    objective: Objective,
    write: Callable[[np.ndarray, torch.Tensor], None],
    n_points: int,
    *,
    dtype: torch.dtype,
    key: str,
    engine: EngineOptions | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    desc: str = "points",
    state: StateFn | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Evaluate ``n_points`` points, sharded over ranks, checkpointed and resumable.

    Args:
        write: ``write(indices, out)`` fills ``out[r]`` with the point ``indices[r]``.
        key: fingerprint of the work (points, data, options) for checkpoint matching.
        engine: how to evaluate (:class:`EngineOptions`).
        checkpoint: path prefix of the per-rank partial files (None: no checkpoints).
        resume: continue from partial files of the same work.
        state: ``state(indices, thetas) -> (m, b)`` float64 flat buffers of each point
            (:attr:`Objective.buffer_layout`), when points read their own buffers
            (interpolated, recomputed, or a run's snapshots); None: the objective's.

    Returns:
        ``data: (P, F)`` engine rows on every rank, and facts for the metadata.
    """
    opts = EngineOptions.of(engine)
    with _partials_lock(checkpoint, opts.keep_checkpoint):
        return _evaluate(objective, write, n_points, dtype, key, opts, checkpoint, resume, desc,
                         state)  # fmt: skip


@contextlib.contextmanager
def _partials_lock(checkpoint: str | os.PathLike | None, keep: bool) -> Iterator[None]:
    """This rank's writer lock on its partial file (none without checkpoints)."""
    if checkpoint is None:
        yield
        return
    path = parallel.partial_path(checkpoint, parallel.rank(), parallel.world_size())
    path = path.with_name(path.name.removesuffix(".npz") + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with DirectoryLock(path, f"checkpoint {str(checkpoint)!r}"):
        yield
        if not keep:
            path.unlink(missing_ok=True)  # under the lock, with the partial files it guarded


def _evaluate(
    objective: Objective,
    write: Callable[[np.ndarray, torch.Tensor], None],
    n_points: int,
    dtype: torch.dtype,
    key: str,
    opts: EngineOptions,
    checkpoint: str | os.PathLike | None,
    resume: bool,
    desc: str,
    state: StateFn | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    device, n = objective.device, objective.layout.numel
    mine = parallel.shard(n_points, parallel.rank(), parallel.world_size())
    probe_idx = np.unique([0, n_points - 1])
    probes = torch.empty((len(probe_idx), n), dtype=dtype, device=device)
    write(probe_idx, probes)
    probe_states = None if state is None else _states(state, probe_idx, probes, device)
    n_fields = objective.n_batches * (2 if objective.metadata["task"] == "classification" else 1)
    done, data, before = _start(n_points, n_fields, checkpoint, resume, key)
    opts = _as_before(opts, before)
    resumed = int(done.sum())
    todo = mine[~done[mine]]
    eng, info, probe_rows = build_engine(objective, dtype, probes, len(todo), opts, probe_states)
    pool, workers = choose_workers(
        objective,
        eng,
        opts.workers,
        probes=probes,
        ref=probe_rows,
        n_todo=len(todo),
        own_states=state is not None,
        deviation=lambda ref, out: _deviation(ref, out, eng),
        tolerance=COMPILE_TOL,
    )
    info.update(workers)
    run = _Progress(data, done, checkpoint, key, mine, eng.describe())
    if workers["workers"] is not None:  # decided (auto: the loop races them first)
        run.engine["workers"] = workers["workers"]
    reuse = np.isin(probe_idx, todo)  # the probes are grid points: keep their values
    if reuse.any():
        run.pending.append((probe_idx[reuse], probe_rows[torch.as_tensor(reuse)]))
        todo = todo[~np.isin(todo, probe_idx)]
    with pool or contextlib.nullcontext():
        seconds = _loop(eng, pool, write, state, todo, run, opts, desc, device, len(mine))
    if not eng.compiled:
        note_eager(objective, seconds)
    info.update({k: v for k, v in run.engine.items() if k in WORKER_FACTS})
    data, done = run.data, run.done
    if parallel.world_size() > 1:
        owned = _owned(n_points, mine)
        data = parallel.merge_rows(np.where(owned[:, None], data, 0.0), mine)
        done = parallel.merge_rows(done[:, None].astype(np.float64), mine)[:, 0] > 0
    if not done.all():  # a rank skipped points: should never happen; fail loudly
        raise WeightspaceError(f"{int((~done).sum())} points were not computed; rerun")
    if checkpoint is not None and not opts.keep_checkpoint:
        parallel.barrier()
        if parallel.is_rank_zero():
            parallel.remove_partials(checkpoint, all_ranks=True)
    info.update(
        seconds=seconds,
        points_per_second=len(todo) / seconds if seconds > 0 else math.inf,
        resumed_points=resumed,
        world_size=parallel.world_size(),
    )
    return data, info


def _loop(
    eng: PointEngine,
    pool: WorkerPool | None,
    write: Callable[[np.ndarray, torch.Tensor], None],
    state: StateFn | None,
    todo: np.ndarray,
    run: _Progress,
    opts: EngineOptions,
    desc: str,
    device: torch.device,
    n_mine: int,
) -> float:
    """Evaluate ``todo`` in passes of ``points_per_pass`` (on the pool's workers, or one
    after the other), checkpointing on the way; seconds."""
    m = eng.points_per_pass
    passes = [todo[s : s + m] for s in range(0, len(todo), m)]
    serial = functools.partial(_one_by_one, eng, write, state, device=device)
    if pool is None:
        results = serial(passes)
    elif run.engine.get("workers") is None:  # auto: race the workers against one by one
        results = race(pool, serial, passes, write, run.engine)
    else:
        results = pool.imap(passes, write)
    last_save, since = time.monotonic(), 0
    bar = progress_bar(
        total=n_mine,
        initial=n_mine - len(todo),  # resumed and probe points
        enabled=opts.progress and parallel.rank() == 0,
        unit="point",
        desc=desc,
        leave=False,
    )
    t_start = time.perf_counter()
    with bar, contextlib.closing(results):
        for idx, rows in results:
            run.pending.append((idx, rows))
            since += len(idx)
            bar.update(len(idx))
            due = opts.checkpoint_every is not None and since >= opts.checkpoint_every
            if run.checkpoint is not None and (
                due or time.monotonic() - last_save >= opts.checkpoint_seconds
            ):
                run.flush()
                last_save, since = time.monotonic(), 0
        run.flush()
    _sync(device)
    return time.perf_counter() - t_start


def _one_by_one(
    eng: PointEngine,
    write: Callable[[np.ndarray, torch.Tensor], None],
    state: StateFn | None,
    passes: list[np.ndarray],
    *,
    device: torch.device,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(indices, rows)`` of each pass, evaluated in this thread."""
    buf = torch.empty((eng.points_per_pass, eng.obj.layout.numel), dtype=eng.dtype, device=device)
    for idx in passes:
        pts = buf[: len(idx)]
        write(idx, pts)
        states = None if state is None else _states(state, idx, pts, device)
        yield idx, eng(pts, states)


def _states(
    state: StateFn, idx: np.ndarray, thetas: torch.Tensor, device: torch.device
) -> torch.Tensor:
    return torch.as_tensor(state(idx, thetas), dtype=torch.float64).to(device)


def _owned(n_points: int, mine: np.ndarray) -> np.ndarray:
    mask = np.zeros(n_points, dtype=bool)
    mask[mine] = True
    return mask
