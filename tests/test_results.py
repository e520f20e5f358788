"""One way to save and load every result kind: ``ws.load(ws.save(r, p))`` equals ``r``, and a
file of another kind or format version is a one-line error naming both."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.curvature import curvature_at
from weightspace.errors import WeightspaceError
from weightspace.results._flat import jsonable
from weightspace.testing import quadratic_problem, write_run
from weightspace.train import train


def assert_same(a, b, where="result"):
    """Equal arrays (NaN equal to NaN), tensors, tuples, dataclasses; metadata as JSON."""
    assert type(a) is type(b), (where, type(a), type(b))
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if f.name in ("metadata", "settings"):
                assert jsonable(x) == y, f"{where}.{f.name}"
            else:
                assert_same(x, y, f"{where}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{k}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, (where, a, b)


def round_trip(result, path):
    npz = ws.save(result, path)
    assert npz == path.with_name(path.name + ".npz") and npz.with_suffix(".json").is_file()
    back = ws.load(path)
    assert_same(result, back)
    return back


@pytest.fixture(scope="module")
def quadratic():
    problem, *_ = quadratic_problem()
    return ws.Objective(problem)


def test_surface_with_trajectories_and_directions(quadratic, tmp_path):
    obj = quadratic
    c = obj.theta0
    d1, d2 = torch.eye(6, dtype=torch.float64)[:2]
    xs, ys = np.linspace(-1, 1, 5), np.linspace(0, 1, 3)
    surf = ws.evaluate_plane(obj, c, d1, d2, xs, ys, metadata={"note": ("a", 1)})
    traj = ws.trajectories_on_plane(obj, [torch.stack([c, c + d1])], c, d1, d2)
    surf = dataclasses.replace(surf, trajectories=traj)
    back = round_trip(surf, tmp_path / "s")
    assert back.metadata["grid"] == jsonable(surf.metadata["grid"])
    assert back.directions.shape == (2, 6)


def test_line(quadratic, tmp_path):
    c = quadratic.theta0
    line = ws.evaluate_line(quadratic, c, torch.ones(6, dtype=torch.float64), [0, 0.5, 1])
    back = round_trip(line, tmp_path / "l")
    assert back.barrier == line.barrier and back.monotonic == line.monotonic


def test_spectrum_with_densities_and_eigenvectors(quadratic, tmp_path):
    c = quadratic.theta0
    spec = curvature_at(
        quadratic, [(0, c), (1, c + 0.1)], top_k=2, trace_probes=3, density=True, n_probes=2,
        n_steps=5, seed=0,
    )  # fmt: skip
    back = round_trip(spec, tmp_path / "h")
    assert len(back.densities) == 2 and back.eigenvectors.shape == (2, 6)


def test_projection(tmp_path):
    rng = np.random.default_rng(0)
    a = write_run(tmp_path / "a", np.cumsum(rng.normal(size=(8, 30)), 0), metadata={"label": "A"})
    b = write_run(tmp_path / "b", np.cumsum(rng.normal(size=(6, 30)), 0))
    proj = ws.project_runs([a, b], components=3)
    back = round_trip(proj, tmp_path / "p")
    assert back.labels == ["A", "b"] and back.runs[1].coords.shape == (6, 3)
    kept = ws.project_runs([a, b], components=2, keep_components=True)
    assert round_trip(kept, tmp_path / "k").components.shape == (2, 30)


def test_topology(tmp_path):
    x, y = np.meshgrid(np.arange(-6, 7) / 4, np.arange(-4, 5) / 4)
    points = np.stack([x.ravel(), y.ravel()], axis=1)
    f = (points[:, 0] ** 2 - 1) ** 2 + points[:, 1] ** 2
    topo = ws.loss_topology(points, f, k=4, metadata={"run": "sgd"})
    back = round_trip(topo, tmp_path / "t")
    for name in ("persistence", "total_persistence"):  # derived from the diagram
        assert np.array_equal(getattr(back, name), getattr(topo, name))


def test_jump_samples(tmp_path):
    run = train(ws.zoo.problem("digits-mlp"), tmp_path / "run", steps=4, every=2, lr=0.1)
    samples = ws.jump_and_retrain(
        ws.zoo.problem("digits-mlp"), run, tmp_path / "jumps", sizes=(0.5,), seeds=(0,),
        retrain_steps=2,
    )  # fmt: skip
    round_trip(samples, tmp_path / "samples")


def test_another_kind_or_version_is_one_line_naming_both(quadratic, tmp_path):
    line = ws.evaluate_line(quadratic, quadratic.theta0, torch.ones(6, dtype=torch.float64))
    ws.save(line, tmp_path / "l")
    with pytest.raises(WeightspaceError) as e:
        ws.load(tmp_path / "l", "surface")
    msg = str(e.value)
    assert "'line'" in msg and "'surface'" in msg and "\n" not in msg
    side = tmp_path / "l.json"
    sidecar = json.loads(side.read_text())
    side.write_text(json.dumps({**sidecar, "format_version": 1}))
    with pytest.raises(WeightspaceError) as e:
        ws.load(tmp_path / "l")
    msg = str(e.value)
    assert "version 1" in msg and "version 2" in msg and "\n" not in msg


def test_no_pickles_and_no_result_without_its_sidecar(quadratic, tmp_path):
    bad = dataclasses.replace(
        ws.evaluate_line(quadratic, quadratic.theta0, torch.ones(6, dtype=torch.float64)),
        values=np.array([object()] * 41),
    )
    with pytest.raises(WeightspaceError, match="Python objects"):
        ws.save(bad, tmp_path / "bad")
    assert not list(tmp_path.iterdir())
    with pytest.raises(WeightspaceError, match="cannot save a dict"):
        ws.save({"a": 1}, tmp_path / "x")
    good = ws.evaluate_line(quadratic, quadratic.theta0, torch.ones(6, dtype=torch.float64))
    ws.save(good, tmp_path / "l")
    (tmp_path / "l.json").unlink()  # as if the process died between the two renames
    with pytest.raises(WeightspaceError, match="never completely written"):
        ws.load(tmp_path / "l")
