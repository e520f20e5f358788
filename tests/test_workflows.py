"""Each command is one library call: the workflow called from Python gives the same arrays,
to the bit, as its command on the same inputs; and no module outside ``cli/`` reaches into
the command line."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.cli import main
from weightspace.train import train

SRC = Path(ws.__file__).parent


def arrays_of(result, prefix="") -> dict[str, np.ndarray]:
    """Every array (and tensor) inside a result, by path."""
    out: dict[str, np.ndarray] = {}
    if dataclasses.is_dataclass(result):
        for f in dataclasses.fields(result):
            out.update(arrays_of(getattr(result, f.name), f"{prefix}{f.name}."))
    elif isinstance(result, (tuple, list)):
        for k, v in enumerate(result):
            out.update(arrays_of(v, f"{prefix}{k}."))
    elif isinstance(result, dict):
        for k, v in result.items():
            out.update(arrays_of(v, f"{prefix}{k}."))
    elif isinstance(result, torch.Tensor):
        out[prefix] = result.detach().cpu().numpy()
    elif isinstance(result, np.ndarray):
        out[prefix] = result
    return out


def assert_bitwise(cli_result, py_result) -> None:
    a, b = arrays_of(cli_result), arrays_of(py_result)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f"), key


def cli(*args) -> int:
    return main([*map(str, args), "--no-progress"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("wf")
    return [
        train(
            ws.zoo.problem("digits-mlp", seed=0),
            root / f"r{s}",
            lr=0.3,
            steps=20,
            every=5,
            data_seed=s,
        )
        for s in (0, 1)
    ]


def objective():
    return ws.Objective(ws.zoo.problem("digits-mlp", seed=0))


def test_surface(runs, tmp_path):
    a, b = runs
    args = ["--grid", 4, "--grid-y", 3, "--directions", "pca", "--compile", "off"]
    assert cli("surface", "--problem", "digits-mlp", a, b, *args, "-o", tmp_path / "s") == 0
    py = ws.surface_around(
        objective(), [a, b], directions="pca", grid=(4, 3), engine={"compile": "off"}
    )
    assert_bitwise(ws.load(tmp_path / "s"), py)


def test_line(runs, tmp_path):
    a, b = runs
    assert cli("line", "--problem", "digits-mlp", f"{a}:5", "--to", b, "--points", 7,
               "-o", tmp_path / "l") == 0  # fmt: skip
    py = ws.line_between(objective(), (a, 5), b, points=7)
    assert_bitwise(ws.load(tmp_path / "l"), py)


def test_curves(runs, tmp_path):
    """The test-data curves: the CLI equals the workflow, and each value is the objective
    evaluated at that snapshot (an independent path: Objective.evaluate, point by point)."""
    a, b = runs
    assert cli("curves", "--problem", "digits-mlp", a, b, "--data", "test",
               "-o", tmp_path / "c") == 0  # fmt: skip
    problem = ws.zoo.problem("digits-mlp", seed=0)
    test = ws.Objective(problem, data=problem.test_data)
    py = ws.curves_of_runs(test, [a, b])
    cli_result = ws.load(tmp_path / "c")
    assert_bitwise(cli_result, py)
    assert cli_result.metadata["data"]["split"] == "test"
    for run, curve in zip((a, b), py.runs):
        traj = ws.Trajectory.load(run)
        assert np.array_equal(curve.steps, traj.steps) and curve.label == run.name
        for i in range(len(traj)):
            ev = test.evaluate(traj.theta(i))
            assert curve.loss[i] == pytest.approx(ev.loss, rel=1e-6)
            assert curve.accuracy[i] == pytest.approx(ev.accuracy, abs=1e-12)
    every = ws.curves_of_runs(test, a, at="every:2")
    assert every.runs[0].steps.tolist() == [0, 10, 20]


@pytest.mark.parametrize("method", ["pca", "phate"])
def test_project(runs, tmp_path, method):
    assert cli("project", *runs, "--method", method, "-o", tmp_path / "p") == 0
    assert_bitwise(ws.load(tmp_path / "p"), ws.project_runs(runs, method))


def test_spectrum(runs, tmp_path):
    a, _ = runs
    args = ["--at", "every:2", "--top-k", 2, "--density", "--probes", 2, "--lanczos-steps", 6]
    assert cli("spectrum", "--problem", "digits-mlp", a, *args, "-o", tmp_path / "h") == 0
    py = ws.spectrum_of_run(
        objective(), a, at="every:2", top_k=2, density=True, n_probes=2, n_steps=6
    )
    assert_bitwise(ws.load(tmp_path / "h"), py)


def test_sample(runs, tmp_path):
    a, _ = runs
    flags = ["--step-sizes", "0.5", "--seeds", "1", "--retrain-steps", 5, "--every", 5]
    assert cli("sample", "--problem", "digits-mlp", a, *flags, "-o", tmp_path / "c") == 0
    py = ws.sample_around(
        ws.zoo.problem("digits-mlp"), a, tmp_path / "p", sizes=(0.5,), seeds=(1,),
        retrain_steps=5, every=5,
    )  # fmt: skip
    for name in ("jump_0.5_seed1",):
        c, p = ws.Trajectory.load(tmp_path / "c" / name), ws.Trajectory.load(tmp_path / "p" / name)
        assert np.array_equal(c.array(), p.array())
    for method in ("pca", "phate"):
        c = ws.load(tmp_path / "c" / f"projection_{method}")
        p = ws.load(tmp_path / "p" / f"projection_{method}")
        assert_bitwise(c, p)
    assert py.final_losses.shape == (1,)


@pytest.mark.slow
def test_demo_stages_are_the_workflows(tmp_path, capsys):
    """The quick demo through the command line (the suite's one demo run), then its stages
    recomputed by the workflows from Python on its runs: the same arrays."""
    out = tmp_path / "demo"
    assert cli("demo", "--quick", "-o", out, "--json") == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["command"] == "demo" and payload["artifacts"]["report"] == str(
        out / "report.html"
    )
    assert set(payload["summary"]["timings"]) >= {"record", "pca", "surface", "report"}
    runs = {p.name: p for p in sorted((out / "runs").iterdir())}
    assert len(runs) == 6 and {len(ws.Trajectory.load(p)) for p in runs.values()} == {13}
    again = train(ws.zoo.problem("digits-mlp", seed=0), tmp_path / "again", optimizer="sgd",
                  lr=0.05, momentum=0.9, steps=60, every=5, data_seed=1)  # fmt: skip
    assert np.array_equal(
        ws.Trajectory.load(again).array(), ws.Trajectory.load(runs["sgd-m0.9-order1"]).array()
    )
    order = ["sgd-m0.5", "sgd-m0.9", "sgd-m0.99", "adam", "sgd-m0.9-order1", "sgd-m0.9-order2"]
    assert_bitwise(ws.load(out / "artifacts" / "pca"), ws.project_runs([runs[n] for n in order]))
    line = ws.line_between(objective(), runs["sgd-m0.9-order1"], runs["sgd-m0.9-order2"], points=11)
    assert_bitwise(ws.load(out / "artifacts" / "line-order1-order2"), line)
    page = (out / "report.html").read_text()
    sections = ("Trajectories: PCA", "PHATE", "Loss landscape", "Interpolation", "Curvature")
    for section in (*sections, "Loss and accuracy along training (the test data)"):
        assert section in page, section
    assert "training loss (minibatch)" in page or "Loss and accuracy each run recorded" in page
    assert "Accuracy on the same grid" in page
    for what in ("Trajectories by PCA", "Loss landscape on the PCA plane", "Curvature along adam"):
        assert f"Transformer (text-gpt): {what}" in page, what  # the transformer's sections
    assert len(ws.Trajectory.load(out / "text-gpt" / "adam")) == 7  # 30 steps, every 5
    kinds = sorted(json.loads(f.read_text())["kind"] for f in (out / "artifacts").glob("*.json"))
    assert kinds == [
        "curves", "line", "projection", "projection", "projection", "spectrum", "surface"
    ]  # fmt: skip
    assert cli("demo", "--quick", "-o", out) == 1  # refuses to replace without --overwrite
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds output" in err[0] and "--overwrite" in err[0]
    # the user's own files among the demo's: --overwrite refuses and deletes nothing
    (out / "runs" / "my_run").mkdir()
    (out / "runs" / "my_run" / "run.json").write_text("{}")
    (out / "artifacts" / "thesis_figure.png").write_bytes(b"mine")
    before = sorted(p for p in out.rglob("*"))
    assert cli("demo", "--quick", "-o", out, "--overwrite") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did not write" in err[0] and "thesis_figure.png" in err[0]
    assert sorted(p for p in out.rglob("*")) == before
    # its own earlier output alone: replaced (the page is rewritten, the runs re-recorded)
    shutil.rmtree(out / "runs" / "my_run")
    (out / "artifacts" / "thesis_figure.png").unlink()
    old_page = (out / "report.html").stat().st_mtime_ns
    (out / "runs" / "adam" / "snapshots" / "000000060.npy").unlink()  # replaced, not kept
    assert cli("demo", "--quick", "-o", out, "--overwrite") == 0
    assert (out / "report.html").stat().st_mtime_ns > old_page
    assert len(ws.Trajectory.load(out / "runs" / "adam")) == 13


def test_no_module_outside_the_cli_imports_it_or_argparse():
    pattern = re.compile(
        r"^\s*(import|from) argparse|build_parser|weightspace\.cli|from \.cli|from \.\.cli", re.M
    )
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.parent.name != "cli" and p.name != "__main__.py" and pattern.search(p.read_text())
    ]
    assert offenders == []


def test_a_misspelt_engine_option_fails_before_any_forward_pass(runs, monkeypatch):
    calls = []
    obj = objective()
    monkeypatch.setattr(obj, "forward_loss", lambda *a, **k: calls.append(1))
    d = ws.random_directions(obj.theta0, obj.layout, seed=0)
    with pytest.raises(ws.WeightspaceError) as e:
        ws.evaluate_plane(obj, obj.theta0, d[0], d[1], [-1, 1], [-1, 1], engine={"complie": "on"})
    assert "'complie'" in str(e.value) and "compile" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ws.WeightspaceError, match="unknown option 'pionts_per_pass'"):
        ws.surface_around(obj, runs[0], engine={"pionts_per_pass": 2})
    assert calls == []
