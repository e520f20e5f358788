"""``weightspace report``: gathering runs and results into one page."""

import json

import numpy as np
import torch

import weightspace as ws
from _util import run_cli
from weightspace.render.build import build_report, find_results


def _run(path, model, steps=4):
    with ws.Recorder(model, path, metadata={"label": path.name}) as rec:
        for s in range(steps):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.1)
            rec.record(s, loss=1.0 / (s + 1))
    return path


def test_runs_only_report_has_the_overview(tmp_path):
    a = _run(tmp_path / "a<script>", torch.nn.Linear(3, 2))
    out = build_report([a], tmp_path / "r.html", animations=False).path
    page = out.read_text()
    assert "Straightness" in page and "a&lt;script&gt;" in page and "a<script>" not in page


def test_projection_results_are_found_and_drawn(tmp_path):
    torch.manual_seed(0)
    runs = [_run(tmp_path / f"run{i}", torch.nn.Linear(5, 3), steps=6) for i in range(2)]
    res = run_cli("project", *map(str, runs), "-o", str(tmp_path / "art" / "pca"))
    assert res.returncode == 0, res.stderr
    (tmp_path / "art" / "unrelated.json").write_text(json.dumps({"kind": "other"}))
    found = find_results(tmp_path / "art")
    assert [p.name for p in found["projection"]] == ["pca"] and not found["surface"]
    res = run_cli(
        "report",
        *map(str, runs),
        "--artifacts",
        str(tmp_path / "art"),
        "-o",
        str(tmp_path / "report.html"),
        "--json",
    )
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "report.html").read_text()
    assert "Trajectories: PCA" in page and "random-walk null" in page
    assert page.count("<img") >= 3 and "<script src=" not in page  # nothing fetched


def test_directory_without_results_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    run = _run(tmp_path / "run", torch.nn.Linear(3, 2))
    res = run_cli(
        "report", str(run), "--artifacts", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")
    )
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "no results in" in res.stderr
    assert not (tmp_path / "r.html").exists()


def test_runs_of_different_models_are_a_one_line_error(tmp_path):
    a = _run(tmp_path / "a", torch.nn.Linear(3, 2))
    b = _run(tmp_path / "b", torch.nn.Linear(4, 2))
    res = run_cli("report", str(a), str(b), "-o", str(tmp_path / "r.html"))
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "tensor 0 is 'weight' (2, 3)" in res.stderr
    assert not (tmp_path / "r.html").exists()


def test_report_values_match_the_runs(tmp_path):
    run = _run(tmp_path / "run", torch.nn.Linear(3, 2), steps=5)
    build_report([run], tmp_path / "r.html", animations=False)
    traj = ws.Trajectory.load(run)
    arr = traj.array(np.float64)
    path_length = np.linalg.norm(np.diff(arr, axis=0), axis=1).sum()
    assert f"{path_length:.4g}" in (tmp_path / "r.html").read_text()
