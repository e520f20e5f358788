"""BufferLayout: a model's buffers (BatchNorm statistics, ...) packed into one flat vector.

The buffers a network reads in eval mode move during training as much as its weights do, so
weightspace records them beside every snapshot (:mod:`weightspace.record`). This is their
layout: names, shapes and dtypes, flattened into float64 and restored bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import LayoutMismatchError, WeightspaceError
from .layout import _prod, check_shapes

__all__ = ["BufferLayout", "persistent_buffers"]

BUFFER_DTYPES = (
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "int8",
    "uint8",
    "int16",
    "int32",
    "int64",
)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _keeps(t: torch.Tensor) -> bool:
    """Buffers worth recording: real numbers (floating or integer), not masks or flags."""
    return _dtype_name(t.dtype) in BUFFER_DTYPES


def persistent_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's buffers that belong to its state (``state_dict``) and hold numbers.

    BatchNorm running statistics and ``num_batches_tracked``, spectral-norm vectors and any
    other persistent buffer of a floating or integer dtype, in ``named_buffers()`` order.
    Non-persistent buffers (caches the module rebuilds, such as causal masks) and boolean
    buffers are left out.
    """
    out: dict[str, torch.Tensor] = {}
    for full, buf in module.named_buffers():  # shared buffers once, as named_buffers gives
        prefix, _, name = full.rpartition(".")
        owner = module.get_submodule(prefix) if prefix else module
        if name in getattr(owner, "_non_persistent_buffers_set", ()) or not _keeps(buf):
            continue
        out[full] = buf
    return out


@dataclass(frozen=True)
class BufferLayout:
    """Names, shapes and dtypes of a model's buffers, packed into one float64 vector.

    A snapshot's buffers (BatchNorm running statistics, spectral-norm vectors, ...) are
    stored beside its parameters as one flat float64 array; float64 holds every float32 and
    every integer below 2**53 exactly, so :meth:`unflatten` restores them bit for bit.

    Example:
        >>> bn = torch.nn.BatchNorm1d(3)
        >>> layout = BufferLayout.from_module(bn)
        >>> layout.names
        ('running_mean', 'running_var', 'num_batches_tracked')
        >>> layout.unflatten(layout.flatten(bn))["running_var"]
        tensor([1., 1., 1.])
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.shapes) == len(self.dtypes):
            raise WeightspaceError(
                f"BufferLayout: got {len(self.names)} names, {len(self.shapes)} shapes and "
                f"{len(self.dtypes)} dtypes; pass one of each per buffer"
            )
        if len(set(self.names)) != len(self.names):
            raise WeightspaceError("BufferLayout: buffer names must be unique")
        bad = [d for d in self.dtypes if d not in BUFFER_DTYPES]
        if bad:
            raise WeightspaceError(
                f"BufferLayout: dtype {bad[0]!r} is not one of {', '.join(BUFFER_DTYPES)}"
            )
        object.__setattr__(self, "shapes", tuple(tuple(int(s) for s in sh) for sh in self.shapes))
        offsets, total = [], 0
        for shape in self.shapes:
            offsets.append(total)
            total += _prod(shape)
        object.__setattr__(self, "offsets", (*offsets, total))

    @classmethod
    def from_module(cls, module: torch.nn.Module) -> BufferLayout:
        """Layout of :func:`persistent_buffers` of ``module`` (empty for a model without)."""
        return cls.from_state_dict(persistent_buffers(module))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> BufferLayout:
        """Layout of every tensor of a mapping, in its order."""
        names = tuple(state)
        return cls(
            names,
            tuple(tuple(state[n].shape) for n in names),
            tuple(_dtype_name(state[n].dtype) for n in names),
        )

    @property
    def numel(self) -> int:
        """Length of the flat vector."""
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.names)

    def flatten(self, named: torch.nn.Module | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Pack the buffers into one flat float64 CPU vector ``(numel,)``.

        Raises:
            LayoutMismatchError: naming the first missing or mis-shaped buffer.
        """
        mapping = persistent_buffers(named) if isinstance(named, torch.nn.Module) else named
        out = torch.empty(self.numel, dtype=torch.float64)
        for name, shape, a, b in zip(self.names, self.shapes, self.offsets, self.offsets[1:]):
            t = mapping.get(name)
            if t is None:
                raise LayoutMismatchError(
                    f"buffer {name!r} of the run is missing from the model (or checkpoint); "
                    "use the model the run was recorded from"
                )
            if tuple(t.shape) != shape:
                raise LayoutMismatchError(
                    f"buffer {name!r}: the run has shape {shape}, got {tuple(t.shape)}; use "
                    "the model the run was recorded from"
                )
            out[a:b] = t.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
        return out

    def unflatten(
        self,
        flat: torch.Tensor | np.ndarray,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, torch.Tensor]:
        """The buffers of a flat vector, each in its own dtype (floating ones in ``dtype``
        when given), on ``device``."""
        flat = torch.as_tensor(np.asarray(flat) if not isinstance(flat, torch.Tensor) else flat)
        if flat.shape != (self.numel,):
            raise LayoutMismatchError(
                f"buffers: expected a flat vector of shape ({self.numel},), got {tuple(flat.shape)}"
            )
        out = {}
        for name, shape, dt, a, b in zip(
            self.names, self.shapes, self.dtypes, self.offsets, self.offsets[1:]
        ):
            own = getattr(torch, dt)
            target = dtype if (dtype is not None and own.is_floating_point) else own
            part = flat[a:b]
            if not own.is_floating_point:
                part = part.round()
            out[name] = part.to(device=device, dtype=target).reshape(shape)
        return out

    def check_compatible(self, other: BufferLayout, *, what: str = "buffers") -> None:
        """Raise unless ``other`` has the same buffer names, shapes and dtypes in order."""
        if (self.names, self.shapes, self.dtypes) == (other.names, other.shapes, other.dtypes):
            return
        for i in range(max(len(self), len(other))):
            here = (self.names[i], self.shapes[i]) if i < len(self) else None
            there = (other.names[i], other.shapes[i]) if i < len(other) else None
            if here != there:
                raise LayoutMismatchError(
                    f"{what}: buffer {i} is {here} here but {there} there; use runs of the "
                    "same model"
                )
        raise LayoutMismatchError(f"{what}: buffer dtypes differ; use runs of the same model")

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "shapes": [list(s) for s in self.shapes],
            "dtypes": list(self.dtypes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BufferLayout:
        try:
            names, shapes, dtypes = d["names"], d["shapes"], d["dtypes"]
        except (KeyError, TypeError) as e:
            raise WeightspaceError(f"buffers: malformed buffer layout record ({e!r})") from None
        check_shapes(names, shapes, "buffers")
        if not isinstance(dtypes, list) or len(dtypes) != len(names):
            raise WeightspaceError("buffers: 'dtypes' must be a list with one dtype per name")
        return cls(tuple(names), tuple(tuple(s) for s in shapes), tuple(dtypes))
