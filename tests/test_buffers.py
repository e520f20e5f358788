"""Buffers travel with the weights: a BatchNorm model's recorded, imported or callback-written
run is analysed with the statistics of each snapshot, never with the problem's fresh ones.

The reference numbers come from the live trained model (``model.eval()`` and its own loss;
the Hessian at its parameters with its own buffers), not from weightspace's run files.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import textwrap

import pytest
import torch
import torch.nn.functional as F

import weightspace as ws
from weightspace.buffer_layout import BufferLayout
from weightspace.buffers import at_snapshot, recompute_batchnorm
from weightspace.cli import main
from weightspace.train import train

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning", "ignore:.*LeafSpec.*"
)

LIT_PROBLEM = textwrap.dedent(
    """
    import torch, torch.nn.functional as F
    import lightning.pytorch as pl
    import weightspace as ws

    class Lit(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = ws.zoo.DigitsCNN(batchnorm=True)

        def forward(self, x):
            return self.model(x)

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    def make(seed=0):
        torch.manual_seed(seed)
        X, y = ws.zoo.digits("train", image=True)
        return ws.Problem(Lit(), torch.nn.CrossEntropyLoss(), (X, y), name="lit-bn")
    """
)


def eval_loss(model: torch.nn.Module) -> float:
    """The trained model's own eval-mode loss on the training split, computed directly."""
    X, y = ws.zoo.digits("train", image=True)
    was = model.training
    model.eval()
    with torch.no_grad():
        loss = float(F.cross_entropy(model(X), y))
    model.train(was)
    return loss


def live_lambda_max(problem: ws.Problem) -> float:
    """λ_max at the live model's parameters, reading the live model's own buffers."""
    obj = ws.Objective(problem)
    eig = ws.top_eigenpairs(ws.HessianOperator(obj, obj.theta0), k=1)
    return float(eig.eigenvalues[0])


def recorded(root):
    problem = ws.zoo.problem("digits-cnn-bn", seed=0)
    run = train(problem, root / "run", lr=0.05, momentum=0.9, steps=100, every=20)
    return run, problem, "digits-cnn-bn"


def imported(root):
    """A plain loop saving state dicts (buffers included), imported as a run."""
    problem = ws.zoo.problem("digits-cnn-bn", seed=0)
    model = problem.model
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    X, y = problem.data
    gen = torch.Generator().manual_seed(0)
    (root / "ckpt").mkdir()
    model.train()
    for step in range(101):
        if step % 50 == 0:
            torch.save(model.state_dict(), root / "ckpt" / f"step_{step}.pt")
        if step == 100:
            break
        idx = torch.randint(0, len(y), (64,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
    assert main(["import", str(root / "ckpt"), "-o", str(root / "run"), "--problem",
                 "digits-cnn-bn"]) == 0  # fmt: skip
    return root / "run", problem, "digits-cnn-bn"


def lightning(root):
    pl = pytest.importorskip("lightning.pytorch")
    from weightspace.integrations.lightning import WeightspaceCallback

    path = root / "lit_problem.py"
    path.write_text(LIT_PROBLEM)
    spec = importlib.util.spec_from_file_location("lit_problem", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    problem = mod.make()
    X, y = problem.data
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=64, shuffle=True
    )
    trainer = pl.Trainer(
        max_steps=60,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[WeightspaceCallback(root / "run", every=20)],
    )
    trainer.fit(problem.model, loader)
    return root / "run", problem, f"{path}:make"


SOURCES = {"recorded": recorded, "imported": imported, "lightning": lightning}


@pytest.fixture(scope="module", params=list(SOURCES))
def bn_run(request, tmp_path_factory):
    """(run, problem spec, trained model's eval loss, its λ_max, the problem's fresh loss)."""
    root = tmp_path_factory.mktemp(request.param)
    run, problem, spec = SOURCES[request.param](root)
    return run, spec, eval_loss(problem.model), live_lambda_max(problem), root


def test_recorded_buffers_are_the_trained_models(bn_run):
    run = bn_run[0]
    traj = ws.Trajectory.load(run)
    assert traj.records_buffers and traj.format_version == 2
    assert any(n.endswith("running_var") for n in traj.buffer_layout.names)
    final = traj.buffers(-1)
    assert final is not None and not torch.all(final[traj.buffer_layout.names[1]] == 1)


def test_surface_line_and_spectrum_use_the_final_points_statistics(bn_run, capsys):
    run, spec, own, lam, root = bn_run
    out = root / "out"
    args = ["--problem", spec, "--json"]
    assert main(["surface", str(run), "--grid", "3", "-o", str(out / "s"), *args]) == 0
    s = json.loads(capsys.readouterr().out)["summary"]
    assert s["center_loss"] == pytest.approx(own, rel=1e-6, abs=1e-7)
    assert s["trajectories"][0]["final_loss"] == pytest.approx(own, rel=1e-6, abs=1e-7)
    side = json.loads((out / "s.json").read_text())
    assert side["metadata"]["objective"]["buffers"].endswith(
        f"step {int(ws.Trajectory.load(run).steps[-1])}"
    )

    line_args = ["line", str(run), "--alphas", "0", "1", "--points", "3", "-o", str(out / "l")]
    assert main([*line_args, *args]) == 0
    capsys.readouterr()
    line = ws.load(out / "l", "line")
    assert line.values[-1] == pytest.approx(own, rel=1e-6, abs=1e-7)  # alpha 1: the final point
    assert line.metadata["buffers_rule"].startswith("interpolated")

    spec_args = ["spectrum", str(run), "--top-k", "1", "-o", str(out / "h")]
    assert main([*spec_args, *args]) == 0
    h = json.loads(capsys.readouterr().out)["summary"]
    assert h["loss"][0] == pytest.approx(own, rel=1e-6, abs=1e-7)
    assert h["eigenvalues"][0][0] == pytest.approx(lam, rel=1e-5)


def test_the_start_of_a_line_reads_the_initial_statistics(tmp_path):
    problem = ws.zoo.problem("digits-cnn-bn", seed=0)
    fresh = eval_loss(ws.zoo.problem("digits-cnn-bn", seed=0).model)
    run = train(problem, tmp_path / "run", lr=0.05, steps=20, every=10)
    obj = ws.Objective(ws.zoo.problem("digits-cnn-bn", seed=0))
    traj = ws.Trajectory.load(run)
    start, end = traj.theta(0), traj.theta(-1)
    line = ws.evaluate_line(
        at_snapshot(obj, traj, 0),
        start,
        end - start,
        [0.0, 0.5, 1.0],
        end_buffers=traj.buffers(-1),
    )
    assert line.values[0] == pytest.approx(fresh, rel=1e-6)
    assert line.values[-1] == pytest.approx(eval_loss(problem.model), rel=1e-6)
    # alpha 0.5 reads the mean of the two endpoints' statistics
    layout = obj.buffer_layout
    mid = layout.unflatten((layout.flatten(traj.buffers(0)) + layout.flatten(traj.buffers(-1))) / 2)
    by_hand = obj.with_buffers(mid).evaluate((start + end) / 2).loss
    assert line.values[1] == pytest.approx(by_hand, rel=1e-6)


def test_runs_of_the_previous_format_load_and_warn_in_one_line(tmp_path, caplog, capsys):
    problem = ws.zoo.problem("digits-cnn-bn", seed=0)
    run = train(problem, tmp_path / "run", lr=0.05, steps=20, every=10)
    header = json.loads((run / "run.json").read_text())
    header["format_version"] = 1
    del header["buffers"]
    (run / "run.json").write_text(json.dumps(header))
    for f in (run / "buffers").iterdir():
        f.unlink()
    (run / "buffers").rmdir()
    traj = ws.Trajectory.load(run)
    assert len(traj) == 3 and not traj.records_buffers and traj.buffers(0) is None
    with caplog.at_level(logging.WARNING):
        code = main(["surface", str(run), "--problem", "digits-cnn-bn", "--grid", "2", "--json",
                     "-o", str(tmp_path / "s")])  # fmt: skip
    assert code == 0
    capsys.readouterr()
    warnings = [r.getMessage() for r in caplog.records if "buffers" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and str(run) in warnings[0]
    side = json.loads((tmp_path / "s.json").read_text())
    assert "recorded none" in side["metadata"]["objective"]["buffers"]


def test_recompute_bn_equals_statistics_of_one_train_mode_pass():
    problem = ws.zoo.problem("digits-cnn-bn", seed=1)
    obj = ws.Objective(problem)
    g = torch.Generator().manual_seed(0)
    theta = obj.theta0 + 0.01 * torch.randn(obj.layout.numel, generator=g)
    new = recompute_batchnorm(obj, theta)
    # by hand: the batch statistics of the whole training set at theta (first BatchNorm)
    X, _ = problem.data
    model = ws.zoo.DigitsCNN(batchnorm=True)
    with torch.no_grad():
        for p, v in zip(model.parameters(), obj.layout.unflatten(theta).values()):
            p.copy_(v)
        h = model.features[0](X)
    torch.testing.assert_close(new["features.1.running_mean"], h.mean((0, 2, 3)))
    torch.testing.assert_close(new["features.1.running_var"], h.var((0, 2, 3)))
    assert int(new["features.1.num_batches_tracked"]) == 1
    assert problem.model.features[1].momentum == 0.1  # the model's settings are restored

    d1, d2 = ws.random_directions(theta, obj.layout, 2, seed=0)
    surf = ws.evaluate_plane(
        obj, theta, d1, d2, [-0.5, 0.5], [-0.5, 0.5], recompute_bn=True, engine={"compile": "off"}
    )
    assert surf.metadata["buffers_rule"].startswith("recomputed")
    corner = theta - 0.5 * d1 - 0.5 * d2
    by_hand = obj.with_buffers(recompute_batchnorm(obj, corner)).evaluate(corner).loss
    assert surf.values[0, 0] == pytest.approx(by_hand, rel=1e-6)
    assert surf.values[0, 0] != pytest.approx(obj.evaluate(corner).loss, rel=1e-3)


def test_buffer_layout_round_trips_every_dtype():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    model.register_buffer("mask", torch.ones(3, dtype=torch.bool))  # not a number: left out
    model.register_buffer("cache", torch.zeros(4), persistent=False)  # rebuilt: left out
    model[1].running_mean.copy_(torch.tensor([0.1, -2.5]))
    model[1].num_batches_tracked.fill_(12345)
    layout = BufferLayout.from_module(model)
    assert layout.names == ("1.running_mean", "1.running_var", "1.num_batches_tracked")
    back = layout.unflatten(layout.flatten(model))
    for name, t in back.items():
        own = dict(model.named_buffers())[name]
        assert t.dtype == own.dtype and torch.equal(t, own)
