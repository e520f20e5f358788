"""Readers for the checkpoint forms users have, and what to import from them.

* ``torch.save`` files: a state dict, or one nested once or twice under :data:`NESTED_KEYS`
  (``{"model": sd}``, ``{"module": {"state_dict": sd}}``); a Lightning ``.ckpt`` is one
  (its ``state_dict``; optimizer states, loops, callbacks and hyper-parameters are ignored).
* ``.safetensors`` files.
* Hugging Face folders: ``model.safetensors``, sharded safetensors with
  ``model.safetensors.index.json``, ``pytorch_model.bin`` or sharded ``.bin`` with
  ``pytorch_model.bin.index.json`` (a Trainer's ``checkpoint-500/`` is one).
* ``torch.distributed.checkpoint`` directories (``.metadata`` + ``__0_0.distcp`` shards).

Safety: torch files are read with ``torch.load(weights_only=True)``. Beyond tensors and plain
containers, the only globals it may resolve are inert stand-ins for the containers Lightning
writes its hyper-parameters in: ``AttributeDict`` is read as a plain ``dict`` (its own class is
never imported) and argparse's ``Namespace`` as a ``types.SimpleNamespace`` (torch >= 2.6).
Anything else is refused, naming the object. The ``.metadata`` of a distributed checkpoint is
a pickle that torch reads with plain ``pickle.load``; here an unpickler that resolves only the
metadata's own classes reads it, so no other code can run. Every file is read once.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import re
import types
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .buffer_layout import BUFFER_DTYPES, BufferLayout
from .errors import CorruptRunError, WeightspaceError, first_line
from .layout import ParamLayout

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "NESTED_KEYS",
    "Target",
    "checkpoint_dir_kind",
    "dcp_index",
    "normalised",
    "read_dcp",
    "read_state",
    "target_from_model",
    "target_from_state",
]

NESTED_KEYS = ("model", "state_dict", "model_state_dict", "module", "net", "ema")
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
HF_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
DCP_METADATA = ".metadata"
_LIGHTNING_ATTRIBUTE_DICTS = (
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
)


def checkpoint_dir_kind(path: Path) -> Literal["hf", "dcp"] | None:
    """``"hf"`` for a Hugging Face folder, ``"dcp"`` for a distributed checkpoint, else None."""
    if not path.is_dir():
        return None
    if (path / DCP_METADATA).is_file():
        return "dcp"
    if any((path / name).is_file() for name in HF_FILES):
        return "hf"
    return None


# ---------------------------------------------------------------- torch files, safetensors, HF
def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint file or Hugging Face folder, unwrapped from its nesting.

    Raises:
        WeightspaceError: the path does not exist.
        CorruptRunError: a file is unreadable, would run code when unpickled, or holds no
            state dict.
    """
    if checkpoint_dir_kind(path) == "hf":
        state: dict[str, torch.Tensor] = {}
        for shard in _hf_files(path):
            state.update(_unwrap(_read_file(shard), shard))
        return state
    if not path.is_file():
        raise WeightspaceError(f"checkpoint {str(path)!r} does not exist; check the path")
    return _unwrap(_read_file(path), path)


def _hf_files(folder: Path) -> list[Path]:
    """The model files of a Hugging Face folder, in Hugging Face's order of preference."""
    name = next(n for n in HF_FILES if (folder / n).is_file())
    if not name.endswith(".index.json"):
        return [folder / name]
    index = folder / name
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = list(dict.fromkeys(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CorruptRunError(
            f"checkpoint {index}: not a readable shard index ({first_line(e, 120)}); "
            "re-save the model with save_pretrained"
        ) from None
    for shard in shards:
        if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
            raise CorruptRunError(f"checkpoint {index}: shard {shard!r} is not a file name")
        if not (folder / shard).is_file():
            raise CorruptRunError(
                f"checkpoint {folder / shard}: shard listed in {name} is missing; copy the "
                "whole checkpoint folder"
            )
    return [folder / s for s in shards]


def _read_file(path: Path) -> Any:
    try:
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise WeightspaceError(
                    "reading .safetensors needs the safetensors package: "
                    "pip install 'weightspace[safetensors]'"
                ) from None
            return load_file(str(path), device="cpu")
        with warnings.catch_warnings(), _lightning_standins():
            warnings.simplefilter("ignore")  # the refusal below is the one line the user sees
            return torch.load(path, map_location="cpu", weights_only=True)
    except WeightspaceError:
        raise
    except Exception as e:  # pickle.UnpicklingError and friends
        raise CorruptRunError(
            f"checkpoint {path}: refused or unreadable ({_why(e)}); only tensors and plain "
            "containers are loaded (weights_only=True): re-save torch.save(model.state_dict())"
        ) from None


def _why(e: Exception) -> str:
    """The reason in torch's multi-paragraph ``weights_only`` refusal, on one line."""
    text = str(e)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds a {found.group(1)} object"
    lines = [
        line.strip().removeprefix("WeightsUnpickler error:").strip()
        for line in text.splitlines()
        if not re.match(r"\s*(Weights only load failed|Please file|Check the doc|\(\d\))", line)
    ]
    return first_line(next((ln for ln in lines if ln), text), 200)


class _PlainDict:
    """Stand-in for Lightning's ``AttributeDict``: unpickles as a plain ``dict``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> dict:  # type: ignore[misc]
        return dict(*args, **kwargs)


def _lightning_standins() -> contextlib.AbstractContextManager:
    """Allow the inert hyper-parameter containers of Lightning checkpoints (torch >= 2.6)."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    major, minor = (int(p) for p in re.findall(r"\d+", torch.__version__)[:2])
    if safe_globals is None or (major, minor) < (2, 6):
        return contextlib.nullcontext()
    return safe_globals(
        [
            (types.SimpleNamespace, "argparse.Namespace"),
            *((_PlainDict, name) for name in _LIGHTNING_ATTRIBUTE_DICTS),
        ]
    )


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``obj``: itself, or nested under :data:`NESTED_KEYS` (up to 3 deep)."""
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
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


# ---------------------------------------------------------------- what to import
@dataclass(frozen=True)
class Target:
    """The tensors to import: the layout's (each under its own name or a tied alias, its own
    first) and the buffers."""

    layout: ParamLayout
    buffers: BufferLayout
    aliases: Mapping[str, tuple[str, ...]]


def target_from_model(model: torch.nn.Module) -> Target:
    layout, buffers = ParamLayout.from_module(model), BufferLayout.from_module(model)
    tied: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        tied.setdefault(id(p), []).append(name)
    aliases = {
        n: (n, *(m for m in names if m != n))
        for names in tied.values()
        for n in names
        if n in layout.names
    }
    return Target(layout, buffers, aliases)


def target_from_state(state: Mapping[str, torch.Tensor]) -> Target:
    """Without a model: every floating tensor except BatchNorm statistics is a parameter
    (tensors saved as one storage, tied weights, once), BatchNorm statistics and integer
    counters are the buffers; DDP's and ``torch.compile``'s prefixes are dropped."""
    state = _without_wrappers(state)
    params: dict[str, torch.Tensor] = {}
    aliases: dict[str, tuple[str, ...]] = {}
    seen: dict[tuple, str] = {}
    for k, t in state.items():
        if not t.is_floating_point() or k.endswith(BUFFER_SUFFIXES):
            continue
        where = (t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride())
        if t.numel() and where in seen:
            aliases[seen[where]] += (k,)
            continue
        seen[where], params[k], aliases[k] = k, t, (k,)
    buffers = {
        k: v
        for k, v in state.items()
        if str(v.dtype).removeprefix("torch.") in BUFFER_DTYPES
        and (k.endswith(BUFFER_SUFFIXES) or not v.is_floating_point())
    }
    return Target(
        ParamLayout.from_state_dict(params), BufferLayout.from_state_dict(buffers), aliases
    )


def normalised(keys: Iterable[str], keep_compiled: bool = False) -> dict[str, str]:
    """Checkpoint keys without ``torch.compile``'s ``_orig_mod.`` segments -> the keys."""
    keys = list(keys)
    if keep_compiled:
        return {k: k for k in keys}
    out = {".".join(p for p in k.split(".") if p != "_orig_mod"): k for k in keys}
    return out if len(out) == len(keys) else {k: k for k in keys}


def _without_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {n: state[k] for n, k in normalised(state).items()}
    while out and all(k.startswith("module.") for k in out):
        out = {k.removeprefix("module."): v for k, v in out.items()}
    return out


# ---------------------------------------------------------------- torch.distributed.checkpoint
_DCP_GLOBALS = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "MetadataIndex",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "TensorProperties",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "collections": {"OrderedDict"},
    "pathlib": {"Path", "PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"},
    "pathlib._local": {"Path", "PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"},
}


class _MetadataUnpickler(pickle.Unpickler):
    """Resolves only the classes a distributed checkpoint's ``.metadata`` is made of."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and isinstance(
            getattr(torch, name, None), (torch.dtype, torch.layout, torch.memory_format)
        ):
            return getattr(torch, name)
        if name in _DCP_GLOBALS.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it references {module}.{name}")


def _read_metadata(folder: Path) -> Any:
    path = folder / DCP_METADATA
    try:
        with open(path, "rb") as f:
            return _MetadataUnpickler(f).load()
    except Exception as e:
        raise CorruptRunError(
            f"checkpoint {path}: refused or unreadable ({first_line(e, 200)}); only "
            "torch.distributed.checkpoint metadata is read"
        ) from None


def dcp_index(folder: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Shape and dtype of every tensor of a distributed checkpoint (its metadata only)."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    items = getattr(_read_metadata(folder), "state_dict_metadata", None)
    if not isinstance(items, Mapping):
        raise CorruptRunError(f"checkpoint {folder / DCP_METADATA}: no state_dict_metadata")
    return {
        str(k): (tuple(int(s) for s in v.size), v.properties.dtype)
        for k, v in items.items()
        if isinstance(v, TensorStorageMetadata)
    }


def read_dcp(
    folder: Path, wanted: Mapping[str, tuple[tuple[int, ...], torch.dtype]]
) -> dict[str, torch.Tensor]:
    """The tensors ``wanted`` (key -> shape, dtype) of a distributed checkpoint, on the CPU,
    in one process (no process group)."""
    import torch.distributed.checkpoint as dcp

    class SafeReader(dcp.FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            metadata = _read_metadata(folder)
            if hasattr(self, "load_id"):  # what FileSystemReader.read_metadata adds
                from torch.distributed.checkpoint.metadata import StorageMeta

                if getattr(metadata, "storage_meta", None) is None:
                    metadata.storage_meta = StorageMeta()
                metadata.storage_meta.load_id = self.load_id
            return metadata

    state = {k: torch.empty(shape, dtype=dtype) for k, (shape, dtype) in wanted.items()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "torch.distributed is not initialized"
            dcp.load(state, storage_reader=SafeReader(folder), no_dist=True)
    except WeightspaceError:
        raise
    except Exception as e:
        raise CorruptRunError(
            f"checkpoint {folder}: unreadable distributed checkpoint ({first_line(e, 200)}); "
            "copy the whole directory"
        ) from None
    return state
