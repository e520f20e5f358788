"""Points side by side on the CPU: single-threaded workers on replicas of the model."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
from torch import nn

import weightspace as ws
from weightspace.errors import WeightspaceError
from weightspace.landscape import _points, _workers


@pytest.fixture
def two_threads():
    """torch with two intra-op threads for the test (the suite's workers run with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def digits(n: int = 120, seed: int = 0) -> ws.Objective:
    problem = ws.zoo.problem("digits-mlp", seed=seed)
    X, y = problem.data
    return ws.Objective(ws.Problem(problem.model, problem.loss_fn, (X[:n], y[:n])))


def plane(obj: ws.Objective, k: int, **engine):
    c = obj.theta0
    d = ws.random_directions(c, obj.layout, seed=0)
    xs = np.linspace(-1.0, 1.0, k)
    return ws.evaluate_plane(obj, c, d[0], d[1], xs, xs, engine={"compile": "off", **engine})


def test_workers_give_the_values_of_one_by_one_and_restore_the_thread_count(two_threads):
    obj = digits()
    serial = plane(obj, 7, workers=1)
    par = plane(obj, 7, workers=2)
    assert par.metadata["engine"]["workers"] == 2
    assert par.metadata["engine"]["workers_reason"] == "workers=2"
    assert serial.metadata["engine"]["workers"] == 1
    np.testing.assert_allclose(par.values, serial.values, rtol=1e-6)
    np.testing.assert_allclose(par.accuracy, serial.accuracy, rtol=0, atol=0)
    assert torch.get_num_threads() == 2  # the workers' single thread did not leak out
    # the objective's own model was never touched by the workers
    assert torch.equal(ws.ParamLayout.from_module(obj.model).flatten(obj.model), obj.theta0)


def test_the_points_run_on_two_threads_at_once(two_threads, monkeypatch):
    """Each point is evaluated in a worker thread, and two are in flight together."""
    obj = digits()
    threads, active, most = set(), [0], [0]
    lock = threading.Lock()
    forward = _points.PointEngine.__call__

    def counted(self, thetas, states=None):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            threads.add(threading.current_thread().name)
        try:
            barrier_wait()
            return forward(self, thetas, states)
        finally:
            with lock:
                active[0] -= 1

    barrier = threading.Barrier(2, timeout=5)

    def barrier_wait():
        if threading.current_thread().name.startswith("weightspace-point"):
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass

    monkeypatch.setattr(_points.PointEngine, "__call__", counted)
    plane(obj, 5, workers=2)
    assert most[0] == 2
    assert sum(name.startswith("weightspace-point") for name in threads) == 2


def test_auto_races_the_workers_on_the_first_points_and_keeps_every_value(two_threads):
    obj = digits()
    serial = plane(obj, 9, workers=1)
    auto = plane(obj, 9)  # 81 points >= 16 per worker: raced
    eng = auto.metadata["engine"]
    assert eng["workers"] in (1, 2)
    assert "A-B-B-A" in eng["workers_reason"] and "measured on the first" in eng["workers_reason"]
    assert eng["workers_seconds_per_point"] > 0 and eng["serial_seconds_per_point"] > 0
    np.testing.assert_allclose(auto.values, serial.values, rtol=1e-6)


def test_auto_leaves_small_grids_single_threads_and_own_buffers_alone(two_threads):
    obj = digits()
    assert "too few to race" in plane(obj, 4).metadata["engine"]["workers_reason"]
    torch.set_num_threads(1)
    assert plane(obj, 9).metadata["engine"]["workers_reason"] == "one torch thread"
    torch.set_num_threads(2)
    cnn = ws.zoo.problem("digits-cnn-bn", seed=0)
    X, y = cnn.data
    bn = ws.Objective(ws.Problem(cnn.model, cnn.loss_fn, (X[:64], y[:64])))
    c = bn.theta0
    d = ws.random_directions(c, bn.layout, seed=0)
    xs = np.linspace(-0.1, 0.1, 3)
    surf = ws.evaluate_plane(
        bn, c, d[0], d[1], xs, xs, recompute_bn=True, engine={"compile": "off", "workers": 2}
    )
    assert surf.metadata["engine"]["workers"] == 1
    assert surf.metadata["engine"]["workers_reason"] == "the points read their own buffers"


def test_a_loss_that_reads_the_original_model_is_not_run_on_workers(two_threads):
    """An L2 term over the model's parameters through a closure: on a replica it would read
    the original's tensors, so the workers' values differ and they are not used."""
    problem = ws.zoo.problem("digits-mlp", seed=0)
    X, y = problem.data
    model = problem.model

    def loss(out, t):
        return nn.functional.cross_entropy(out, t) + sum((p**2).sum() for p in model.parameters())

    obj = ws.Objective(ws.Problem(model, loss, (X[:100], y[:100])))
    par = plane(obj, 5, workers=2)
    eng = par.metadata["engine"]
    assert eng["workers"] == 1 and "deviate" in eng["workers_reason"]
    serial = plane(obj, 5, workers=1)
    np.testing.assert_array_equal(par.values, serial.values)
    c, d = obj.theta0, ws.random_directions(obj.theta0, obj.layout, seed=0)
    corner = obj(c - d[0] - d[1]).item()  # the closure sees theta through functional_call
    assert par.values[0, 0] == pytest.approx(corner, rel=1e-6)


def test_a_model_that_cannot_be_copied_runs_one_by_one(two_threads):
    class NoCopy(nn.Linear):
        def __deepcopy__(self, memo):
            raise TypeError("this module holds a handle")

    torch.manual_seed(0)
    model = nn.Sequential(NoCopy(4, 3), nn.Tanh(), nn.Linear(3, 1))
    X = torch.randn(40, 4)
    obj = ws.Objective(ws.Problem(model, nn.functional.mse_loss, (X, torch.randn(40, 1))))
    surf = plane(obj, 5, workers=2)
    reason = surf.metadata["engine"]["workers_reason"]
    assert reason == "the model could not be copied for the workers (TypeError)"


def test_an_error_in_a_worker_reaches_the_caller_and_the_threads_are_restored(two_threads):
    class Fails(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 1)
            self.calls = 0

        def forward(self, x):
            self.calls += 1  # each replica counts its own calls
            if threading.current_thread().name.startswith("weightspace-point") and (
                self.calls > 3
            ):
                raise RuntimeError("the fourth point on a worker fails")
            return self.lin(x)

    torch.manual_seed(0)
    X = torch.randn(30, 4)
    obj = ws.Objective(ws.Problem(Fails(), nn.functional.mse_loss, (X, torch.randn(30, 1))))
    with pytest.raises(RuntimeError, match="the fourth point on a worker fails"):
        plane(obj, 6, workers=2)
    assert torch.get_num_threads() == 2
    assert not [t for t in threading.enumerate() if t.name.startswith("weightspace-point")]


def test_race_keeps_the_faster_way_and_yields_every_pass_once(monkeypatch):
    """The race on a fake clock: one-by-one takes 3 units a point, the workers ``w``."""
    clock = [0.0]
    monkeypatch.setattr(_workers.time, "perf_counter", lambda: clock[0])

    class FakePool:
        workers = 2

        def __init__(self, cost):
            self.cost, self.used = cost, 0

        def imap(self, passes, write):
            for idx in passes:
                clock[0] += self.cost * len(idx)
                self.used += len(idx)
                yield idx, torch.zeros(len(idx), 1)

    def serial(passes):
        for idx in passes:
            clock[0] += 3.0 * len(idx)
            yield idx, torch.ones(len(idx), 1)

    passes = [np.array([k]) for k in range(100)]
    for cost, expect in ((1.0, 2), (5.0, 1)):
        pool, facts = FakePool(cost), {}
        out = list(_workers.race(pool, serial, passes, None, facts))
        assert sorted(int(i[0]) for i, _ in out) == list(range(100))
        assert facts["workers"] == expect
        assert facts["workers_seconds_per_point"] == cost
        assert facts["serial_seconds_per_point"] == 3.0
        raced = 4 * max(4, 100 // 16)  # four turns of max(2 x workers, passes / 16)
        assert "measured on the first 24 points" in facts["workers_reason"] and raced == 24
        assert pool.used == (100 - 12 if expect == 2 else 12)


def test_resume_keeps_the_interrupted_runs_workers():
    opts = ws.EngineOptions()
    assert _points._as_before(opts, {"compiled": False, "workers": 2}).workers == 2
    assert _points._as_before(opts.replace(workers=1), {"workers": 2}).workers == 1
    assert _points._as_before(opts, {"compiled": False}).workers is None


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_engine_workers_must_be_a_positive_integer(bad):
    with pytest.raises(WeightspaceError, match=r"^workers: expected a positive integer"):
        ws.EngineOptions(workers=bad)


def test_replica_evaluates_like_the_objective_on_its_own_model():
    obj = digits(60)
    rep = obj.replica()
    assert rep.model is not obj.model and rep.layout is obj.layout
    assert rep.batch(0, torch.float32)[0] is obj.batch(0, torch.float32)[0]  # data shared
    theta = obj.theta0 + 0.1
    assert rep(theta).item() == obj(theta).item()
    before = copy.deepcopy(obj.model.state_dict())
    rep(theta * 3)
    assert all(torch.equal(v, obj.model.state_dict()[k]) for k, v in before.items())


def test_cli_workers_flag_reaches_the_engine(tmp_path, capsys):
    from weightspace.cli import main
    from weightspace.train import train

    run = tmp_path / "run"
    train(ws.zoo.problem("digits-mlp", seed=0), run, lr=0.3, steps=6, every=3)
    before = torch.get_num_threads()
    out = tmp_path / "surf"
    args = ["surface", "--problem", "digits-mlp", str(run), "--grid", "5", "-o", str(out)]
    code = main([*args, "--threads", "2", "--workers", "2", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    engine = ws.load(out, "surface").metadata["engine"]
    assert engine["workers"] == 2 and engine["workers_reason"] == "workers=2"
    assert torch.get_num_threads() == before
    assert main([*args, "--workers", "0", "--overwrite"]) == 2
    assert "--workers: expected a positive integer, got 0" in capsys.readouterr().err
