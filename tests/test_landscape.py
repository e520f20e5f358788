import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import weightspace as ws
from weightspace import testing
from weightspace.errors import LayoutMismatchError, WeightspaceError
from weightspace.landscape import grid_axis, points_losses
from weightspace.testing import mean_of_outputs, with_spectrum


# ---------------------------------------------------------------------------- a quadratic
def quadratic_problem(n=6, sizes=(5, 3, 4), seed=0):
    """A known matrix A = Q diag(lam) Q^T and uneven batches of centres mu_i."""
    A = with_spectrum(torch.linspace(0.5, 4.0, n), seed)
    problem, A, mus = testing.quadratic_problem(A, sizes, seed)
    return problem, A.numpy(), mus.numpy(), sizes


def quadratic_batch_losses(theta, A, mus, sizes):
    """Closed form of each batch's mean loss at theta (numpy, float64)."""
    out, a = [], 0
    for s in sizes:
        r = theta[None, :] - mus[a : a + s]
        out.append(0.5 * np.einsum("ij,jk,ik->i", r, A, r).mean())
        a += s
    return np.array(out)


def test_non_square_grid_equals_the_closed_form():
    problem, A, mus, sizes = quadratic_problem()
    obj = ws.Objective(problem)
    g = torch.Generator().manual_seed(1)
    c = torch.randn(6, generator=g, dtype=torch.float64)
    d1, d2 = torch.randn(2, 6, generator=g, dtype=torch.float64)
    xs, ys = np.linspace(-1.0, 2.0, 7), np.linspace(-0.5, 0.5, 4)
    surf = ws.evaluate_plane(obj, c, d1, d2, xs, ys)
    assert surf.values.shape == (4, 7) and surf.stderr.shape == (4, 7)
    assert surf.accuracy is None and surf.n_nonfinite == 0
    w = np.array(sizes) / sum(sizes)
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            theta = c.numpy() + x * d1.numpy() + y * d2.numpy()
            per = quadratic_batch_losses(theta, A, mus, sizes)
            mean = float(w @ per)
            assert abs(surf.values[j, i] - mean) <= 1e-10 * max(1.0, abs(mean))
            se = math.sqrt(float(w @ (per - mean) ** 2) * 3 / 2 / 3)
            assert surf.stderr[j, i] == pytest.approx(se, rel=1e-9)
    assert surf.metadata["grid"] == {"nx": 7, "ny": 4, "x": [-1.0, 2.0], "y": [-0.5, 0.5]}
    assert surf.metadata["engine"]["compiled"] is False
    assert surf.metadata["cosine"] == pytest.approx(ws.directions.cosine(d1, d2))


def test_line_barrier_and_monotonicity_on_a_double_well():
    class Well(nn.Module):  # L(w) = (w^2 - 1)^2 per sample
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([-1.0], dtype=torch.float64))

        def forward(self, x):
            return ((self.w**2 - 1) ** 2).expand(len(x))

    X = torch.zeros(4, 1, dtype=torch.float64)
    data = (X, torch.zeros(4, dtype=torch.float64))
    obj = ws.Objective(ws.Problem(Well(), mean_of_outputs, data))
    a, b = torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    line = ws.evaluate_line(obj, a, ws.interpolation_directions(a, b)[0])
    assert len(line.alphas) == 41 and line.alphas[0] == -0.5 and line.alphas[-1] == 1.5
    w = -1 + 2 * line.alphas
    np.testing.assert_allclose(line.values, (w**2 - 1) ** 2, rtol=1e-12, atol=1e-14)
    assert line.barrier == pytest.approx(1.0, rel=1e-12)  # at alpha = 0.5, w = 0
    assert line.monotonic is False
    start = torch.tensor([2.0], dtype=torch.float64)
    down = ws.evaluate_line(obj, start, b - start, np.linspace(0, 1, 11))
    assert down.monotonic is True and down.barrier == pytest.approx(0.0, abs=1e-12)
    off = ws.evaluate_line(obj, start, b - start, np.linspace(0.1, 0.9, 5))
    assert math.isnan(off.barrier) and off.monotonic is None


def test_non_finite_losses_are_kept_as_nan_and_counted():
    class Log(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))

        def forward(self, x):
            return -torch.log(self.w).expand(len(x))

    X = torch.zeros(3, 1, dtype=torch.float64)
    obj = ws.Objective(ws.Problem(Log(), mean_of_outputs, (X, torch.zeros(3, dtype=torch.float64))))
    one = torch.tensor([1.0], dtype=torch.float64)
    alphas = np.linspace(-2.0, 1.0, 7)  # w = 1 + alpha: -1, -0.5, 0 (inf), 0.5, ...
    line = ws.evaluate_line(obj, one, one, alphas)
    w = 1 + alphas
    assert line.n_nonfinite == 3 and np.isnan(line.values[:3]).all()
    np.testing.assert_allclose(line.values[3:], -np.log(w[3:]), rtol=1e-12)


# ---------------------------------------------------------------------------- a CNN with BN
@pytest.fixture(scope="module")
def bn_problem():
    """digits-cnn-bn with non-trivial running statistics, on 150 digits in 3 batches."""
    problem = ws.zoo.problem("digits-cnn-bn", seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, buf in problem.model.named_buffers():
            if "running_mean" in name:
                buf.copy_(0.1 * torch.randn(buf.shape, generator=g))
            elif "running_var" in name:
                buf.copy_(0.5 + torch.rand(buf.shape, generator=g))
    X, y = problem.data
    batches = [(X[a : a + 64], y[a : a + 64]) for a in range(0, 150, 64)]
    return ws.Problem(problem.model, problem.loss_fn, batches, name="digits-cnn-bn")


def naive_value(model, center, d1, d2, x, y, batches):
    """Set the weights of a copy of the model and evaluate it: the reference loop."""
    m = copy.deepcopy(model).eval()
    layout = ws.ParamLayout.from_module(m)
    theta = center + x * d1 + y * d2
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(theta[layout.slice_of(name)].view_as(p))
        total, correct, n = 0.0, 0, 0
        for xb, yb in batches:
            out = m(xb)
            total += nn.functional.cross_entropy(out, yb, reduction="sum").item()
            correct += int((out.argmax(1) == yb).sum())
            n += len(yb)
    return total / n, correct / n


def test_values_equal_a_naive_set_weights_loop_and_leave_the_model_alone(bn_problem):
    model = bn_problem.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()  # the objective's eval mode must not depend on the module's own flag
    obj = ws.Objective(bn_problem)
    c = obj.theta0 + 0.01
    d = ws.random_directions(c, obj.layout, seed=0)
    xs, ys = np.linspace(-1, 1, 4), np.linspace(-0.5, 0.5, 3)
    surf = ws.evaluate_plane(obj, c, d[0], d[1], xs, ys)
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            loss, acc = naive_value(model, c, d[0], d[1], x, y, bn_problem.data)
            assert surf.values[j, i] == pytest.approx(loss, rel=1e-5, abs=1e-6)
            assert surf.accuracy[j, i] == pytest.approx(acc, abs=1e-12)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN buffers untouched
    assert model.training and all(m.training for m in model.modules())
    assert surf.metadata["objective"]["mode"] == "eval"


def test_engine_options_are_recorded_with_their_deviation(bn_problem):
    obj = ws.Objective(bn_problem)
    c = obj.theta0
    d = ws.random_directions(c, obj.layout, seed=1)
    xs, ys = np.linspace(-1, 1, 3), np.linspace(-1, 1, 3)
    plain = ws.evaluate_plane(obj, c, d[0], d[1], xs, ys, engine={"compile": "off"})
    fast = ws.evaluate_plane(
        obj,
        c,
        d[0],
        d[1],
        xs,
        ys,
        engine=ws.EngineOptions(compile="off", channels_last=True, points_per_pass=4),
    )
    np.testing.assert_allclose(fast.values, plain.values, rtol=1e-5)
    eng = fast.metadata["engine"]
    assert eng["channels_last"] and eng["points_per_pass"] == 4
    assert 0 <= eng["deviation_vs_plain"] < 1e-5
    bf16 = ws.evaluate_plane(
        obj, c, d[0], d[1], xs, ys, engine={"compile": "off", "precision": "bf16"}
    )
    np.testing.assert_allclose(bf16.values, plain.values, rtol=5e-2)
    assert bf16.metadata["engine"]["precision"] == "bf16"
    assert bf16.metadata["engine"]["deviation_vs_plain"] > 0  # bf16 changes the numbers
    assert "compile" in plain.metadata["engine"]["compile_reason"]


@pytest.mark.slow
def test_compiled_engine_matches_eager_and_is_reused():
    problem = ws.zoo.problem("digits-mlp", seed=0)
    X, y = problem.data
    obj = ws.Objective(ws.Problem(problem.model, problem.loss_fn, (X[:200], y[:200])))
    c = obj.theta0
    d = ws.random_directions(c, obj.layout, seed=0)
    xs = np.linspace(-1, 1, 3)
    eager = ws.evaluate_plane(obj, c, d[0], d[1], xs, xs, engine={"compile": "off"})
    comp = ws.evaluate_plane(obj, c, d[0], d[1], xs, xs, engine={"compile": "on"})
    eng = comp.metadata["engine"]
    assert eng["compiled"] is True and eng["compile_seconds"] > 0
    assert eng["deviation_vs_plain"] <= 1e-5
    np.testing.assert_allclose(comp.values, eager.values, rtol=1e-5)
    again = ws.evaluate_plane(obj, c, d[0], d[1], xs, xs)  # auto: reuse the compiled engine
    assert again.metadata["engine"]["compiled"] is True
    assert "exists in this process" in again.metadata["engine"]["compile_reason"]


# ---------------------------------------------------------------------------- trajectories
def test_trajectories_on_a_plane_true_and_projected_losses():
    problem, A, mus, sizes = quadratic_problem(n=5, sizes=(4, 4))
    obj = ws.Objective(problem)
    g = torch.Generator().manual_seed(3)
    c, d1, d2, e = torch.randn(4, 5, generator=g, dtype=torch.float64)
    ab = np.array([[1.0, 0.0], [0.5, 0.5], [0.2, -0.1], [0.0, 0.0]])
    on = torch.stack([c + a * d1 + b * d2 for a, b in ab])
    off = on + 0.3 * torch.linalg.qr(torch.stack([d1, d2, e]).T)[0][:, 2]
    (t_on, t_off) = ws.trajectories_on_plane(obj, [on, off], c, d1, d2, names=["on", "off"])
    np.testing.assert_allclose(t_on.coords, ab, atol=1e-12)
    np.testing.assert_allclose(t_off.coords, ab, atol=1e-12)
    assert t_on.residual.max() < 1e-12
    w = np.array(sizes) / sum(sizes)
    true_off = [w @ quadratic_batch_losses(p, A, mus, sizes) for p in off.numpy()]
    true_on = [w @ quadratic_batch_losses(p, A, mus, sizes) for p in on.numpy()]
    np.testing.assert_allclose(t_on.loss, true_on, rtol=1e-12)
    np.testing.assert_allclose(t_on.plane_loss, true_on, rtol=1e-12)
    np.testing.assert_allclose(t_off.loss, true_off, rtol=1e-12)
    np.testing.assert_allclose(t_off.plane_loss, true_on, rtol=1e-12)  # its projection
    np.testing.assert_allclose(points_losses(obj, off), true_off, rtol=1e-12)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"d1": "zero"}, WeightspaceError, "d1: zero-norm direction"),
        ({"xs": [0.5]}, WeightspaceError, "xs: expected at least 2 grid points"),
        ({"ys": [1.0, 0.0, -1.0]}, WeightspaceError, "ys: expected strictly increasing"),
        ({"center": "short"}, LayoutMismatchError, "center: expected a flat vector of shape (6,)"),
        ({"d2": "nan"}, WeightspaceError, "d2: holds NaN"),
    ],
)
def test_bad_input_gives_one_line_errors(kwargs, exc, fragment):
    problem, *_ = quadratic_problem()
    obj = ws.Objective(problem)
    args = {
        "center": obj.theta0,
        "d1": torch.ones(6, dtype=torch.float64),
        "d2": torch.arange(6, dtype=torch.float64),
        "xs": [-1.0, 1.0],
        "ys": [-1.0, 1.0],
    }
    special = {
        "zero": torch.zeros(6, dtype=torch.float64),
        "short": torch.ones(4, dtype=torch.float64),
        "nan": torch.full((6,), math.nan, dtype=torch.float64),
    }
    args.update({k: special.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()})
    with pytest.raises(exc) as e:
        ws.evaluate_plane(obj, **args)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_grid_axis_validates_span_and_count():
    np.testing.assert_array_equal(grid_axis(-1, 1, 5), np.linspace(-1, 1, 5))
    with pytest.raises(WeightspaceError, match="low < high, got 1 -1"):
        grid_axis(1, -1, 5)
    with pytest.raises(WeightspaceError, match="at least 2 grid points, got 1"):
        grid_axis(-1, 1, 1)


# ---------------------------------------------------------------------------- compile rule
def test_auto_compiles_once_the_eager_time_spent_reaches_the_compile_cost():
    from weightspace.landscape._engine import COMPILE_COST_S, _decide_compile

    auto, off = ws.EngineOptions(), ws.EngineOptions(compile="off")
    cost = COMPILE_COST_S
    use, why = _decide_compile(auto, False, 10, 0.01, spent=cost)  # the rent paid: buy
    assert use and why.startswith(f"{cost:.1f} s spent evaluating this objective eagerly")
    assert _decide_compile(auto, False, 10, 0.01, spent=0.99 * cost)[0] is False
    assert _decide_compile(auto, False, 10, 0.01)[0] is False
    assert _decide_compile(auto, False, 10, 2.01 * cost / 10)[0] is True  # one call repays it
    assert _decide_compile(off, False, 10, 1.0, spent=10 * cost)[0] is False
    assert _decide_compile(auto, True, 1, 0.0)[0] is True


def test_eager_seconds_add_up_per_objective_and_reach_the_decision(monkeypatch):
    from weightspace.landscape import _engine

    problem, *_ = quadratic_problem()
    obj, other = ws.Objective(problem), ws.Objective(problem)
    c = torch.zeros(6, dtype=torch.float64)
    d1, d2 = torch.eye(6, dtype=torch.float64)[:2]
    xs = np.linspace(-1, 1, 4)
    seen = []
    decide = _engine._decide_compile

    def spy(opts, cached, n_todo, t_point, spent=0.0):
        seen.append(spent)
        return decide(opts, cached, n_todo, t_point, spent)

    monkeypatch.setattr(_engine, "_decide_compile", spy)
    first = ws.evaluate_plane(obj, c, d1, d2, xs, xs)
    second = ws.evaluate_plane(obj, c, d1, d2, xs, xs)
    ws.evaluate_plane(other, c, d1, d2, xs, xs)
    s1, s2 = first.metadata["engine"]["seconds"], second.metadata["engine"]["seconds"]
    assert seen == [0.0, s1, 0.0]  # each objective keeps its own account
    assert _engine._EAGER_SPENT[obj] == s1 + s2
