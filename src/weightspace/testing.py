"""Problems and operators with known answers, shared by weightspace's tests and its users.

Each fixture comes with its closed form, so that a check compares against a formula and never
against the code under test:

* :func:`with_spectrum`: a symmetric matrix ``Q diag(λ) Qᵀ`` with the eigenvalues you choose;
* :func:`quadratic_problem`: a model whose mean loss is ``½ (w − μ_i)ᵀ A (w − μ_i)`` averaged
  over uneven batches of centres ``μ_i``: Hessian ``A`` everywhere, loss in closed form;
* :func:`linear_regression`: ``mean (Xw + b − y)²``: Hessian ``2 [X 1]ᵀ[X 1] / N``;
* :func:`logistic_regression`: binary cross-entropy of ``Xw``: Hessian
  ``Xᵀ diag(p(1 − p)) X / N``, given by :func:`logistic_hessian`;
* :func:`write_run`: rows of an array as a run directory, for projections with a known answer
  (a random walk, a straight line, a trajectory in a known plane).

Example:
    >>> A = with_spectrum([-1.0, 0.5, 2.0])
    >>> torch.linalg.eigvalsh(A).round(decimals=6).tolist()
    [-1.0, 0.5, 2.0]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .layout import ParamLayout
from .problems import Problem
from .store import SNAPSHOTS, make_run_header, save_array, snapshot_name, write_json

__all__ = [
    "Quadratic",
    "generator",
    "linear_regression",
    "logistic_hessian",
    "logistic_regression",
    "mean_of_outputs",
    "quadratic_loss",
    "quadratic_problem",
    "with_spectrum",
    "write_run",
]

F64 = torch.float64


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(int(seed))


def with_spectrum(eigenvalues: Sequence[float] | torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A symmetric float64 matrix ``Q diag(λ) Qᵀ`` with a random orthogonal ``Q``."""
    lam = torch.as_tensor(eigenvalues, dtype=F64)
    n = len(lam)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator(seed), dtype=F64))
    a = q @ torch.diag(lam) @ q.T
    return 0.5 * (a + a.T)


class Quadratic(nn.Module):
    """Per-sample loss ``½ (w − μ_i)ᵀ A (w − μ_i)``; the inputs are the centres ``μ_i``."""

    def __init__(self, A: torch.Tensor, w: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("A", A)
        self.w = nn.Parameter(w.clone())

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        r = self.w - mu
        return 0.5 * ((r @ self.A) * r).sum(dim=1)


def mean_of_outputs(out: torch.Tensor, _targets: Any) -> torch.Tensor:
    """The loss of models whose output is already the per-sample loss."""
    return out.mean()


def quadratic_problem(
    A: torch.Tensor | None = None, sizes: Sequence[int] = (5, 3, 4), seed: int = 0
) -> tuple[Problem, torch.Tensor, torch.Tensor]:
    """A problem with Hessian ``A`` everywhere, over uneven batches.

    Args:
        A: ``(n, n)`` symmetric (default: eigenvalues ``linspace(0.5, 4, 6)``).
        sizes: the batch sizes.
        seed: draws ``w`` and the centres ``μ``.

    Returns:
        ``(problem, A, mus)``: the mean loss at ``w`` is
        ``mean_i ½ (w − μ_i)ᵀ A (w − μ_i)``.
    """
    A = with_spectrum(torch.linspace(0.5, 4.0, 6), seed) if A is None else A.to(F64)
    n = A.shape[0]
    g = generator(seed + 1)
    mus = torch.randn(sum(sizes), n, generator=g, dtype=F64)
    batches, a = [], 0
    for s in sizes:
        batches.append((mus[a : a + s], torch.zeros(s, dtype=F64)))
        a += s
    model = Quadratic(A, torch.randn(n, generator=g, dtype=F64))
    return Problem(model, mean_of_outputs, batches, name="quadratic"), A, mus


def quadratic_loss(w: torch.Tensor, A: torch.Tensor, mus: torch.Tensor) -> float:
    """The closed form of :func:`quadratic_problem`'s mean loss at ``w``."""
    r = w.to(F64) - mus
    return float(0.5 * ((r @ A) * r).sum(dim=1).mean())


def linear_regression(n: int = 10, d: int = 3, seed: int = 0) -> tuple[Problem, torch.Tensor]:
    """``mean (Xw + b − y)²`` in float64; returns the problem and ``X1 = [X 1]``, with which
    the Hessian in ``(w, b)`` is ``2 X1ᵀ X1 / n``."""
    g = generator(seed)
    X = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.randn(n, generator=g, dtype=F64)
    model = nn.Linear(d, 1).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64))

    def mse(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return ((out[:, 0] - t) ** 2).mean()

    X1 = torch.cat([X, torch.ones(n, 1, dtype=F64)], dim=1)
    return Problem(model, mse, (X, y), name="linear-regression"), X1


def logistic_regression(n: int = 40, d: int = 5, seed: int = 0) -> Problem:
    """Binary cross-entropy of ``Xw`` (no bias) in float64, labels from a noisy teacher."""
    g = generator(seed)
    X = torch.randn(n, d, generator=g, dtype=F64)
    teacher = torch.randn(d, generator=g, dtype=F64)
    y = ((X @ teacher + 0.5 * torch.randn(n, generator=g, dtype=F64)) > 0).to(F64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(0.3 * torch.randn(1, d, generator=g, dtype=F64))

    def bce(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(out[:, 0], t)

    return Problem(model, bce, (X, y), name="logistic-regression")


def logistic_hessian(problem: Problem, w: torch.Tensor) -> torch.Tensor:
    """The closed-form Hessian ``Xᵀ diag(p(1 − p)) X / N`` of :func:`logistic_regression`."""
    X, _ = problem.data
    p = torch.sigmoid(X @ w.to(F64))
    return (X.T * (p * (1 - p))) @ X / len(X)


def write_run(
    path: str | os.PathLike,
    x: np.ndarray,
    *,
    layout: ParamLayout | None = None,
    steps: Iterable[int] | None = None,
    dtype: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write the rows of ``x (T, n)`` as a run directory (no buffers); returns its path."""
    path = Path(path)
    x = np.asarray(x)
    dtype = dtype or str(x.dtype)
    layout = layout or ParamLayout(("w",), ((x.shape[1],),), dtype)
    steps = range(len(x)) if steps is None else steps
    (path / SNAPSHOTS).mkdir(parents=True)
    write_json(path / "run.json", make_run_header(layout, every=1, dtype=dtype, metadata=metadata))
    for s, row in zip(steps, x):
        save_array(path / SNAPSHOTS / snapshot_name(s), row.astype(dtype), fsync=False)
    return path
