"""The report page from typed results: :func:`build_report` reads results only (no run
directory, no computation), dispatches on their types, and ``weightspace report`` finds saved
results and draws them."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.cli import main
from weightspace.curvature import curvature_at
from weightspace.errors import WeightspaceError
from weightspace.render.build import build_report
from weightspace.train import train
from weightspace.workflows.project import project_runs
from weightspace.workflows.report import find_results


def _run(path, model, steps=4):
    with ws.Recorder(model, path, metadata={"label": path.name}) as rec:
        for s in range(steps):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.1)
            rec.record(s, loss=1.0 / (s + 1))
    return path


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    """Two recorded digits-mlp runs, measured (projections, a surface with both runs on it,
    a line, a spectrum along the first run); then the run directories are deleted."""
    root = tmp_path_factory.mktemp("typed")
    problem = ws.zoo.problem("digits-mlp")
    dirs = [
        train(problem, root / name, optimizer="sgd", lr=lr, momentum=m, steps=20, every=5)
        for name, lr, m in (("sgd", 0.1, 0.0), ("momentum", 0.05, 0.9))
    ]
    trajs = [ws.Trajectory.load(d) for d in dirs]
    obj = ws.Objective(problem)
    center = trajs[0].theta(-1)
    start = trajs[0].theta(0)
    d = ws.random_directions(center, obj.layout, 2, seed=0)
    axis = np.linspace(-1.0, 1.0, 5)
    surf = ws.evaluate_plane(obj, center, d[0], d[1], axis, axis)
    paths = ws.trajectories_on_plane(obj, trajs, center, d[0], d[1], names=["sgd", "momentum"])
    out = {
        "projection": project_runs(dirs),
        "phate": project_runs(dirs, "phate"),
        "surface": dataclasses.replace(surf, trajectories=paths),
        "line": ws.evaluate_line(obj, start, center - start, axis / 2 + 0.5),
        "spectrum": curvature_at(
            obj,
            [(int(trajs[0].steps[i]), trajs[0].theta(i)) for i in (0, -1)],
            top_k=2,
            density=True,
            n_probes=2,
            n_steps=8,
            trace_probes=2,
            lr=0.1,
        ),
        "path_length": [float(np.linalg.norm(np.diff(t.array(np.float64), axis=0), axis=1).sum())
                        for t in trajs],
    }  # fmt: skip
    for path in dirs:
        shutil.rmtree(path)
    return out


def _pairs(typed):
    return [(name, typed[name]) for name in ("projection", "phate", "surface", "line", "spectrum")]


def test_a_report_is_built_from_typed_results_alone(typed, tmp_path):
    proj = typed["projection"]
    assert not any(os.path.exists(r.run) for r in proj.runs)  # runs are gone
    summary = build_report(tmp_path / "r.html", runs=proj.runs, results=_pairs(typed))
    page = summary.path.read_text()
    assert summary.results == {
        "projection": ["projection", "phate"],
        "surface": ["surface"],
        "line": ["line"],
        "spectrum": ["spectrum"],
    }
    for heading in (
        ">Runs<",
        "Trajectories: PCA (projection)",
        "Trajectories: PHATE",
        "Loss landscape on a plane</a></h2>\n<p>Result surface.",  # no directions recorded
        "Loss along a line</a></h2>\n<p>Result line.",
        "Curvature</a></h2>\n<p>Result spectrum.",
    ):
        assert heading in page, heading
    for cell in ("<th>path length</th>", "<th>straightness</th>", "random-walk null", "σ ="):
        assert cell in page, cell
    for r, length in enumerate(typed["path_length"]):  # the overview's numbers are the runs'
        assert f"{length:.4g}" in page and proj.runs[r].label in page
    assert f"{typed['projection'].metadata['parameters']:,} parameters per snapshot" in page
    assert "<script src=" not in page and page.count("<img") >= 10
    names = sorted(p.rsplit("/", 1)[-1] for p in summary.files)
    assert "surface-path.gif" in names
    if any(n.endswith(".ply") for n in names):  # meshio is optional
        assert {"surface.ply", "surface.vtk"} <= set(names)


def test_results_read_back_with_ws_load_draw_the_same_page(typed, tmp_path):
    loaded = []
    for name, result in _pairs(typed):
        ws.save(result, tmp_path / "art" / name)
        loaded.append((name, ws.load(tmp_path / "art" / name)))
    runs = loaded[0][1].runs
    a = build_report(tmp_path / "a.html", runs=runs, results=loaded, animations=False)
    b = build_report(tmp_path / "b.html", runs=runs, results=_pairs(typed), animations=False)
    assert a.results == b.results and len(a.files) == len(b.files)
    headings = [line for line in a.path.read_text().splitlines() if "<h2 " in line]
    assert headings == [line for line in b.path.read_text().splitlines() if "<h2 " in line]


def test_runs_only_report_has_the_overview(tmp_path):
    a = _run(tmp_path / "a<script>", torch.nn.Linear(3, 2))
    out = build_report(tmp_path / "r.html", runs=project_runs([a]).runs, animations=False).path
    page = out.read_text()
    assert "Straightness" in page and "a&lt;script&gt;" in page and "a<script>" not in page


def test_report_values_match_the_runs(tmp_path):
    run = _run(tmp_path / "run", torch.nn.Linear(3, 2), steps=5)
    build_report(tmp_path / "r.html", runs=project_runs([run]).runs, animations=False)
    traj = ws.Trajectory.load(run)
    arr = traj.array(np.float64)
    path_length = np.linalg.norm(np.diff(arr, axis=0), axis=1).sum()
    page = (tmp_path / "r.html").read_text()
    assert f"{path_length:.4g}" in page
    assert '<td class="num">0.2</td>' in page  # the last recorded loss, 1 / 5


def test_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path, typed):
    out = tmp_path / "r.html"
    cases = {
        r"results\[1\] 'x': expected a Projection, Surface, Line, Curves, CurvatureAlong or "
        r"Connection, got dict": {"results": [("pca", typed["projection"]), ("x", {"values": 1})]},
        r"results\[0\]: expected a \(name, result\) pair, got Surface": {
            "results": [typed["surface"]]
        },
        r"runs\[0\]: expected a weightspace.results.RunProjection, got str": {"runs": ["runs/a"]},
        r"runs, results: expected at least one": {},
    }
    for message, kwargs in cases.items():
        with pytest.raises(WeightspaceError, match=message) as err:
            build_report(out, **kwargs)
        assert "\n" not in str(err.value)
    assert not out.exists()


def test_projection_results_are_found_and_drawn(tmp_path):
    torch.manual_seed(0)
    runs = [_run(tmp_path / f"run{i}", torch.nn.Linear(5, 3), steps=6) for i in range(2)]
    assert main(["project", *map(str, runs), "-o", str(tmp_path / "art" / "pca")]) == 0
    (tmp_path / "art" / "unrelated.json").write_text(json.dumps({"kind": "other"}))
    found = find_results(tmp_path / "art")
    assert [name for name, _ in found] == ["pca"]
    argv = ["report", *map(str, runs), "--artifacts", str(tmp_path / "art")]
    assert main([*argv, "-o", str(tmp_path / "report.html"), "--json"]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Trajectories: PCA" in page and "random-walk null" in page
    assert page.count("<img") >= 3 and "<script src=" not in page  # nothing fetched


def test_directory_without_results_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    run = _run(tmp_path / "run", torch.nn.Linear(3, 2))
    argv = ["report", str(run), "--artifacts", str(tmp_path / "empty")]
    assert main([*argv, "-o", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no results in" in err
    assert not (tmp_path / "r.html").exists()


def test_runs_of_different_models_are_a_one_line_error(tmp_path, capsys):
    a = _run(tmp_path / "a", torch.nn.Linear(3, 2))
    b = _run(tmp_path / "b", torch.nn.Linear(4, 2))
    assert main(["report", str(a), str(b), "-o", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "tensor 0 is 'weight' (2, 3)" in err
    assert not (tmp_path / "r.html").exists()
