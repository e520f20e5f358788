"""The run format on disk, and result artifacts.

A run is a directory, robust to ``kill -9``::

    RUN/run.json                  format_version, version, layout, buffer layout, recorder
                                  config, metadata
    RUN/buffers/<step:09d>.npy    the model's buffers at that step (BatchNorm statistics, ...),
                                  one flat float64 vector; written before the snapshot
    RUN/snapshots/<step:09d>.npy  flat parameter vector (temp name, fsync, rename)
    RUN/metrics.jsonl             one JSON object per recorded step; a torn last line is ignored

Format 1 (weightspace before buffers were recorded) is still read: its runs have no buffers.

Results (surfaces, spectra, ...) have their own format: :mod:`weightspace.results`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._threads import recorded_threads
from ._version import __version__
from .buffer_layout import BufferLayout
from .errors import CorruptRunError, WeightspaceError
from .layout import ParamLayout
from .optimizers import normalize_metadata

__all__ = [
    "atomic_path",
    "check_snapshot_header",
    "fsync_dir",
    "header_to_json",
    "list_snapshots",
    "load_snapshot",
    "make_run_header",
    "read_metrics",
    "read_npy_header",
    "read_run_header",
    "save_array",
    "snapshot_name",
    "write_json",
]

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: no buffers recorded
RUN_JSON = "run.json"
MAX_HEADER_BYTES = 64 * 2**20  # a run.json or a sidecar (layouts of huge models included)
MAX_METRICS_BYTES = 2**30  # metrics.jsonl: a million steps of a few dozen metrics
METRICS = "metrics.jsonl"
SNAPSHOTS = "snapshots"
BUFFERS = "buffers"
LOCK = ".lock"  # the writer's lock file (weightspace._lock)
SNAPSHOT_RE = re.compile(r"^(\d{9,})\.npy$")
STORAGE_DTYPES = ("float16", "float32", "float64")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def snapshot_name(step: int) -> str:
    return f"{int(step):09d}.npy"


# ---------------------------------------------------------------------------- atomic writes
def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True, fsync_parent: bool | None = None):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    ``fsync`` flushes the file before the rename; ``fsync_parent`` (default: as ``fsync``)
    also flushes the directory entry after it (callers writing many files do that once).

    On an exception the temporary file is removed, so no partial file is ever left at
    ``path``. The temporary name starts with ``.`` and ends with ``.tmp``; readers skip it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync if fsync_parent is None else fsync_parent:
            fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        named = _named_os_error(e, path)
        if named is e:
            raise
        raise named from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _named_os_error(e: OSError, path: Path) -> OSError:
    """``e`` with the file it was writing and, when the writer did not say (numpy's
    "N requested and M written"), ENOSPC if the disk is full."""
    code = e.errno
    if code is None:
        try:
            st = os.statvfs(path.parent)
            code = errno.ENOSPC if st.f_bavail * st.f_frsize < 2**20 else None
        except OSError:
            pass
    if code is None or (code == e.errno and e.filename is not None):
        return e
    return OSError(code, os.strerror(code), str(path))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def save_array(
    path: str | os.PathLike, array: np.ndarray, *, fsync: bool = True, fsync_parent: bool = True
) -> None:
    """Save one ``.npy`` atomically (temp name, fsync, rename)."""
    with atomic_path(path, fsync=fsync, fsync_parent=fsync_parent) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


# ---------------------------------------------------------------------------- run header
def read_run_header(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``run.json``.

    Raises:
        WeightspaceError: the directory is missing or is not a run.
        CorruptRunError: ``run.json`` cannot be parsed.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise WeightspaceError(f"run directory {str(run_dir)!r} does not exist; check the path")
    if not run_dir.is_dir():
        raise WeightspaceError(f"run {str(run_dir)!r} is a file, expected a run directory")
    header_path = run_dir / RUN_JSON
    if not header_path.exists() and not header_path.is_symlink():
        raise WeightspaceError(
            f"{str(run_dir)!r} is not a weightspace run (no {RUN_JSON}); record one with "
            "`weightspace record` or `weightspace import`"
        )
    regular_file(header_path, "run header", max_bytes=MAX_HEADER_BYTES)
    try:
        header = json.loads(header_path.read_text())
        if not isinstance(header, dict):
            raise TypeError("not a JSON object")
        layout = ParamLayout.from_dict(header["layout"])
        header["layout"] = layout
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CorruptRunError(f"{header_path}: unreadable run header ({e})") from None
    version = header.get("format_version")
    if version not in READABLE_VERSIONS:
        raise CorruptRunError(
            f"{header_path}: format_version {version!r} is not supported (expected one of "
            f"{READABLE_VERSIONS}); upgrade weightspace"
        )
    for key in ("metadata", "recorder"):
        if not isinstance(header.setdefault(key, {}), dict):
            raise CorruptRunError(
                f"{header_path}: {key!r} must be a JSON object, got "
                f"{type(header[key]).__name__}; restore the file or re-record the run"
            )
    _check_recorder(header["recorder"], header_path)
    buffers = header.get("buffers") if version >= 2 else None
    if buffers is not None:  # None: not recorded (format 1, or checkpoints without them)
        if not isinstance(buffers, Mapping):
            raise CorruptRunError(f"{header_path}: 'buffers' must be a buffer layout record")
        try:
            buffers = BufferLayout.from_dict(buffers)
        except WeightspaceError as e:
            raise CorruptRunError(f"{header_path}: {e}") from None
    header["buffers"] = buffers
    return header


def _check_recorder(recorder: dict[str, Any], where: Path) -> None:
    dtype = recorder.setdefault("dtype", "float32")
    if dtype not in STORAGE_DTYPES:
        raise CorruptRunError(
            f"{where}: recorder dtype {dtype!r} is not one of {STORAGE_DTYPES}; restore the file"
        )
    every = recorder.get("every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise CorruptRunError(
            f"{where}: recorder 'every' must be a positive integer, got {every!r}"
        )


def regular_file(path: Path, what: str, *, max_bytes: int | None = None) -> Path:
    """``path`` when it is a regular file (a symlink to one is followed) of at most
    ``max_bytes``: a FIFO, a device or a socket would block or never end.

    Raises:
        CorruptRunError: naming the file and what it is instead.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise CorruptRunError(f"{what} {path}: unreadable ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(st.st_mode)
            else "not a regular file (a FIFO, device or socket)"
        )
        raise CorruptRunError(
            f"{what} {path}: {kind}; put back the file weightspace wrote, or remove it"
        )
    if max_bytes is not None and st.st_size > max_bytes:
        raise CorruptRunError(
            f"{what} {path}: {st.st_size:,} bytes, more than the {max_bytes:,} such a file "
            "can hold; it is not weightspace's"
        )
    return path


def make_run_header(
    layout: ParamLayout,
    *,
    every: int,
    dtype: str,
    metadata: Mapping[str, Any] | None,
    buffers: BufferLayout | None = None,
) -> dict[str, Any]:
    """A ``run.json`` header; ``buffers`` None: a model without buffers."""
    buffers = buffers if buffers is not None else BufferLayout((), (), ())
    return {
        "format_version": FORMAT_VERSION,
        "weightspace_version": __version__,
        "layout": layout.to_dict(),
        "buffers": buffers.to_dict(),
        "recorder": {"every": int(every), "dtype": dtype, **recorded_threads()},
        "metadata": normalize_metadata(metadata or {}),
    }


def header_to_json(header: Mapping[str, Any]) -> dict[str, Any]:
    """A header read by :func:`read_run_header`, back in its JSON form."""
    out = dict(header)
    out["layout"] = header["layout"].to_dict()
    if header.get("buffers") is not None:
        out["buffers"] = header["buffers"].to_dict()
    else:
        out.pop("buffers", None)
    return out


# ---------------------------------------------------------------------------- snapshots
def list_snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every complete snapshot, sorted by step; temp files skipped."""
    snap_dir = run_dir / SNAPSHOTS
    if not snap_dir.is_dir():
        return []
    found = []
    for entry in os.scandir(snap_dir):
        m = SNAPSHOT_RE.match(entry.name)
        if m:
            found.append((int(m.group(1)), Path(entry.path)))
    found.sort()
    return found


def read_npy_header(path: str | os.PathLike) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data_offset)`` of an ``.npy`` file, reading no data."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        reader = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = reader(f)
        return shape, fortran, dtype, f.tell()


def check_snapshot_header(path: Path, n: int, dtype: np.dtype) -> None:
    """Check a snapshot's header and size without reading its data.

    Raises:
        CorruptRunError: naming the file, when it is truncated, holds objects (pickles),
        or has the wrong shape or dtype, or is not a regular file.
    """
    regular_file(path, "snapshot")
    try:
        shape, _, file_dtype, offset = read_npy_header(path)
        size = path.stat().st_size
    except (OSError, ValueError) as e:
        raise CorruptRunError(
            f"snapshot {path}: unreadable ({e}); delete or re-record it"
        ) from None
    if file_dtype.hasobject:
        raise CorruptRunError(
            f"snapshot {path}: holds Python objects (a pickle), refused; snapshots are plain "
            "float arrays; delete the file"
        )
    if shape != (n,) or file_dtype != dtype:
        raise CorruptRunError(
            f"snapshot {path}: expected shape ({n},) {dtype}, got {shape} {file_dtype}; "
            "the file does not belong to this run"
        )
    if size < offset + n * dtype.itemsize:
        raise CorruptRunError(
            f"snapshot {path}: truncated ({size} bytes, expected {offset + n * dtype.itemsize}); "
            "delete it or re-record the run"
        )


def load_snapshot(path: Path, n: int, dtype: np.dtype) -> np.ndarray:
    """Memory-map one snapshot read-only, refusing pickles; errors name the file."""
    check_snapshot_header(path, n, dtype)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CorruptRunError(
            f"snapshot {path}: unreadable ({e}); delete or re-record it"
        ) from None


# ---------------------------------------------------------------------------- metrics
def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Parse ``metrics.jsonl``; a torn (unterminated or unparseable) last line is ignored.

    Raises:
        CorruptRunError: a line other than the last cannot be parsed, a step is not a
        non-negative integer, or the file is not a regular file of sane size.
    """
    if not path.exists() and not path.is_symlink():
        return []
    regular_file(path, "metrics file", max_bytes=MAX_METRICS_BYTES)
    data = path.read_bytes()
    lines = data.split(b"\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        last = i >= len(lines) - 1 or not any(x.strip() for x in lines[i + 1 :])
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or "step" not in obj:
                raise ValueError("not an object with a 'step'")
        except ValueError as e:
            if last:
                break  # torn by a crash mid-write
            raise CorruptRunError(
                f"{path}: line {i + 1} is not valid JSON ({e}); truncate the file before that line"
            ) from None
        step = obj["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise CorruptRunError(
                f"{path}: line {i + 1} has step {step!r}, expected a non-negative integer; "
                "truncate the file before that line"
            )
        records.append(obj)
    return records
