"""Trajectory: a recorded run read lazily from disk.

Snapshots are memory-mapped, never loaded all at once;
:func:`weightspace.projection.iter_blocks` streams ``(T, chunk)`` blocks of parameter columns
across all snapshots of one run or several, so that analyses (PCA's Gram matrix, distances)
work on runs larger than RAM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .buffer_layout import BufferLayout
from .errors import CorruptRunError, WeightspaceError
from .layout import ParamLayout
from .optimizers import normalize_metadata
from .store import (
    BUFFERS,
    METRICS,
    check_snapshot_header,
    list_snapshots,
    load_snapshot,
    read_metrics,
    read_run_header,
)

__all__ = ["Trajectory"]


class Trajectory:
    """A run on disk: ``len(traj)`` snapshots at ``traj.steps``.

    Use :meth:`load`; the constructor only stores.

    Example:
        >>> from weightspace.projection import iter_blocks
        >>> traj = Trajectory.load("runs/sgd")                   # doctest: +SKIP
        >>> for start, block in iter_blocks(traj, chunk_size=4096):  # doctest: +SKIP
        ...     ...  # block: (len(traj), <=4096), columns start..start+block.shape[1]
    """

    def __init__(
        self,
        path: Path,
        layout: ParamLayout,
        steps: np.ndarray,
        files: list[Path],
        storage_dtype: np.dtype,
        metadata: dict[str, Any],
        recorder: dict[str, Any],
        metric_records: list[dict[str, Any]],
        buffer_layout: BufferLayout | None = None,
        format_version: int = 2,
    ) -> None:
        self.path = path
        self.layout = layout
        self.steps = steps
        self._files = files
        self.storage_dtype = storage_dtype
        self.metadata = metadata
        self.recorder = recorder
        self._metric_records = metric_records
        self._maps: dict[int, np.ndarray] = {}
        self.buffer_layout = buffer_layout
        self.format_version = format_version

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, run_dir: str | os.PathLike, *, validate: bool = True) -> Trajectory:
        """Open a run directory.

        Args:
            run_dir: a directory written by :class:`~weightspace.Recorder`,
                ``weightspace record`` or :func:`~weightspace.import_checkpoints`.
            validate: check every snapshot's header and size now (cheap; no data read),
                so a truncated or corrupt file is reported before any long computation.

        Raises:
            WeightspaceError: missing directory, not a run, no snapshots.
            CorruptRunError: a corrupt snapshot (the error names the file) or metrics line.
        """
        path = Path(run_dir)
        header = read_run_header(path)
        layout: ParamLayout = header["layout"]
        recorder = header.get("recorder", {})
        storage = np.dtype(recorder.get("dtype", "float32"))
        found = list_snapshots(path)
        if not found:
            raise WeightspaceError(
                f"run {str(path)!r} has no snapshots yet; record at least one step"
            )
        buffers: BufferLayout | None = header["buffers"]
        if validate:
            for _, f in found:
                check_snapshot_header(f, layout.numel, storage)
                if buffers is not None and len(buffers):
                    bf = path / BUFFERS / f.name
                    if not bf.is_file():
                        raise CorruptRunError(
                            f"buffers {bf}: missing for snapshot {f.name}; the run is damaged, "
                            "re-record it"
                        )
                    check_snapshot_header(bf, buffers.numel, np.dtype(np.float64))
        steps = np.array([s for s, _ in found], dtype=np.int64)
        return cls(
            path,
            layout,
            steps,
            [f for _, f in found],
            storage,
            normalize_metadata(header.get("metadata", {})),
            recorder,
            read_metrics(path / METRICS),
            buffers,
            int(header["format_version"]),
        )

    # ------------------------------------------------------------------ basic access
    def __len__(self) -> int:
        return len(self._files)

    def __repr__(self) -> str:
        return (
            f"Trajectory({str(self.path)!r}, snapshots={len(self)}, "
            f"params={self.n_params}, steps={self.steps[0]}..{self.steps[-1]})"
        )

    @property
    def n_params(self) -> int:
        return self.layout.numel

    @property
    def files(self) -> list[Path]:
        return list(self._files)

    @property
    def nbytes(self) -> int:
        """Size of all snapshot files on disk."""
        return sum(f.stat().st_size for f in self._files)

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """Recorded metrics by name, each ``(len(self),)`` aligned with :attr:`steps`.

        NaN where a step has no value; when a step was recorded twice (a resumed run),
        the last record wins.
        """
        index = {int(s): i for i, s in enumerate(self.steps)}
        out: dict[str, np.ndarray] = {}
        for rec in self._metric_records:
            i = index.get(int(rec["step"]))
            if i is None:
                continue
            for k, v in rec.items():
                if k == "step" or not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                arr = out.setdefault(k, np.full(len(self), np.nan))
                arr[i] = v
        return out

    def index_of(self, step: int) -> int:
        """Index of the snapshot recorded at ``step``."""
        hits = np.flatnonzero(self.steps == int(step))
        if hits.size == 0:
            raise WeightspaceError(
                f"step {step} is not in run {str(self.path)!r}; recorded steps are "
                f"{self.steps[0]}..{self.steps[-1]} (every {self.recorder.get('every', '?')})"
            )
        return int(hits[0])

    def snapshot(self, i: int) -> np.ndarray:
        """Snapshot ``i`` (negative indices allowed) as a read-only memory map ``(n,)``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"snapshot index {i} out of range for {len(self)} snapshots")
        i %= len(self)
        if i not in self._maps:
            self._maps[i] = load_snapshot(self._files[i], self.n_params, self.storage_dtype)
        return self._maps[i]

    def theta(
        self, i: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """Snapshot ``i`` as a new torch tensor ``(n,)``."""
        return torch.from_numpy(np.array(self.snapshot(i))).to(device=device, dtype=dtype)

    def array(self, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """All snapshots as one in-memory ``(T, n)`` array (small runs only)."""
        out = np.empty((len(self), self.n_params), dtype=dtype)
        for i in range(len(self)):
            out[i] = self.snapshot(i)
        return out

    # ------------------------------------------------------------------ buffers
    @property
    def records_buffers(self) -> bool:
        """Whether the run recorded its model's buffers (format 2; False for older runs)."""
        return self.buffer_layout is not None

    def buffers(
        self,
        i: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ) -> dict[str, torch.Tensor] | None:
        """The model's buffers at snapshot ``i`` (BatchNorm statistics, ...), each in its own
        dtype (floating ones in ``dtype`` when given); ``{}`` for a model without buffers and
        None when the run did not record them (format 1)."""
        if self.buffer_layout is None:
            return None
        if not len(self.buffer_layout):
            return {}
        return self.buffer_layout.unflatten(self.buffer_array(i), dtype=dtype, device=device)

    def buffer_array(self, i: int) -> np.ndarray:
        """Snapshot ``i``'s buffers as one flat float64 array (:class:`BufferLayout`)."""
        if self.buffer_layout is None:
            raise WeightspaceError(
                f"run {str(self.path)!r} has no recorded buffers (written by an older "
                "weightspace, format 1)"
            )
        if not -len(self) <= i < len(self):
            raise IndexError(f"snapshot index {i} out of range for {len(self)} snapshots")
        f = self.path / BUFFERS / self._files[i % len(self)].name
        if not f.is_file():
            raise CorruptRunError(
                f"buffers {f}: missing for a recorded snapshot; the run is damaged, re-record it"
            )
        return np.array(load_snapshot(f, self.buffer_layout.numel, np.dtype(np.float64)))
