import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.cli import main
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
        ({"lr": 0}, "lr: expected a finite positive number"),
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


DICT_HELPER = """
import torch

class KeywordNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)
        )

    def forward(self, *, pixels):
        return self.body(pixels)

def loss(out, targets):
    return torch.nn.functional.cross_entropy(out, targets["label"])
"""

DICT_PROBLEM = """
import weightspace as ws
from {helper} import KeywordNet, loss

def make(seed=0):
    X, y = ws.zoo.digits("train")
    pair = ({{"pixels": X}}, {{"label": y}})
    batches = [({{"pixels": X[a : a + 64]}}, {{"label": y[a : a + 64]}}) for a in range(0, 640, 64)]
    return ws.Problem(KeywordNet(), loss, pair if {pair} else batches, name="dicts")
"""


def dict_problem(folder, helper: str, pair: bool):
    """A problem file with keyword inputs and dict targets, importing a module beside it."""
    (folder / f"{helper}.py").write_text(DICT_HELPER)
    f = folder / f"problem_{helper}.py"
    f.write_text(DICT_PROBLEM.format(helper=helper, pair=pair))
    return f"{f}:make"


@pytest.mark.parametrize("pair", [True, False])
def test_record_with_dict_inputs_and_dict_targets(tmp_path, pair, capsys):
    spec = dict_problem(tmp_path, f"helper_dicts_{pair}", pair)
    out = tmp_path / "run"
    args = ["record", "--problem", spec, "--steps", "20", "--every", "10", "-o", str(out)]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["snapshots"] == 3
    traj = ws.Trajectory.load(out)
    assert np.isfinite(traj.metrics["loss"][1:]).all()
    # the recorded run is analysed on the same dict data: training lowered the loss
    obj = ws.Objective(load_problem(spec))
    first, last = (obj.evaluate(traj.theta(i)).loss for i in (0, -1))
    assert math.isfinite(last) and last < first


def test_problem_file_importing_a_sibling_module_under_the_entry_point(tmp_path):
    spec = dict_problem(tmp_path, "helper_entry_point", True)
    exe = Path(sys.executable).parent / "weightspace"
    assert exe.is_file(), f"the weightspace entry point is not installed beside {sys.executable}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run(
        [str(exe), "record", "--problem", spec, "--steps", "10", "--every", "10", "-o", "run"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert len(ws.Trajectory.load(elsewhere / "run")) == 2


def test_a_float64_model_is_stored_in_float64(tmp_path):
    problem = ws.zoo.problem("digits-mlp")
    problem.model.double()
    problem = ws.Problem(
        problem.model, problem.loss_fn, (problem.data[0].double(), problem.data[1])
    )
    train(problem, tmp_path / "run", steps=2, every=1)
    traj = ws.Trajectory.load(tmp_path / "run")
    assert traj.storage_dtype == np.float64
    theta = ws.ParamLayout.from_module(problem.model).flatten(problem.model)
    np.testing.assert_array_equal(traj.snapshot(-1), theta.numpy())


def test_a_clone_with_a_new_data_order_inherits_the_optimizer_settings(tmp_path, capsys):
    """`record --data-seed 1 --init-from RUN` compares data orders, not optimizers: the
    clone trains with RUN's optimizer, lr, momentum, weight decay and batch size unless
    given, and `info` shows them."""
    from weightspace.cli import main

    parent = tmp_path / "sgd"
    flags = ["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--weight-decay", "1e-4",
             "--batch-size", "32", "--steps", "20", "--every", "5", "--no-progress"]  # fmt: skip
    assert main(["record", "--problem", "digits-mlp", *flags, "-o", str(parent)]) == 0
    clone = tmp_path / "order1"
    assert main(["record", "--problem", "digits-mlp", "--data-seed", "1", "--init-from",
                 f"{parent}:10", "--steps", "10", "--every", "5", "-o", str(clone),
                 "--no-progress"]) == 0  # fmt: skip
    md = ws.Trajectory.load(clone).metadata
    assert (md["optimizer"], md["lr"], md["momentum"]) == ("sgd", 0.05, 0.9)
    assert (md["weight_decay"], md["batch_size"], md["data_seed"]) == (1e-4, 32, 1)
    capsys.readouterr()
    assert main(["info", str(clone)]) == 0
    shown = capsys.readouterr().out
    assert "lr: 0.05" in shown and "momentum: 0.9" in shown and "batch_size: 32" in shown
    other = tmp_path / "faster"
    args = ["--init-from", str(parent), "--lr", "0.2", "--steps", "5", "--every", "5"]
    assert (
        main(["record", "--problem", "digits-mlp", *args, "-o", str(other), "--no-progress"]) == 0
    )
    md = ws.Trajectory.load(other).metadata
    assert (md["lr"], md["momentum"], md["batch_size"]) == (0.2, 0.9, 32)  # only lr given
