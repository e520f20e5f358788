import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.errors import WeightspaceError


@pytest.mark.parametrize(
    ("name", "n_params", "x_shape"),
    [
        ("digits-mlp", 3010, (1437, 64)),
        ("digits-cnn", 38282, (1437, 1, 8, 8)),
        ("digits-cnn-bn", 38378, (1437, 1, 8, 8)),
        ("mnist1d-mlp", 15210, (4000, 40)),
    ],
)
def test_embedded_problems(name, n_params, x_shape):
    p = ws.zoo.problem(name)
    X, y = p.data
    assert tuple(X.shape) == x_shape and y.dtype == torch.int64
    assert set(y.unique().tolist()) == set(range(10))
    assert sum(t.numel() for t in p.model.parameters()) == n_params
    loss = ws.Objective(p).check()
    assert 1.5 < loss < 3.5  # untrained: near log(10)
    Xt, _ = p.test_data
    assert len(Xt) > 0


def test_splits_are_fixed_disjoint_and_cover_the_data():
    Xa, _ya = ws.zoo.digits("all")
    Xtr, _ytr = ws.zoo.digits("train")
    Xte, _yte = ws.zoo.digits("test")
    assert len(Xtr) + len(Xte) == len(Xa) == 1797
    assert torch.equal(Xtr, ws.zoo.digits("train")[0])
    rows = {tuple(r) for r in Xa.numpy().round(4).tolist()}
    assert {tuple(r) for r in Xtr.numpy().round(4).tolist()} <= rows
    assert float(Xa.max()) == 1.0 and float(Xa.min()) == 0.0
    x1, _y1 = ws.zoo.mnist1d("train")
    x2, _ = ws.zoo.mnist1d("train")
    assert torch.equal(x1, x2) and len(ws.zoo.mnist1d("test")[0]) == 1000


def test_seeds_control_initialisation_without_touching_the_global_rng():
    state = torch.random.get_rng_state()
    a, b = ws.zoo.problem("digits-mlp", seed=0), ws.zoo.problem("digits-mlp", seed=0)
    c = ws.zoo.problem("digits-mlp", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    la = ws.ParamLayout.from_module(a.model)
    assert torch.equal(la.flatten(a.model), la.flatten(b.model))
    assert not torch.equal(la.flatten(a.model), la.flatten(c.model))


def test_unknown_problem():
    with pytest.raises(WeightspaceError, match="unknown embedded problem 'cifar'"):
        ws.zoo.problem("cifar")
    with pytest.raises(WeightspaceError, match="split: expected"):
        ws.zoo.digits("val")


def test_no_network_needed(monkeypatch):
    import socket

    def refuse(*a, **k):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    ws.zoo._mnist1d_arrays.cache_clear()
    ws.zoo._digits_arrays.cache_clear()
    assert np.isfinite(ws.zoo.mnist1d("train")[0].numpy()).all()
    assert len(ws.zoo.digits("all")[1]) == 1797
