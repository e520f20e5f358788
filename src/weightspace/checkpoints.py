"""Import existing checkpoints (``torch.save`` state dicts, safetensors) as a run.

Checkpoints are read with ``torch.load(weights_only=True)``: a file whose unpickling would run
code is refused, never executed. The run is built in a temporary directory beside the target
and renamed into place only when every file has been imported, so a failure leaves nothing.
State dicts hold the model's buffers too (BatchNorm running statistics, ...): they are
imported beside the parameters, as the recorder stores them.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ._lock import DirectoryLock
from .buffer_layout import BUFFER_DTYPES, BufferLayout
from .errors import CorruptRunError, LayoutMismatchError, WeightspaceError, first_line
from .layout import ParamLayout
from .outputs import check_run_target
from .store import (
    BUFFERS,
    RUN_JSON,
    SNAPSHOTS,
    make_run_header,
    save_array,
    snapshot_name,
    write_json,
)

__all__ = ["expand_paths", "import_checkpoints", "load_state_dict", "natural_key", "step_from_name"]

NESTED_KEYS = ("model", "state_dict", "model_state_dict", "module", "net")
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def natural_key(path: str | Path) -> list[Any]:
    """Sort key that orders ``epoch_2`` before ``epoch_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Glob patterns, files and directories to a naturally sorted list of files."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Path] = []
    for item in items:
        s = str(item)
        if glob.has_magic(s):
            out += [Path(p) for p in glob.glob(s)]
        elif Path(s).is_dir():
            out += [
                p
                for p in Path(s).iterdir()
                if p.suffix in (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
            ]
        else:
            out.append(Path(s))
    if not out:
        raise WeightspaceError(f"paths: {items!r} matched no checkpoint file; check the pattern")
    return sorted(set(out), key=natural_key)


def step_from_name(path: Path) -> int | None:
    """The last integer in the file name's stem (``epoch_012.pt`` -> 12)."""
    nums = re.findall(r"\d+", path.stem)
    return int(nums[-1]) if nums else None


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict safely; unwrap ``{"model": state_dict}``-style nesting."""
    if not path.is_file():
        raise WeightspaceError(f"checkpoint {str(path)!r} does not exist; check the path")
    try:
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise WeightspaceError(
                    "reading .safetensors needs the safetensors package: "
                    "pip install 'weightspace[safetensors]'"
                ) from None
            obj: Any = load_file(str(path), device="cpu")
        else:
            with warnings.catch_warnings():  # the refusal below is the one line the user sees
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except WeightspaceError:
        raise
    except Exception as e:  # pickle.UnpicklingError and friends
        raise CorruptRunError(
            f"checkpoint {path}: refused or unreadable ({first_line(e, 200)}); only tensors "
            "and plain containers are loaded (weights_only=True)"
        ) from None
    for _ in range(3):
        if isinstance(obj, Mapping) and not _is_state_dict(obj):
            inner = next(
                (obj[k] for k in NESTED_KEYS if k in obj and isinstance(obj[k], Mapping)), None
            )
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise CorruptRunError(
            f"checkpoint {path}: no state dict of tensors found (looked under "
            f"{', '.join(NESTED_KEYS)}); save model.state_dict()"
        )
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _parameters_only(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Without a model: every floating tensor except BatchNorm statistics."""
    return {
        k: v for k, v in state.items() if v.is_floating_point() and not k.endswith(BUFFER_SUFFIXES)
    }


def _buffers_only(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Without a model: BatchNorm statistics and integer counters (``num_batches_tracked``)."""
    return {
        k: v
        for k, v in state.items()
        if str(v.dtype).removeprefix("torch.") in BUFFER_DTYPES
        and (k.endswith(BUFFER_SUFFIXES) or not v.is_floating_point())
    }


def _unprefix(state: dict[str, torch.Tensor], layout: ParamLayout) -> dict[str, torch.Tensor]:
    if not all(n in state for n in layout.names) and all(k.startswith("module.") for k in state):
        return {k.removeprefix("module."): v for k, v in state.items()}  # saved from DDP
    return state


def _flatten(state: dict[str, torch.Tensor], layout: ParamLayout, path: Path) -> torch.Tensor:
    try:
        return layout.flatten(state)
    except LayoutMismatchError as e:
        raise LayoutMismatchError(f"checkpoint {path}: {e}") from None


def _buffer_array(
    state: dict[str, torch.Tensor], layout: BufferLayout | None, path: Path
) -> np.ndarray | None:
    """The checkpoint's buffers, flat; None when it holds none of them (parameters only)."""
    if layout is None or not len(layout):
        return None
    present = [n for n in layout.names if n in state]
    if not present:
        return None
    try:
        return layout.flatten(state).numpy()
    except LayoutMismatchError as e:
        raise LayoutMismatchError(f"checkpoint {path}: {e}") from None


def import_checkpoints(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    run_dir: str | os.PathLike,
    *,
    model: torch.nn.Module | None = None,
    steps: Literal["names", "order"] | Sequence[int] = "names",
    dtype: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Build a run from checkpoint files.

    Args:
        paths: files, directories or glob patterns (``"ckpt/epoch_*.pt"``); sorted naturally.
        run_dir: the run to create; must not exist yet.
        model: the model the checkpoints belong to; its trainable parameters define the
            layout and its persistent buffers the recorded buffers (recommended). Without it
            every floating tensor except BatchNorm statistics is a parameter, in the file's
            order, and BatchNorm statistics and integer counters are the buffers.
        steps: ``"names"`` (the last number in each file name), ``"order"`` (0, 1, ...),
            or explicit step numbers.
        dtype: parameter storage dtype (``"float32"``, ``"float64"``, ``"float16"``); default
            float64 for float64 checkpoints, else float32.
        metadata: stored in ``run.json``.
        overwrite: replace a run that exists at ``run_dir`` (only a directory holding
            nothing but a weightspace run is replaced).

    Returns:
        the run directory.

    Raises:
        WeightspaceError: no files, duplicate or missing steps, the run exists.
        LayoutMismatchError: a checkpoint does not match the layout (names the tensor).
        CorruptRunError: a file is unreadable or would execute code when unpickled.
    """
    files = expand_paths(paths)
    run_dir = Path(run_dir)
    step_list = _steps_for(files, steps)
    check_run_target(run_dir, overwrite=overwrite)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = run_dir.with_name(f".{run_dir.name}.lock")
    with DirectoryLock(lock, f"run_dir {str(run_dir)!r}"):
        for stale in run_dir.parent.glob(f".{run_dir.name}.importing-*"):
            shutil.rmtree(stale, ignore_errors=True)  # ours, from an import that died
        if run_dir.exists() and any(run_dir.iterdir()):  # written while we waited
            raise WeightspaceError(f"run_dir: {str(run_dir)!r} already exists; choose another")
        tmp = run_dir.with_name(f".{run_dir.name}.importing-{os.getpid()}")
        try:
            header = _write_run(tmp, files, step_list, model, dtype, metadata)
            write_json(tmp / RUN_JSON, header)
            (tmp / "metrics.jsonl").write_text("")
            os.replace(tmp, run_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            lock.unlink(missing_ok=True)  # under the lock: the next writer makes its own
    return run_dir


def _write_run(
    tmp: Path,
    files: list[Path],
    step_list: list[int],
    model: torch.nn.Module | None,
    dtype: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Every checkpoint's parameters and buffers under ``tmp``; returns the run header."""
    layout = ParamLayout.from_module(model) if model is not None else None
    buffers = BufferLayout.from_module(model) if model is not None else None
    (tmp / SNAPSHOTS).mkdir(parents=True)
    recorded: list[bool] = []
    for f, step in zip(files, step_list):
        state = load_state_dict(f)
        if layout is None:
            layout = ParamLayout.from_state_dict(_parameters_only(state))
            buffers = BufferLayout.from_state_dict(_buffers_only(state))
        state = _unprefix(state, layout)
        if dtype is None:
            dtype = "float64" if layout.dtype == "float64" else "float32"
        flat = _flatten(state, layout, f).to(torch.float64 if dtype == "float64" else torch.float32)
        bufs = _buffer_array(state, buffers, f)
        recorded.append(bufs is not None)
        if bufs is not None:
            (tmp / BUFFERS).mkdir(exist_ok=True)
            save_array(tmp / BUFFERS / snapshot_name(step), bufs, fsync=False)
        save_array(
            tmp / SNAPSHOTS / snapshot_name(step),
            flat.numpy().astype(dtype, copy=False),
            fsync=False,
        )
    if any(recorded) and not all(recorded):
        bad = files[recorded.index(False)]
        raise LayoutMismatchError(
            f"checkpoint {bad}: holds no buffers (e.g. BatchNorm statistics) while other "
            "checkpoints do; import checkpoints saved the same way"
        )
    meta = {"imported_from": [str(f) for f in files], **dict(metadata or {})}
    header = make_run_header(layout, every=1, dtype=dtype, metadata=meta, buffers=buffers)
    if buffers is not None and len(buffers) and not any(recorded):
        header["buffers"] = None  # parameters only: eval-mode analyses say so
        header["metadata"]["buffers_missing"] = "the checkpoints hold no buffers"
    return header


def _steps_for(files: list[Path], steps: Any) -> list[int]:
    if isinstance(steps, str):
        if steps == "order":
            return list(range(len(files)))
        if steps != "names":
            raise WeightspaceError(f"steps: expected 'names', 'order' or a list, got {steps!r}")
        found = [step_from_name(f) for f in files]
        if any(s is None for s in found):
            bad = files[found.index(None)]
            raise WeightspaceError(
                f"steps: file name {bad.name!r} has no step number; use steps='order' "
                "or rename the files"
            )
    else:
        found = [int(s) for s in steps]
        if len(found) != len(files):
            raise WeightspaceError(f"steps: got {len(found)} steps for {len(files)} files")
    if len(set(found)) != len(found):
        dup = next(s for s in found if found.count(s) > 1)
        raise WeightspaceError(
            f"steps: step {dup} occurs twice among the file names; use steps='order'"
        )
    if any(s < 0 for s in found):
        raise WeightspaceError("steps: step numbers must be non-negative")
    return [int(s) for s in np.asarray(found)]
