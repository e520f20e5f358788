"""The one snapshot streamer: parameter columns of every snapshot, block by block.

Projections, Gram matrices and path metrics never hold a dense ``T × n`` copy of a run:
:func:`iter_blocks` yields ``(T, c)`` blocks of parameter columns across all snapshots of one
run, several runs (stacked in run order) or an in-memory array, within a memory budget.
Snapshots on disk are read by ``pread`` straight into the block, so resident memory stays at
one block however large the run.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._progress import progress_bar
from ..checks import positive_int
from ..errors import WeightspaceError
from ..layout import ParamLayout
from ..store import read_npy_header
from ..trajectory import Trajectory

DEFAULT_MAX_BYTES = 256 * 2**20
MAX_OPEN_FILES = 256
SnapshotInput = Trajectory | np.ndarray | torch.Tensor | Sequence[Trajectory | np.ndarray]


@dataclass(frozen=True)
class FileRow:
    """One snapshot on disk, read by ``pread`` straight into a block row (no memory map, so
    resident memory stays at the block however large the run)."""

    path: str
    offset: int
    dtype: np.dtype
    n: int

    @classmethod
    def of(cls, traj: Trajectory, i: int) -> FileRow | np.ndarray:
        path = traj.files[i]
        shape, fortran, dtype, offset = read_npy_header(path)
        if fortran or not dtype.isnative or shape != (traj.n_params,):
            return traj.snapshot(i)  # unusual file: let the memory map handle (and check) it
        return cls(str(path), offset, dtype, traj.n_params)

    def read_into(self, out: np.ndarray, start: int, fd: int) -> None:
        """Fill ``out`` (1-D, contiguous) with elements ``start:start + len(out)``."""
        target = out if out.dtype == self.dtype else np.empty(len(out), self.dtype)
        view = memoryview(target).cast("B")
        pos, done = self.offset + start * self.dtype.itemsize, 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], pos + done)
            if got == 0:
                raise WeightspaceError(f"snapshot {self.path}: truncated; re-record the run")
            done += got
        if target is not out:
            out[:] = target


@dataclass(frozen=True)
class Snapshots:
    """Snapshots of one or several runs, stacked in run order (no data copied).

    Attributes:
        rows: one :class:`FileRow` or ``(n,)`` array per snapshot, ``T`` in all.
        n: parameters per snapshot.
        dtype: dtype of streamed blocks (float64 if any source is float64, else float32).
        run_lengths: snapshots per run.
        labels: one label per run (metadata ``"label"``, the directory name, or ``run{i}``).
        steps: the recorded steps of each run, ``(T_i,)`` int64.
        layout: the parameter layout of the runs (None for arrays).
        sources: the trajectories or arrays, as given.
    """

    rows: tuple[FileRow | np.ndarray, ...]
    n: int
    dtype: np.dtype
    run_lengths: tuple[int, ...]
    labels: tuple[str, ...]
    steps: tuple[np.ndarray, ...]
    layout: ParamLayout | None
    sources: tuple[Trajectory | np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def run_slices(self) -> list[slice]:
        ends = np.cumsum((0, *self.run_lengths))
        return [slice(int(a), int(b)) for a, b in itertools.pairwise(ends)]

    def split(self, values: np.ndarray) -> list[np.ndarray]:
        """Split a ``(T, ...)`` array into one array per run."""
        return [values[s] for s in self.run_slices]

    def take(self, indices: Sequence[int]) -> Snapshots:
        """The snapshots at ``indices`` (positions in the stacked order), in that order.

        Consecutive picks from the same run stay one run, with their own steps and label, so
        errors still name the run and step of a snapshot.

        Example:
            >>> snaps = as_snapshots([np.zeros((3, 2)), np.ones((2, 2))])
            >>> sub = snaps.take([4, 0, 2])
            >>> sub.run_lengths, sub.labels, [s.tolist() for s in sub.steps]
            ((1, 2), ('run1', 'run0'), [[1], [0, 2]])
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= len(self):
            raise WeightspaceError(
                f"indices: expected positions in 0..{len(self) - 1}, got {idx.tolist()}; "
                "index the stacked snapshots"
            )
        run_of = np.repeat(np.arange(len(self.run_lengths)), self.run_lengths)
        first = np.cumsum((0, *self.run_lengths))[:-1]
        groups = [list(g) for _, g in itertools.groupby(idx.tolist(), key=lambda i: run_of[i])]
        runs = [int(run_of[g[0]]) for g in groups]
        return Snapshots(
            rows=tuple(self.rows[i] for i in idx),
            n=self.n,
            dtype=self.dtype,
            run_lengths=tuple(len(g) for g in groups),
            labels=tuple(self.labels[r] for r in runs),
            steps=tuple(self.steps[r][np.array(g) - first[r]] for r, g in zip(runs, groups)),
            layout=self.layout,
            sources=tuple(self.sources[r] for r in runs),
        )


def _as_array(x: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.double() if x.dtype == torch.float64 else x.float()
        x = x.numpy()
    x = np.asarray(x)
    if x.ndim != 2:
        raise WeightspaceError(
            f"{what}: expected a (T, n) array of snapshots, got shape {x.shape}; stack the "
            "flat parameter vectors as rows"
        )
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64 if x.dtype.kind in "iub" else np.float32)
    return x


def as_snapshots(
    x: SnapshotInput | Snapshots, *, what: str = "X", min_points: int = 2
) -> Snapshots:
    """Normalise a Trajectory, a list of them (a joint fit), or a ``(T, n)`` array/tensor
    (:class:`Snapshots` pass through unchanged).

    Raises:
        WeightspaceError: fewer than ``min_points`` snapshots, not 2-D, differing sizes.
        LayoutMismatchError: runs of different models in one joint projection.
    """
    if isinstance(x, Snapshots):
        return x
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    if not items:
        raise WeightspaceError(f"{what}: expected at least one run, got an empty list")
    rows: list[FileRow | np.ndarray] = []
    lengths, labels, steps, sources = [], [], [], []
    layout: ParamLayout | None = None
    n: int | None = None
    dtype = np.dtype(np.float32)
    for i, item in enumerate(items):
        if isinstance(item, Trajectory):
            if layout is None:
                layout = item.layout
            else:
                layout.check_compatible(item.layout, what=f"{what}: run {str(item.path)!r}")
            size = item.n_params
            rows.extend(FileRow.of(item, t) for t in range(len(item)))
            label = item.metadata.get("label") or item.path.name
            steps.append(np.asarray(item.steps, dtype=np.int64))
            if item.storage_dtype == np.float64:
                dtype = np.dtype(np.float64)
        else:
            item = _as_array(item, f"{what}[{i}]" if len(items) > 1 else what)
            size = item.shape[1]
            rows.extend(item)
            label = f"run{i}"
            steps.append(np.arange(len(item), dtype=np.int64))
            if item.dtype == np.float64:
                dtype = np.dtype(np.float64)
        if n is not None and size != n:
            raise WeightspaceError(
                f"{what}: run {i} has {size} parameters but run 0 has {n}; project runs of "
                "the same model together"
            )
        n = size
        lengths.append(len(steps[-1]))
        labels.append(str(label))
        sources.append(item)
    if len(rows) < min_points:
        raise WeightspaceError(
            f"{what}: expected at least {min_points} snapshots, got {len(rows)}; record more "
            "steps (or a smaller `every`)"
        )
    return Snapshots(
        tuple(rows), int(n), dtype, tuple(lengths), tuple(labels), tuple(steps), layout,
        tuple(sources),
    )  # fmt: skip


def chunk_columns(n_rows: int, n: int, itemsize: int, chunk_size: int | None, max_bytes: int):
    """Columns per block: ``chunk_size``, or what fits in ``max_bytes`` with headroom."""
    if chunk_size is None:
        max_bytes = positive_int(max_bytes, "max_bytes", "; give the block budget in bytes")
        chunk_size = max(1, int(0.6 * max_bytes) // (n_rows * itemsize))
    chunk_size = positive_int(chunk_size, "chunk_size", "; or None to derive it from max_bytes")
    return min(chunk_size, n)


def iter_blocks(
    x: SnapshotInput | Snapshots,
    *,
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = False,
    desc: str = "streaming",
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream parameter columns across all snapshots of one or several runs.

    Yields ``(start, block)`` with ``block: (T, c)`` C-contiguous, holding columns
    ``start:start + c`` of every snapshot in run order. The block is one reused buffer,
    overwritten by the next iteration: copy it to keep it. Its dtype is float32, or float64
    when any run is float64.

    Args:
        x: a Trajectory, a list of them, a ``(T, n)`` array or tensor, or :class:`Snapshots`
            (use :meth:`Snapshots.take` for a subset of snapshots).
        chunk_size: columns per block; default: what fits in ``max_bytes``.
        max_bytes: memory budget of the block (it takes at most 60% of it).
        progress: show a progress bar labelled ``desc``.

    Raises:
        WeightspaceError: bad ``chunk_size``/``max_bytes``, or an input :func:`as_snapshots`
            refuses. Values are not checked here: :func:`block_center` raises on NaN/inf.

    Example:
        >>> x = np.arange(12.0).reshape(2, 6)
        >>> [(start, block.shape) for start, block in iter_blocks(x, chunk_size=4)]
        [(0, (2, 4)), (4, (2, 2))]
    """
    snaps = as_snapshots(x, min_points=1)
    t = len(snaps)
    c = chunk_columns(t, snaps.n, snaps.dtype.itemsize, chunk_size, max_bytes)
    flat = np.empty(t * c, dtype=snaps.dtype)
    starts = range(0, snaps.n, c)
    keep_open = sum(isinstance(r, FileRow) for r in snaps.rows) <= MAX_OPEN_FILES
    fds: dict[str, int] = {}
    try:
        bar = progress_bar(starts, desc=desc, unit="block", enabled=progress, leave=False)
        for start in bar:
            stop = min(start + c, snaps.n)
            block = flat[: t * (stop - start)].reshape(t, stop - start)
            for r, row in enumerate(snaps.rows):
                if isinstance(row, FileRow):
                    fd = fds.get(row.path)
                    if fd is None:
                        fd = fds[row.path] = os.open(row.path, os.O_RDONLY)
                    row.read_into(block[r], start, fd)
                    if not keep_open:
                        os.close(fds.pop(row.path))
                else:
                    block[r] = row[start:stop]
            yield start, block
    finally:
        for fd in fds.values():
            os.close(fd)


def block_center(block: np.ndarray, snaps: Snapshots, start: int) -> np.ndarray:
    """Column means of a block ``(c,)`` float64; raises on NaN/inf naming the snapshot."""
    mean = block.mean(axis=0, dtype=np.float64)
    if not np.isfinite(mean).all():
        bad_rows = np.flatnonzero(~np.isfinite(block).all(axis=1))
        _raise_nonfinite(snaps, int(bad_rows[0]) if bad_rows.size else 0, start)
    return mean


def _raise_nonfinite(snaps: Snapshots, row: int, start: int) -> None:
    for r, s in enumerate(snaps.run_slices):
        if s.start <= row < s.stop:
            step = int(snaps.steps[r][row - s.start])
            raise WeightspaceError(
                f"snapshot at step {step} of run {snaps.labels[r]!r} holds NaN or inf (first "
                f"near parameter {start}); training diverged there: project the steps before it"
            )
