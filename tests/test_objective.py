import math

import numpy as np
import pytest
import torch
from torch import nn

import weightspace as ws
from weightspace.errors import WeightspaceError


def mse(out, t):
    return ((out[:, 0] - t) ** 2).mean()


def linreg(n=10, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    return X, y, model


def test_linear_regression_closed_form_value_and_gradient():
    X, y, model = linreg()
    obj = ws.Objective(ws.Problem(model, mse, (X, y)))
    w = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64, requires_grad=True)
    value = obj(w)
    r = X @ w.detach() - y
    assert value.item() == pytest.approx(float(r @ r) / 10, rel=1e-14)
    (grad,) = torch.autograd.grad(value, w)
    torch.testing.assert_close(grad, 2 / 10 * X.T @ r, rtol=1e-12, atol=1e-14)


def test_theta_as_a_mapping_of_tensors_with_constants():
    X, y = linreg()[:2]
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    obj = ws.Objective(ws.Problem(model, mse, (X, y)))
    w = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.5], dtype=torch.float64)  # a constant: no gradient asked for
    value = obj.batch_loss({"weight": w, "bias": b}, 0)
    r = X @ w.detach()[0] + 0.5 - y
    assert value.item() == pytest.approx(float(r @ r) / 10, rel=1e-14)
    (grad,) = torch.autograd.grad(value, w)
    torch.testing.assert_close(grad[0], 2 / 10 * X.T @ r, rtol=1e-12, atol=1e-14)
    with pytest.raises(WeightspaceError, match="lacks 'bias'"):
        obj.batch_loss({"weight": w}, 0)


def test_batches_of_4_4_2_equal_one_batch_of_10():
    X, y, model = linreg()
    one = ws.Objective(ws.Problem(model, mse, (X, y)))
    batches = [(X[:4], y[:4]), (X[4:8], y[4:8]), (X[8:], y[8:])]
    three = ws.Objective(ws.Problem(model, mse, batches))
    chunked = ws.Objective(ws.Problem(model, mse, (X, y)), batch_size=4)
    assert three.batch_sizes == chunked.batch_sizes == (4, 4, 2)
    w = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    for obj in (three, chunked):
        assert abs(obj(w).item() - one(w).item()) <= 1e-12
        assert abs(obj.evaluate(w).loss - one(w).item()) <= 1e-12
    # the unweighted mean of batch means is different: the weighting matters here
    naive = np.mean([mse(xb @ w[:, None], yb).item() for xb, yb in batches])
    assert abs(naive - one(w).item()) > 1e-3


def test_sum_reduction_is_divided_by_the_batch_size():
    X, y, model = linreg()
    mean = ws.Objective(ws.Problem(model, mse, (X, y)), batch_size=3)
    summed = ws.Objective(
        ws.Problem(model, lambda o, t: ((o[:, 0] - t) ** 2).sum(), (X, y), reduction="sum"),
        batch_size=3,
    )
    w = torch.ones(3, dtype=torch.float64)
    assert abs(mean(w).item() - summed(w).item()) <= 1e-12


def test_stderr_over_batches_and_accuracy():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(12, 5, generator=g)
    y = torch.randint(0, 3, (12,), generator=g)
    model = nn.Linear(5, 3)
    obj = ws.Objective(ws.Problem(model, nn.CrossEntropyLoss(), (X, y)), batch_size=4)
    ev = obj.evaluate(obj.theta0)
    with torch.no_grad():
        out = model(X)
        per = (
            torch.stack(
                [nn.functional.cross_entropy(out[i : i + 4], y[i : i + 4]) for i in (0, 4, 8)]
            )
            .double()
            .numpy()
        )
        acc = (out.argmax(1) == y).float().mean().item()
    np.testing.assert_allclose(ev.batch_losses, per, rtol=1e-6)
    assert ev.loss == pytest.approx(per.mean(), rel=1e-6)
    assert ev.stderr == pytest.approx(per.std(ddof=1) / math.sqrt(3), rel=1e-5)
    assert ev.accuracy == pytest.approx(acc)
    assert math.isnan(
        ws.Objective(ws.Problem(model, nn.CrossEntropyLoss(), (X, y))).evaluate(obj.theta0).stderr
    )


def bn_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    model.train()
    with torch.no_grad():  # give BN running statistics that differ from batch statistics
        model(torch.randn(64, 4) * 3 + 1)
    return model


def test_equals_the_models_own_loss_and_leaves_the_model_untouched():
    model = bn_model()
    X, y = torch.randn(20, 4), torch.randint(0, 2, (20,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    for mode in ("eval", "train"):
        obj = ws.Objective(ws.Problem(model, nn.CrossEntropyLoss(), (X, y)), mode=mode)
        value = obj.check()  # centre check: equals the model's own loss in that mode
        with torch.no_grad():
            model.train(mode == "train")
            own = nn.functional.cross_entropy(model(X), y).item()
        model.load_state_dict(before)
        model.train()
        assert value == pytest.approx(own, rel=1e-6)
        obj(obj.theta0 + 0.1)
        obj.evaluate(obj.theta0 - 0.1)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == flags


def test_eval_and_train_modes_differ_on_batchnorm_and_the_mode_is_recorded():
    model = bn_model()
    X, y = torch.randn(20, 4), torch.randint(0, 2, (20,))
    problem = ws.Problem(model, nn.CrossEntropyLoss(), (X, y))
    ev = ws.Objective(problem, mode="eval")
    tr = ws.Objective(problem, mode="train")
    assert abs(ev(ev.theta0).item() - tr(tr.theta0).item()) > 1e-3
    assert ev.metadata["mode"] == "eval" and tr.metadata["mode"] == "train"


def test_determinism_probe_catches_dropout_in_train_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.Dropout(0.5), nn.Linear(32, 2))
    X, y = torch.randn(50, 4), torch.randint(0, 2, (50,))
    problem = ws.Problem(model, nn.CrossEntropyLoss(), (X, y))
    ws.Objective(problem, mode="eval").check()
    with pytest.raises(WeightspaceError, match="not deterministic.*dropout"):
        ws.Objective(problem, mode="train").check()


def test_centre_check_catches_a_forward_the_objective_cannot_see():
    class Sneaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1)
            self.calls = 0

        def forward(self, x):  # depends on hidden Python state, not on parameters
            self.calls += 1
            return self.lin(x) * (2.0 if self.calls % 3 == 0 else 1.0)

    X, y = torch.randn(8, 3), torch.randn(8)
    obj = ws.Objective(ws.Problem(Sneaky(), mse, (X, y)))
    with pytest.raises(WeightspaceError, match="model's own loss"):
        obj.check()


def test_float64_theta_runs_the_model_in_float64():
    model = bn_model()
    X, y = torch.randn(20, 4), torch.randint(0, 2, (20,))
    obj = ws.Objective(ws.Problem(model, nn.CrossEntropyLoss(), (X, y)))
    v64 = obj(obj.theta0.double())
    assert v64.dtype == torch.float64
    assert v64.item() == pytest.approx(obj(obj.theta0).item(), rel=1e-5)


def test_tuple_and_dict_inputs_and_layout_subset():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 1), nn.Linear(2, 1)

        def forward(self, x, z):
            return self.a(x) + self.b(z)

    torch.manual_seed(0)
    model = Two()
    x, z, y = torch.randn(6, 2), torch.randn(6, 2), torch.randn(6)
    tup = ws.Objective(ws.Problem(model, mse, [((x, z), y)]))
    dic = ws.Objective(ws.Problem(model, mse, [({"x": x, "z": z}, y)]))
    assert tup.check() == pytest.approx(dic.check())
    sub = ws.Objective(
        ws.Problem(model, mse, [((x, z), y)]),
        layout=ws.ParamLayout.from_module(model, include="a.*"),
    )
    assert sub.layout.numel == 3
    assert sub(sub.theta0).item() == pytest.approx(tup(tup.theta0).item())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "test"}, "mode: expected 'eval' or 'train'"),
        ({"batch_size": 0}, "batch_size: expected a positive integer"),
    ],
)
def test_bad_arguments(kwargs, match):
    X, y, model = linreg()
    with pytest.raises(WeightspaceError, match=match):
        ws.Objective(ws.Problem(model, mse, (X, y)), **kwargs)


def test_bad_problems():
    X, y, model = linreg()
    with pytest.raises(WeightspaceError, match="Problem.model: expected a torch.nn.Module"):
        ws.Problem("model", mse, (X, y))
    with pytest.raises(WeightspaceError, match="Problem.loss_fn: expected a callable"):
        ws.Problem(model, "mse", (X, y))
    with pytest.raises(WeightspaceError, match="X has 10 samples but y has shape"):
        ws.Objective(ws.Problem(model, mse, (X, y[:5])))
    with pytest.raises(WeightspaceError, match="yielded no batch"):
        ws.Objective(ws.Problem(model, mse, []))
    with pytest.raises(WeightspaceError, match="batch 0 is not an"):
        ws.Objective(ws.Problem(model, mse, [X]))
    with pytest.raises(WeightspaceError, match="problem: expected a weightspace Problem"):
        ws.Objective((model, mse, (X, y)))


def test_float64_model_with_float32_data_passes_the_centre_check():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    X, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    obj = ws.Objective(ws.Problem(model, nn.CrossEntropyLoss(), (X, y)))
    expected = nn.functional.cross_entropy(model(X.double()), y).item()
    assert obj.check() == pytest.approx(expected, rel=1e-12)


def test_a_loss_that_reads_the_parameters_is_evaluated_at_theta():
    """An L2 term over ``model.parameters()`` in the loss sees theta, not the module's weights."""
    X, y, model = linreg()
    lam = 0.3

    def loss_fn(out, t):
        return mse(out, t) + lam * sum((p**2).sum() for p in model.parameters())

    before = model.weight.detach().clone()
    obj = ws.Objective(ws.Problem(model, loss_fn, (X, y)))
    w = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64, requires_grad=True)
    assert not torch.equal(w.detach(), before[0])
    r = X @ w.detach() - y
    by_hand = float(r @ r) / 10 + lam * float(w.detach() @ w.detach())
    value = obj(w)
    assert value.item() == pytest.approx(by_hand, rel=1e-14)
    (grad,) = torch.autograd.grad(value, w)
    torch.testing.assert_close(grad, 2 * X.T @ r / 10 + 2 * lam * w.detach(), rtol=1e-12, atol=0)
    assert obj.evaluate(w.detach()).loss == pytest.approx(by_hand, rel=1e-14)
    # the Hessian carries the regulariser's 2*lam*I: top eigenvalue of 2 X^T X / N + 2 lam I
    dense = 2 * X.T @ X / 10 + 2 * lam * torch.eye(3, dtype=torch.float64)
    eig = ws.top_eigenpairs(ws.HessianOperator(obj, w.detach()), k=1, tol=1e-10)
    assert float(eig.eigenvalues[0]) == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]))
    assert torch.equal(model.weight.detach(), before)  # the module is untouched


def test_dict_inputs_and_dict_targets_in_pairs_and_batches():
    X, y, _ = linreg()

    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1, bias=False).double()

        def forward(self, *, features):
            return self.lin(features)

    def loss_fn(out, t):
        return ((out[:, 0] - t["y"]) ** 2).mean()

    model = KW()
    w = model.lin.weight.detach()[0]
    expected = float(((X @ w - y) ** 2).mean())
    pair = ({"features": X}, {"y": y})
    batches = [({"features": X[a : a + 4]}, {"y": y[a : a + 4]}) for a in (0, 4, 8)]
    for data in (pair, batches):
        obj = ws.Objective(ws.Problem(model, loss_fn, data))
        assert obj.n_samples == 10 and obj.batch_sizes in ((10,), (4, 4, 2))
        assert obj.evaluate(obj.theta0).loss == pytest.approx(expected, rel=1e-14)
    with pytest.raises(WeightspaceError, match="X has 10 samples but y has shape"):
        ws.Objective(ws.Problem(model, loss_fn, ({"features": X}, {"y": y[:5]})))
