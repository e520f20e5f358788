"""Points side by side on the CPU: one single-threaded worker per intra-op thread.

A small model's forward pass uses torch's intra-op threads poorly on the CPU: every operator
is split over the threads, which wait for each other after each one, and the memory-bound
operators (copies, normalisations, softmax) barely scale. The points of a grid are
independent, so evaluating several at once, one per thread, each single-threaded, keeps every
core busy for the whole pass instead, and a core taken by another process stalls one point,
not every operator of every point.

Each worker evaluates on its own copy of the model (:meth:`Objective.replica`):
``functional_call`` swaps a module's tensors in place, so one module cannot serve two threads
at once. The workers' values at the probe points are compared with the plain evaluation's,
like every other engine option's; whether they are faster is measured on the first points
of the loop itself, racing them against one-by-one evaluation (:func:`race`), never
assumed. Torch's thread count is 1 in every worker; the caller's is restored after.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
import torch

from ..objective import Objective
from ._engine import PointEngine

Writer = Callable[[np.ndarray, torch.Tensor], None]
MIN_POINTS_PER_WORKER = 16  # auto: fewer points than this per worker: too few to race
# what the metadata says of the workers (``engine``)
WORKER_FACTS = (
    "workers",
    "workers_reason",
    "workers_deviation",
    "workers_seconds_per_point",
    "serial_seconds_per_point",
)
MAX_REPLICA_BYTES = 1 << 30  # auto: the workers' copies of the parameters stay under 1 GiB


class WorkerPool:
    """``workers`` threads, each with its own :class:`PointEngine` on a replica of the
    objective, evaluating passes of points in parallel (a context manager: on exit the
    threads are joined and torch's thread count restored).

    Args:
        engines: one engine per worker, each on its own :meth:`Objective.replica`.
        points_per_pass: the largest pass.
    """

    def __init__(self, engines: list[PointEngine], points_per_pass: int) -> None:
        self.workers = len(engines)
        self._threads = torch.get_num_threads()
        self._slots: queue.SimpleQueue[tuple[PointEngine, torch.Tensor]] = queue.SimpleQueue()
        for eng in engines:
            n = eng.obj.layout.numel
            self._slots.put((eng, torch.empty((points_per_pass, n), dtype=eng.dtype)))
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        self._pool = ThreadPoolExecutor(
            self.workers, thread_name_prefix="weightspace-point", initializer=_one_thread
        )
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        torch.set_num_threads(self._threads)  # the workers' set_num_threads(1) was global

    def _task(self, idx: np.ndarray, write: Writer) -> tuple[np.ndarray, torch.Tensor]:
        eng, buf = self._slots.get()  # never waits: one slot per worker
        try:
            pts = buf[: len(idx)]
            write(idx, pts)
            return idx, eng(pts)
        finally:
            self._slots.put((eng, buf))

    def imap(
        self, passes: Iterable[np.ndarray], write: Writer
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(indices, rows)`` for each pass of point indices, in the order they finish, the
        points written by ``write(indices, out)`` (``out[r]`` = point ``indices[r]``); at most
        two passes per worker in flight. Must be used inside ``with pool:``."""
        assert self._pool is not None, "use the pool inside `with`"
        pool, todo = self._pool, iter(passes)
        flying: set[Future] = {
            pool.submit(self._task, idx, write) for idx in itertools.islice(todo, 2 * self.workers)
        }
        try:
            while flying:
                done, flying = wait(flying, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
                    for idx in itertools.islice(todo, 1):
                        flying.add(pool.submit(self._task, idx, write))
        finally:
            for fut in flying:
                fut.cancel()


def _one_thread() -> None:
    torch.set_num_threads(1)


def choose_workers(
    objective: Objective,
    engine: PointEngine,
    requested: int | None,
    *,
    probes: torch.Tensor,
    ref: torch.Tensor,
    n_todo: int,
    own_states: bool,
    deviation: Callable[[torch.Tensor, torch.Tensor], float],
    tolerance: float,
) -> tuple[WorkerPool | None, dict[str, Any]]:
    """The worker pool for the loop (None: the points one after the other) and the facts.

    ``requested``: a worker count asked for (1: none), or None (auto): on the CPU, with more
    than one torch thread, an eager engine, points that read the objective's buffers
    (``own_states`` False: per-point buffers may come from code that is not thread-safe)
    and enough points, ``torch.get_num_threads()`` workers are offered to the loop, which
    races them against one-by-one evaluation on the first points (:func:`race`). Either way
    the workers evaluate the probe points first, and are dropped when their values differ
    from ``ref`` (the plain engine's) by more than ``tolerance``.
    """
    threads = torch.get_num_threads()
    workers = threads if requested is None else requested
    why = _ineligible(objective, engine, workers, requested, n_todo, own_states)
    if why:
        return None, {"workers": 1, "workers_reason": why}
    try:
        engines = [_replica_engine(objective, engine) for _ in range(workers)]
    except Exception as e:  # a model that cannot be copied: evaluate one point at a time
        why = f"the model could not be copied for the workers ({type(e).__name__})"
        return None, {"workers": 1, "workers_reason": why}
    pool = WorkerPool(engines, engine.points_per_pass)
    with contextlib.ExitStack() as stack:
        stack.enter_context(pool)
        tasks = [np.array([k]) for k in range(len(probes))]
        rows = {int(i[0]): r for i, r in pool.imap(tasks, _probe_writer(probes))}
        out = torch.cat([rows[k] for k in range(len(probes))])
        dev = deviation(ref, out)
        if dev > tolerance:
            why = f"{workers} workers deviate by {dev:.1e} > {tolerance}: not used"
            return None, {"workers": 1, "workers_reason": why, "workers_deviation": dev}
        stack.pop_all()  # keep the pool open for the loop
    why = f"workers={requested}" if requested is not None else ""  # auto: the race decides
    return pool, {"workers": workers if requested else None, "workers_reason": why,
                  "workers_deviation": dev}  # fmt: skip


def race(
    pool: WorkerPool,
    serial: Callable[[list[np.ndarray]], Iterator[tuple[np.ndarray, torch.Tensor]]],
    passes: list[np.ndarray],
    write: Writer,
    facts: dict[str, Any],
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Every pass's ``(indices, rows)``: the first quarter of the passes (at least
    ``8 x workers``) alternately one by one (``serial``) and on the workers, in A-B-B-A order
    of equal turns, the rest by whichever took less time per point. No point is evaluated
    twice. ``facts["workers"]``, ``["workers_reason"]`` and the two times per point are set
    when the race is decided."""
    turn = max(2 * pool.workers, len(passes) // 16)
    spent = {"serial": 0.0, "workers": 0.0}
    done = {"serial": 0, "workers": 0}
    pos = 0
    for mode in ("serial", "workers", "workers", "serial"):
        chunk = passes[pos : pos + turn]
        pos += len(chunk)
        t0 = time.perf_counter()
        yield from pool.imap(chunk, write) if mode == "workers" else serial(chunk)
        spent[mode] += time.perf_counter() - t0
        done[mode] += sum(len(c) for c in chunk)
    per = {m: spent[m] / max(done[m], 1) for m in spent}
    use = per["workers"] < per["serial"]
    facts["workers"] = pool.workers if use else 1
    facts["workers_reason"] = (
        f"{pool.workers} single-threaded workers {per['workers'] * 1e3:.1f} ms/point "
        f"{'<' if use else '>='} {per['serial'] * 1e3:.1f} ms/point one by one "
        f"with {torch.get_num_threads()} threads (measured on the first "
        f"{done['serial'] + done['workers']} points, A-B-B-A)"
    )
    facts["workers_seconds_per_point"] = per["workers"]
    facts["serial_seconds_per_point"] = per["serial"]
    rest = passes[pos:]
    yield from pool.imap(rest, write) if use else serial(rest)


def _ineligible(
    objective: Objective,
    engine: PointEngine,
    workers: int,
    requested: int | None,
    n_todo: int,
    own_states: bool,
) -> str:
    """Why the points cannot (or, by the automatic rule, should not) run on workers; ''."""
    if workers <= 1:
        return "workers=1" if requested is not None else "one torch thread"
    if objective.device.type != "cpu":
        return f"points run one after the other on {objective.device.type}"
    if engine.compiled:
        return "the compiled engine uses every thread in each kernel"
    if own_states:
        return "the points read their own buffers"
    if requested is not None:
        return ""
    if n_todo < MIN_POINTS_PER_WORKER * workers:
        return f"{n_todo} points: too few to race {workers} workers on"
    size = objective.layout.numel * torch.finfo(engine.dtype).bits // 8 * workers
    if size > MAX_REPLICA_BYTES:
        return f"{workers} copies of the parameters would take {size / 2**30:.1f} GiB"
    return ""


def _replica_engine(objective: Objective, engine: PointEngine) -> PointEngine:
    return PointEngine(objective.replica(), engine.dtype, **engine.describe())


def _probe_writer(probes: torch.Tensor) -> Writer:
    def write(idx: np.ndarray, out: torch.Tensor) -> None:
        out.copy_(probes[torch.as_tensor(idx)])

    return write
