"""The operator protocol the curvature algorithms share, and their probe vectors.

Anything with ``@``, ``.shape (n, n)``, a floating ``.dtype`` and ``.device`` is an operator
(a :class:`~weightspace.HessianOperator`, a split one, or a dense ``torch`` matrix). Two
optional hooks: ``matmat(V)`` (several products per pass) and ``expect(n)`` (a note that
``n`` products are coming; :func:`announce` calls it). Probe vectors are drawn on the CPU
from an explicit seed, so every device sees the same numbers.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from .._progress import progress_bar
from ..errors import WeightspaceError

__all__ = ["Operator", "announce", "apply", "check_operator", "check_vectors", "random_vectors"]


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


def announce(op: Any, n_products: int) -> None:
    """Tell ``op`` that ``n_products`` products are coming, through its optional
    ``expect(n)`` hook (an operator may prepare for them; the products stay the same)."""
    expect = getattr(op, "expect", None)
    if callable(expect):
        expect(int(n_products))


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


def check_vectors(
    x: Any, m: int, ndim: int, what: str, *, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``x`` as a detached ``(m,)`` (``ndim=1``) or ``(m, k)`` tensor in ``dtype`` on
    ``device``; a one-line error naming ``what`` otherwise."""
    if not isinstance(x, torch.Tensor) or x.ndim != ndim or x.shape[0] != m:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        want = f"({m},)" if ndim == 1 else f"({m}, k)"
        raise WeightspaceError(f"{what}: expected a tensor of shape {want}, got {got}")
    return x.detach().to(device=device, dtype=dtype)


class Operator:
    """What the Hessian operators share: ``@`` (a vector or a matrix) and :meth:`to_dense`.

    Subclasses set ``shape``, ``dtype``, ``device`` and ``progress`` and define
    ``matvec(v)`` and ``matmat(V)``.
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    progress: bool = False

    def matvec(self, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def matmat(self, V: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.ndim == 2:
            return self.matmat(x)
        return self.matvec(x)

    def to_dense(self, chunk: int = 64) -> torch.Tensor:
        """The full ``(m, m)`` matrix, ``chunk`` columns at a time (small ``m`` only)."""
        m = self.shape[0]
        eye = torch.eye(m, dtype=self.dtype, device=self.device)
        columns = []
        with progress_bar(total=m, desc="hessian", unit="column", enabled=self.progress) as bar:
            for a in range(0, m, chunk):
                columns.append(self.matmat(eye[:, a : a + chunk]))
                bar.update(columns[-1].shape[1])
        return torch.cat(columns, dim=1)
