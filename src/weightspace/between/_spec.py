"""Permutation specs: which tensor axes share each permutable hidden dimension.

Two networks that differ by a permutation of hidden units compute the same function. A
:class:`PermutationSpec` names, for each permutable hidden dimension (a "group"), every
parameter axis (and every buffer axis, e.g. BatchNorm running statistics) that is indexed by
its units. :func:`~weightspace.between.permutation_spec` derives it from a model with ``torch.fx``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..buffer_layout import BufferLayout
from ..errors import WeightspaceError
from ..layout import ParamLayout

__all__ = ["PermutationSpec", "permute_units"]

Entry = tuple[str, int, int]  # (tensor name, axis, block)


def _entries(groups: Mapping[str, Sequence[Sequence[Any]]], what: str) -> dict:
    out = {}
    for group, entries in dict(groups).items():
        norm = []
        for e in entries:
            if not isinstance(e, (tuple, list)) or len(e) not in (2, 3):
                raise WeightspaceError(
                    f"PermutationSpec: {what}[{group!r}] holds {e!r}; expected (name, axis) or "
                    "(name, axis, block) tuples"
                )
            name, axis, block = (*e, 1)[:3]
            if int(axis) < 0 or int(block) < 1:
                raise WeightspaceError(
                    f"PermutationSpec: tensor {name!r} in group {group!r}: axis must be >= 0 "
                    f"and block >= 1, got axis={axis}, block={block}"
                )
            norm.append((str(name), int(axis), int(block)))
        out[str(group)] = tuple(norm)
    return out


@dataclass(frozen=True)
class PermutationSpec:
    """Which axes of which tensors are indexed by the units of each permutable hidden dim.

    Attributes:
        axes: group name -> ``(tensor, axis)`` or ``(tensor, axis, block)`` entries of the
            parameters. ``block > 1`` means the axis holds ``units × block`` entries, unit-major
            (a conv's channels flattened into a Linear's inputs: block = spatial size).
        buffer_axes: group name -> entries of buffers (BatchNorm ``running_mean`` and
            ``running_var``, axis 0; ``num_batches_tracked`` is never permuted).

    Example:
        >>> spec = PermutationSpec({"P_fc1": [("fc1.weight", 0), ("fc1.bias", 0),
        ...                                   ("fc2.weight", 1)]})
        >>> spec.validate(ParamLayout(("fc1.weight", "fc1.bias", "fc2.weight"),
        ...                           ((5, 3), (5,), (2, 5))))
        {'P_fc1': 5}
    """

    axes: Mapping[str, Sequence[Sequence[Any]]]
    buffer_axes: Mapping[str, Sequence[Sequence[Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", _entries(self.axes, "axes"))
        object.__setattr__(self, "buffer_axes", _entries(self.buffer_axes, "buffer_axes"))
        for group in self.buffer_axes:
            if group not in self.axes:
                raise WeightspaceError(
                    f"PermutationSpec: buffer_axes names group {group!r}, which axes lacks; "
                    "use the group names of axes"
                )
        for table in (self.axes, self.buffer_axes):
            owner: dict[tuple[str, int], str] = {}
            for group, entries in table.items():
                for name, axis, _ in entries:
                    other = owner.setdefault((name, axis), group)
                    if other != group or sum(e[:2] == (name, axis) for e in entries) > 1:
                        raise WeightspaceError(
                            f"PermutationSpec: tensor {name!r} axis {axis} is listed twice "
                            f"(groups {other!r} and {group!r}); give each axis one group"
                        )

    @property
    def groups(self) -> tuple[str, ...]:
        """The group names, in order."""
        return tuple(self.axes)

    def validate(
        self, layout: ParamLayout, buffer_layout: BufferLayout | None = None
    ) -> dict[str, int]:
        """Check the spec against a layout; return each group's number of units.

        Raises:
            WeightspaceError: on one line naming the tensor that is unknown, lacks the axis,
                or whose size differs from the rest of its group.
        """
        sizes: dict[str, int] = {}
        tables = [(self.axes, layout, "parameter")]
        if buffer_layout is not None:
            tables.append((self.buffer_axes, buffer_layout, "buffer"))
        for table, lay, kind in tables:
            for group, entries in table.items():
                for name, axis, block in entries:
                    if name not in lay.names:
                        raise WeightspaceError(
                            f"PermutationSpec: tensor {name!r} (group {group!r}) is not a "
                            f"{kind} of the layout; use the names of model.named_"
                            f"{'parameters' if kind == 'parameter' else 'buffers'}()"
                        )
                    shape = lay.shapes[lay.names.index(name)]
                    if axis >= len(shape) or shape[axis] % block:
                        raise WeightspaceError(
                            f"PermutationSpec: tensor {name!r} of shape {shape} has no axis "
                            f"{axis} of a multiple of {block} entries (group {group!r})"
                        )
                    size = shape[axis] // block
                    if sizes.setdefault(group, size) != size:
                        raise WeightspaceError(
                            f"PermutationSpec: tensor {name!r} axis {axis} has {size} units but "
                            f"group {group!r} has {sizes[group]}; fix the spec's entries"
                        )
        return sizes

    def touches(self, buffers: bool = False) -> dict[str, list[tuple[int, str, int]]]:
        """Tensor name -> its permuted ``(axis, group, block)``, for parameters or buffers."""
        out: dict[str, list[tuple[int, str, int]]] = {}
        for group, entries in (self.buffer_axes if buffers else self.axes).items():
            for name, axis, block in entries:
                out.setdefault(name, []).append((axis, group, block))
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (lists of ``[name, axis, block]``)."""
        return {
            "axes": {g: [list(e) for e in es] for g, es in self.axes.items()},
            "buffer_axes": {g: [list(e) for e in es] for g, es in self.buffer_axes.items()},
        }


def permute_units(t: torch.Tensor, axis: int, index: torch.Tensor, block: int = 1):
    """``t`` with the units of ``axis`` gathered by ``index``: unit j of the result is unit
    ``index[j]`` of ``t`` (an axis of ``units × block`` entries moves in blocks)."""
    if block == 1:
        return t.index_select(axis, index)
    shape = t.shape
    split = (*shape[:axis], shape[axis] // block, block, *shape[axis + 1 :])
    return t.reshape(split).index_select(axis, index).reshape(shape)
