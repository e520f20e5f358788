"""Splitting a block of parameters off the Hessian products: the same matrix, cheaper products.

The split operator is checked against a closed form (a quadratic over two tensors) and against
the dense ``torch.func.hessian`` of the flat loss (no linearisation, no split), on a small
float64 CNN with three weighted batches. The planner's split decision is checked with fixed
(monkeypatched) timings.
"""

from __future__ import annotations

import functools
import re

import pytest
import torch
from torch import nn

import weightspace as ws
from weightspace.curvature import HessianOperator, SplitHessianOperator, plan_hessian
from weightspace.curvature import plan as plan_mod
from weightspace.curvature import split as split_mod
from weightspace.errors import WeightspaceError
from weightspace.testing import generator as gen

F64 = torch.float64


class TwoTensors(nn.Module):
    """``L = ½ wᵀAw`` with ``w = [a; b]``: Hessian ``A``; ``a`` is used first."""

    def __init__(self, A: torch.Tensor, n_a: int) -> None:
        super().__init__()
        self.A, self.n_a = A, n_a
        self.b = nn.Parameter(torch.randn(len(A) - n_a, generator=gen(2), dtype=F64))
        self.a = nn.Parameter(torch.randn(n_a, generator=gen(1), dtype=F64))  # registered last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.cat([self.a, self.b])
        return 0.5 * w @ self.A @ w + 0 * x.sum(1)


def quadratic(n_a: int = 2) -> tuple[ws.Objective, torch.Tensor]:
    lam = torch.tensor([-2.0, -0.5, 0.0, 0.0, 1.0, 3.0, 6.0], dtype=F64)
    Q, _ = torch.linalg.qr(torch.randn(7, 7, generator=gen(3), dtype=F64))
    A = Q @ torch.diag(lam) @ Q.T
    A = 0.5 * (A + A.T)
    X = torch.zeros(6, 1, dtype=F64)
    problem = ws.Problem(TwoTensors(A, n_a), lambda out, t: out.mean(), (X, torch.zeros(6)))
    return ws.Objective(problem), A


def in_layout_order(A: torch.Tensor, n_a: int) -> torch.Tensor:
    """``A`` in the layout's order (``b`` is registered first, then ``a``)."""
    perm = torch.cat([torch.arange(n_a, len(A)), torch.arange(n_a)])
    return A[perm][:, perm]


@pytest.mark.parametrize("method", ["forward", "double-backward"])
def test_split_quadratic_is_A(method):
    obj, A = quadratic()
    op = SplitHessianOperator(HessianOperator(obj, method=method), "a")
    H = in_layout_order(A, 2)
    V = torch.randn(7, 3, generator=gen(4), dtype=F64)
    torch.testing.assert_close(op @ V[:, 0], H @ V[:, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(op.matmat(V), H @ V, rtol=0, atol=1e-12)
    assert op.split == ("a",)
    assert op.n_matvecs == 2 + 4  # the block's 2 columns, then 4 products


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    ).double()


def cnn_objective() -> ws.Objective:
    X = torch.randn(10, 1, 5, 5, generator=gen(5), dtype=F64)
    y = torch.randint(0, 3, (10,), generator=gen(6))
    problem = ws.Problem(small_cnn(), nn.CrossEntropyLoss(), (X, y))
    return ws.Objective(problem, batch_size=4)  # batches of 4, 4 and 2, weighted


def dense_hessian(obj: ws.Objective) -> torch.Tensor:
    return torch.func.hessian(obj)(obj.theta0)


@functools.cache
def cnn_hessian() -> torch.Tensor:
    """The dense Hessian of :func:`cnn_objective` (deterministic), computed once."""
    return dense_hessian(cnn_objective())


def split_cnn(method: str) -> SplitHessianOperator:
    obj = cnn_objective()
    if method == "planned":  # the planner's route for many products, the block given
        op = plan_hessian(obj, n_products=1000, split="0.*")
        assert op.method == "forward" and op.plan["split_why"] == "given"
        return op
    if method == "vectorized":  # H_RR's columns through one vmap per batch
        return SplitHessianOperator(HessianOperator(obj, method="forward", vectorize=True), "0.*")
    return SplitHessianOperator(HessianOperator(obj, method=method), "0.*")


@pytest.mark.parametrize("method", ["forward", "double-backward", "planned", "vectorized"])
def test_split_cnn_matches_the_dense_hessian_over_weighted_batches(method):
    op = split_cnn(method)
    H = cnn_hessian()
    assert op.split == ("0.weight", "0.bias")
    assert op.n_matvecs == 0  # the columns are computed at the first product
    torch.testing.assert_close(op.to_dense(), H, rtol=0, atol=1e-10)
    assert op.n_matvecs == 30 + H.shape[0]  # 30 columns, then one product per column of H
    assert op.metadata["hvp_split"] == ["0.weight", "0.bias"]
    op.release()  # the columns stay, the rest's caches go: products still right
    v = torch.randn(H.shape[0], generator=gen(7), dtype=F64)
    torch.testing.assert_close(op @ v, H @ v, rtol=0, atol=1e-10)


def test_split_within_an_include_subset():
    obj = cnn_objective()
    H = cnn_hessian()
    layout = obj.layout
    convs = [i for i, n in enumerate(layout.names) if n.startswith(("0.", "2."))]
    idx = torch.cat([torch.arange(layout.offsets[i], layout.offsets[i + 1]) for i in convs])
    op = SplitHessianOperator(
        HessianOperator(obj, include=["0.*", "2.*"], method="forward"), ["0.*"]
    )
    torch.testing.assert_close(op.to_dense(), H[idx][:, idx], rtol=0, atol=1e-10)


def test_first_block_follows_the_forward_pass_not_registration():
    obj, _ = quadratic()  # TwoTensors registers b first; one module owns both
    op = HessianOperator(obj)
    assert split_mod.first_block(op) == ("b", "a")  # a single module: all its tensors

    class HeadFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(4, 2)
            self.body = nn.Linear(3, 4)

        def forward(self, x):
            return self.head(torch.tanh(self.body(x)))

    data = (torch.randn(6, 3), torch.randint(0, 2, (6,)))
    obj2 = ws.Objective(ws.Problem(HeadFirst(), nn.CrossEntropyLoss(), data))
    assert split_mod.first_block(HessianOperator(obj2)) == ("body.weight", "body.bias")
    sub = HessianOperator(obj2, include="head.*")  # only the head's tensors are candidates
    assert split_mod.first_block(sub) == ("head.weight", "head.bias")


def test_worth_splitting_weighs_the_columns_against_the_saving():
    # 10 columns at 1 s, then 100 products at 0.5 s: 60 s against 100 s -> yes
    assert plan_mod.worth_splitting(10, 100, 1.0, 0.5)
    # a saving under 10% is not worth it: 10 + 100·0.85 = 95 > 90
    assert not plan_mod.worth_splitting(10, 100, 1.0, 0.85)
    assert plan_mod.worth_splitting(10, 100, 1.0, 0.75)  # 85 < 90
    # too few products for the columns: 60 + 100·0.1 = 70 ... yes; 85 + 10 = 95 ... no
    assert plan_mod.worth_splitting(60, 100, 1.0, 0.1)
    assert not plan_mod.worth_splitting(85, 100, 1.0, 0.1)


def fixed_timings(monkeypatch, t_rest: float) -> list:
    """Time every product as 1 s, and one without the first block as ``t_rest`` s."""
    calls = []

    def timed(op, rest):
        calls.append((op.shape[0], rest.shape[0]))
        return 1.0, t_rest

    monkeypatch.setattr(plan_mod, "_time_products", timed)
    return calls


@pytest.mark.parametrize("t_rest, splits", [(0.1, True), (0.95, False)])
def test_auto_splits_when_the_timed_products_say_so(monkeypatch, t_rest, splits):
    calls = fixed_timings(monkeypatch, t_rest)
    obj = cnn_objective()
    H = dense_hessian(obj)
    op = plan_hessian(obj, n_products=500)  # as for SLQ; the first block has 30 coordinates
    v = torch.randn(H.shape[0], generator=gen(8), dtype=F64)
    torch.testing.assert_close(op @ v, H @ v, rtol=0, atol=1e-10)
    assert calls == [(H.shape[0], H.shape[0] - 30)]  # one product timed each way
    assert isinstance(op, SplitHessianOperator) is splits
    assert op.plan["block"] == (["0.weight", "0.bias"] if splits else None)
    assert op.plan["timings"] == {"product_s": 1.0, "without_block_s": t_rest, "batch": 0}
    assert op.plan["split_why"].startswith("30 columns")
    assert op.metadata["hvp_plan"] == op.plan
    assert op.metadata["hvp_split"] == (["0.weight", "0.bias"] if splits else None)
    assert op.n_matvecs == 1 + (30 if splits else 0)
    torch.testing.assert_close(op.matmat(torch.stack([v, 2 * v], 1))[:, 1], 2 * H @ v)


def test_auto_never_splits_for_a_few_products(monkeypatch):
    calls = fixed_timings(monkeypatch, 0.01)  # splitting would pay per product
    obj = cnn_objective()
    op = plan_hessian(obj, n_products=plan_mod.LINEARIZE_AFTER - 1)
    assert op.plan["block"] is None and op.plan["timings"] is None and not calls
    assert op.plan["split_why"].startswith("not considered")
    monkeypatch.setattr(plan_mod, "LINEARIZE_AFTER", 0)
    op = plan_hessian(obj, n_products=40)  # the first block's 30 columns cannot pay
    assert op.plan["route"] == "forward" and op.plan["block"] is None and not calls
    assert op.plan["split_why"] == "30 columns could not pay for themselves in 40 products"
    op @ torch.randn(op.shape[0], dtype=F64)
    assert op.n_matvecs == 1
    assert plan_hessian(obj, n_products=500, split=None).plan["split_why"] == "split=None"
    assert not calls


@pytest.mark.parametrize("spec, word", [("nothing.*", "none"), ("*", "all")])
def test_split_that_matches_none_or_all_is_an_error(spec, word):
    obj = cnn_objective()
    for build in (
        lambda: SplitHessianOperator(HessianOperator(obj), spec),
        lambda: plan_hessian(obj, split=spec),
    ):
        with pytest.raises(
            WeightspaceError, match=re.escape(f"split='{spec}' matched {word}")
        ) as e:
            build()
        assert "\n" not in str(e.value)


def test_split_of_the_wrong_type_is_an_error():
    obj = cnn_objective()
    for build in (
        lambda: SplitHessianOperator(HessianOperator(obj), True),
        lambda: plan_hessian(obj, split=True),
    ):
        with pytest.raises(WeightspaceError, match="split: expected 'auto', None, a glob") as e:
            build()
        assert "\n" not in str(e.value)


def test_split_with_a_stateful_linearisation_still_gives_the_closed_form():
    # torch.func.linearize of BCEWithLogitsLoss changes its answer call by call (torch 2.13):
    # the split's columns then come from full products
    torch.manual_seed(0)
    X = torch.randn(12, 3, generator=gen(9), dtype=F64)
    y = (torch.arange(12) % 2).to(F64)
    model = nn.Linear(3, 1).double()
    bce = nn.BCEWithLogitsLoss()
    obj = ws.Objective(ws.Problem(model, lambda out, t: bce(out[:, 0], t), (X, y)))
    p = torch.sigmoid(model(X)[:, 0]).detach()
    Xt = torch.cat([X, torch.ones(12, 1, dtype=F64)], dim=1)
    H = Xt.T @ torch.diag(p * (1 - p)) @ Xt / 12
    op = SplitHessianOperator(HessianOperator(obj, method="forward"), "weight")
    torch.testing.assert_close(op.to_dense(), H, rtol=0, atol=1e-12)


def test_auto_never_keeps_columns_over_the_memory_limit(monkeypatch):
    fixed_timings(monkeypatch, 0.01)  # splitting would pay
    obj = cnn_objective()
    m = obj.layout.numel
    monkeypatch.setattr(plan_mod, "MAX_COLUMN_BYTES", 30 * m * 8 - 1)  # 30 columns, 1 byte short
    op = plan_hessian(obj, n_products=500)
    assert op.plan["block"] is None and "exceed" in op.plan["split_why"]
    monkeypatch.setattr(plan_mod, "MAX_COLUMN_BYTES", 30 * m * 8)
    op = plan_hessian(obj, n_products=500)
    assert op.split == ("0.weight", "0.bias")
