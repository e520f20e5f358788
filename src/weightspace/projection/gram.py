"""Snapshot sources, column streaming and the T×T Gram matrix.

Every projection here works on the ``T × T`` Gram matrix of the snapshots, never on a dense
``T × n`` copy: parameter columns are streamed in blocks across all snapshots
(memory-mapped runs or in-memory arrays), each block is multiplied with BLAS ``syrk`` in the
block's dtype and added to a float64 accumulator. Before the multiplication a block is
translated by its own column mean, which leaves every centred quantity unchanged (centring is
then applied exactly to the Gram matrix) and keeps float32 round-off relative to the spread
of the trajectory instead of to the size of the weights.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.linalg import blas, eigh
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ..errors import WeightspaceError
from ..layout import ParamLayout
from ..store import read_npy_header
from ..trajectory import DEFAULT_MAX_BYTES, Trajectory

MAX_OPEN_FILES = 256
SINGLE_THREAD_EIGEN_MAX_T = 2000
Centering = Literal["mean", "final", "none"]
Distance = Literal["cosine", "euclidean", "cosine_raw"]
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


def as_snapshots(x: SnapshotInput, *, what: str = "X", min_points: int = 2) -> Snapshots:
    """Normalise a Trajectory, a list of them (a joint fit), or a ``(T, n)`` array/tensor.

    Raises:
        WeightspaceError: fewer than ``min_points`` snapshots, not 2-D, differing sizes.
        LayoutMismatchError: runs of different models in one joint projection.
    """
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
        if max_bytes < 1:
            raise WeightspaceError(f"max_bytes: expected a positive integer, got {max_bytes}")
        chunk_size = max(1, int(0.6 * max_bytes) // (n_rows * itemsize))
    if isinstance(chunk_size, bool) or int(chunk_size) < 1:
        raise WeightspaceError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    return min(int(chunk_size), n)


def iter_blocks(
    snaps: Snapshots,
    *,
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = False,
    desc: str = "streaming",
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)``, ``block: (T, c)`` C-contiguous, one reused buffer.

    Non-finite values raise at once, naming the run and step of the snapshot.
    """
    t = len(snaps)
    c = chunk_columns(t, snaps.n, snaps.dtype.itemsize, chunk_size, max_bytes)
    flat = np.empty(t * c, dtype=snaps.dtype)
    starts = range(0, snaps.n, c)
    keep_open = sum(isinstance(r, FileRow) for r in snaps.rows) <= MAX_OPEN_FILES
    fds: dict[str, int] = {}
    try:
        for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
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


def syrk_into(acc: np.ndarray, block: np.ndarray) -> None:
    """``acc += block @ block.T`` (upper triangle), BLAS syrk in the block's dtype."""
    fn = blas.dsyrk if block.dtype == np.float64 else blas.ssyrk
    acc += fn(1.0, block.T, trans=1, lower=0)


def centering_weights(t: int, center: Centering) -> np.ndarray | None:
    """``w (T,)`` with the centre ``w @ X``: the mean, the final snapshot, or None."""
    if center == "mean":
        return np.full(t, 1.0 / t)
    if center == "final":
        w = np.zeros(t)
        w[-1] = 1.0
        return w
    return None


def center_gram(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Gram of ``X − 1 wᵀX`` from the Gram of any translate of ``X``: ``(I−1wᵀ) G (I−w1ᵀ)``."""
    gw = g @ w
    return g - gw[None, :] - gw[:, None] + float(w @ gw)


def gram_matrix(
    x: SnapshotInput | Snapshots,
    *,
    center: Centering = "mean",
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = False,
) -> np.ndarray:
    """The ``(T, T)`` float64 Gram matrix of the snapshots, in one streaming pass.

    Args:
        x: a Trajectory, a list of them (rows in run order), or a ``(T, n)`` array.
        center: ``"mean"`` (``X − mean``), ``"final"`` (``X − θ_T``, the last snapshot of
            the last run) or ``"none"`` (raw inner products).
        chunk_size: parameter columns per streamed block; default from ``max_bytes``.
        max_bytes: memory budget of the streamed block.
        progress: show a progress bar.

    Returns:
        ``G: (T, T)``, ``G[i, j] = (x_i − c)·(x_j − c)``.

    Raises:
        WeightspaceError: fewer than 2 snapshots, NaN/inf snapshots, mismatched runs.

    Example:
        >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
        >>> gram_matrix(x).round(6).tolist()
        [[1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 1.0]]
    """
    snaps = x if isinstance(x, Snapshots) else as_snapshots(x)
    t = len(snaps)
    acc = np.zeros((t, t), dtype=np.float64)
    for start, block in iter_blocks(
        snaps, chunk_size=chunk_size, max_bytes=max_bytes, progress=progress, desc="Gram"
    ):
        mean = block_center(block, snaps, start)
        if center != "none":
            block -= mean.astype(block.dtype)
        syrk_into(acc, block)
    g = np.triu(acc) + np.triu(acc, 1).T
    w = centering_weights(t, center)
    return g if w is None else center_gram(g, w)


def dense_solver_threads(t: int):
    """Context for dense ``T × T`` work (eigensolvers, MDS): one BLAS thread up to T = 2000.

    At this size symmetric eigensolvers are chains of small BLAS calls and the MDS loop is
    memory-bound; with several threads on a busy machine their synchronisation costs far
    more than it saves (measured on a loaded 2-core host: a 1000 × 1000 ``eigvalsh`` took
    0.2 s on one thread and 4–7 s on two; a ``(1000, 1000) @ (1000, 2)`` product 1.2 ms and
    12 ms).
    """
    return threadpool_limits(1) if t <= SINGLE_THREAD_EIGEN_MAX_T else contextlib.nullcontext()


def top_eigen(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest ``k`` eigenpairs of a symmetric ``(T, T)`` matrix, descending."""
    t = len(g)
    with dense_solver_threads(t):
        if k > t // 2:
            lam, u = np.linalg.eigh(g)
        else:
            lam, u = eigh(g, subset_by_index=(t - k, t - 1), driver="evr")
    order = np.argsort(lam)[::-1][:k]
    return lam[order], u[:, order]


def distances_from_gram(g: np.ndarray, metric: Literal["cosine", "euclidean"]) -> np.ndarray:
    """Pairwise distances ``(T, T)`` from a Gram matrix (zero diagonal, symmetric).

    ``cosine`` is ``1 − cos``; a zero vector has distance 1 to every other point.
    """
    d = np.diag(g).copy()
    if metric == "euclidean":
        out = np.sqrt(np.maximum(d[:, None] + d[None, :] - 2.0 * g, 0.0))
    else:
        norms = np.sqrt(np.maximum(d, 0.0))
        denom = norms[:, None] * norms[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.where(denom > 0, g / np.where(denom > 0, denom, 1.0), 0.0)
        out = np.clip(1.0 - cos, 0.0, 2.0)
    out = 0.5 * (out + out.T)
    np.fill_diagonal(out, 0.0)
    return out


def distance_matrix(
    x: SnapshotInput | Snapshots,
    distance: Distance = "cosine",
    *,
    n_pca: int | None = 100,
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = False,
) -> np.ndarray:
    """Pairwise snapshot distances ``(T, T)`` computed from the Gram matrix.

    Args:
        x: snapshots (see :func:`gram_matrix`).
        distance: ``"cosine"`` or ``"euclidean"`` between centred PCA scores (the top
            ``n_pca`` components; what the PHATE reference code computes), or
            ``"cosine_raw"`` between the raw parameter vectors.
        n_pca: components kept for ``cosine``/``euclidean``; None keeps all (exact).

    Returns:
        ``D: (T, T)`` float64, symmetric, zero diagonal.
    """
    if distance not in ("cosine", "euclidean", "cosine_raw"):
        raise WeightspaceError(
            f"distance: expected 'cosine', 'euclidean' or 'cosine_raw', got {distance!r}"
        )
    if n_pca is not None and (isinstance(n_pca, bool) or int(n_pca) < 1):
        raise WeightspaceError(f"n_pca: expected a positive integer or None, got {n_pca!r}")
    center: Centering = "none" if distance == "cosine_raw" else "mean"
    g = gram_matrix(x, center=center, chunk_size=chunk_size, max_bytes=max_bytes, progress=progress)
    if center == "mean" and n_pca is not None and n_pca < len(g) - 1:
        lam, u = top_eigen(g, int(n_pca))
        g = (u * np.maximum(lam, 0.0)) @ u.T
    return distances_from_gram(g, "euclidean" if distance == "euclidean" else "cosine")
