"""The reorthogonalisation and breakdown rules shared by the Lanczos solvers
(:mod:`~weightspace.curvature.lanczos` and :mod:`~weightspace.curvature.slq`)."""

from __future__ import annotations

import math

import torch


def orthogonalize(
    W: torch.Tensor, basis: torch.Tensor, *, dgks: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``W: (p, n)`` with their components along ``basis`` removed (classical
    Gram-Schmidt, twice: CGS2).

    Args:
        W: ``(p, n)`` rows to orthogonalise.
        basis: ``(k, n)`` orthonormal rows shared by every row of ``W``, or ``(p, k, n)``:
            one basis per row.
        dgks: skip the second pass when the first kept more than ``1/√2`` of every row's
            norm (Daniel, Gragg, Kaufman & Stewart 1976: then one more pass is not needed).

    Returns:
        ``(W, C)``: the orthogonalised rows and the coefficients removed, ``(p, k)``
        summed over the passes (the projections of the input rows on the basis).
    """
    total = None
    for _ in range(2):
        before = W.norm(dim=1) if dgks else None
        if basis.ndim == 2:
            C = W @ basis.T
            W = W - C @ basis
        else:
            C = torch.bmm(basis, W.unsqueeze(2)).squeeze(2)
            W = W - torch.bmm(C.unsqueeze(1), basis).squeeze(1)
        total = C if total is None else total + C
        if dgks and bool((W.norm(dim=1) > before / math.sqrt(2)).all()):
            break
    return W, total


def breakdown_threshold(
    dtype: torch.dtype, size: int, scale: float | torch.Tensor
) -> float | torch.Tensor:
    """The norm below which a new Lanczos vector counts as zero (an invariant subspace was
    reached): ``100·eps·√size·scale``, ``size`` the basis so far, ``scale`` the largest
    coefficient seen."""
    return 100 * torch.finfo(dtype).eps * math.sqrt(size) * scale
