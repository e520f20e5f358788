"""Import existing checkpoints, in the forms users have, as a run.

The forms (read by :mod:`weightspace._checkpoint_formats`): ``torch.save`` state dicts, also
nested once or twice under ``model``, ``state_dict``, ``model_state_dict``, ``module``,
``net`` or ``ema``; Lightning ``.ckpt`` files; ``.safetensors`` files; Hugging Face folders
(``model.safetensors``, sharded safetensors, ``pytorch_model.bin``, sharded ``.bin``), one
folder per checkpoint (a Trainer's ``checkpoint-500/``); ``torch.distributed.checkpoint``
directories (with the model).

Given the model, its tensors are found under whatever prefix wraps them in the checkpoint: a
LightningModule's attribute (``net.``), DDP's ``module.``, ``torch.compile``'s ``_orig_mod.``,
or several of these. The one prefix under which every tensor of the model is present with its
shape is taken; several such prefixes are refused (``prefix=`` chooses). Parameters tied in the
model (GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``) are one tensor of the layout,
stored in the checkpoint under either name or under both (then equal). Frozen parameters are
not in the layout (:meth:`~weightspace.ParamLayout.from_module`) and are ignored.

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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ._checkpoint_formats import (
    CHECKPOINT_SUFFIXES,
    NESTED_KEYS,
    Target,
    checkpoint_dir_kind,
    dcp_index,
    normalised,
    read_dcp,
    read_state,
    target_from_model,
    target_from_state,
)
from ._lock import DirectoryLock
from .errors import LayoutMismatchError, WeightspaceError
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

__all__ = [
    "NESTED_KEYS",
    "expand_paths",
    "import_checkpoints",
    "load_state_dict",
    "natural_key",
    "step_from_name",
]

load_state_dict = read_state  # the public name of the reader of one checkpoint


def natural_key(path: str | Path) -> list[Any]:
    """Sort key that orders ``epoch_2`` before ``epoch_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Glob patterns, files and directories to a naturally sorted list of checkpoints.

    A checkpoint is a file or a checkpoint folder (Hugging Face, ``torch.distributed
    .checkpoint``). Any other directory stands for the checkpoint folders in it or, when it
    holds none, for its ``.pt``, ``.pth``, ``.bin``, ``.ckpt`` and ``.safetensors`` files.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Path] = []
    for item in items:
        s = str(item)
        if glob.has_magic(s):
            out += [p for p in map(Path, glob.glob(s)) if not p.is_dir() or checkpoint_dir_kind(p)]
        elif Path(s).is_dir():
            out += _checkpoints_in(Path(s))
        else:
            out.append(Path(s))
    if not out:
        raise WeightspaceError(f"paths: {items!r} matched no checkpoint file; check the pattern")
    return sorted(set(out), key=natural_key)


def _checkpoints_in(folder: Path) -> list[Path]:
    inner = sorted((p for p in folder.iterdir() if checkpoint_dir_kind(p)), key=natural_key)
    if checkpoint_dir_kind(folder):
        if inner:
            raise WeightspaceError(
                f"paths: {str(folder)!r} is a checkpoint and also holds checkpoint folders "
                f"({inner[0].name}, ...); pass '{folder}/{inner[0].name[:1]}*' for those, or "
                "the files of the one checkpoint"
            )
        return [folder]
    if inner:
        return inner
    return [p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file()]


def step_from_name(path: Path) -> int | None:
    """The step in a checkpoint's name: the number after ``step`` (``epoch=1-step=300.ckpt``
    -> 300, ``global_step500`` -> 500), else the last number (``epoch_012.pt`` -> 12,
    ``checkpoint-500/`` -> 500)."""
    name = path.name if path.is_dir() else path.stem
    nums = re.findall(r"step[=_-]?(\d+)", name, flags=re.IGNORECASE) or re.findall(r"\d+", name)
    return int(nums[-1]) if nums else None


# ---------------------------------------------------------------- matching keys to the target
def _match(
    shapes: Mapping[str, tuple[int, ...]], target: Target, prefix: str | None, where: Path
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """The checkpoint keys of every parameter (several for tied ones) and of the buffers
    present, under the one prefix that holds all the parameters.

    Raises:
        LayoutMismatchError: several prefixes hold them all, or none does (naming the first
            missing or mis-shaped tensor under the best one).
    """
    names = [n for n in target.layout.names if "_orig_mod" in n]
    norm = normalised(shapes, keep_compiled=bool(names))
    want = dict(zip(target.layout.names, target.layout.shapes))

    def found(p: str) -> int:
        return sum(
            any(shapes.get(norm.get(p + a, ""), ()) == s for a in target.aliases.get(n, (n,)))
            for n, s in want.items()
        )

    candidates = [prefix] if prefix is not None else _prefixes(norm, target)
    full = [p for p in candidates if found(p) == len(want)]
    if len(full) > 1:
        raise LayoutMismatchError(
            f"checkpoint {where}: every tensor of the model is there under several prefixes "
            f"({', '.join(map(repr, full))}); pass prefix= with the one to import"
        )
    p = full[0] if full else max(candidates, key=lambda c: (found(c), -len(c)), default="")
    params: dict[str, tuple[str, ...]] = {}
    for n, s in want.items():
        keys = tuple(norm[p + a] for a in target.aliases.get(n, (n,)) if p + a in norm)
        if not keys:
            looked = f" (looked for {p + n!r})" if p else ""
            raise LayoutMismatchError(
                f"checkpoint {where}: tensor {n!r} is missing{looked}; pass the model the "
                "checkpoints were saved from"
            )
        _check_shape(n, s, keys, shapes, where)
        params[n] = keys
    buffers = {b: norm[p + b] for b in target.buffers.names if p + b in norm}
    for b, s in zip(target.buffers.names, target.buffers.shapes):
        if b in buffers:
            _check_shape(b, s, (buffers[b],), shapes, where, what="buffer")
    return params, buffers


def _prefixes(norm: Mapping[str, str], target: Target) -> list[str]:
    """Every ``p`` such that some key is ``p + name`` for a name of the target."""
    names = {a for n in target.layout.names for a in target.aliases.get(n, (n,))}
    out: dict[str, None] = {}
    for key in norm:
        parts = key.split(".")
        for i in range(len(parts)):
            if ".".join(parts[i:]) in names:
                out.setdefault("".join(f"{q}." for q in parts[:i]), None)
    return list(out)


def _check_shape(
    name: str,
    shape: tuple[int, ...],
    keys: Sequence[str],
    shapes: Mapping[str, tuple[int, ...]],
    where: Path,
    what: str = "tensor",
) -> None:
    for k in keys:
        if tuple(shapes[k]) != tuple(shape):
            under = f" (as {k!r})" if k != name else ""
            raise LayoutMismatchError(
                f"checkpoint {where}: {what} {name!r}{under} has shape {tuple(shapes[k])}, the "
                f"model {tuple(shape)}; pass the model the checkpoints were saved from"
            )


def _read_checkpoint(
    path: Path, target: Target | None, prefix: str | None
) -> tuple[Target, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One checkpoint's parameters and buffers by the target's names (the target from the
    checkpoint itself when None); the file or folder is read once."""
    if checkpoint_dir_kind(path) == "dcp":
        if target is None:
            raise WeightspaceError(
                f"checkpoint {path}: a torch.distributed.checkpoint directory is imported with "
                "its model; pass model= (weightspace import --problem)"
            )
        index = dcp_index(path)
        params, buffers = _match({k: s for k, (s, _) in index.items()}, target, prefix, path)
        wanted = [*(k for ks in params.values() for k in ks), *buffers.values()]
        raw = read_dcp(path, {k: index[k] for k in wanted})
    else:
        raw = read_state(path)
        target = target or target_from_state(raw)
        params, buffers = _match({k: tuple(v.shape) for k, v in raw.items()}, target, prefix, path)
    state = {}
    for name, keys in params.items():
        t = raw[keys[0]]
        other = next((k for k in keys[1:] if not torch.equal(raw[k], t)), None)
        if other is not None:
            raise LayoutMismatchError(
                f"checkpoint {path}: {keys[0]!r} and {other!r} are one tied parameter of the "
                "model but differ in the checkpoint; pass a model whose weights are not tied"
            )
        state[name] = t
    return target, state, {b: raw[k] for b, k in buffers.items()}


# ---------------------------------------------------------------- the import
def import_checkpoints(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    run_dir: str | os.PathLike,
    *,
    model: torch.nn.Module | None = None,
    steps: Literal["names", "order"] | Sequence[int] = "names",
    dtype: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    prefix: str | None = None,
) -> Path:
    """Build a run from checkpoint files and folders.

    Args:
        paths: files, checkpoint folders, directories or glob patterns (``"ckpt/epoch_*.pt"``,
            ``"out/checkpoint-*"``); sorted naturally. Forms: see :mod:`weightspace.checkpoints`.
        run_dir: the run to create; must not exist yet.
        model: the model the checkpoints belong to; its trainable parameters define the
            layout and its persistent buffers the recorded buffers (recommended; needed for
            ``torch.distributed.checkpoint`` directories). Without it every floating tensor
            except BatchNorm statistics is a parameter, in the file's order, and BatchNorm
            statistics and integer counters are the buffers.
        steps: ``"names"`` (the number after ``step`` in each name, else the last number:
            ``epoch=0-step=300.ckpt``, ``checkpoint-500/``), ``"order"`` (0, 1, ...), or
            explicit step numbers.
        dtype: parameter storage dtype (``"float32"``, ``"float64"``, ``"float16"``); default
            float64 for float64 checkpoints, else float32.
        metadata: stored in ``run.json``.
        overwrite: replace a run that exists at ``run_dir`` (only a directory holding
            nothing but a weightspace run is replaced).
        prefix: the prefix of the model's tensors in the checkpoints (``"net."``); default:
            found by matching the model's tensor names and shapes.

    Returns:
        the run directory.

    Raises:
        WeightspaceError: no files, duplicate or missing steps, the run exists.
        LayoutMismatchError: a checkpoint does not match the layout (names the tensor), or
            holds the model under several prefixes.
        CorruptRunError: a file is unreadable or would execute code when unpickled.

    Example::

        ws.import_checkpoints("lightning_logs/version_0/checkpoints", "runs/lit", model=net)
        ws.import_checkpoints("out/checkpoint-*", "runs/gpt2", model=gpt2)
    """
    if prefix is not None and not isinstance(prefix, str):
        raise WeightspaceError(f"prefix: expected a string such as 'net.', got {prefix!r}")
    files = expand_paths(paths)
    run_dir = Path(run_dir)
    step_list = _steps_for(files, steps)
    check_run_target(run_dir, overwrite=overwrite)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = run_dir.with_name(f".{run_dir.name}.lock")
    with DirectoryLock(lock, f"run_dir {str(run_dir)!r}"):
        for stale in run_dir.parent.glob(f".{run_dir.name}.importing-*"):
            if stale.name.rpartition("-")[2].isdigit():  # ours (".NAME.importing-PID"), dead
                shutil.rmtree(stale, ignore_errors=True)
        if run_dir.exists() and any(run_dir.iterdir()):  # written while we waited
            raise WeightspaceError(f"run_dir: {str(run_dir)!r} already exists; choose another")
        tmp = run_dir.with_name(f".{run_dir.name}.importing-{os.getpid()}")
        try:
            header = _write_run(tmp, files, step_list, model, dtype, metadata, prefix)
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
    prefix: str | None,
) -> dict[str, Any]:
    """Every checkpoint's parameters and buffers under ``tmp``; returns the run header."""
    target = target_from_model(model) if model is not None else None
    (tmp / SNAPSHOTS).mkdir(parents=True)
    recorded: list[bool] = []
    for f, step in zip(files, step_list):
        target, state, bufs = _read_checkpoint(f, target, prefix)
        layout, buffers = target.layout, target.buffers
        if dtype is None:
            dtype = "float64" if layout.dtype == "float64" else "float32"
        flat = layout.flatten(state).to(torch.float64 if dtype == "float64" else torch.float32)
        recorded.append(bool(len(buffers)) and bool(bufs))
        if recorded[-1]:
            try:
                array = buffers.flatten(bufs).numpy()
            except LayoutMismatchError as e:
                raise LayoutMismatchError(f"checkpoint {f}: {e}") from None
            (tmp / BUFFERS).mkdir(exist_ok=True)
            save_array(tmp / BUFFERS / snapshot_name(step), array, fsync=False)
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
    header = make_run_header(
        target.layout, every=1, dtype=dtype, metadata=meta, buffers=target.buffers
    )
    if len(target.buffers) and not any(recorded):
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
