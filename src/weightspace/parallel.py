"""torch.distributed helpers: ranks, shards, merging, rank-0 writes, per-rank partial files.

Under ``torchrun --nproc-per-node K`` every process runs the same program; grid points are
split by a fixed rule (point ``p`` belongs to rank ``p % K``), every rank checkpoints its own
points to its own partial file (so resume is safe per rank), and the ranks' rows are merged
by an all-reduce, after which rank 0 writes the result. Gloo on CPU, NCCL on GPU.
Without torch.distributed (or with one process) everything degrades to one process.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .errors import CorruptRunError, WeightspaceError
from .store import atomic_path, regular_file

__all__ = [
    "all_ranks_ok",
    "all_reduce_sum",
    "barrier",
    "env_rank_world",
    "fingerprint",
    "init_from_env",
    "is_distributed",
    "is_rank_zero",
    "load_partials",
    "local_device",
    "merge_rows",
    "partial_files",
    "partial_path",
    "rank",
    "rank_zero_writes",
    "remove_partials",
    "save_partial",
    "shard",
    "stored_engine",
    "world_size",
]

logger = logging.getLogger(__name__)
PARTIAL_FORMAT = 1


# ---------------------------------------------------------------------------- who am I
def env_rank_world() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` from the environment that ``torchrun`` sets (default 0, 1)."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise WeightspaceError(
            "RANK/WORLD_SIZE: expected integers in the environment; launch with torchrun"
        ) from None


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process' rank (0 outside torch.distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 outside torch.distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_rank_zero() -> bool:
    return rank() == 0


def local_device(prefer_cuda: bool = True) -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available (and preferred), else the CPU."""
    if prefer_cuda and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_from_env(device: torch.device | str | None = None, *, timeout_s: float = 1800) -> bool:
    """Join the process group that ``torchrun`` describes, when there is one.

    Args:
        device: the device this rank computes on; NCCL for CUDA, gloo otherwise.
        timeout_s: collective timeout.

    Returns:
        True when running distributed (more than one process). The group joined here is
        destroyed when the process exits.
    """
    _, world = env_rank_world()
    if world <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        dev = torch.device(device) if device is not None else local_device()
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        atexit.register(_leave)
        logger.info("joined %s process group: rank %d of %d", backend, rank(), world_size())
    return is_distributed()


def _leave() -> None:
    """Destroy the process group this process joined, before the interpreter tears down:
    gloo's threads destroyed at exit with the group still alive abort the process now and
    then ("terminate called without an active exception"), and torchrun reports the rank
    as failed."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------- work split
def shard(n_items: int, rank_: int | None = None, world: int | None = None) -> np.ndarray:
    """Indices of the items that belong to a rank: ``p % world == rank``, in order."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if not 0 <= rank_ < world:
        raise WeightspaceError(f"rank: expected 0 <= rank < {world}, got {rank_}")
    return np.arange(rank_, n_items, world, dtype=np.int64)


def _collective_device() -> torch.device:
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """Element-wise sum of a float64 array over all ranks (a copy outside distributed)."""
    arr = np.ascontiguousarray(array, dtype=np.float64)
    if not is_distributed():
        return arr.copy()
    t = torch.from_numpy(arr.copy()).to(_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def merge_rows(data: np.ndarray, mine: np.ndarray) -> np.ndarray:
    """Merge row-sharded results: each rank holds only its rows ``mine`` of ``data``.

    Rows are disjoint, so the sum over ranks of arrays that are zero outside one's own rows
    is exact (NaN in a row stays NaN).
    """
    local = np.zeros_like(data, dtype=np.float64)
    local[mine] = data[mine]
    return all_reduce_sum(local)


def all_ranks_ok(ok: bool) -> bool:
    """True when ``ok`` holds on every rank (so all ranks raise together, none hangs)."""
    if not is_distributed():
        return ok
    flag = all_reduce_sum(np.array([0.0 if ok else 1.0]))
    return float(flag[0]) == 0.0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def rank_zero_writes() -> Iterator[bool]:
    """``with rank_zero_writes() as writer: if writer: save(...)``; all ranks wait after."""
    try:
        yield is_rank_zero()
    finally:
        barrier()


# ---------------------------------------------------------------------------- partial files
def fingerprint(*parts: Any) -> str:
    """A hash of tensors, arrays and JSON-able settings, to match a checkpoint to its work."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().numpy()
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype.str, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def partial_path(prefix: str | os.PathLike, rank_: int, world: int) -> Path:
    """``PREFIX.rank{r}of{K}.partial.npz``: the checkpoint of one rank."""
    prefix = Path(prefix)
    return prefix.with_name(f"{prefix.name}.rank{rank_}of{world}.partial.npz")


def partial_files(prefix: str | os.PathLike) -> list[Path]:
    """Every rank's partial file for ``prefix`` (any world size)."""
    prefix = Path(prefix)
    if not prefix.parent.is_dir():
        return []
    return sorted(prefix.parent.glob(f"{prefix.name}.rank*of*.partial.npz"))


def save_partial(
    prefix: str | os.PathLike,
    key: str,
    done: np.ndarray,
    data: np.ndarray,
    engine: dict[str, Any] | None = None,
) -> Path:
    """Atomically write this rank's checkpoint: which points are done and their values.

    Args:
        prefix: the result path the partial file sits beside.
        key: the work's :func:`fingerprint`.
        done: ``(P,)`` bool, the points computed (by this rank).
        data: ``(P, F)`` float64, their values (rows not done are ignored).
        engine: how they were computed (compiled, channels-last, ...), so that a resumed
            run computes the rest the same way and equals an uninterrupted one bit for bit.
    """
    path = partial_path(prefix, rank(), world_size())
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": PARTIAL_FORMAT, "key": key, "engine": engine}
    meta = np.frombuffer(json.dumps(record).encode(), np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, done=done, data=data, meta=meta)
    return path


def load_partials(
    prefix: str | os.PathLike, key: str, n_points: int, n_fields: int
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """The union of every partial file of ``prefix`` (any rank, any world size).

    Returns:
        ``done: (P,)`` bool, ``data: (P, F)`` float64, and the files read.

    Raises:
        WeightspaceError: a file written for other work (different centre, directions,
        grid, data or options), or an unreadable file; the message names it.
    """
    done = np.zeros(n_points, dtype=bool)
    data = np.zeros((n_points, n_fields), dtype=np.float64)
    files = partial_files(prefix)
    for path in files:
        try:
            regular_file(path, "checkpoint")
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                d, v = z["done"], z["data"]
        except CorruptRunError:
            raise
        except (OSError, ValueError, KeyError) as e:
            raise WeightspaceError(
                f"checkpoint {path}: unreadable ({e}); delete it and start without resuming"
            ) from None
        if meta.get("key") != key or d.shape != (n_points,) or v.shape != (n_points, n_fields):
            raise WeightspaceError(
                f"checkpoint {path}: written for different settings (centre, directions, grid, "
                "data or precision); delete it or rerun with the same settings"
            )
        data[d] = v[d]
        done |= d
    return done, data, files


def stored_engine(files: list[Path]) -> dict[str, Any] | None:
    """The engine settings recorded with the first of ``files`` that has them (partial
    files read by :func:`load_partials`), or None."""
    for path in files:
        try:
            with np.load(path, allow_pickle=False) as z:
                engine = json.loads(bytes(z["meta"]).decode()).get("engine")
        except (OSError, ValueError, KeyError):
            continue
        if isinstance(engine, dict):
            return engine
    return None


def remove_partials(prefix: str | os.PathLike, *, all_ranks: bool = False) -> None:
    """Delete this rank's partial file (or every rank's, from one process)."""
    paths = partial_files(prefix) if all_ranks else [partial_path(prefix, rank(), world_size())]
    for p in paths:
        p.unlink(missing_ok=True)
