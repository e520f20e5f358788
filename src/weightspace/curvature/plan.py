"""Planning the Hessian products: which route, and whether to split a first layer off.

The operators are pure; the choices that depend on cost live here, in
:func:`plan_hessian`, the one place in :mod:`weightspace.curvature` that reads a clock.

- Route: with the gradient graph kept, double backward costs little to set up; a linearised
  forward-over-reverse product costs about 15 products to trace on the digits CNN and is then
  10-35% cheaper. So plans of at least :data:`LINEARIZE_AFTER` products take the forward
  route. Models without forward-mode AD fall back to double backward (a note says so), and
  so do models whose linearisation cannot be traced (data-dependent control flow, as in the
  attention-mask code of transformers) or is inconsistent.
- Split (:class:`~weightspace.curvature.split.SplitHessianOperator`): the first layer's
  columns cost one product each; when the plan is long enough, one product is timed each
  way on the first batch and the split is taken when it is expected to save at least 10% of
  the time, with each column priced as a full product (an upper bound: on the digits CNN a
  column costs about 0.75 of one). See ``benchmarks/results/hessian.txt``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import torch

from ..checks import non_negative_int, one_of
from ..layout import NameFilter
from ..objective import Objective
from ._autodiff import sub_layout
from .hvp import METHODS, ForwardModeError, HessianOperator
from .split import SplitHessianOperator, block_size, first_block, named_block

__all__ = ["plan_hessian", "worth_splitting"]

log = logging.getLogger(__name__)

LINEARIZE_AFTER = 128  # products from which the linearised forward route pays for its tracing
MARGIN = 0.9  # split when the estimate is below 90% of the time without the split
TIMING_ROUNDS = 4  # products timed each way before deciding (after one warm-up round)
MAX_COLUMN_BYTES = 2**30  # "auto" never keeps more than 1 GiB of columns

PlanMethod = Literal["auto", "forward", "double-backward"]


def plan_hessian(
    objective: Objective,
    theta: torch.Tensor | None = None,
    n_products: int = 0,
    *,
    include: NameFilter = None,
    dtype: torch.dtype | None = None,
    method: PlanMethod = "auto",
    split: NameFilter | Literal["auto"] = "auto",
    cache: bool = True,
    vectorize: bool | None = None,
    progress: bool = False,
    check: bool = True,
) -> HessianOperator | SplitHessianOperator:
    """The Hessian operator that computes ``n_products`` products fastest.

    Args:
        objective, theta, include, dtype, cache, vectorize, progress, check: as in
            :class:`~weightspace.HessianOperator`.
        n_products: the products planned (e.g. ``n_probes·n_steps`` for SLQ).
        method: ``"auto"``: forward-over-reverse (linearised when ``cache``) for at least
            :data:`LINEARIZE_AFTER` products (a given block's columns counted) or without
            ``cache``, else double backward; or a route. A forward route that fails on the
            model (no forward-mode AD rule) falls back to double backward, and so does
            ``"auto"`` when the model's linearisation cannot be traced (data-dependent
            control flow) or is inconsistent (stateful losses); ``plan["note"]`` says why.
        split: ``"auto"``: the first module of the forward pass, when the products pay for
            its columns at the measured cost of one product each way (forward route, at
            least :data:`LINEARIZE_AFTER` products and twice the columns, the columns within
            :data:`MAX_COLUMN_BYTES`); a name pattern, list or predicate: that block,
            always; ``None``: never.

    Returns:
        a :class:`~weightspace.HessianOperator` or a
        :class:`~weightspace.curvature.SplitHessianOperator`; its ``plan`` (also
        ``metadata["hvp_plan"]``) records the route and why, the block and why, the timings
        measured and the products spent planning.

    Raises:
        WeightspaceError: bad ``method``, ``n_products`` or ``split``; as
            :class:`~weightspace.HessianOperator`.

    Example:
        >>> import weightspace as ws
        >>> X, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
        >>> model = torch.nn.Linear(3, 1).double()
        >>> obj = ws.Objective(ws.Problem(model, lambda o, t: ((o[:, 0] - t) ** 2).mean(), (X, y)))
        >>> op = plan_hessian(obj, n_products=20)
        >>> op.method, op.plan["block"]
        ('double-backward', None)
    """
    one_of(method, ("auto", *METHODS), "method")
    n_products = non_negative_int(n_products, "n_products")
    layout, block = sub_layout(objective.layout, include), None
    if split not in ("auto", None):  # checked before the first evaluation
        block = named_block(layout, split)
    route, why = _route(method, cache, n_products + (block_size(layout, block) if block else 0))
    op = HessianOperator(
        objective, theta, include=include, dtype=dtype, method=route, cache=cache,
        vectorize=vectorize, progress=progress, check=check,
    )  # fmt: skip
    plan: dict[str, Any] = dict(
        method=method, n_products=n_products, route=route, route_why=why,
        split=split if split is None or isinstance(split, str) else repr(split), block=None,
        split_why="split=None" if split is None else "given", timings=None, planning_products=0,
    )  # fmt: skip
    if route == "forward":
        op = _usable_forward(op, method, plan)
    rest = None
    if split == "auto":
        block, rest, plan["split_why"] = _auto_split(op, n_products, plan)
    plan["block"] = list(block) if block else None
    log.info("hessian plan: %s", plan)
    if not block:
        op.plan = plan
        return op
    return SplitHessianOperator(op, block, rest=rest, plan=plan)


def _route(method: str, cache: bool, n: int) -> tuple[str, str]:
    if method != "auto":
        return method, "given"
    if not cache:
        return "forward", "cache=False: forward-over-reverse is the cheaper uncached product"
    if n >= LINEARIZE_AFTER:
        return "forward", f"{n} products >= {LINEARIZE_AFTER}: the linearisation pays"
    return "double-backward", f"{n} products < {LINEARIZE_AFTER}: the kept graph is cheaper"


def _usable_forward(op: HessianOperator, method: str, plan: dict[str, Any]) -> HessianOperator:
    """``op``, or the double-backward operator when its forward route cannot serve."""
    x = torch.zeros(op.shape[0], dtype=op.dtype, device=op.device)
    try:
        op.batch_matvec(0, x)  # traces the first batch, as the products will
    except ForwardModeError as e:
        note = f"forward mode unavailable, using double backward: {e}"
    else:
        plan["planning_products"] += 1
        if not (op.linearize_failed and method == "auto"):
            return op
        note = f"{op.linearize_note}: using double backward, the kept graph is faster"
    log.warning("hessian plan: %s", note)
    plan.update(route="double-backward", note=note)
    return op.with_method("double-backward")


def _auto_split(
    op: HessianOperator, n: int, plan: dict[str, Any]
) -> tuple[tuple[str, ...] | None, HessianOperator | None, str]:
    """``(block, rest, why)``: the first block and its ``H_RR`` when splitting pays."""
    if not (op.method == "forward" and op.cache and n >= LINEARIZE_AFTER):
        return None, None, f"not considered below {LINEARIZE_AFTER} cached forward products"
    block = first_block(op)
    b, m = block_size(op.layout, block), op.shape[0]
    if not block or b >= m:
        return None, None, "no first block that leaves other tensors"
    if b * m * op.theta.element_size() > MAX_COLUMN_BYTES:
        return None, None, f"{b} columns exceed {MAX_COLUMN_BYTES} bytes"
    if 2 * b > n:
        return None, None, f"{b} columns could not pay for themselves in {n} products"
    rest = op.restrict([name for name in op.layout.names if name not in block])
    t_full, t_rest = _time_products(op, rest)
    plan["timings"] = {"product_s": t_full, "without_block_s": t_rest, "batch": 0}
    plan["planning_products"] += 1 + 2 * TIMING_ROUNDS
    if worth_splitting(b, n, t_full, t_rest):
        return block, rest, f"{b} columns + {n} cheaper products save over {1 - MARGIN:.0%}"
    return None, None, f"{b} columns + {n} products save under {1 - MARGIN:.0%}"


def worth_splitting(b: int, n_products: int, t_full: float, t_rest: float) -> bool:
    """Whether ``b`` columns at ``t_full`` each, then ``n_products`` products at ``t_rest``,
    take less than :data:`MARGIN` of ``n_products`` products at ``t_full``.
    (A column costs at most one full product.)"""
    return b * t_full + n_products * t_rest < MARGIN * n_products * t_full


def _time_products(op: HessianOperator, rest: HessianOperator) -> tuple[float, float]:
    """The fastest of :data:`TIMING_ROUNDS` products of the first batch by ``op`` and by
    ``rest``, run in turns after one warm-up round (which traces ``rest``): the minimum is
    the least disturbed by other work on the machine."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(op.shape[0], generator=g, dtype=torch.float64).to(op.theta)
    xr = torch.randn(rest.shape[0], generator=g, dtype=torch.float64).to(op.theta)
    calls = (lambda: op.batch_matvec(0, x), lambda: rest.batch_matvec(0, xr))
    best = [float("inf")] * len(calls)
    for r in range(TIMING_ROUNDS + 1):
        for i, fn in enumerate(calls):
            t = time.perf_counter()
            fn()
            if r:
                best[i] = min(best[i], time.perf_counter() - t)
    return best[0], best[1]
