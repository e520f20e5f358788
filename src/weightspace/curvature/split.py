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

The split is exact (the same matrix, up to rounding). :class:`~weightspace.HessianOperator`
chooses it (``split="auto"``) when the products announced by
:meth:`~weightspace.HessianOperator.expect` are enough to pay for the columns at the
measured cost of one product each way.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.func import grad
from tqdm.auto import tqdm

from ..errors import WeightspaceError
from ..layout import NameFilter, _name_predicate

if TYPE_CHECKING:
    from .hvp import HessianOperator

log = logging.getLogger(__name__)

# split only when it is expected to save at least 10% of the remaining time, with each column
# priced as a full product (an upper bound: on the digits CNN a column costs about 0.75 of one)
MARGIN = 0.9
TIMING_ROUNDS = 4  # products timed each way before deciding
MAX_COLUMN_BYTES = 2**30  # "auto" never keeps more than 1 GiB of columns


@dataclass
class BlockSplit:
    """``H`` with the block ``block`` split off: the columns ``H[:, B]`` and ``H_RR``.

    Attributes:
        block: names of the tensors in ``B``.
        rest: the operator ``H_RR`` (a :class:`~weightspace.HessianOperator` over the other
            tensors, ``B`` held at ``theta``).
        columns: ``(m, b)`` the columns ``H[:, B]`` in the operator's coordinates.
        b_idx, r_idx: positions of ``B`` and ``R`` among the operator's ``m`` coordinates.
    """

    block: tuple[str, ...]
    rest: HessianOperator
    columns: torch.Tensor
    b_idx: torch.Tensor
    r_idx: torch.Tensor

    def __post_init__(self) -> None:
        self._rows_r = self.columns.index_select(0, self.r_idx).contiguous()  # C_R

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H V`` for ``V: (m, k)``."""
        vb, vr = V.index_select(0, self.b_idx), V.index_select(0, self.r_idx)
        out = self.columns @ vb
        out.index_add_(0, self.r_idx, self.rest.matmat(vr))
        out.index_add_(0, self.b_idx, self._rows_r.T @ vr)
        return out


def worth_splitting(b: int, n_products: int, t_full: float, t_rest: float) -> bool:
    """Whether ``b`` columns at ``t_full`` each, then ``n_products`` products at ``t_rest``,
    take less than :data:`MARGIN` of ``n_products`` products at ``t_full``.
    (A column costs at most one full product.)"""
    return b * t_full + n_products * t_rest < MARGIN * n_products * t_full


def first_block(op: HessianOperator) -> tuple[str, ...]:
    """Names (among the operator's tensors) of the first module that runs in the forward
    pass and owns one of them: the usual block to split off (few parameters, expensive
    derivatives above it). Empty when none is found."""
    objective = op.objective
    model = objective.model
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
            objective.batch_loss(op.theta, 0)
    finally:
        for h in hooks:
            h.remove()
    for name in order:
        names = tuple(n for n in op.layout.names if n in owned[name])
        if names:
            return names
    return ()


def named_block(op: HessianOperator, spec: NameFilter) -> tuple[str, ...]:
    """The operator's tensors matched by ``spec``; an error unless some, not all, match."""
    is_patterns = isinstance(spec, (list, tuple)) and all(isinstance(p, str) for p in spec)
    if not (isinstance(spec, str) or callable(spec) or is_patterns):
        raise WeightspaceError(
            f"split: expected 'auto', None, a glob pattern, a list of patterns or a predicate, "
            f"got {spec!r}"
        )
    keep = _name_predicate(spec)
    block = tuple(n for n in op.layout.names if keep(n))
    if not block or len(block) == len(op.layout.names):
        shown = ", ".join(op.layout.names[:4]) + (", ..." if len(op.layout.names) > 4 else "")
        raise WeightspaceError(
            f"split={spec!r} matched {'none' if not block else 'all'} of the operator's "
            f"tensors ({shown}); name a block that leaves others to differentiate, or pass "
            "split=None"
        )
    return block


def plan(op: HessianOperator) -> tuple[bool, BlockSplit | None]:
    """``(decided, split)`` before a product of ``op``: a named block is split off at once;
    ``"auto"`` waits until :meth:`~weightspace.HessianOperator.expect` announces enough
    products for the linearised route, then times a product each way (:func:`decide`)."""
    if op._split_block is not None:
        return True, build(op, op._split_block, progress=op.progress)
    remaining = op._expected - op.n_matvecs
    wants_forward = op._method != "double-backward" and not op._forward_failed
    if not (op.cache and wants_forward and remaining >= op.linearize_after):
        return False, None  # not yet: decided when enough products are announced
    if op._auto_block is None:
        op._auto_block = first_block(op)
    block = op._auto_block
    sizes = dict(zip(op.layout.names, op.layout.shapes))
    b = sum(math.prod(sizes[n]) for n in block)
    too_big = b * op.shape[0] * op.theta.element_size() > MAX_COLUMN_BYTES
    if not block or b >= op.shape[0] or too_big or 2 * b > remaining:
        return False, None
    x = torch.zeros(op.shape[0], dtype=op.dtype, device=op.device)
    with torch.enable_grad():
        op._batch_hvp(0, x)  # the linearised route, as the products would be
    op.n_checks += 1
    if op._route != "forward" or op._linearize_failed:
        return True, None
    rest = decide(op, block, remaining)
    return True, None if rest is None else build(op, block, rest, progress=op.progress)


def _positions(op: HessianOperator, names: Sequence[str]) -> torch.Tensor:
    layout = op.layout
    where = {n: (a, b) for n, a, b in zip(layout.names, layout.offsets, layout.offsets[1:])}
    idx = [torch.arange(*where[n]) for n in names]
    return torch.cat(idx).to(op.device)


def _timed(*calls: Callable[[], object]) -> list[float]:
    """The fastest of :data:`TIMING_ROUNDS` runs of each call, run in turns (one warm-up
    round first): the minimum is the least disturbed by other work on the machine."""
    best = [float("inf")] * len(calls)
    for r in range(TIMING_ROUNDS + 1):
        for i, fn in enumerate(calls):
            t = time.perf_counter()
            fn()
            if r:
                best[i] = min(best[i], time.perf_counter() - t)
    return best


def rest_operator(op: HessianOperator, block: Sequence[str]) -> HessianOperator:
    """``H_RR``: the operator over ``op``'s tensors other than ``block``, same settings."""
    others = frozenset(op.layout.names) - frozenset(block)
    rest = type(op)(
        op.objective,
        op.theta,
        include=others.__contains__,  # exact names (a glob would misread "[" in a name)
        dtype=op.dtype,
        method=op._method,
        cache=op.cache,
        linearize_after=0 if op._route == "forward" else op.linearize_after,
        vectorize=op.vectorize,
        split=None,
        check=False,
    )
    rest.expect(max(op._expected - op.n_matvecs, 0))  # the same plan, so the same route
    return rest


def decide(op: HessianOperator, block: Sequence[str], n_products: int) -> HessianOperator | None:
    """Time one product of ``op`` and of ``H_RR`` on the first batch; return the ``H_RR``
    operator when splitting ``block`` off pays for ``n_products`` products, else ``None``.
    ``op`` must already use its linearised forward route (so both are timed alike)."""
    rest = rest_operator(op, block)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(op.shape[0], generator=g, dtype=torch.float64).to(op._u0)
    xr = torch.randn(rest.shape[0], generator=g, dtype=torch.float64).to(op._u0)
    with torch.enable_grad():
        rest._batch_hvp(0, xr)  # traces its linearisation
        t_full, t_rest = _timed(lambda: op._batch_hvp(0, x), lambda: rest._batch_hvp(0, xr))
    op.n_checks += 1 + 2 * TIMING_ROUNDS
    b = op.shape[0] - rest.shape[0]
    ok = worth_splitting(b, n_products, t_full, t_rest)
    log.info(
        "split %s (%d coordinates) off the Hessian products: %s (one product %.3g s, without "
        "the block %.3g s, %d products planned)",
        ", ".join(block),
        b,
        "yes" if ok else "no",
        t_full,
        t_rest,
        n_products,
    )
    return rest if ok else None


def build(
    op: HessianOperator,
    block: Sequence[str],
    rest: HessianOperator | None = None,
    *,
    progress: bool = False,
) -> BlockSplit:
    """Compute the columns ``H[:, B]`` (``b`` products) and return the split operator."""
    block = tuple(block)
    rest = rest_operator(op, block) if rest is None else rest
    b_idx, r_idx = _positions(op, block), _positions(op, rest.layout.names)
    m, b = op.shape[0], len(b_idx)
    op.release()  # the full products are not needed any more: free their memory first
    columns = torch.zeros(m, b, dtype=op.dtype, device=op.device)
    bar = tqdm(
        total=b * len(op._weights), desc="hessian columns", leave=False, disable=not progress
    )
    with torch.enable_grad():
        for batch in range(len(op._weights)):
            column = _column_product(op, batch, block, rest.layout.names, b_idx, r_idx)
            eye = torch.zeros(b, dtype=op.dtype, device=op.device)
            for j in range(b):
                eye[j] = 1.0
                columns[:, j] += column(eye)
                eye[j] = 0.0
                bar.update()
    bar.close()
    op.n_matvecs += b
    return BlockSplit(block, rest, columns, b_idx, r_idx)


def _column_product(
    op: HessianOperator,
    batch: int,
    block: tuple[str, ...],
    others: Sequence[str],
    b_idx: torch.Tensor,
    r_idx: torch.Tensor,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``e -> (w_b H_b)[:, B] e`` in the operator's coordinates, for one batch: the
    linearised gradient of all tensors with a tangent on ``B`` only (cheaper than a full
    product), or a full product when forward mode is not available."""
    m = op.shape[0]
    loss = op._named_loss(batch, block, others)
    ub, ur = op._values(block), op._values(others)

    def scatter(gb: torch.Tensor, gr: torch.Tensor) -> torch.Tensor:
        out = torch.empty(m, dtype=gb.dtype, device=gb.device)
        out[b_idx], out[r_idx] = gb, gr
        return out

    def gradient(u: torch.Tensor) -> torch.Tensor:
        return scatter(*grad(loss, argnums=(0, 1))(u, ur))

    def full(e: torch.Tensor) -> torch.Tensor:
        x = torch.zeros(m, dtype=op.dtype, device=op.device)
        x[b_idx] = e
        return op._batch_hvp(batch, x)

    if op._method == "double-backward" or op._forward_failed or not op.cache:
        return full
    from .hvp import checked_linearize  # hvp imports this module

    try:
        product = checked_linearize(gradient, ub, seed=batch)
    except (RuntimeError, NotImplementedError) as e:  # no forward-mode rule somewhere
        log.warning("linearised Hessian columns unavailable (%s); using full products", e)
        return full
    op.n_checks += 3
    return full if product is None else product
