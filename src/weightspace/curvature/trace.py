"""Trace estimators: Hutchinson (1989) and Hutch++ (Meyer, Musco, Musco & Woodruff 2021).

Hutchinson with Rademacher probes ``z``: ``E[zᵀHz] = tr(H)``, variance
``2(‖H‖_F² − Σ H_ii²)`` per probe, so it is exact for a diagonal ``H``. Hutch++ spends a
third of its products on a Gaussian sketch ``Q`` of the range of ``H``, takes ``tr(QᵀHQ)``
exactly and Hutchinson on the deflated rest: exact when ``rank(H) ≤`` the sketch size, with
error ``O(1/m)`` instead of ``O(1/√m)`` when the spectrum decays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .._progress import progress_bar
from ..checks import Seed, as_generator, positive_int
from ..errors import WeightspaceError
from .protocol import announce, apply, check_operator, random_vectors

__all__ = ["TraceEstimate", "hutchinson_trace", "hutchpp_trace"]

Probes = Literal["rademacher", "gaussian"]


@dataclass(frozen=True)
class TraceEstimate:
    """A stochastic trace estimate.

    Attributes:
        estimate: the trace estimate.
        stderr: its standard error (from the spread of the stochastic part; 0 for one probe
            is reported as NaN).
        samples: ``(P,)`` the per-probe values ``zᵀHz`` (Hutchinson) or of the deflated
            part (Hutch++).
        exact_part: ``tr(QᵀHQ)`` of Hutch++'s sketch (0 for Hutchinson).
        n_matvecs: operator products used.
        method: ``"hutchinson"`` or ``"hutch++"``.
        metadata: the operator's metadata plus the settings.
    """

    estimate: float
    stderr: float
    samples: np.ndarray
    exact_part: float
    n_matvecs: int
    method: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _stderr(samples: np.ndarray) -> float:
    if len(samples) < 2:
        return math.nan
    return float(samples.std(ddof=1) / math.sqrt(len(samples)))


def _metadata(op: Any, method: str, probes: str, seed: Seed, **settings: int) -> dict[str, Any]:
    """The operator's metadata and the estimator's settings."""
    seed = seed if isinstance(seed, int) else None
    meta = {**dict(getattr(op, "metadata", {})), "method": method, **settings}
    return {**meta, "probes": probes, "seed": seed}


def _quadratic_forms(op: Any, Z: torch.Tensor, chunk: int, bar: Any) -> np.ndarray:
    """``zᵀ H z`` for each column of ``Z: (n, P)``, ``chunk`` columns per pass."""
    out = []
    for a in range(0, Z.shape[1], chunk):
        block = Z[:, a : a + chunk]
        out.append((block * apply(op, block)).sum(0).to(torch.float64).cpu())
        bar.update(block.shape[1])
    return torch.cat(out).numpy()


def hutchinson_trace(
    op: Any,
    n_probes: int = 100,
    seed: Seed = 0,
    *,
    probes: Probes = "rademacher",
    probes_per_pass: int = 1,
    progress: bool = False,
) -> TraceEstimate:
    """Hutchinson's estimate ``(1/P) Σ_p z_pᵀ H z_p`` of ``tr(H)``, with its standard error.

    Args:
        op: ``(n, n)`` operator (a HessianOperator or a torch matrix); its optional
            ``expect(n)`` hook hears of the ``P`` products coming.
        n_probes: probes ``P``.
        seed: the probes' randomness (the same seed gives the same probes).
        probes: ``"rademacher"`` (minimum variance; exact on a diagonal) or ``"gaussian"``.
        probes_per_pass: columns per ``matmat`` call.
        progress: show a progress bar.

    Returns:
        :class:`TraceEstimate`.

    Example:
        >>> A = torch.diag(torch.tensor([3.0, -1.0, 0.0, 2.0], dtype=torch.float64))
        >>> tr = hutchinson_trace(A, n_probes=5, seed=0)
        >>> tr.estimate, tr.stderr
        (4.0, 0.0)
    """
    n = check_operator(op)
    P = positive_int(n_probes, "n_probes")
    chunk = positive_int(probes_per_pass, "probes_per_pass")
    Z = random_vectors(n, P, as_generator(seed), dtype=op.dtype, device=op.device, kind=probes)
    announce(op, P)
    with progress_bar(total=P, desc="trace", unit="probe", enabled=progress) as bar:
        samples = _quadratic_forms(op, Z, chunk, bar)
    return TraceEstimate(
        estimate=float(samples.mean()),
        stderr=_stderr(samples),
        samples=samples,
        exact_part=0.0,
        n_matvecs=P,
        method="hutchinson",
        metadata=_metadata(op, "hutchinson", probes, seed, n_probes=P),
    )


def hutchpp_trace(
    op: Any,
    n_matvecs: int = 99,
    seed: Seed = 0,
    *,
    sketch: int | None = None,
    probes: Probes = "rademacher",
    probes_per_pass: int = 1,
    progress: bool = False,
) -> TraceEstimate:
    """Hutch++: ``tr(QᵀHQ) + (1/s) Σ_p g_pᵀ (I−QQᵀ) H (I−QQᵀ) g_p``.

    Args:
        op: ``(n, n)`` operator.
        n_matvecs: the budget of products; split as ``s`` for the sketch ``H S``, ``s`` for
            ``HQ`` and the rest for the deflated Hutchinson part (Meyer et al.: thirds).
        seed: the probes' randomness.
        sketch: ``s``, the sketch size (default ``n_matvecs // 3``, at most ``n``).
        probes: distribution of the Hutchinson probes (the sketch is Gaussian: with
            probability 1 it spans the range of a rank ``<= s`` operator, which Rademacher
            columns may fail to do).
        probes_per_pass: columns per ``matmat`` call.
        progress: show a progress bar.

    Returns:
        :class:`TraceEstimate` (its ``stderr`` is that of the deflated part).

    Example:
        >>> A = torch.diag(torch.tensor([5.0, 0.0, 0.0, -2.0, 0.0, 0.0], dtype=torch.float64))
        >>> round(hutchpp_trace(A, n_matvecs=9, seed=0).estimate, 10)   # rank 2 <= sketch 3
        3.0
    """
    n = check_operator(op)
    budget = positive_int(n_matvecs, "n_matvecs")
    s = min(budget // 3, n) if sketch is None else positive_int(sketch, "sketch")
    if s < 1 or 2 * s > budget:
        raise WeightspaceError(
            f"n_matvecs: Hutch++ needs at least 3 products and 2·sketch <= n_matvecs, got "
            f"n_matvecs={budget}, sketch={s}; raise n_matvecs"
        )
    s = min(s, n)
    chunk = positive_int(probes_per_pass, "probes_per_pass")
    gen = as_generator(seed)
    kw = {"dtype": op.dtype, "device": op.device}
    S = random_vectors(n, s, gen, kind="gaussian", **kw)  # spans range(H) when rank <= s
    rest = budget - 2 * s
    G = random_vectors(n, rest, gen, kind=probes, **kw) if rest else None
    announce(op, budget)
    with progress_bar(total=budget, desc="hutch++", unit="product", enabled=progress) as bar:
        HS = torch.cat([apply(op, S[:, a : a + chunk]) for a in range(0, s, chunk)], dim=1)
        bar.update(s)
        Q, _ = torch.linalg.qr(HS)  # orthonormal even when H S is rank-deficient
        HQ = torch.cat([apply(op, Q[:, a : a + chunk]) for a in range(0, s, chunk)], dim=1)
        bar.update(s)
        exact = float((Q * HQ).sum().to(torch.float64))
        if G is not None:
            for _ in range(2):  # (I − QQᵀ) g, twice against rounding
                G = G - Q @ (Q.T @ G)
            samples = _quadratic_forms(op, G, chunk, bar)
        else:
            samples = np.zeros(0)
    estimate = exact + (float(samples.mean()) if len(samples) else 0.0)
    return TraceEstimate(
        estimate=estimate,
        stderr=_stderr(samples) if len(samples) else math.nan,
        samples=samples,
        exact_part=exact,
        n_matvecs=2 * s + rest,
        method="hutch++",
        metadata=_metadata(op, "hutch++", probes, seed, n_matvecs=budget, sketch=s),
    )
