import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import weightspace as ws
from _util import REPO
from weightspace.cli import main
from weightspace.errors import LayoutMismatchError, WeightspaceError


def test_snapshots_equal_parameters_bit_for_bit(recorded_run):
    path, thetas = recorded_run
    traj = ws.Trajectory.load(path)
    assert len(traj) == 6 and traj.steps.tolist() == list(range(6))
    for i in range(6):
        assert np.array_equal(traj.snapshot(i), thetas[i].numpy())
        assert traj.snapshot(i).dtype == np.float32
    np.testing.assert_array_equal(traj.metrics["loss"], [1.0 / (s + 1) for s in range(6)])
    assert traj.metadata == {"lr": 0.1}


def test_every_keeps_multiples_only(tmp_path, tiny_model):
    with ws.Recorder(tiny_model, tmp_path / "r", every=3) as rec:
        kept = [rec.record(s, loss=float(s)) for s in range(10)]
    assert kept == [s % 3 == 0 for s in range(10)]
    traj = ws.Trajectory.load(tmp_path / "r")
    assert traj.steps.tolist() == [0, 3, 6, 9]
    assert traj.recorder["every"] == 3


@pytest.mark.parametrize("every", [0, -1, 1.5, True])
def test_bad_every(tmp_path, tiny_model, every):
    with pytest.raises(WeightspaceError, match="every: expected a positive integer"):
        ws.Recorder(tiny_model, tmp_path / "r", every=every)
    assert not (tmp_path / "r").exists()


def test_float16_storage_halves_disk(tmp_path, tiny_model):
    with ws.Recorder(tiny_model, tmp_path / "h", dtype="float16") as rec:
        rec.record(0)
    traj = ws.Trajectory.load(tmp_path / "h")
    theta = ws.ParamLayout.from_module(tiny_model).flatten(tiny_model)
    assert traj.snapshot(0).dtype == np.float16
    np.testing.assert_allclose(traj.snapshot(0), theta.numpy(), rtol=1e-3, atol=1e-4)
    assert traj.snapshot(0).nbytes == theta.numel() * 2


def test_reopen_appends_and_checks_layout(tmp_path, tiny_model):
    with ws.Recorder(tiny_model, tmp_path / "r") as rec:
        rec.record(0, loss=1.0)
    with ws.Recorder(tiny_model, tmp_path / "r", metadata={"resumed": True}) as rec:
        rec.record(1, loss=0.5)
    traj = ws.Trajectory.load(tmp_path / "r")
    assert traj.steps.tolist() == [0, 1]
    assert traj.metadata["resumed"] is True
    with pytest.raises(LayoutMismatchError, match="tensor 0 is '0.weight'"):
        ws.Recorder(torch.nn.Linear(4, 2), tmp_path / "r")
    with pytest.raises(WeightspaceError, match="stores float32"):
        ws.Recorder(tiny_model, tmp_path / "r", dtype="float16")


def test_rerecorded_step_keeps_last_metrics(tmp_path, tiny_model):
    with ws.Recorder(tiny_model, tmp_path / "r") as rec:
        rec.record(0, loss=1.0)
        rec.record(0, loss=2.0)
    assert ws.Trajectory.load(tmp_path / "r").metrics["loss"].tolist() == [2.0]


def test_writer_failure_reaches_the_training_thread(tmp_path, tiny_model, monkeypatch):
    import weightspace.record as record_mod

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(record_mod, "save_array", boom)
    rec = ws.Recorder(tiny_model, tmp_path / "r")
    rec.record(0)
    with pytest.raises(WeightspaceError, match="disk full"):
        rec.flush()
    with pytest.raises(WeightspaceError, match="disk full"):
        rec.close()


def test_a_run_whose_writer_fails_at_close_can_still_be_discarded(tmp_path, tiny_model,
                                                                  monkeypatch):  # fmt: skip
    """The writer fails after the last record() returned, so close() is where the error
    surfaces: the recorder keeps the run's lock, and discard() removes the half run."""
    import threading

    import weightspace.record as record_mod

    started = threading.Event()

    def boom(*a, **k):
        started.set()
        raise OSError(28, "No space left on device", "/full/disk")

    monkeypatch.setattr(record_mod, "save_array", boom)
    rec = ws.Recorder(tiny_model, tmp_path / "r")
    monkeypatch.setattr(rec, "_raise_if_failed", _raise_only_when_closed(rec))
    rec.record(0)
    started.wait(10)
    with pytest.raises(WeightspaceError, match="no space left on device"):
        rec.close()
    assert rec.discard() and not (tmp_path / "r").exists()


def _raise_only_when_closed(rec):
    """record() checks for a failed writer first; make it look as if the failure came after."""
    original = type(rec)._raise_if_failed

    def check() -> None:
        if rec._closed:
            original(rec)

    return check


def test_metadata_must_be_json(tmp_path, tiny_model):
    with pytest.raises(WeightspaceError, match="metadata: must be JSON-serialisable"):
        ws.Recorder(tiny_model, tmp_path / "r", metadata={"x": object()})


CRASH_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    import weightspace as ws
    torch.manual_seed(0)
    model = torch.nn.Linear(200, 50)
    rec = ws.Recorder(model, sys.argv[1], every=1)
    step = 0
    while True:
        with torch.no_grad():
            model.weight.fill_(step); model.bias.fill_(-step)
        rec.record(step, loss=float(step))
        print(step, flush=True)
        step += 1
        time.sleep(0.002)
""")


def test_sigkill_mid_run_leaves_a_readable_correct_run(tmp_path, capsys):
    run = tmp_path / "crash"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(run)],
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    seen = 0
    deadline = time.time() + 60
    while seen < 40 and time.time() < deadline:
        line = proc.stdout.readline()
        if line:
            seen = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert seen >= 40
    traj = ws.Trajectory.load(run)
    assert len(traj) >= 1
    for i, step in enumerate(traj.steps):
        snap = np.asarray(traj.snapshot(i))
        assert np.all(snap[:10000] == step) and np.all(snap[10000:] == -step)
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()[:-1]]
    assert all(m["loss"] == m["step"] for m in metrics)
    assert main(["info", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["snapshots"] == len(traj)
