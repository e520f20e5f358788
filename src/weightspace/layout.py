"""ParamLayout: the map between a module's named parameters and one flat vector.

Everything after recording works on a flat parameter vector ``theta: (n,)``; the layout says
which slice of it is which tensor, and which tensors are "filters" (``dim > 1``, the tensors
that Li et al.'s filter normalisation rescales slice by slice) and which are 1-D (biases,
BatchNorm affine parameters).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import LayoutMismatchError, WeightspaceError

__all__ = ["ParamLayout", "check_shapes", "name_predicate"]

NameFilter = str | Sequence[str] | Callable[[str], bool] | None


def name_predicate(include: NameFilter) -> Callable[[str], bool]:
    """``include`` (None, a glob, a list of globs or a predicate) as a predicate on names."""
    if include is None:
        return lambda name: True
    if callable(include):
        return include
    patterns = [include] if isinstance(include, str) else list(include)
    return lambda name: any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass(frozen=True)
class ParamLayout:
    """Names, shapes and offsets of the tensors packed into a flat vector.

    Attributes:
        names: parameter names, in ``named_parameters()`` order.
        shapes: the shape of each tensor.
        dtype: the name of the parameters' dtype (``"float32"``), informational.

    Example:
        >>> model = torch.nn.Linear(3, 2)
        >>> layout = ParamLayout.from_module(model)
        >>> layout.numel, layout.is_filter
        (8, (True, False))
        >>> theta = layout.flatten(model)
        >>> torch.equal(layout.unflatten(theta)["weight"], model.weight.detach())
        True
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtype: str = "float32"
    offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.shapes):
            raise WeightspaceError(
                f"ParamLayout: got {len(self.names)} names but {len(self.shapes)} shapes; "
                "pass one shape per name"
            )
        if len(set(self.names)) != len(self.names):
            raise WeightspaceError("ParamLayout: parameter names must be unique")
        object.__setattr__(self, "shapes", tuple(tuple(int(s) for s in sh) for sh in self.shapes))
        offsets, total = [], 0
        for shape in self.shapes:
            offsets.append(total)
            total += _prod(shape)
        object.__setattr__(self, "offsets", (*offsets, total))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_module(cls, module: torch.nn.Module, include: NameFilter = None) -> ParamLayout:
        """Layout of a module's trainable parameters (``requires_grad``).

        Args:
            module: the model.
            include: keep only names matching this glob pattern, list of patterns, or
                predicate (e.g. ``"layer4.*"`` for a per-layer analysis).

        Raises:
            WeightspaceError: when no parameter is left.
        """
        keep = name_predicate(include)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad and keep(n)]
        if not named:
            raise WeightspaceError(
                f"include={include!r} matched no trainable parameter of "
                f"{type(module).__name__}; check the pattern against model.named_parameters()"
            )
        dtypes = {p.dtype for _, p in named}
        dtype = str(named[0][1].dtype).removeprefix("torch.") if len(dtypes) == 1 else "mixed"
        return cls(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named), dtype)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> ParamLayout:
        """Layout of every tensor of a mapping, in its order."""
        names = tuple(state)
        dtypes = {t.dtype for t in state.values()}
        dtype = str(next(iter(dtypes))).removeprefix("torch.") if len(dtypes) == 1 else "mixed"
        return cls(names, tuple(tuple(state[n].shape) for n in names), dtype)

    # ------------------------------------------------------------------ properties
    @property
    def numel(self) -> int:
        """Total number of scalars, the length ``n`` of a flat vector."""
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def is_filter(self) -> tuple[bool, ...]:
        """For each tensor: ``True`` when it has ``dim > 1`` (weights), ``False`` for 1-D."""
        return tuple(len(s) > 1 for s in self.shapes)

    @property
    def slices(self) -> tuple[slice, ...]:
        """The slice of a flat vector that holds each tensor."""
        return tuple(slice(a, b) for a, b in zip(self.offsets[:-1], self.offsets[1:]))

    def slice_of(self, name: str) -> slice:
        """The slice of a flat vector that holds tensor ``name``."""
        try:
            return self.slices[self.names.index(name)]
        except ValueError:
            raise WeightspaceError(f"no parameter named {name!r} in the layout") from None

    # ------------------------------------------------------------------ flatten / unflatten
    def flatten(
        self,
        named: torch.nn.Module | Mapping[str, torch.Tensor],
        *,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pack tensors into one flat vector ``(n,)`` (a copy, detached).

        Args:
            named: a module (its parameters are read) or a mapping name -> tensor.
            out: optional preallocated ``(n,)`` buffer to write into.

        Raises:
            LayoutMismatchError: naming the first missing or mis-shaped tensor.
        """
        tensors = self._gather(named)
        if out is None:
            first = tensors[0]
            out = torch.empty(self.numel, dtype=first.dtype, device=first.device)
        elif out.shape != (self.numel,):
            raise WeightspaceError(f"out: expected shape ({self.numel},), got {tuple(out.shape)}")
        with torch.no_grad():
            for t, sl in zip(tensors, self.slices):
                out[sl].copy_(t.reshape(-1))
        return out

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``theta: (n,)`` shaped like each tensor (no copies)."""
        if theta.ndim != 1 or theta.shape[0] != self.numel:
            raise LayoutMismatchError(
                f"theta: expected a flat vector of shape ({self.numel},) for this layout, "
                f"got {tuple(theta.shape)}; flatten it with the same ParamLayout"
            )
        return {
            name: theta[a:b].view(shape)
            for name, shape, a, b in zip(self.names, self.shapes, self.offsets, self.offsets[1:])
        }

    def _gather(self, named: torch.nn.Module | Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        mapping = dict(named.named_parameters()) if isinstance(named, torch.nn.Module) else named
        tensors = []
        for name, shape in zip(self.names, self.shapes):
            if name not in mapping:
                raise LayoutMismatchError(
                    f"tensor {name!r} of the layout is missing from the given parameters; "
                    "use the model (or checkpoint) the run was recorded from"
                )
            t = mapping[name]
            if tuple(t.shape) != shape:
                raise LayoutMismatchError(
                    f"tensor {name!r}: layout has shape {shape}, got {tuple(t.shape)}; "
                    "use the model (or checkpoint) the run was recorded from"
                )
            tensors.append(t.detach())
        return tensors

    # ------------------------------------------------------------------ compatibility
    def check_compatible(self, other: ParamLayout, *, what: str = "layout") -> None:
        """Raise unless ``other`` has the same tensor names and shapes in the same order.

        Raises:
            LayoutMismatchError: naming the first mismatching tensor and both shapes.
        """
        for i, (name, shape) in enumerate(zip(self.names, self.shapes)):
            if i >= len(other.names):
                raise LayoutMismatchError(
                    f"{what}: tensor {name!r} {shape} is missing (the other has only "
                    f"{len(other.names)} tensors); use runs of the same model"
                )
            oname, oshape = other.names[i], other.shapes[i]
            if oname != name or oshape != shape:
                raise LayoutMismatchError(
                    f"{what}: tensor {i} is {name!r} {shape} here but {oname!r} {oshape} "
                    "there; use runs of the same model"
                )
        if len(other.names) > len(self.names):
            extra = other.names[len(self.names)]
            raise LayoutMismatchError(
                f"{what}: the other has an extra tensor {extra!r}; use runs of the same model"
            )

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "shapes": [list(s) for s in self.shapes],
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParamLayout:
        try:
            names, shapes = d["names"], d["shapes"]
            dtype = d.get("dtype", "float32")
        except (KeyError, TypeError) as e:
            raise WeightspaceError(f"layout: malformed layout record ({e!r})") from None
        check_shapes(names, shapes, "layout")
        if not isinstance(dtype, str):
            raise WeightspaceError(f"layout: 'dtype' must be a string, got {dtype!r}")
        return cls(tuple(names), tuple(tuple(s) for s in shapes), dtype)


def check_shapes(names: Any, shapes: Any, what: str) -> None:
    """A stored layout's names (strings) and shapes (lists of non-negative integers)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise WeightspaceError(f"{what}: 'names' must be a list of strings")
    if not isinstance(shapes, list) or len(shapes) != len(names):
        raise WeightspaceError(f"{what}: 'shapes' must be a list with one shape per name")
    for name, shape in zip(names, shapes):
        ok = isinstance(shape, list) and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        )
        if not ok:
            raise WeightspaceError(
                f"{what}: the shape of {name!r} must be a list of non-negative integers, got "
                f"{shape!r}"
            )


def _prod(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
