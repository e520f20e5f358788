"""Splitting a small block of parameters off the Hessian-vector product.

Order the coordinates as a block ``B`` of ``b`` and the rest ``R``:
``H = [[H_BB, H_BR], [H_RB, H_RR]]``. Once the ``b`` columns ``C = H[:, B]`` are known
(``b`` products with unit vectors), every product is

    H v = C v_B + [C_Rᵀ v_R ; H_RR v_R]        (C_R: the rows R of C; H_BR = H_RBᵀ)

and only ``H_RR v_R`` needs autograd, with ``B`` held as a constant. That skips every pass
whose only purpose is ``B``'s rows and columns: for the first layer, the input gradient of
the layer above it and the tangents flowing into that layer. On the digits CNN the first
convolution holds 160 of 38,282 parameters but four of the six convolution-sized passes of
each product; with it split off, a product costs half as much, which pays for the 160
columns after a few hundred products (SLQ: 800). See ``benchmarks/results/hessian.txt``.

The split is exact (the same matrix, up to rounding) and, like the operator it splits, pure.
:func:`~weightspace.curvature.plan_hessian` chooses it (``split="auto"``) when the planned
products pay for the columns at the measured cost of one product each way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.func import grad

from .._attention import differentiable_attention
from .._progress import progress_bar
from ..errors import WeightspaceError
from ..layout import NameFilter, ParamLayout
from ._autodiff import checked_linearize, name_matcher, named_loss, values_of
from .hvp import HessianOperator
from .protocol import Operator, check_vectors

__all__ = ["SplitHessianOperator", "block_size", "first_block", "named_block", "positions"]

log = logging.getLogger(__name__)


class SplitHessianOperator(Operator):
    """The Hessian ``op`` with the block of tensors ``block`` split off its products.

    The columns ``H[:, B]`` are computed once, at the first product (``b`` products, or
    cheaper linearised columns on the forward route); every product then differentiates
    only the other tensors (``H_RR``, :meth:`HessianOperator.restrict`).

    Args:
        op: the operator to split (its point, tensors, route and settings are kept).
        block: the tensors ``B``: a glob pattern, list of patterns or predicate on the
            operator's tensor names; it must match some of them, not all.
        rest: ``H_RR`` when already built (``op.restrict`` of the other tensors, e.g. by a
            planner that timed it); default built here.
        plan: the planner's decision, recorded in :attr:`metadata`.

    Attributes:
        block: names of the tensors in ``B`` (also :attr:`split`).
        full, rest: the operator split, and ``H_RR``.
        shape, dtype, device, layout, theta, loss, method: those of ``op``.
        n_matvecs: products, the ``b`` columns included. n_checks: linearisation checks.

    Raises:
        WeightspaceError: ``block`` of the wrong type, or matching none or all tensors.

    Example:
        >>> import weightspace as ws
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                             torch.nn.Linear(4, 1)).double()
        >>> X, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
        >>> loss = lambda out, t: ((out[:, 0] - t) ** 2).mean()
        >>> op = HessianOperator(ws.Objective(ws.Problem(model, loss, (X, y))))
        >>> split = SplitHessianOperator(op, "0.*")
        >>> bool(torch.allclose(split.to_dense(), op.to_dense()))
        True
    """

    def __init__(
        self,
        op: HessianOperator,
        block: NameFilter,
        *,
        rest: HessianOperator | None = None,
        plan: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(op, HessianOperator):
            raise WeightspaceError(
                f"op: expected a HessianOperator to split, got {type(op).__name__}"
            )
        self.block = named_block(op.layout, block)
        others = tuple(n for n in op.layout.names if n not in self.block)
        if rest is not None and tuple(rest.layout.names) != others:
            raise WeightspaceError(
                f"rest: expected the operator over {list(others)}, got one over "
                f"{list(rest.layout.names)}; pass op.restrict(those names) or None"
            )
        self.full, self.rest = op, op.restrict(others) if rest is None else rest
        self.shape, self.dtype, self.device = op.shape, op.dtype, op.device
        self.layout, self.theta, self.objective = op.layout, op.theta, op.objective
        self.loss, self.method, self.progress = op.loss, op.method, op.progress
        self.plan = plan
        self.n_matvecs = 0
        self._b_idx = positions(op.layout, self.block, op.device)
        self._r_idx = positions(op.layout, others, op.device)
        self._columns: torch.Tensor | None = None
        self._rows_r: torch.Tensor | None = None
        self._column_checks = 0

    @property
    def split(self) -> tuple[str, ...]:
        """The names of the tensors split off (:attr:`block`)."""
        return self.block

    @property
    def n_checks(self) -> int:
        """Products spent checking linearisations (the columns' and both operators')."""
        return self.full.n_checks + self.rest.n_checks + self._column_checks

    def columns(self) -> torch.Tensor:
        """``(m, b)``: the columns ``H[:, B]``, computed at the first call."""
        if self._columns is None:
            self.full.release()  # its own products are not needed: free their memory first
            m, b = self.shape[0], len(self._b_idx)
            columns = torch.zeros(m, b, dtype=self.dtype, device=self.device)
            n_batches = self.objective.n_batches
            bar = progress_bar(
                total=b * n_batches, desc="hessian columns", unit="product", enabled=self.progress
            )
            with bar, torch.enable_grad(), differentiable_attention():
                for batch in range(n_batches):
                    column = self._column_product(batch)
                    e = torch.zeros(b, dtype=self.dtype, device=self.device)
                    for j in range(b):
                        e[j] = 1.0
                        columns[:, j] += column(e)
                        e[j] = 0.0
                        bar.update()
            self.n_matvecs += b
            self._columns = columns
            self._rows_r = columns.index_select(0, self._r_idx).contiguous()  # C_R
        return self._columns

    def _column_product(self, batch: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """``e -> (w_b H_b)[:, B] e`` for one batch: the linearised gradient of all tensors
        with a tangent on ``B`` only (cheaper than a full product) on the cached forward
        route, else a full product."""
        op, m = self.full, self.shape[0]
        others = self.rest.layout.names

        def full(e: torch.Tensor) -> torch.Tensor:
            x = torch.zeros(m, dtype=self.dtype, device=self.device)
            x[self._b_idx] = e
            return op.batch_matvec(batch, x)

        if op.method != "forward" or not op.cache:
            return full
        loss = named_loss(op.objective, op.theta, batch, self.block, others)
        ur = values_of(op.objective.layout, op.theta, others)

        def gradient(u: torch.Tensor) -> torch.Tensor:
            gb, gr = grad(loss, argnums=(0, 1))(u, ur)
            out = torch.empty(m, dtype=gb.dtype, device=gb.device)
            out[self._b_idx], out[self._r_idx] = gb, gr
            return out

        ub = values_of(op.objective.layout, op.theta, self.block)
        try:
            product = checked_linearize(gradient, ub, seed=batch)
        except (RuntimeError, NotImplementedError) as e:  # no forward-mode rule, or no trace
            log.warning("linearised Hessian columns unavailable (%s); using full products", e)
            return full
        self._column_checks += 3
        return full if product is None else product

    def _product(self, V: torch.Tensor) -> torch.Tensor:
        """``C V_B + [C_Rᵀ V_R ; H_RR V_R]`` for ``V: (m,)`` or ``(m, k)``."""
        C = self.columns()
        vb, vr = V.index_select(0, self._b_idx), V.index_select(0, self._r_idx)
        out = C @ vb
        out.index_add_(0, self._r_idx, self.rest @ vr)
        out.index_add_(0, self._b_idx, self._rows_r.T @ vr)
        self.n_matvecs += 1 if V.ndim == 1 else V.shape[1]
        return out

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v: (m,)``."""
        v = check_vectors(v, self.shape[0], 1, "v", dtype=self.dtype, device=self.device)
        return self._product(v)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H V`` for ``V: (m, k)``: column by column, as :meth:`matvec` (so that every
        product is the same whatever its companions), or all at once when ``H_RR`` batches
        its columns (:attr:`HessianOperator.batches_columns`)."""
        V = check_vectors(V, self.shape[0], 2, "V", dtype=self.dtype, device=self.device)
        if self.rest.batches_columns and V.shape[1] > 1:
            return self._product(V)
        return torch.stack([self._product(V[:, j]) for j in range(V.shape[1])], dim=1)

    def release(self) -> None:
        """Drop the cached graphs and linearisations (the columns stay)."""
        self.full.release()
        self.rest.release()

    @property
    def metadata(self) -> dict[str, Any]:
        """What a result computed with this operator records about it."""
        meta = {**self.full.metadata, "hvp_split": list(self.block)}
        if self.plan is not None:
            meta["hvp_plan"] = self.plan
        return meta

    def __repr__(self) -> str:
        return (
            f"SplitHessianOperator(shape={self.shape}, block={self.block}, "
            f"method={self.method!r}, n_matvecs={self.n_matvecs})"
        )


def named_block(layout: ParamLayout, spec: NameFilter) -> tuple[str, ...]:
    """The tensors of ``layout`` matched by ``spec``; an error unless some, not all, match."""
    is_patterns = isinstance(spec, (list, tuple)) and all(isinstance(p, str) for p in spec)
    if not (isinstance(spec, str) or callable(spec) or is_patterns):
        raise WeightspaceError(
            f"split: expected 'auto', None, a glob pattern, a list of patterns or a predicate, "
            f"got {spec!r}"
        )
    keep = name_matcher(spec)
    block = tuple(n for n in layout.names if keep(n))
    if not block or len(block) == len(layout.names):
        shown = ", ".join(layout.names[:4]) + (", ..." if len(layout.names) > 4 else "")
        raise WeightspaceError(
            f"split={spec!r} matched {'none' if not block else 'all'} of the operator's "
            f"tensors ({shown}); name a block that leaves others to differentiate, or pass "
            "split=None"
        )
    return block


def first_block(op: HessianOperator) -> tuple[str, ...]:
    """Names (among the operator's tensors) of the first module that runs in the forward
    pass and owns one of them: the usual block to split off (few parameters, expensive
    derivatives above it). Empty when none is found."""
    model = op.objective.model
    owned = {
        mod_name: [
            f"{mod_name}.{p}" if mod_name else p for p, _ in m.named_parameters(recurse=False)
        ]
        for mod_name, m in model.named_modules()
    }
    wanted = set(op.layout.names)
    order: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, name=name: order.append(name))
        for name, m in model.named_modules()
        if any(n in wanted for n in owned[name])
    ]
    try:
        with torch.no_grad():
            op.objective.batch_loss(op.theta, 0)
    finally:
        for h in hooks:
            h.remove()
    for name in order:
        names = tuple(n for n in op.layout.names if n in owned[name])
        if names:
            return names
    return ()


def block_size(layout: ParamLayout, names: Sequence[str]) -> int:
    """The number of coordinates of the tensors ``names``."""
    sizes = dict(zip(layout.names, layout.shapes))
    return sum(math.prod(sizes[n]) for n in names)


def positions(layout: ParamLayout, names: Sequence[str], device: torch.device) -> torch.Tensor:
    """The coordinates of the tensors ``names`` in ``layout``'s flat order."""
    where = {n: (a, b) for n, a, b in zip(layout.names, layout.offsets, layout.offsets[1:])}
    return torch.cat([torch.arange(*where[n]) for n in names]).to(device)
