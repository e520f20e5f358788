"""A surface killed with SIGKILL mid-grid and resumed equals an uninterrupted one."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import weightspace as ws
from weightspace import parallel
from weightspace.errors import WeightspaceError

# Shared by the test and the subprocess it kills: a small float64 MLP whose loss sleeps a
# little per batch, so that the grid takes a few seconds and can be interrupted.
SCRIPT = r"""
import sys, time
import numpy as np
import torch
import weightspace as ws

NX, NY = 12, 9


def slow_ce(out, y):
    time.sleep(0.01)
    return torch.nn.functional.cross_entropy(out, y)


def build(sleep=True):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    model.double()
    loss = slow_ce if sleep else torch.nn.functional.cross_entropy
    obj = ws.Objective(ws.Problem(model, loss, (X, y)), batch_size=25)
    d = ws.random_directions(obj.theta0, obj.layout, seed=0)
    return obj, d


def surface(obj, d, **kw):
    xs, ys = np.linspace(-1, 1, NX), np.linspace(-2, 1, NY)
    engine = {"compile": "off", **kw.pop("engine", {})}
    return ws.evaluate_plane(obj, obj.theta0, d[0], d[1], xs, ys, engine=engine, **kw)


if __name__ == "__main__":
    obj, d = build()
    surface(obj, d, checkpoint=sys.argv[1], engine={"checkpoint_every": 4})
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "grid_job.py"
    path.write_text(SCRIPT)
    namespace = {"__name__": "grid_job"}
    exec(compile(SCRIPT, str(path), "exec"), namespace)
    return path, namespace


def test_sigkill_mid_grid_then_resume_gives_the_same_array(script, tmp_path):
    path, ns = script
    prefix = tmp_path / "out" / "surf"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(path), str(prefix)], env=env)
    partial = parallel.partial_path(prefix, 0, 1)
    deadline = time.monotonic() + 120
    try:
        while not partial.exists():  # wait for the first checkpoint
            assert proc.poll() is None, "the job ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    n_points = ns["NX"] * ns["NY"]
    with np.load(partial) as z:
        done_at_kill = int(z["done"].sum())
    assert 0 < done_at_kill < n_points  # killed mid-grid

    obj, d = ns["build"](sleep=False)
    resumed = ns["surface"](obj, d, checkpoint=prefix, resume=True)
    assert resumed.metadata["engine"]["resumed_points"] == done_at_kill
    assert not parallel.partial_files(prefix)  # cleaned up once complete
    whole = ns["surface"](obj, d)
    assert np.array_equal(resumed.values, whole.values)
    assert np.array_equal(resumed.stderr, whole.stderr, equal_nan=True)
    assert np.array_equal(resumed.accuracy, whole.accuracy)


def test_checkpoint_of_other_work_is_refused(script, tmp_path):
    _, ns = script
    obj, d = ns["build"](sleep=False)
    prefix = tmp_path / "s"
    first = ns["surface"](obj, d, checkpoint=prefix, engine={"keep_checkpoint": True})
    assert parallel.partial_files(prefix)
    keep = {"keep_checkpoint": True}
    again = ns["surface"](obj, d, checkpoint=prefix, resume=True, engine=keep)
    assert again.metadata["engine"]["resumed_points"] == first.values.size
    assert np.array_equal(again.values, first.values)
    other = ws.random_directions(obj.theta0, obj.layout, seed=1)
    with pytest.raises(WeightspaceError, match="written for different settings") as e:
        ns["surface"](obj, other, checkpoint=prefix, resume=True)
    assert "\n" not in str(e.value)
    # without resume, an old checkpoint is replaced, not mixed in
    fresh = ns["surface"](obj, other, checkpoint=prefix)
    assert fresh.metadata["engine"]["resumed_points"] == 0
