"""Recorder: snapshots of a model's parameters during training, written off the training thread.

The training thread only copies the parameters (and the model's buffers: BatchNorm running
statistics, spectral-norm vectors, ...) into flat host arrays; a background thread writes them
(temp file, fsync, rename; the buffers before the parameters, so a snapshot on disk always has
its buffers) and appends the metrics line, so a crash at any moment leaves every completed
snapshot intact and a ``metrics.jsonl`` whose torn last line is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._lock import DirectoryLock
from .buffer_layout import BufferLayout, persistent_buffers
from .errors import WeightspaceError, describe_os_error
from .layout import NameFilter, ParamLayout
from .optimizers import normalize_metadata
from .store import (
    BUFFERS,
    LOCK,
    METRICS,
    RUN_JSON,
    SNAPSHOTS,
    STORAGE_DTYPES,
    fsync_dir,
    header_to_json,
    make_run_header,
    read_run_header,
    save_array,
    snapshot_name,
    write_json,
)

__all__ = ["Recorder", "default_storage_dtype"]

log = logging.getLogger(__name__)
_STOP = object()


def _lower_thread_priority() -> None:
    """Let training threads win the CPU: on Linux a thread's nice value is its own."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


class Recorder:
    """Record a model's parameters every ``every`` steps into a run directory.

    Args:
        model: the module being trained; its trainable parameters are the snapshot, and its
            persistent buffers (BatchNorm running statistics, ...) are recorded beside it, so
            that eval-mode analyses of the run use the statistics of that step.
        run_dir: the run directory; created if missing. An existing run is appended to
            after checking that its layout matches the model.
        every: keep steps with ``step % every == 0``.
        dtype: parameter storage dtype, ``"float32"``, ``"float64"`` or ``"float16"`` (half
            the disk, ~3 significant digits); default float64 for a float64 model, else
            float32. Buffers are stored in float64 (exact).
        metadata: JSON-serialisable facts about the run (optimizer, lr, seeds, ...); merged
            into ``run.json``.
        include: record only parameters whose names match (glob pattern(s) or predicate).
        max_queue: snapshots waiting to be written before ``record`` blocks (memory bound).
        fsync: fsync each snapshot before renaming it (crash safety; on by default).
        append: append to an existing run (a resumed training); ``False`` refuses one.

    Example::

        rec = Recorder(model, "runs/sgd", every=10, metadata={"lr": 0.1})
        with rec:
            for step in range(1000):
                ...; optimizer.step()
                rec.record(step, loss=loss.item())
    """

    def __init__(
        self,
        model: torch.nn.Module,
        run_dir: str | os.PathLike,
        *,
        every: int = 1,
        dtype: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        include: NameFilter = None,
        max_queue: int = 4,
        fsync: bool = True,
        append: bool = True,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise WeightspaceError(f"every: expected a positive integer, got {every!r}")
        self.layout = ParamLayout.from_module(model, include)
        if dtype is None:
            dtype = _existing_dtype(Path(run_dir)) or default_storage_dtype(self.layout)
        if dtype not in STORAGE_DTYPES:
            raise WeightspaceError(f"dtype: expected one of {STORAGE_DTYPES}, got {dtype!r}")
        if max_queue < 1:
            raise WeightspaceError(f"max_queue: expected a positive integer, got {max_queue!r}")
        try:
            json.dumps(dict(metadata or {}))
        except TypeError as e:
            raise WeightspaceError(f"metadata: must be JSON-serialisable ({e})") from None
        self.model = model
        self.path = Path(run_dir)
        self.every = every
        self.dtype = dtype
        self._params = [dict(model.named_parameters())[n] for n in self.layout.names]
        buffers = persistent_buffers(model)
        self.buffer_layout = BufferLayout.from_state_dict(buffers)
        self._buffers = list(buffers.values())
        self._fsync = fsync
        self.created = False  # whether this recorder made the run directory
        self._lock = self._claim()
        try:
            self._open_run(metadata, append)
        except BaseException:
            if self.created:  # e.g. a full disk: no empty run directory is left
                shutil.rmtree(self.path, ignore_errors=True)
            self._lock.release()
            raise
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._error: BaseException | None = None
        self._closed = False
        self._metrics_file = open(self.path / METRICS, "ab")
        self._thread = threading.Thread(
            target=self._writer, name="weightspace-recorder", daemon=True
        )
        self._thread.start()

    def _claim(self) -> DirectoryLock:
        """Create the run directory if needed and take its writer's lock; then clear what a
        writer that died left half-done (temporary files, a torn metrics line)."""
        if self.path.exists() and not self.path.is_dir():
            raise WeightspaceError(f"run_dir: {str(self.path)!r} is a file; give a directory")
        try:
            self.path.mkdir(parents=True)
            self.created = True
        except FileExistsError:
            pass
        lock = DirectoryLock(self.path / LOCK, f"run_dir {str(self.path)!r}").acquire()
        for folder in (self.path, self.path / SNAPSHOTS, self.path / BUFFERS):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):  # atomic_path's names: ours, abandoned
                    tmp.unlink(missing_ok=True)
        _trim_torn_line(self.path / METRICS)
        return lock

    def _open_run(self, metadata: Mapping[str, Any] | None, append: bool) -> None:
        if (self.path / RUN_JSON).exists() and not append:
            raise WeightspaceError(
                f"run_dir: run {str(self.path)!r} already exists; choose a new directory"
            )
        if (self.path / RUN_JSON).exists():
            header = read_run_header(self.path)
            where = f"run {str(self.path)!r}"
            header["layout"].check_compatible(self.layout, what=where)
            if header["buffers"] is None:
                raise WeightspaceError(
                    f"run_dir: {where} has no recorded buffers (an older weightspace, or "
                    "checkpoints without them); record into a new directory"
                )
            header["buffers"].check_compatible(self.buffer_layout, what=where)
            stored = header.get("recorder", {}).get("dtype", "float32")
            if stored != self.dtype:
                raise WeightspaceError(
                    f"dtype: run {str(self.path)!r} stores {stored}, got {self.dtype!r}; "
                    "append with the same dtype"
                )
            if metadata:
                merged = {**header.get("metadata", {}), **dict(metadata)}
                header["metadata"] = normalize_metadata(merged)
                write_json(self.path / RUN_JSON, header_to_json(header))
        else:
            write_json(
                self.path / RUN_JSON,
                make_run_header(
                    self.layout,
                    every=self.every,
                    dtype=self.dtype,
                    metadata=metadata,
                    buffers=self.buffer_layout,
                ),
            )
        (self.path / SNAPSHOTS).mkdir(exist_ok=True)
        if len(self.buffer_layout):
            (self.path / BUFFERS).mkdir(exist_ok=True)

    # ------------------------------------------------------------------ training thread
    def wants(self, step: int) -> bool:
        """Whether :meth:`record` keeps ``step``."""
        return int(step) % self.every == 0

    def record(self, step: int, **metrics: float) -> bool:
        """Snapshot the parameters at ``step`` if ``step % every == 0``.

        Call it after ``optimizer.step()``. Metrics must be numbers (``loss=loss.item()``).

        Returns:
            whether the step was kept.

        Raises:
            WeightspaceError: the recorder is closed, or the writer thread failed (the
            message carries its error).
        """
        self._raise_if_failed()
        if self._closed:
            raise WeightspaceError("record: the recorder is closed; open a new Recorder")
        if not self.wants(step):
            return False
        flat = self.snapshot_array()
        bufs = self.buffer_array() if self._buffers else None
        line = {"step": int(step)}
        for k, v in metrics.items():
            line[k] = float(v.item() if isinstance(v, torch.Tensor) else v)
        self._put((int(step), flat, bufs, line))
        return True

    def snapshot_array(self) -> np.ndarray:
        """The current parameters as one flat host array in the storage dtype."""
        with torch.no_grad():
            parts = [p.detach().reshape(-1) for p in self._params]
            flat = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
            flat = flat.to(device="cpu")
        if flat.dtype == torch.bfloat16:
            flat = flat.float()
        return flat.numpy().astype(self.dtype, copy=False)

    def buffer_array(self) -> np.ndarray:
        """The current buffers as one flat float64 host array (:class:`BufferLayout`)."""
        with torch.no_grad():
            parts = [
                b.detach().reshape(-1).to(device="cpu", dtype=torch.float64) for b in self._buffers
            ]
            return torch.cat(parts).numpy()

    def _put(self, item: Any) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            e = self._error
            why = describe_os_error(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
            raise WeightspaceError(
                f"run_dir: the recorder for {str(self.path)!r} failed to write: {why}"
            ) from e

    # ------------------------------------------------------------------ writer thread
    def _writer(self) -> None:
        _lower_thread_priority()
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:
                    step, flat, bufs, line = item
                    if bufs is not None:  # first: a snapshot on disk always has its buffers
                        save_array(
                            self.path / BUFFERS / snapshot_name(step),
                            bufs,
                            fsync=self._fsync,
                            fsync_parent=False,
                        )
                    save_array(
                        self.path / SNAPSHOTS / snapshot_name(step),
                        flat,
                        fsync=self._fsync,
                        fsync_parent=False,  # once, in close()
                    )
                    self._metrics_file.write(json.dumps(line).encode() + b"\n")
                    self._metrics_file.flush()
            except BaseException as e:  # reported to the training thread
                self._error = e
                log.error("weightspace recorder: %s", e)
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Block until every snapshot recorded so far is on disk."""
        self._queue.join()
        self._raise_if_failed()

    def close(self) -> None:
        """Drain the queue, stop the writer and close files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        if self._fsync:
            try:
                os.fsync(self._metrics_file.fileno())
            except OSError:
                pass
            fsync_dir(self.path / SNAPSHOTS)
            if self._buffers:
                fsync_dir(self.path / BUFFERS)
        self._metrics_file.close()
        if self._error is not None:  # the lock stays with a failed run until discard()
            self._raise_if_failed()  # (or the end of the process) decides what to keep
        self._lock.release()

    def discard(self) -> bool:
        """Stop recording and remove the run directory if this recorder created it (a run
        that failed before it was worth keeping); a run it appended to is left as it was.

        Returns:
            whether the directory was removed.
        """
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
            self._metrics_file.close()
        removed = False
        if self.created and self._lock.held:  # still ours: no other writer can be inside
            shutil.rmtree(self.path, ignore_errors=True)
            removed = True
        self._lock.release()
        return removed

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort: never lose queued snapshots
        try:
            if not self._closed and self._thread.is_alive():
                self.close()
        except Exception:
            pass
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()


def default_storage_dtype(layout: ParamLayout) -> str:
    """float64 for a float64 model (nothing lost), else float32."""
    return "float64" if layout.dtype == "float64" else "float32"


def _existing_dtype(run_dir: Path) -> str | None:
    """The storage dtype of the run being appended to, if there is one."""
    if not (run_dir / RUN_JSON).is_file():
        return None
    return read_run_header(run_dir).get("recorder", {}).get("dtype")


def _trim_torn_line(path: Path) -> None:
    """Cut a last line that a killed writer left without its newline (so appending after it
    keeps the file valid JSON lines)."""
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
