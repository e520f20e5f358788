"""HessianOperator against independent analytic Hessians (never autograd against autograd)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import weightspace as ws
from weightspace.curvature import ForwardModeError, HessianOperator, plan_hessian
from weightspace.curvature.plan import LINEARIZE_AFTER
from weightspace.errors import WeightspaceError
from weightspace.testing import generator as gen
from weightspace.testing import with_spectrum

F64 = torch.float64


class Quadratic(nn.Module):
    """``L(w) = ½ wᵀAw`` for every sample: Hessian ``A``."""

    def __init__(self, A: torch.Tensor) -> None:
        super().__init__()
        self.A = A
        self.w = nn.Parameter(torch.randn(len(A), generator=gen(1), dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.w @ self.A @ self.w + 0 * x.sum(1)


def quadratic_problem(A: torch.Tensor, n_samples: int = 6) -> ws.Problem:
    X = torch.zeros(n_samples, 1, dtype=F64)
    return ws.Problem(Quadratic(A), lambda out, t: out.mean(), (X, torch.zeros(n_samples)))


def regression_data(n: int = 10, d: int = 3, seed: int = 0):
    g = gen(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randn(n, generator=g, dtype=F64)


def mse(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return ((out[:, 0] - t) ** 2).mean()


def linear_model(d: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(d, 1).double()


def test_quadratic_hvp_is_A_v():
    lam = torch.tensor([-3.0, -0.5, 0.0, 0.0, 1.0, 2.5, 7.0], dtype=F64)
    A = with_spectrum(lam)
    op = HessianOperator(ws.Objective(quadratic_problem(A)))
    V = torch.randn(7, 3, generator=gen(2), dtype=F64)
    assert op.shape == (7, 7) and op.dtype == F64
    torch.testing.assert_close(op @ V[:, 0], A @ V[:, 0], rtol=0, atol=1e-10)
    torch.testing.assert_close(op.matmat(V), A @ V, rtol=0, atol=1e-10)
    assert op.n_matvecs == 4


def test_linear_regression_hessian_is_2_over_N_XtX():
    X, y = regression_data()
    obj = ws.Objective(ws.Problem(linear_model(), mse, (X, y)))
    Xt = torch.cat([X, torch.ones(len(X), 1, dtype=F64)], dim=1)  # weight (1, 3) then bias
    H = HessianOperator(obj).to_dense()
    torch.testing.assert_close(H, 2 / len(X) * Xt.T @ Xt, rtol=0, atol=1e-12)


def test_logistic_regression_hessian():
    X, _ = regression_data(12, 3)
    y = (torch.arange(12) % 2).to(F64)
    model = linear_model()
    bce = nn.BCEWithLogitsLoss()
    obj = ws.Objective(ws.Problem(model, lambda out, t: bce(out[:, 0], t), (X, y)))
    Xt = torch.cat([X, torch.ones(12, 1, dtype=F64)], dim=1)
    w = torch.cat([model.weight.detach()[0], model.bias.detach()])
    p = torch.sigmoid(Xt @ w)
    expected = Xt.T @ torch.diag(p * (1 - p)) @ Xt / 12
    op = HessianOperator(obj)
    torch.testing.assert_close(op.to_dense(), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.to_dense(), expected, rtol=0, atol=1e-12)  # products repeat


class Saddle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros((), dtype=F64))
        self.b = nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.a * self.b - 1) ** 2 + 0 * x.sum()


def test_saddle_at_origin_has_eigenvalues_plus_minus_one():
    data = (torch.zeros(2, 1, dtype=F64), torch.zeros(2))
    obj = ws.Objective(ws.Problem(Saddle(), lambda out, t: out, data))
    H = HessianOperator(obj).to_dense()
    torch.testing.assert_close(H, torch.tensor([[0.0, -1.0], [-1.0, 0.0]], dtype=F64))
    torch.testing.assert_close(torch.linalg.eigvalsh(H), torch.tensor([-1.0, 1.0], dtype=F64))


def test_batches_4_4_2_weighted_like_one_batch_of_10():
    X, y = regression_data(10)
    model = linear_model()
    batches = [(X[:4], y[:4]), (X[4:8], y[4:8]), (X[8:], y[8:])]
    one = HessianOperator(ws.Objective(ws.Problem(model, mse, (X, y))))
    split = HessianOperator(ws.Objective(ws.Problem(model, mse, batches)))
    v = torch.randn(4, generator=gen(3), dtype=F64)
    torch.testing.assert_close(split @ v, one @ v, rtol=0, atol=1e-12)
    # the unweighted mean of batch Hessians (what eigenthings does) is different here
    Xt = torch.cat([X, torch.ones(10, 1, dtype=F64)], dim=1)
    parts = [Xt[:4], Xt[4:8], Xt[8:]]
    unweighted = sum(2 / len(p) * p.T @ p for p in parts)
    assert (unweighted / 3 @ v - one @ v).abs().max() > 1e-3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "forward", "cache": True},
        {"method": "forward", "cache": False},
        {"method": "double-backward", "cache": True},
        {"method": "double-backward", "cache": False},
        {"method": "forward", "vectorize": True},
    ],
)
def test_every_product_route_gives_the_closed_form(kwargs):
    X, y = regression_data(10)
    batches = [(X[:4], y[:4]), (X[4:], y[4:])]
    op = HessianOperator(ws.Objective(ws.Problem(linear_model(), mse, batches)), **kwargs)
    Xt = torch.cat([X, torch.ones(10, 1, dtype=F64)], dim=1)
    V = torch.randn(4, 3, generator=gen(4), dtype=F64)
    for _ in range(2):  # a second product reuses the cache
        torch.testing.assert_close(op.matmat(V), 2 / 10 * Xt.T @ Xt @ V, rtol=0, atol=1e-12)
    assert op.method == kwargs["method"]
    assert op.n_matvecs == 6


class _Cube(torch.autograd.Function):
    """x³ with a backward only (no forward-mode rule)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * g


class CubeModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Cube.apply(self.w).sum() + 0 * x.sum()


def cube_objective() -> ws.Objective:
    data = (torch.zeros(3, 1, dtype=F64), torch.zeros(3))
    return ws.Objective(ws.Problem(CubeModel(), lambda out, t: out, data))


CUBE_HESSIAN = torch.diag(6 * torch.tensor([1.0, -2.0, 0.5], dtype=F64))  # d²/dw² Σ w³


@pytest.mark.parametrize(
    "kwargs", [{"n_products": 500}, {"cache": False}, {"method": "forward", "n_products": 3}]
)
def test_plan_falls_back_to_double_backward_without_forward_mode(kwargs):
    op = plan_hessian(cube_objective(), **kwargs)
    torch.testing.assert_close(op.to_dense(), CUBE_HESSIAN)
    assert op.method == "double-backward"
    assert op.plan["route"] == "double-backward"
    note = op.plan["note"]
    assert note.startswith("forward mode unavailable") and "\n" not in note
    assert op.metadata["hvp_plan"]["note"] == note


def test_forward_route_without_forward_mode_is_a_one_line_error():
    op = HessianOperator(cube_objective(), method="forward")
    with pytest.raises(ForwardModeError) as e:
        op @ torch.ones(3, dtype=F64)
    msg = one_line(e)
    assert msg.startswith("method='forward': forward-mode AD failed on this model")
    assert "use method='double-backward'" in msg
    assert isinstance(e.value, WeightspaceError)
    # the double-backward route of the same model is right
    dense = HessianOperator(cube_objective(), method="double-backward").to_dense()
    torch.testing.assert_close(dense, CUBE_HESSIAN)


def test_plan_chooses_the_route_from_the_products_planned():
    X, y = regression_data(10)
    obj = ws.Objective(ws.Problem(linear_model(), mse, (X, y)))
    Xt = torch.cat([X, torch.ones(10, 1, dtype=F64)], dim=1)
    H = 2 / 10 * Xt.T @ Xt
    v = torch.randn(4, generator=gen(0), dtype=F64)
    few = plan_hessian(obj, n_products=LINEARIZE_AFTER - 1)
    many = plan_hessian(obj, n_products=LINEARIZE_AFTER)
    assert few.method == few.plan["route"] == "double-backward"
    assert many.method == many.plan["route"] == "forward"
    assert "kept graph" in few.plan["route_why"] and "linearisation pays" in many.plan["route_why"]
    for op in (few, many):
        torch.testing.assert_close(op @ v, H @ v, rtol=0, atol=1e-12)
        assert op.metadata["hvp_plan"] == op.plan and op.metadata["hvp_method"] == op.method
    assert many.n_checks == 3  # the linearisation was checked once against a fresh product
    assert many.plan["planning_products"] == 1  # the forward route was traced once
    given = plan_hessian(obj, n_products=1000, method="double-backward")
    assert given.method == "double-backward" and given.plan["route_why"] == "given"


def test_plan_takes_the_kept_graph_when_the_linearisation_is_inconsistent():
    X, _ = regression_data(12, 3)
    y = (torch.arange(12) % 2).to(F64)
    bce = nn.BCEWithLogitsLoss()
    obj = ws.Objective(ws.Problem(linear_model(), lambda out, t: bce(out[:, 0], t), (X, y)))
    op = plan_hessian(obj, n_products=500, split=None)
    assert op.method == "double-backward" and "linearisation inconsistent" in op.plan["note"]
    forced = plan_hessian(obj, n_products=500, method="forward", split=None)
    assert forced.method == "forward" and forced.linearize_failed  # asked for: kept
    torch.testing.assert_close(forced.to_dense(), op.to_dense(), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "auto"}, r"method: expected one of 'forward', 'double-backward', got 'auto'"),
        ({"dtype": torch.int64}, r"dtype: expected a floating torch dtype"),
    ],
)
def test_bad_operator_settings_are_one_line_errors(kwargs, match):
    with pytest.raises(WeightspaceError, match=match) as e:
        HessianOperator(mlp_objective(), **kwargs)
    one_line(e)


def mlp_objective() -> ws.Objective:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    X, y = regression_data(8)
    return ws.Objective(ws.Problem(model, mse, (X, y)))


def test_include_restricts_to_a_block_of_the_hessian():
    obj = mlp_objective()
    full = HessianOperator(obj).to_dense()
    op = HessianOperator(obj, include="2.*")  # last layer: weight (1, 4), bias (1,)
    sl = slice(obj.layout.offsets[2], obj.layout.offsets[4])
    assert op.shape == (5, 5) and op.layout.names == ("2.weight", "2.bias")
    torch.testing.assert_close(op.to_dense(), full[sl, sl], rtol=0, atol=1e-12)
    # the last layer of a regression net is linear regression on the hidden features
    h = torch.tanh(obj.model[0](obj.problem.data[0])).detach()
    ht = torch.cat([h, torch.ones(len(h), 1, dtype=F64)], dim=1)
    torch.testing.assert_close(op.to_dense(), 2 / len(h) * ht.T @ ht, rtol=0, atol=1e-12)


def test_subset_layout_on_the_objective_is_the_same_block():
    obj = mlp_objective()
    sub = ws.Objective(obj.problem, layout=ws.ParamLayout.from_module(obj.model, include="0.*"))
    block = HessianOperator(obj, include="0.*").to_dense()
    torch.testing.assert_close(HessianOperator(sub).to_dense(), block, rtol=0, atol=1e-12)


def test_float64_option_on_a_float32_model():
    X, y = regression_data(10)
    X = X.float().double()  # the data the float32 problem holds, exactly
    model = nn.Linear(3, 1)
    obj = ws.Objective(ws.Problem(model, mse, (X.float(), y.float())))
    op = HessianOperator(obj, dtype=F64)
    Xt = torch.cat([X, torch.ones(10, 1, dtype=F64)], dim=1)
    assert op.dtype == F64
    torch.testing.assert_close(op.to_dense(), 2 / 10 * Xt.T @ Xt, rtol=0, atol=1e-12)


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_pattern_that_matches_nothing_is_an_error():
    with pytest.raises(WeightspaceError) as e:
        HessianOperator(mlp_objective(), include="layer9.*")
    assert "include='layer9.*' matched no parameter" in one_line(e)


def test_non_finite_loss_at_theta_is_an_error():
    obj = mlp_objective()
    theta = obj.theta0.clone()
    theta[-1] = float("inf")  # the output bias: the loss is inf
    with pytest.raises(WeightspaceError) as e:
        HessianOperator(obj, theta)
    assert "theta: the loss is" in one_line(e)


def test_non_deterministic_objective_is_an_error():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Dropout(0.5), nn.Linear(16, 1)).double()
    obj = ws.Objective(ws.Problem(model, mse, regression_data(50)), mode="train")
    with pytest.raises(WeightspaceError) as e:
        HessianOperator(obj)
    assert "not deterministic" in one_line(e)


def test_bad_theta_and_vector_shapes_are_errors():
    obj = mlp_objective()
    with pytest.raises(WeightspaceError, match=r"theta: expected a flat tensor of shape \(21,\)"):
        HessianOperator(obj, torch.zeros(5, dtype=F64))
    op = HessianOperator(obj)
    with pytest.raises(WeightspaceError, match=r"v: expected a tensor of shape \(21,\)"):
        op @ torch.zeros(20, dtype=F64)
    with pytest.raises(WeightspaceError, match="objective: expected a weightspace Objective"):
        HessianOperator("not an objective")
