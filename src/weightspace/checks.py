"""Input checks shared by the compute and render layers, each failing with a one-line
:class:`~weightspace.WeightspaceError` that names the argument."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .errors import LayoutMismatchError, WeightspaceError

__all__ = [
    "as_array",
    "as_generator",
    "as_vector",
    "check_seed",
    "non_negative_int",
    "numpy_rng",
    "one_of",
    "positive_int",
]


def as_array(x: Any, name: str, ndim: int | None = None, length: int | None = None) -> np.ndarray:
    """``x`` as a float64 array, checked for its number of dimensions and first-axis length.

    Raises:
        WeightspaceError: ``x`` is not numeric or has the wrong shape.
    """
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise WeightspaceError(
            f"{name}: expected a numeric array, got {type(x).__name__}; pass numbers"
        ) from None
    if ndim is not None and arr.ndim != ndim:
        raise WeightspaceError(
            f"{name}: expected a {ndim}-D array, got shape {arr.shape}; reshape it"
        )
    if length is not None and (arr.ndim == 0 or arr.shape[0] != length):
        raise WeightspaceError(
            f"{name}: expected length {length} along the first axis, got shape {arr.shape}; "
            "pass one value per point"
        )
    return arr


# ---------------------------------------------------------------------------- seeds
Seed = int | torch.Generator | None


SEED_RANGE = (0, 2**64)  # what torch.Generator.manual_seed takes (NumPy takes more)


def check_seed(value: Any, name: str = "seed") -> int:
    """An integer seed in ``[0, 2**64)``, the range every generator here takes."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise WeightspaceError(f"{name}: expected an integer seed, got {value!r}")
    if not SEED_RANGE[0] <= int(value) < SEED_RANGE[1]:
        raise WeightspaceError(
            f"{name}: expected a seed in [0, 2**64), got {int(value)}; choose a smaller seed"
        )
    return int(value)


def as_generator(seed: Seed) -> torch.Generator:
    """A CPU ``torch.Generator`` from the library's one randomness argument.

    ``seed`` is an int (a fresh generator seeded with it), a generator (used as it is, so
    successive calls continue its stream) or None (fresh entropy; ``gen.initial_seed()``
    says which seed was drawn).

    Raises:
        WeightspaceError: ``seed`` is none of these.
    """
    if isinstance(seed, torch.Generator):
        return seed
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        gen.manual_seed(check_seed(seed))
    else:
        raise WeightspaceError(
            f"seed: expected an int, a torch.Generator or None, got {type(seed).__name__}"
        )
    return gen


def numpy_rng(seed: Seed) -> np.random.Generator:
    """A NumPy generator from the same argument: an int seeds it directly, a torch generator
    draws its seed, None is fresh entropy."""
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=seed).item())
    elif seed is not None:
        as_generator(seed)  # the same validation
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------- arguments
def positive_int(value: Any, name: str, hint: str = "") -> int:
    """``value`` as an int >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise WeightspaceError(f"{name}: expected a positive integer, got {value!r}{hint}")
    return int(value)


def non_negative_int(value: Any, name: str, hint: str = "") -> int:
    """``value`` as an int >= 0 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise WeightspaceError(f"{name}: expected a non-negative integer, got {value!r}{hint}")
    return int(value)


def one_of(value: Any, choices: tuple[Any, ...], name: str) -> Any:
    """``value`` when it is one of ``choices``."""
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise WeightspaceError(f"{name}: expected one of {shown}, got {value!r}")
    return value


def as_vector(x: Any, n: int, what: str, *, dtype=None, device=None) -> torch.Tensor:
    """A flat ``(n,)`` tensor from a tensor or array, checked for shape and finiteness."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x))
    if t.ndim != 1 or t.shape[0] != n:
        raise LayoutMismatchError(
            f"{what}: expected a flat vector of shape ({n},), got {tuple(t.shape)}; "
            "use vectors laid out like the model's parameters"
        )
    if not t.is_floating_point():
        raise WeightspaceError(f"{what}: expected floating-point values, got {t.dtype}")
    t = t.to(dtype=dtype or t.dtype, device=device or t.device)
    if not bool(torch.isfinite(t).all()):
        raise WeightspaceError(f"{what}: holds NaN or inf values; give a finite vector")
    return t


def replaced(cls: type, base: Any, changes: Mapping[str, Any], what: str) -> Any:
    """A settings dataclass: ``base`` (None: ``cls()``'s defaults) with ``changes``; a name
    that is not a field of ``cls`` is refused on one line naming ``what`` settings they are."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in changes if k not in names]
    if unknown:
        raise WeightspaceError(
            f"{unknown[0]}: not a {what} setting; the settings are {', '.join(names)}"
        )
    return dataclasses.replace(base or cls(), **changes)
