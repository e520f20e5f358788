import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.errors import WeightspaceError
from weightspace.problems import load_problem
from weightspace.train import train


def test_training_records_initial_point_and_reduces_the_loss(tmp_path):
    p = ws.zoo.problem("digits-mlp")
    theta0 = ws.ParamLayout.from_module(p.model).flatten(p.model)
    train(p, tmp_path / "r", lr=0.5, steps=40, every=10)
    traj = ws.Trajectory.load(tmp_path / "r")
    assert traj.steps.tolist() == [0, 10, 20, 30, 40]
    assert np.array_equal(traj.snapshot(0), theta0.numpy())
    obj = ws.Objective(ws.zoo.problem("digits-mlp"))
    assert obj(traj.theta(-1)).item() < obj(traj.theta(0)).item() - 0.3
    assert traj.metadata["optimizer"] == "sgd" and traj.metadata["lr"] == 0.5


def test_same_init_different_data_seeds_diverge_and_same_seeds_reproduce(tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(ws.zoo.problem("digits-mlp"), tmp_path / name, steps=10, every=10, data_seed=seed)
        runs[name] = ws.Trajectory.load(tmp_path / name)
    assert np.array_equal(runs["a"].snapshot(0), runs["c"].snapshot(0))
    assert np.array_equal(runs["a"].snapshot(-1), runs["b"].snapshot(-1))
    assert not np.array_equal(runs["a"].snapshot(-1), runs["c"].snapshot(-1))


def test_clone_from_a_recorded_step(tmp_path):
    train(ws.zoo.problem("digits-mlp"), tmp_path / "parent", steps=20, every=5)
    parent = ws.Trajectory.load(tmp_path / "parent")
    train(
        ws.zoo.problem("digits-mlp", seed=7),
        tmp_path / "clone",
        steps=10,
        every=5,
        init_from=(tmp_path / "parent", 10),
        data_seed=3,
    )
    clone = ws.Trajectory.load(tmp_path / "clone")
    assert clone.steps.tolist() == [10, 15, 20]
    assert np.array_equal(clone.snapshot(0), parent.snapshot(parent.index_of(10)))
    assert clone.metadata["init_step"] == 10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0}, "lr: expected a positive number"),
        ({"momentum": 1.0}, "momentum"),
        ({"every": 0}, "every: expected a positive integer"),
        ({"optimizer": "lbfgs"}, "optimizer"),
    ],
)
def test_bad_training_arguments_create_nothing(tmp_path, kwargs, match):
    with pytest.raises(WeightspaceError, match=match):
        train(ws.zoo.problem("digits-mlp"), tmp_path / "r", steps=2, **kwargs)
    assert not (tmp_path / "r").exists()


def test_problem_specs(tmp_path, monkeypatch):
    f = tmp_path / "myproblem.py"
    f.write_text(
        "import torch, weightspace as ws\n"
        "def make(seed=None):\n"
        "    torch.manual_seed(seed or 0)\n"
        "    X, y = torch.randn(8, 3), torch.randn(8)\n"
        "    return ws.Problem(torch.nn.Linear(3, 1), lambda o, t: ((o[:, 0] - t) ** 2).mean(),"
        " (X, y), name='mine')\n"
        "def bad():\n    return 42\n"
    )
    assert load_problem(f"{f}:make").name == "mine"
    monkeypatch.syspath_prepend(str(tmp_path))
    a, b = load_problem("myproblem:make", seed=3), load_problem("myproblem:make", seed=3)
    assert torch.equal(a.model.weight, b.model.weight)
    with pytest.raises(WeightspaceError, match="returned int, expected a weightspace.Problem"):
        load_problem(f"{f}:bad")
    with pytest.raises(WeightspaceError, match="has no function 'nope'"):
        load_problem(f"{f}:nope")
    with pytest.raises(WeightspaceError, match="cannot import module"):
        load_problem("no_such_module_xyz:make")
    with pytest.raises(WeightspaceError, match="unknown problem 'cifar10'"):
        load_problem("cifar10")
    assert torch.is_tensor(load_problem("digits-mlp").data[0])
