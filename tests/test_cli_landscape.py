import json

import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.cli import main
from weightspace.train import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short digits-mlp runs from one initialisation, different data orders."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        train(
            ws.zoo.problem("digits-mlp", seed=0),
            root / f"r{seed}",
            lr=0.3,
            steps=20,
            every=5,
            data_seed=seed,
        )
    return root / "r0", root / "r1"


def cli_json(capsys, *args):
    """The command's --json summary (the envelope is checked in test_cli.py)."""
    code = main([*map(str, args), "--json", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    payload = json.loads(out.out)
    return {**payload["summary"], **payload["artifacts"]}


def cli_error(capsys, *args):
    code = main([*map(str, args), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    return err[0]


def objective():
    return ws.Objective(ws.zoo.problem("digits-mlp", seed=0))


def test_surface_random_non_square_with_trajectories(runs, tmp_path, capsys):
    a, b = runs
    out = tmp_path / "surf"
    s = cli_json(
        capsys,
        "surface",
        "--problem",
        "digits-mlp",
        a,
        b,
        "--grid",
        5,
        "--grid-y",
        3,
        "--span",
        -1,
        1,
        "--span-y",
        -0.5,
        0.5,
        "--seed",
        2,
        "-o",
        out,
    )
    assert s["grid"] == [3, 5] and s["surface"] == f"{out}.npz"
    surf = ws.load(out, "surface")
    assert surf.values.shape == (3, 5) and surf.accuracy.shape == (3, 5)
    np.testing.assert_array_equal(surf.xs, np.linspace(-1, 1, 5))
    np.testing.assert_array_equal(surf.ys, np.linspace(-0.5, 0.5, 3))
    meta = surf.metadata
    assert json.loads((tmp_path / "surf.json").read_text())["kind"] == "surface"
    assert meta["directions"]["seed"] == 2
    assert meta["directions"]["normalization"] == "filter"
    assert meta["objective"]["mode"] == "eval"
    assert meta["data"]["split"] == "train" and meta["data"]["n_samples"] == 1437
    assert meta["center"] == {"run": str(a), "step": 20} and meta["engine"]["compiled"] is False
    # the centre (grid middle) is the final point of the first run
    traj = ws.Trajectory.load(a)
    obj = objective()
    assert surf.values[1, 2] == pytest.approx(obj.evaluate(traj.theta(-1)).loss, rel=1e-6)
    # the directions saved with the result reproduce a grid point through the API
    d = surf.directions
    assert d.shape == (2, 3010) and torch.equal(
        torch.from_numpy(d), ws.random_directions(traj.theta(-1), obj.layout, seed=2).vectors
    )
    corner = traj.theta(-1) + torch.from_numpy(d[0]) * 1.0 + torch.from_numpy(d[1]) * 0.5
    assert surf.values[2, 4] == pytest.approx(obj.evaluate(corner).loss, rel=1e-6)
    names = [t.name for t in surf.trajectories]
    assert names == ["r0", "r1"] and len(surf.trajectories[1].steps) == 5
    assert surf.trajectories[0].loss[-1] == pytest.approx(surf.values[1, 2], rel=1e-6)
    assert not list(tmp_path.glob("*.partial.npz"))


def test_surface_from_a_file_with_auto_span(runs, tmp_path, capsys):
    a, b = runs
    traj = ws.Trajectory.load(a)
    c = traj.theta(-1, dtype=torch.float64)
    vecs = np.stack(
        [
            (traj.theta(0, dtype=torch.float64) - c).numpy(),
            (ws.Trajectory.load(b).theta(-1, dtype=torch.float64) - c).numpy(),
        ]
    )
    np.save(tmp_path / "dirs.npy", vecs)
    s = cli_json(
        capsys,
        "surface",
        "--problem",
        "digits-mlp",
        a,
        b,
        "--directions",
        tmp_path / "dirs.npy",
        "--grid",
        4,
        "-o",
        tmp_path / "f",
    )
    surf = ws.load(tmp_path / "f")
    assert surf.metadata["directions"]["kind"] == "file" and surf.metadata["auto_span"]
    for t in surf.trajectories:  # the grid covers every snapshot
        assert surf.xs[0] < t.coords[:, 0].min() and t.coords[:, 0].max() < surf.xs[-1]
        assert surf.ys[0] < t.coords[:, 1].min() and t.coords[:, 1].max() < surf.ys[-1]
    # run A's start is (1, 0) and run B's end is (0, 1) in grid units, on the plane
    np.testing.assert_allclose(surf.trajectories[0].coords[0], [1, 0], atol=1e-6)
    np.testing.assert_allclose(surf.trajectories[1].coords[-1], [0, 1], atol=1e-6)
    assert s["trajectories"][1]["max_residual"] > 0


def test_line_initial_to_final_and_between_runs(runs, tmp_path, capsys):
    a, b = runs
    s = cli_json(capsys, "line", "--problem", "digits-mlp", a, "--points", 9, "-o", tmp_path / "l")
    line = ws.load(tmp_path / "l", "line")
    assert s["points"] == 9 and line.alphas[0] == -0.5 and line.alphas[-1] == 1.5
    traj, obj = ws.Trajectory.load(a), objective()
    i0, i1 = np.flatnonzero(line.alphas == 0)[0], np.flatnonzero(line.alphas == 1)[0]
    assert line.values[i0] == pytest.approx(obj.evaluate(traj.theta(0)).loss, rel=1e-6)
    assert line.values[i1] == pytest.approx(obj.evaluate(traj.theta(-1)).loss, rel=1e-6)
    assert line.metadata["points"]["start"]["step"] == 0
    assert s["barrier"] == line.barrier and s["monotonic"] == line.monotonic
    s = cli_json(
        capsys,
        "line",
        "--problem",
        "digits-mlp",
        a,
        "--to",
        f"{b}:10",
        "--alphas",
        0,
        1,
        "--points",
        5,
        "-o",
        tmp_path / "ab",
    )
    line = ws.load(tmp_path / "ab", "line")
    assert line.metadata["points"]["end"] == {"run": str(b), "step": 10}
    tb = ws.Trajectory.load(b)
    assert line.values[-1] == pytest.approx(obj.evaluate(tb.theta(2)).loss, rel=1e-6)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--grid", "1"], ["--grid: expected at least 2 grid points, got 1"]),
        (["--span", "1", "-1"], ["--span: expected low < high, got 1 -1"]),
        (["--problem", "digits-cnn"], ["the problem's model", "same model"]),
        (["--directions", "{tmp}/zero.npy"], ["zero-norm direction"]),
        (["--directions", "{tmp}/one.npy"], ["holds 1 direction, a plane needs 2"]),
        (["--directions", "spiral"], ["--directions: expected one of random, pca"]),
    ],
)
def test_surface_errors_are_one_line(runs, tmp_path, capsys, args, fragments):
    np.save(tmp_path / "zero.npy", np.zeros((2, 3010)))
    np.save(tmp_path / "one.npy", np.ones((1, 3010)))
    base = ["surface", "--problem", "digits-mlp", str(runs[0]), "-o", str(tmp_path / "x")]
    line = cli_error(capsys, *base, *[a.format(tmp=tmp_path) for a in args])
    for f in fragments:
        assert f in line, line
    assert not (tmp_path / "x.npz").exists()


def test_line_errors_are_one_line(runs, tmp_path, capsys):
    base = ["line", "--problem", "digits-mlp", str(runs[0]), "-o", str(tmp_path / "l")]
    assert "--alphas: expected low < high" in cli_error(capsys, *base, "--alphas", "1", "0")
    assert "at least 2 grid points" in cli_error(capsys, *base, "--points", "1")
    assert "step 7 is not in run" in cli_error(capsys, *base, "--to", f"{runs[1]}:7")
