import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from weightspace import parallel
from weightspace.errors import WeightspaceError


def test_shards_cover_every_point_once():
    for world in (1, 2, 3, 5):
        parts = [parallel.shard(23, r, world) for r in range(world)]
        joined = np.sort(np.concatenate(parts))
        assert np.array_equal(joined, np.arange(23))
        assert all(np.all(p % world == r) for r, p in enumerate(parts))
    with pytest.raises(WeightspaceError, match="rank"):
        parallel.shard(10, 2, 2)


def test_single_process_defaults():
    assert parallel.rank() == 0 and parallel.world_size() == 1 and parallel.is_rank_zero()
    assert not parallel.is_distributed()
    a = np.arange(6.0).reshape(3, 2)
    merged = parallel.merge_rows(a, np.array([0, 2]))
    assert np.array_equal(merged, [[0, 1], [0, 0], [4, 5]])
    assert parallel.all_ranks_ok(True) and not parallel.all_ranks_ok(False)


def test_partial_files_union_and_key_check(tmp_path, monkeypatch):
    prefix = tmp_path / "surf"
    data = np.arange(10.0).reshape(5, 2)
    key = parallel.fingerprint(np.ones(3), {"grid": 5})
    assert key == parallel.fingerprint(np.ones(3), {"grid": 5})
    assert key != parallel.fingerprint(np.ones(3) * 2, {"grid": 5})
    done0 = np.array([True, False, True, False, False])
    parallel.save_partial(prefix, key, done0, data)
    # a second rank's file (as written under a world size of 2)
    monkeypatch.setattr(parallel, "rank", lambda: 1)
    monkeypatch.setattr(parallel, "world_size", lambda: 2)
    parallel.save_partial(prefix, key, np.array([False, True, False, False, False]), data * 10)
    monkeypatch.undo()
    done, merged, files = parallel.load_partials(prefix, key, 5, 2)
    assert len(files) == 2 and list(done) == [True, True, True, False, False]
    assert np.array_equal(merged[1], data[1] * 10) and np.array_equal(merged[2], data[2])
    with pytest.raises(WeightspaceError, match="different settings"):
        parallel.load_partials(prefix, "other", 5, 2)
    parallel.remove_partials(prefix, all_ranks=True)
    assert parallel.partial_files(prefix) == []


TORCHRUN_JOB = r"""
import sys
import numpy as np
import torch
import weightspace as ws
from weightspace import parallel


def build():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    obj = ws.Objective(ws.Problem(model.double(), torch.nn.CrossEntropyLoss(), (X, y)),
                       batch_size=16)
    d = ws.random_directions(obj.theta0, obj.layout, seed=0)
    return obj, d


def surface(obj, d, **kw):
    xs, ys = np.linspace(-1, 1, 7), np.linspace(-1, 2, 5)
    return ws.evaluate_plane(
        obj, obj.theta0, d[0], d[1], xs, ys, engine={"compile": "off", **kw.pop("engine", {})},
        **kw)


def _at_exit():  # registered before the group is joined, so it runs after weightspace's own
    import os

    import torch.distributed as dist

    with open(f"{sys.argv[2]}.exit-rank{os.environ['RANK']}", "w") as f:
        f.write(str(dist.is_initialized()))


if __name__ == "__main__":
    import atexit

    atexit.register(_at_exit)
    assert parallel.init_from_env("cpu")
    obj, d = build()
    s = surface(obj, d, checkpoint=sys.argv[1], engine={"keep_checkpoint": True})
    with parallel.rank_zero_writes() as writer:
        if writer:
            np.savez(sys.argv[2], values=s.values, stderr=s.stderr, accuracy=s.accuracy,
                     world=s.metadata["engine"]["world_size"])
"""


def test_torchrun_two_processes_give_the_same_array_as_one(tmp_path):
    job = tmp_path / "job.py"
    job.write_text(TORCHRUN_JOB)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(job),
        str(tmp_path / "ckpt"),
        str(tmp_path / "out.npz"),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    ns = {"__name__": "job"}
    exec(compile(TORCHRUN_JOB, str(job), "exec"), ns)
    obj, d = ns["build"]()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the ranks (OMP_NUM_THREADS=1): same reduction order
    try:
        one = ns["surface"](obj, d)
    finally:
        torch.set_num_threads(threads)
    with np.load(tmp_path / "out.npz") as z:
        assert int(z["world"]) == 2
        assert np.array_equal(z["values"], one.values)
        assert np.array_equal(z["stderr"], one.stderr)
        assert np.array_equal(z["accuracy"], one.accuracy)
    # each rank left its process group before the interpreter tore down (gloo's threads
    # destroyed with the group alive abort a rank now and then)
    for r in (0, 1):
        assert (tmp_path / f"out.npz.exit-rank{r}").read_text() == "False"
    # each rank checkpointed its own points: disjoint halves of the grid
    files = parallel.partial_files(tmp_path / "ckpt")
    assert [f.name for f in files] == ["ckpt.rank0of2.partial.npz", "ckpt.rank1of2.partial.npz"]
    masks = [np.load(f)["done"] for f in files]
    assert not (masks[0] & masks[1]).any() and (masks[0] | masks[1]).all()
    assert masks[0].sum() == 18 and masks[1].sum() == 17
