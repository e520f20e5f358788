"""``weightspace project``: artifacts a report can draw, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import weightspace as ws
from weightspace.cli import main
from weightspace.testing import write_run


@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    layout = ws.ParamLayout(("w", "b"), ((20, 10), (10,)), "float32")
    walk = np.cumsum(rng.normal(size=(30, 210)), axis=0).astype(np.float32)
    line = (np.outer(np.arange(20.0), rng.normal(size=210)) + 1.0).astype(np.float32)
    a = write_run(tmp_path / "walk", walk, layout=layout, metadata={"label": "random walk"})
    b = write_run(tmp_path / "line", line, layout=layout, steps=range(0, 200, 10))
    with open(b / "metrics.jsonl", "w") as f:
        for s in range(0, 200, 10):
            f.write(json.dumps({"step": s, "loss": 1.0 / (s + 1)}) + "\n")
    return a, b, walk, line


def test_pca_artifacts(tmp_path, two_runs, capsys):
    a, b, walk, line = two_runs
    out = tmp_path / "out" / "pca"
    assert main(["project", str(a), str(b), "--components", "4", "-o", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    proj = ws.load(out, "projection")
    assert proj.method == "pca" and proj.labels == ["random walk", "line"]
    joint = ws.PCA(4).fit(np.concatenate([walk, line]).astype(np.float64))
    np.testing.assert_allclose(proj.runs[0].coords, joint.scores_[:30], atol=1e-3)
    np.testing.assert_allclose(proj.runs[1].coords, joint.scores_[30:], atol=1e-3)
    np.testing.assert_allclose(
        proj.explained_variance_ratio, joint.explained_variance_ratio_, atol=1e-6
    )
    np.testing.assert_array_equal(proj.runs[1].steps, np.arange(0, 200, 10))
    np.testing.assert_allclose(proj.runs[1].metrics["loss"], 1.0 / (np.arange(0, 200, 10) + 1))
    # each run's own PCA against its own null
    own = ws.PCA(4).fit(walk.astype(np.float64))
    walk_null, line_null = proj.runs[0].null, proj.runs[1].null
    np.testing.assert_allclose(walk_null.ratios, own.explained_variance_ratio_, atol=1e-6)
    np.testing.assert_allclose(walk_null.null_ratios, ws.random_walk_null(30, 4).ratios)
    np.testing.assert_allclose(line_null.null_ratios, ws.random_walk_null(20, 4).ratios)
    assert line_null.ratios[0] == pytest.approx(1.0, abs=1e-6)
    line_info = payload["summary"]["runs"][1]
    assert line_info["straightness"] == pytest.approx(1.0, rel=1e-5)
    assert line_info["verdict"].startswith("distinguishable")
    assert proj.runs[0].paths.layer_norms.shape == (30, 2)
    assert payload["artifacts"]["projection"] == str(out) + ".npz"
    assert [r["label"] for r in payload["summary"]["runs"]] == ["random walk", "line"]


def test_phate_and_tsne_artifacts(tmp_path, two_runs, capsys):
    a, b, *_ = two_runs
    for method in ("phate", "tsne"):
        out = tmp_path / method
        extra = ["--perplexity", "10"] if method == "tsne" else []
        assert main(["project", str(a), str(b), "--method", method, "-o", str(out), *extra]) == 0
        proj = ws.load(out)
        assert proj.runs[0].coords.shape == (30, 2) and proj.runs[1].coords.shape == (20, 2)
        assert 0.0 <= proj.metadata["trajectory_preservation"] <= 1.0
        assert len(proj.runs) == 2
    assert "phate of 2 run(s)" in capsys.readouterr().out


def test_save_components_gives_unit_directions(tmp_path, two_runs):
    a, *_ = two_runs
    out = tmp_path / "dirs"
    args = [str(a), "--components", "2", "--centering", "final", "--save-components"]
    assert main(["project", *args, "-o", str(out)]) == 0
    proj = ws.load(out)
    assert proj.components.shape == (2, 210)
    np.testing.assert_allclose(np.linalg.norm(proj.components, axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(proj.center, ws.Trajectory.load(a).snapshot(-1), rtol=1e-6)
    assert proj.metadata["centering"] == "final"


def test_errors_are_one_line_with_exit_code_1(tmp_path, two_runs, capsys):
    a, *_ = two_runs
    other = write_run(tmp_path / "other", np.zeros((5, 7), np.float32))
    cases = [
        ([str(a), str(other), "-o", str(tmp_path / "x")], "same model"),
        ([str(a), "--components", "40", "-o", str(tmp_path / "x")], "T − 1 = 29"),
        ([str(tmp_path / "missing"), "-o", str(tmp_path / "x")], "does not exist"),
    ]
    for args, expected in cases:
        assert main(["project", *args]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "x.npz").exists()
