"""Trained curves between two minima (weightspace.between.curve): the Bézier curve and the
polygonal chain against their closed forms, a curve trained through a ring-shaped valley
whose straight path has a known barrier, and a run killed with SIGKILL mid-training and
resumed, which ends bit for bit as the uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.between import bezier, curve_losses, load_curve, polychain, train_curve

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- closed forms
def test_bezier_with_the_bend_at_the_midpoint_is_the_straight_line():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g)
    b = b.double()
    ts = torch.linspace(0, 1, 17, dtype=torch.float64)
    line = (1 - ts)[:, None] * a + ts[:, None] * b
    got = bezier(a, (a + b) / 2, b, ts)
    assert torch.allclose(got, line, rtol=0, atol=1e-14)
    assert torch.equal(got[0], a) and torch.equal(got[-1], b)  # the ends exactly


def test_bezier_and_polychain_match_their_formulas():
    g = torch.Generator().manual_seed(1)
    a, c, b = (torch.randn(7, generator=g, dtype=torch.float64) for _ in range(3))
    for t in (0.0, 0.2, 0.5, 0.9, 1.0):
        want = (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t**2 * b
        assert torch.allclose(bezier(a, c, b, t), want, rtol=0, atol=1e-14)
    # a chain through two bends: knots at t = 1/3, 2/3; linear in between
    c1, c2 = torch.randn(7, generator=g, dtype=torch.float64), c
    bends = torch.stack([c1, c2])
    assert torch.equal(polychain(a, bends, b, 1 / 3), c1)
    assert torch.equal(polychain(a, bends, b, 2 / 3), c2)
    assert torch.allclose(polychain(a, bends, b, 0.5), (c1 + c2) / 2, atol=1e-14)
    assert torch.allclose(polychain(a, bends, b, 0.1), a + 0.3 * (c1 - a), atol=1e-14)


# ----------------------------------------------------------------------------- a ring valley
class Point(torch.nn.Module):
    """A model that is its two parameters: the output is ``w`` for every sample."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, 0.0], dtype=torch.float64))

    def forward(self, x):
        return self.w.expand(len(x), 2)


def ring_loss(out, y):
    """``(‖w‖² − 1)²``: zero on the unit circle, 1 at the origin."""
    return (((out**2).sum(1) - 1) ** 2).mean()


def ring_problem() -> ws.Problem:
    x = torch.zeros(32, 1, dtype=torch.float64)
    return ws.Problem(Point(), ring_loss, (x, torch.zeros(32, dtype=torch.float64)), name="ring")


def ring_values(points: np.ndarray) -> np.ndarray:
    """The ring loss at ``(m, 2)`` points, by NumPy (independent of the objective)."""
    return ((points**2).sum(1) - 1) ** 2


A = torch.tensor([1.0, 0.0], dtype=torch.float64)
B = torch.tensor([-1.0, 0.0], dtype=torch.float64)


def test_a_trained_curve_goes_round_the_ring_and_lowers_the_barrier(tmp_path):
    """The straight path from (1, 0) to (−1, 0) crosses the origin: barrier exactly 1. The
    best quadratic Bézier has a barrier of 1/(2 + 2√2) ≈ 0.043 (bend (0, h), h² = 2 + 2√2,
    equalising the loss at t = 1/2 and at its inner minimum); training on the expected loss
    gets below 0.1 (about 0.054, with the bend near (0, 2.08))."""
    problem = ring_problem()
    obj = ws.Objective(problem)
    ts = np.linspace(0, 1, 41)
    straight = curve_losses(obj, A, (A + B) / 2, B, ts)
    assert straight.barrier == pytest.approx(1.0, abs=1e-12)
    # the midpoint is a saddle of the expected loss: start the bend slightly off the line
    run = train_curve(problem, A, B, tmp_path / "curve", steps=500, lr=0.02,
                      init=[[0.0, 0.1]], every=50, checkpoint_every=100)  # fmt: skip
    line = curve_losses(obj, A, run, B, ts)
    assert line.barrier < 0.1
    c = run.bends[0].numpy()
    pts = (1 - ts)[:, None] ** 2 * A.numpy() + (2 * ts * (1 - ts))[:, None] * c
    pts = pts + (ts**2)[:, None] * B.numpy()
    want = ring_values(pts)
    assert np.allclose(line.values, want, rtol=1e-12, atol=1e-14)
    assert line.barrier == pytest.approx(float(want.max()), abs=1e-12)  # the ends are 0
    assert np.isfinite(run.losses).all() and len(run.losses) == 500
    again = load_curve(tmp_path / "curve")
    assert torch.equal(again.bends, run.bends) and again.metadata["steps_done"] == 500


def test_a_diverging_curve_is_a_one_line_error_and_leaves_no_run(tmp_path):
    with pytest.raises(ws.WeightspaceError, match=r"^lr: curve training diverged"):
        train_curve(ring_problem(), A, B, tmp_path / "c", steps=50, lr=1e3, init=[[0, 0.5]],
                    every=5)  # fmt: skip
    assert not (tmp_path / "c").exists()


def test_other_settings_refuse_to_resume(tmp_path):
    train_curve(ring_problem(), A, B, tmp_path / "c", steps=10, lr=0.01, init=[[0, 0.1]])
    with pytest.raises(ws.WeightspaceError, match=r"^lr: the curve run in .* was trained with"):
        train_curve(ring_problem(), A, B, tmp_path / "c", steps=10, lr=0.02, init=[[0, 0.1]])


# ----------------------------------------------------------------------------- kill -9, resume
# The subprocess trains the ring curve with a model that SIGKILLs its own process at the
# forward pass of a chosen step (after the state of step 30, snapshots of step 35 written).
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    sys.path.insert(0, {tests!r})
    import test_connect_curve as t
    from weightspace.between import train_curve

    class Killer(t.Point):
        calls = 0
        def forward(self, x):
            Killer.calls += 1
            if Killer.calls == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)
            return super().forward(x)

    p = t.ring_problem()
    p = type(p)(Killer(), p.loss_fn, p.data, name="ring")
    train_curve(p, t.A, t.B, sys.argv[1], **t.SETTINGS)
    """
)
SETTINGS = {"steps": 60, "lr": 0.05, "init": [[0.0, 0.1]], "every": 5, "checkpoint_every": 10}


def test_sigkill_mid_training_then_resume_gives_the_same_curve(tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests"), kill_at=37))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "killed")], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert load_curve(tmp_path / "killed").metadata["steps_done"] == 30
    resumed = train_curve(ring_problem(), A, B, tmp_path / "killed", **SETTINGS)
    whole = train_curve(ring_problem(), A, B, tmp_path / "whole", **SETTINGS)
    assert torch.equal(resumed.bends, whole.bends)
    assert np.array_equal(resumed.losses, whole.losses)
    assert np.array_equal(resumed.ts, whole.ts)
    t1, t2 = ws.Trajectory.load(tmp_path / "killed"), ws.Trajectory.load(tmp_path / "whole")
    assert list(t1.steps) == list(t2.steps) == list(range(0, 61, 5))
    assert np.array_equal(t1.array(np.float64), t2.array(np.float64))
