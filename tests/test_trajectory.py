import pickle
import tracemalloc

import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.errors import CorruptRunError, WeightspaceError
from weightspace.projection import iter_blocks
from weightspace.projection._stream import as_snapshots
from weightspace.store import SNAPSHOTS


def make_run(path, T=7, n=1000, seed=0, dtype="float32"):
    """A run of T random snapshots of a Linear(n // 10, 10) weight; returns the (T, n) matrix."""
    model = torch.nn.Linear(n // 10, 10, bias=False)
    g = torch.Generator().manual_seed(seed)
    rows = []
    with ws.Recorder(model, path, dtype=dtype) as rec:
        for t in range(T):
            with torch.no_grad():
                model.weight.copy_(torch.randn(model.weight.shape, generator=g))
            rows.append(model.weight.detach().reshape(-1).clone())
            rec.record(t * 2, loss=float(t))
    return torch.stack(rows).numpy()


def test_iter_blocks_reproduce_the_matrix(tmp_path):
    full = make_run(tmp_path / "r", T=7, n=1000)
    traj = ws.Trajectory.load(tmp_path / "r")
    assert traj.steps.tolist() == [0, 2, 4, 6, 8, 10, 12]
    for chunk in (1, 3, 64, 999, 1000, 5000):
        got = np.concatenate([b.copy() for _, b in iter_blocks(traj, chunk_size=chunk)], axis=1)
        np.testing.assert_array_equal(got, full)
    starts = [s for s, _ in iter_blocks(traj, chunk_size=300)]
    assert starts == [0, 300, 600, 900]
    pick = as_snapshots(traj).take([6, 0])
    sub = np.concatenate([b.copy() for _, b in iter_blocks(pick, chunk_size=400)], axis=1)
    np.testing.assert_array_equal(sub, full[[6, 0]])
    assert pick.steps[0].tolist() == [12, 0]  # a selection keeps its steps for errors
    np.testing.assert_array_equal(traj.array(), full)


def test_iter_blocks_stream_several_runs_and_arrays_in_run_order(tmp_path):
    a = make_run(tmp_path / "a", T=3, n=200, seed=1)
    b = make_run(tmp_path / "b", T=4, n=200, seed=2, dtype="float64")
    c = np.random.default_rng(0).normal(size=(2, 200))
    runs = [ws.Trajectory.load(tmp_path / "a"), ws.Trajectory.load(tmp_path / "b"), c]
    blocks = [(s, blk.copy()) for s, blk in iter_blocks(runs, chunk_size=64)]
    assert [s for s, _ in blocks] == [0, 64, 128, 192]
    got = np.concatenate([blk for _, blk in blocks], axis=1)
    assert got.dtype == np.float64  # float64 when any run is
    np.testing.assert_array_equal(got, np.concatenate([a, b, c]))


def test_there_is_one_snapshot_streamer():
    assert not hasattr(ws.Trajectory, "iter_columns")
    assert ws.projection.iter_blocks is iter_blocks


def test_iter_blocks_memory_is_bounded_by_the_budget(tmp_path):
    T, n = 40, 50_000
    make_run(tmp_path / "r", T=T, n=n)
    traj = ws.Trajectory.load(tmp_path / "r")
    budget = 64 * 1024  # bytes for one block: far smaller than the T*n*4 = 8 MB matrix
    tracemalloc.start()
    total = 0.0
    for _, block in iter_blocks(traj, max_bytes=budget):
        assert block.nbytes <= budget
        total += float(block.sum(dtype=np.float64))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * budget, peak
    np.testing.assert_allclose(total, traj.array().sum(dtype=np.float64), rtol=1e-9)


def test_iter_blocks_bad_settings_are_one_line_errors():
    x = np.zeros((3, 10))
    for kwargs, name in (({"chunk_size": 0}, "chunk_size"), ({"max_bytes": -1}, "max_bytes")):
        with pytest.raises(WeightspaceError, match=f"^{name}: expected a positive integer") as e:
            next(iter_blocks(x, **kwargs))
        assert "\n" not in str(e.value)


def test_torn_last_metrics_line_and_leftover_temp_files_are_ignored(tmp_path):
    make_run(tmp_path / "r", T=3, n=100)
    with open(tmp_path / "r" / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 99, "loss": 0.')
    (tmp_path / "r" / SNAPSHOTS / ".000000006.npy.abc.tmp").write_bytes(b"partial")
    traj = ws.Trajectory.load(tmp_path / "r")
    assert len(traj) == 3
    assert traj.metrics["loss"].tolist() == [0.0, 1.0, 2.0]


def test_corrupt_middle_metrics_line_names_the_file(tmp_path):
    make_run(tmp_path / "r", T=3, n=100)
    path = tmp_path / "r" / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = "garbage"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptRunError, match=r"metrics.jsonl: line 2"):
        ws.Trajectory.load(tmp_path / "r")


def test_truncated_snapshot_error_names_the_file(tmp_path):
    make_run(tmp_path / "r", T=3, n=100)
    victim = tmp_path / "r" / SNAPSHOTS / "000000002.npy"
    victim.write_bytes(victim.read_bytes()[:-40])
    with pytest.raises(CorruptRunError, match=r"000000002\.npy: truncated"):
        ws.Trajectory.load(tmp_path / "r")


def test_snapshot_of_wrong_shape_is_refused(tmp_path):
    make_run(tmp_path / "r", T=2, n=100)
    np.save(tmp_path / "r" / SNAPSHOTS / "000000002.npy", np.zeros(7, np.float32))
    with pytest.raises(CorruptRunError, match=r"000000002\.npy: expected shape \(100,\)"):
        ws.Trajectory.load(tmp_path / "r")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickled_snapshot_is_refused_and_never_runs(tmp_path):
    make_run(tmp_path / "r", T=2, n=100)
    marker = tmp_path / "pwned"
    evil = np.empty(100, dtype=object)
    evil[0] = _Payload(marker)
    with open(tmp_path / "r" / SNAPSHOTS / "000000004.npy", "wb") as f:
        np.save(f, evil, allow_pickle=True)
    with pytest.raises(CorruptRunError, match=r"000000004\.npy: holds Python objects"):
        ws.Trajectory.load(tmp_path / "r")
    traj = ws.Trajectory.load(tmp_path / "r", validate=False)
    with pytest.raises(CorruptRunError, match="000000004"):
        traj.snapshot(2)
    assert not marker.exists()
    assert pickle.dumps(_Payload(marker))  # the payload is real: unpickling it would run `touch`


def test_not_a_run_and_missing_run(tmp_path):
    with pytest.raises(WeightspaceError, match="does not exist"):
        ws.Trajectory.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightspaceError, match="is not a weightspace run"):
        ws.Trajectory.load(tmp_path / "empty")


def test_index_of_and_theta(tmp_path):
    full = make_run(tmp_path / "r", T=3, n=100)
    traj = ws.Trajectory.load(tmp_path / "r")
    assert traj.index_of(4) == 2
    with pytest.raises(WeightspaceError, match="step 5 is not in run"):
        traj.index_of(5)
    theta = traj.theta(-1, dtype=torch.float64)
    assert theta.dtype == torch.float64 and np.array_equal(theta.numpy(), full[-1])


def test_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    make_run(tmp_path / "r", T=1, n=100)
    mask = os.umask(0)
    os.umask(mask)
    for f in [tmp_path / "r" / "run.json", *(tmp_path / "r" / SNAPSHOTS).iterdir()]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f
