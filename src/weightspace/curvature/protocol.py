"""The operator protocol the curvature algorithms share, and their probe vectors.

Anything with ``@``, ``.shape (n, n)``, a floating ``.dtype`` and ``.device`` is an operator
(a :class:`~weightspace.HessianOperator`, or a dense ``torch`` matrix). Probe vectors are
drawn on the CPU from an explicit seed, so every device sees the same numbers.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from ..errors import WeightspaceError


def check_operator(op: Any, what: str = "op") -> int:
    """Validate the operator protocol; return its size ``n``."""
    shape = getattr(op, "shape", None)
    ok = (
        hasattr(op, "__matmul__")
        and shape is not None
        and len(shape) == 2
        and shape[0] == shape[1]
        and isinstance(getattr(op, "dtype", None), torch.dtype)
        and op.dtype.is_floating_point
        and hasattr(op, "device")
    )
    if not ok:
        raise WeightspaceError(
            f"{what}: expected a square operator with @, .shape (n, n), a floating .dtype and "
            f".device (a HessianOperator or a torch matrix), got {type(op).__name__}"
            + (f" of shape {tuple(shape)}" if shape is not None else "")
        )
    return int(shape[0])


def apply(op: Any, V: torch.Tensor) -> torch.Tensor:
    """``op @ V`` for ``V: (n, k)``, through ``op.matmat`` when it has one."""
    if hasattr(op, "matmat"):
        return op.matmat(V)
    return op @ V


def random_vectors(
    n: int,
    k: int,
    gen: torch.Generator,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    kind: Literal["rademacher", "gaussian"] = "rademacher",
) -> torch.Tensor:
    """``(n, k)`` probe vectors drawn on the CPU (same numbers on every device)."""
    if kind == "rademacher":
        z = torch.randint(0, 2, (k, n), generator=gen, dtype=torch.int8).to(torch.float64)
        z = 2 * z - 1
    elif kind == "gaussian":
        z = torch.randn(k, n, generator=gen, dtype=torch.float64)
    else:
        raise WeightspaceError(f"probes: expected 'rademacher' or 'gaussian', got {kind!r}")
    return z.T.to(device=device, dtype=dtype)
