"""The point-evaluation engine: many parameter vectors in, per-batch losses out, fast.

Shared by the loss landscapes (:mod:`weightspace.landscape`) and anything else that
evaluates an :class:`~weightspace.Objective` at many points. Data are staged once, the loop
runs under ``torch.inference_mode`` and writes every point into one preallocated flat buffer,
results stay on the device until a checkpoint (no host sync per point). Options: a
``torch.compile``d point function, chosen by ``compile="auto"`` only when the expected eager
time repays the compilation; bf16 autocast; channels-last inputs; several points per pass
through ``torch.func.vmap``. Each choice is recorded with its measured deviation from the
plain evaluation. Points are sharded across ``torchrun`` ranks and checkpointed per rank
(:mod:`weightspace.parallel`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from . import parallel
from .errors import WeightspaceError
from .objective import Objective

logger = logging.getLogger(__name__)

CompileMode = Literal["auto", "on", "off"]
Precision = Literal["full", "bf16"]
COMPILE_COST_S = 30.0  # cold torch.compile of a small CNN on a 2-core CPU: 10-30 s measured
COMPILE_TOL = 1e-5  # compiled values must match plain eager within this (relative to max(1,|L|))


# ---------------------------------------------------------------------------- engine
class PointEngine:
    """Evaluates points ``thetas: (m, n)`` to per-batch losses and correct counts.

    Built from the objective's public pieces (``forward_loss``, ``batch``), so its values are
    those of :meth:`Objective.evaluate`. ``__call__`` returns ``(m, F)`` float64 on the
    objective's device, ``F = B`` (losses) or ``2B`` (losses, then correct counts). With
    ``states: (m, b)`` (flat buffer vectors in the objective's :attr:`buffer_layout`) each
    point reads its own buffers instead of the objective's.
    """

    def __init__(
        self,
        objective: Objective,
        dtype: torch.dtype,
        *,
        precision: Precision = "full",
        channels_last: bool = False,
        points_per_pass: int = 1,
        compiled: bool = False,
    ) -> None:
        self.obj, self.dtype = objective, dtype
        self.precision, self.channels_last = precision, channels_last
        self.points_per_pass, self.compiled = points_per_pass, compiled
        self.classification = objective.metadata["task"] == "classification"
        self.n_batches = objective.n_batches
        self.n_fields = self.n_batches * (2 if self.classification else 1)
        batches = [objective.batch(b, dtype) for b in range(self.n_batches)]
        if channels_last:
            batches = [(_channels_last(x), y) for x, y in batches]
        self.batches = batches
        fns: dict[bool, Callable] = {}
        for with_state in (False, True):
            fn: Callable = self._point_with_state if with_state else self._point
            if points_per_pass > 1:
                dims = (0, 0, None, None) if with_state else (0, None, None)
                fn = torch.func.vmap(fn, in_dims=dims)
            fns[with_state] = torch.compile(fn, dynamic=False) if compiled else fn
        self.fn, self.fn_state = fns[False], fns[True]

    def _point_with_state(
        self, theta: torch.Tensor, state: torch.Tensor, inputs: Any, targets: Any
    ) -> torch.Tensor:
        buffers = self.obj.buffer_layout.unflatten(state, dtype=theta.dtype)
        return self._point(theta, inputs, targets, buffers)

    def _point(
        self,
        theta: torch.Tensor,
        inputs: Any,
        targets: Any,
        buffers: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if self.precision == "bf16":
            with torch.autocast(device_type=theta.device.type, dtype=torch.bfloat16):
                out, loss = self.obj.forward_loss(theta, inputs, targets, buffers=buffers)
        else:
            out, loss = self.obj.forward_loss(theta, inputs, targets, buffers=buffers)
        loss = loss.reshape(()).to(torch.float64)
        if not self.classification:
            return loss.reshape(1)
        correct = (out.argmax(-1) == targets).sum().to(torch.float64)
        return torch.stack([loss, correct])

    def __call__(self, thetas: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        outs = []
        with torch.inference_mode():
            for inputs, targets in self.batches:
                if states is not None:
                    if self.points_per_pass > 1:
                        outs.append(self.fn_state(thetas, states, inputs, targets))
                    else:
                        outs.append(
                            torch.stack(
                                [
                                    self.fn_state(t, s, inputs, targets)
                                    for t, s in zip(thetas, states)
                                ]
                            )
                        )
                elif self.points_per_pass > 1:
                    outs.append(self.fn(thetas, inputs, targets))
                else:
                    outs.append(torch.stack([self.fn(t, inputs, targets) for t in thetas]))
            # (m, k, B) -> (m, k*B): the B losses, then the B correct counts
            return torch.stack(outs, dim=2).reshape(thetas.shape[0], self.n_fields).clone()

    def describe(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "points_per_pass": self.points_per_pass,
            "compiled": self.compiled,
        }


def _channels_last(x: Any) -> Any:
    """Image batches ``(N, C, H, W)`` with channels-last strides (also for ``C = 1``, where
    ``Tensor.contiguous`` keeps the NCHW strides and convolutions stay NCHW)."""
    if isinstance(x, torch.Tensor) and x.ndim == 4:
        _, c, h, w = x.shape
        out = torch.empty_strided(x.shape, (h * w * c, 1, w * c, c), dtype=x.dtype, device=x.device)
        return out.copy_(x)
    return x


def resolve_channels_last(objective: Objective, channels_last: bool | None) -> bool:
    """``None`` (auto): channels-last on the CPU when the inputs are image batches."""
    if channels_last is not None:
        return bool(channels_last)
    inputs = objective.batch(0, torch.float32)[0] if objective.n_batches else None
    images = isinstance(inputs, torch.Tensor) and inputs.ndim == 4
    return images and objective.device.type == "cpu"


def aggregate(
    data: np.ndarray, weights: np.ndarray, n_samples: int, classification: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-point mean loss, standard error over batches and accuracy from engine rows.

    Args:
        data: ``(P, F)`` rows of :class:`PointEngine`; weights: ``(B,)`` = ``N_b / N``.

    Returns:
        ``values (P,)``, ``stderr (P,)``, ``accuracy (P,)`` or None; as
        :meth:`Objective.evaluate` computes them.
    """
    b = len(weights)
    losses = data[:, :b]
    with np.errstate(invalid="ignore", over="ignore"):
        values = losses @ weights
        if b > 1:
            var = ((losses - values[:, None]) ** 2 @ weights) * b / (b - 1)
            stderr = np.sqrt(var / b)
        else:
            stderr = np.full(len(values), np.nan)
    acc = data[:, b:].sum(axis=1) / n_samples if classification else None
    values = np.where(np.isfinite(values), values, np.nan)
    return values, stderr, acc


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_engine(
    objective: Objective,
    dtype: torch.dtype,
    probes: torch.Tensor,
    n_todo: int,
    *,
    compile: CompileMode,
    precision: Precision,
    channels_last: bool | None,
    points_per_pass: int,
    probe_states: torch.Tensor | None = None,
) -> tuple[PointEngine, dict[str, Any], torch.Tensor]:
    """The engine for the loop, each option's measured deviation, and its probe rows.

    The plain engine evaluates the probe points (timing them for the compile decision);
    an engine with options evaluates them again and is compared with it. Returns the
    chosen engine, facts for the metadata and the chosen engine's rows for the probes.
    ``probe_states``: the probes' buffers, when the points have their own.
    """
    if compile not in ("auto", "on", "off"):
        raise WeightspaceError(f"compile: expected 'auto', 'on' or 'off', got {compile!r}")
    if precision not in ("full", "bf16"):
        raise WeightspaceError(f"precision: expected 'full' or 'bf16', got {precision!r}")
    if not isinstance(points_per_pass, int) or points_per_pass < 1:
        raise WeightspaceError(
            f"points_per_pass: expected a positive integer, got {points_per_pass!r}"
        )
    auto_cl = channels_last is None
    channels_last = resolve_channels_last(objective, channels_last)
    plain = PointEngine(objective, dtype)
    rows, times = [], []
    for k in range(len(probes)):  # the fastest probe: robust to other processes' load
        t0 = time.perf_counter()
        rows.append(plain(probes[k : k + 1], _rows(probe_states, k)))
        _sync(probes.device)
        times.append(time.perf_counter() - t0)
    ref, t_point = torch.cat(rows), min(times)
    info: dict[str, Any] = {"eager_seconds_per_point": t_point, "compile_requested": compile}
    key = (dtype, precision, channels_last, points_per_pass)
    cache = objective.__dict__.setdefault("_weightspace_compiled_engines", {})
    if compile == "auto":
        expected = n_todo * t_point
        if key in cache:
            use, why = True, "a compiled engine for this objective exists in this process"
        else:
            use = expected > 2 * COMPILE_COST_S
            sign = ">" if use else "<="
            why = f"eager estimate {expected:.1f} s {sign} 2 x compile cost {COMPILE_COST_S} s"
    else:
        use, why = compile == "on", f"compile={compile!r}"
    options = {
        "precision": precision,
        "channels_last": channels_last,
        "points_per_pass": points_per_pass,
    }
    engine, out, dev, seconds = plain, ref, 0.0, 0.0
    if use or precision != "full" or channels_last or points_per_pass > 1:
        engine = cache[key] if use and key in cache else None
        fresh = engine is None
        t0 = time.perf_counter()
        try:
            engine = engine or PointEngine(objective, dtype, compiled=use, **options)
            out = engine(probes, probe_states)
        except Exception as e:  # a backend without a compiler: fall back, say why
            if not use:
                raise
            logger.warning("torch.compile failed (%s); evaluating eagerly", e)
            why, use = f"torch.compile failed: {type(e).__name__}: {e}"[:200], False
            engine = PointEngine(objective, dtype, **options)
            out = engine(probes, probe_states)
        seconds = time.perf_counter() - t0 if use and fresh else 0.0
        dev = _deviation(ref, out, plain)
        if dev > COMPILE_TOL and (use or (auto_cl and channels_last)):
            logger.warning("fast path deviates by %.2e from plain eager; not using it", dev)
            why, use = f"fast path deviation {dev:.1e} > {COMPILE_TOL}: not used", False
            options["channels_last"] = options["channels_last"] and not auto_cl
            engine = PointEngine(objective, dtype, **options)
            out = engine(probes, probe_states)
            dev = _deviation(ref, out, plain)
        if use:
            cache[key] = engine
    info.update(engine.describe(), compile_reason=why, channels_last_auto=auto_cl)
    info.update(compile_seconds=seconds, deviation_vs_plain=dev)
    return engine, info, out


def _rows(states: torch.Tensor | None, k: int) -> torch.Tensor | None:
    return None if states is None else states[k : k + 1]


def _deviation(ref: torch.Tensor, out: torch.Tensor, engine: PointEngine) -> float:
    """Largest ``|L - L_plain| / max(1, |L_plain|)`` of the mean loss over the probe points."""
    w = engine.obj.batch_weights.to(ref.device)
    b = engine.n_batches
    a, o = ref[:, :b] @ w, out[:, :b] @ w
    return float(((a - o).abs() / a.abs().clamp_min(1.0)).max())


# ---------------------------------------------------------------------------- the loop
def evaluate_points(
    objective: Objective,
    write: Callable[[np.ndarray, torch.Tensor], None],
    n_points: int,
    *,
    dtype: torch.dtype,
    key: str,
    compile: CompileMode = "auto",
    precision: Precision = "full",
    channels_last: bool | None = None,
    points_per_pass: int = 1,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float = 60.0,
    keep_checkpoint: bool = False,
    progress: bool = False,
    desc: str = "points",
    state: Callable[[np.ndarray, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Evaluate ``n_points`` points, sharded over ranks, checkpointed and resumable.

    Args:
        write: ``write(indices, out)`` fills ``out[r]`` with the point ``indices[r]``.
        state: ``state(indices, thetas) -> (m, b)`` float64 flat buffers of each point
            (:attr:`Objective.buffer_layout`), when points read their own buffers
            (interpolated, recomputed, or a run's snapshots); None: the objective's.
        key: fingerprint of the work (points, data, options) for checkpoint matching.
        checkpoint: path prefix of the per-rank partial files (None: no checkpoints).
        resume: continue from partial files of the same work.
        checkpoint_every, checkpoint_seconds: write the partial file after this many points
            or seconds, whichever comes first.
        keep_checkpoint: leave the partial files (the caller removes them after saving).

    Returns:
        ``data: (P, F)`` engine rows on every rank, and facts for the metadata.
    """
    device, n = objective.device, objective.layout.numel
    rank, world = parallel.rank(), parallel.world_size()
    mine = parallel.shard(n_points, rank, world)
    probe_idx = np.unique([0, n_points - 1])
    probes = torch.empty((len(probe_idx), n), dtype=dtype, device=device)
    write(probe_idx, probes)
    probe_states = None if state is None else _states(state, probe_idx, probes, device)
    n_fields = objective.n_batches * (2 if objective.metadata["task"] == "classification" else 1)
    done = np.zeros(n_points, dtype=bool)
    data = np.zeros((n_points, n_fields), dtype=np.float64)
    if checkpoint is not None and resume:
        done, data, files = parallel.load_partials(checkpoint, key, n_points, n_fields)
        logger.info("resuming: %d of %d points done in %d files", done.sum(), n_points, len(files))
    elif checkpoint is not None:
        if parallel.is_rank_zero():
            parallel.remove_partials(checkpoint, all_ranks=True)
        parallel.barrier()
    resumed = int(done.sum())
    todo = mine[~done[mine]]
    engine, info, probe_rows = build_engine(
        objective,
        dtype,
        probes,
        len(todo),
        compile=compile,
        precision=precision,
        channels_last=channels_last,
        points_per_pass=points_per_pass,
        probe_states=probe_states,
    )
    pending: list[tuple[np.ndarray, torch.Tensor]] = []
    reuse = np.isin(probe_idx, todo)  # the probes are grid points: keep their values
    if reuse.any():
        pending.append((probe_idx[reuse], probe_rows[torch.as_tensor(reuse)]))
        todo = todo[~np.isin(todo, probe_idx)]
    m = engine.points_per_pass
    buf = torch.empty((m, n), dtype=dtype, device=device)
    last_save, since = time.monotonic(), 0
    bar = tqdm(
        total=len(mine),
        initial=len(mine) - len(todo),  # resumed and probe points
        disable=not progress or rank != 0,
        unit="pt",
        desc=desc,
        leave=False,
    )

    def flush() -> None:
        if pending:
            rows = np.concatenate([r for r, _ in pending])
            data[rows] = torch.cat([v for _, v in pending]).cpu().numpy()
            done[rows] = True
            pending.clear()
        if checkpoint is not None:
            parallel.save_partial(checkpoint, key, done & _owned(n_points, mine), data)

    t_start = time.perf_counter()
    with bar:
        for s in range(0, len(todo), m):
            idx = todo[s : s + m]
            pts = buf[: len(idx)]
            write(idx, pts)
            states = None if state is None else _states(state, idx, pts, device)
            pending.append((idx, engine(pts, states)))
            since += len(idx)
            bar.update(len(idx))
            if checkpoint is not None and (
                (checkpoint_every is not None and since >= checkpoint_every)
                or time.monotonic() - last_save >= checkpoint_seconds
            ):
                flush()
                last_save, since = time.monotonic(), 0
        flush()
    _sync(device)
    seconds = time.perf_counter() - t_start
    if world > 1:
        owned = _owned(n_points, mine)
        data = parallel.merge_rows(np.where(owned[:, None], data, 0.0), mine)
        done = parallel.merge_rows(done[:, None].astype(np.float64), mine)[:, 0] > 0
    if not done.all():  # a rank skipped points: should never happen; fail loudly
        raise WeightspaceError(f"{int((~done).sum())} points were not computed; rerun")
    if checkpoint is not None and not keep_checkpoint:
        parallel.barrier()
        if parallel.is_rank_zero():
            parallel.remove_partials(checkpoint, all_ranks=True)
    info.update(
        seconds=seconds,
        points_per_second=len(todo) / seconds if seconds > 0 else math.inf,
        resumed_points=resumed,
        world_size=world,
    )
    return data, info


def _states(
    state: Callable[[np.ndarray, torch.Tensor], torch.Tensor],
    idx: np.ndarray,
    thetas: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    return torch.as_tensor(state(idx, thetas), dtype=torch.float64).to(device)


def _owned(n_points: int, mine: np.ndarray) -> np.ndarray:
    mask = np.zeros(n_points, dtype=bool)
    mask[mine] = True
    return mask
