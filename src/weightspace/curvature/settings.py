"""What :func:`~weightspace.curvature.curvature_at` computes at every point, as one frozen
value: :class:`CurvatureSettings`. The keyword names of ``curvature_at``,
``curvature_along`` and ``curvature_between`` (``top_k=``, ``density=``, ...) override its
fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..checks import Seed, one_of
from ..errors import WeightspaceError
from ..layout import NameFilter, ParamLayout
from .lanczos import Which, default_basis
from .plan import PlanMethod
from .split import named_block

__all__ = ["CurvatureSettings", "resolve", "take"]


@dataclass(frozen=True)
class CurvatureSettings:
    """The settings of :func:`~weightspace.curvature.curvature_at`.

    Attributes:
        top_k: eigenpairs per point (0: none); ``which`` as in
            :func:`~weightspace.top_eigenpairs`, with its ``tol`` and ``block_size``.
        trace_probes: Hutchinson probes per point (0: no trace).
        density: compute an SLQ density with ``n_probes`` probes of ``n_steps`` steps.
        sigma: one Gaussian width for every point; default: each point its own, 1 % of
            its own node range (at least two steps of the common grid).
        grid_points: size of the common density grid.
        seed: one seed for every point's probes (common random numbers).
        dtype, include: as in :class:`~weightspace.HessianOperator`.
        method, split: as in :func:`~weightspace.curvature.plan_hessian` (``"auto"``: it
            decides from the products planned at each point, :meth:`n_products`).

    Example:
        >>> s = CurvatureSettings(top_k=3).with_overrides(density=True, n_steps=20)
        >>> s.top_k, s.density, s.n_products()
        (3, True, 224)
    """

    top_k: int = 5
    which: Which = "largest"
    tol: float | None = None
    block_size: int = 1
    trace_probes: int = 0
    density: bool = False
    n_probes: int = 10
    n_steps: int = 80
    sigma: float | None = None
    grid_points: int = 1000
    seed: Seed = 0
    dtype: torch.dtype | None = None
    include: NameFilter = None
    method: PlanMethod = "auto"
    split: NameFilter | Literal["auto"] = "auto"

    def with_overrides(self, **overrides: Any) -> CurvatureSettings:
        """A copy with the fields ``overrides`` names replaced.

        Raises:
            WeightspaceError: a name that is not a field.
        """
        unknown = sorted(set(overrides) - set(FIELDS))
        if unknown:
            raise WeightspaceError(
                f"{unknown[0]}: not a curvature setting; expected one of {', '.join(FIELDS)} "
                "(or axis, lr, momentum, optimizer, n_points, progress)"
            )
        return dataclasses.replace(self, **overrides) if overrides else self

    @property
    def k_wanted(self) -> int:
        """Eigenvalues per point: ``top_k``, twice for ``which="both"``."""
        return 2 * self.top_k if self.which == "both" else self.top_k

    def n_products(self) -> int:
        """The Hessian-vector products planned at each point: one Lanczos basis and the
        residual check for the eigenpairs (:func:`~weightspace.curvature.default_basis`),
        the trace probes, and ``n_probes·n_steps`` for the density."""
        eig = default_basis(self.top_k, self.which, self.block_size) + self.k_wanted
        dens = self.n_probes * self.n_steps if self.density else 0
        return (eig if self.top_k else 0) + self.trace_probes + dens

    def check(self, layout: ParamLayout) -> None:
        """Every check that does not need a product, for an operator over ``layout``'s
        tensors: before the first (expensive) point."""
        m = layout.numel
        if self.which not in ("largest", "smallest", "both"):
            raise WeightspaceError(
                f"which: expected 'largest', 'smallest' or 'both', got {self.which!r}"
            )
        top_k, kw = self.top_k, self.k_wanted
        if (
            isinstance(top_k, bool)
            or not isinstance(top_k, int)
            or top_k < 0
            or (top_k and kw >= m)
        ):
            raise WeightspaceError(
                f"top_k: expected 0 <= k < n={m} (the operator's size; 2k <= n for 'both'), "
                f"got {top_k!r}"
            )
        if not isinstance(self.trace_probes, int) or self.trace_probes < 0:
            raise WeightspaceError(
                f"trace_probes: expected an integer >= 0, got {self.trace_probes!r}"
            )
        if self.density:
            self._check_density(m)
        if not (top_k or self.trace_probes or self.density):
            raise WeightspaceError(
                "nothing to compute: set top_k > 0, trace_probes > 0 or density=True"
            )
        one_of(self.method, ("auto", "forward", "double-backward"), "method")
        if self.split not in ("auto", None):
            named_block(layout, self.split)

    def _check_density(self, m: int) -> None:
        if not isinstance(self.n_probes, int) or self.n_probes < 1:
            raise WeightspaceError(f"n_probes: expected a positive integer, got {self.n_probes!r}")
        if not isinstance(self.n_steps, int) or not 1 <= self.n_steps <= m:
            raise WeightspaceError(
                f"n_steps: expected 1..{m} (the operator's size), got {self.n_steps!r}"
            )
        sigma = self.sigma
        if sigma is not None and not (isinstance(sigma, (int, float)) and sigma > 0):
            raise WeightspaceError(f"sigma: expected a positive width, got {sigma!r}")


FIELDS = tuple(f.name for f in dataclasses.fields(CurvatureSettings))


def resolve(settings: CurvatureSettings | None, overrides: Mapping[str, Any]) -> CurvatureSettings:
    """``settings`` (default :class:`CurvatureSettings`) with ``overrides`` applied."""
    if settings is None:
        settings = CurvatureSettings()
    elif not isinstance(settings, CurvatureSettings):
        raise WeightspaceError(
            f"settings: expected a CurvatureSettings or None, got {type(settings).__name__}; "
            "or pass the settings as keywords (top_k=..., density=...)"
        )
    return settings.with_overrides(**overrides)


def take(settings: CurvatureSettings | None, kwargs: dict[str, Any]) -> CurvatureSettings:
    """Resolve ``settings`` with the fields named in ``kwargs``, removing them from it."""
    return resolve(settings, {k: kwargs.pop(k) for k in FIELDS if k in kwargs})
