"""The paper-reproduction examples run in quick mode and their checks hold.

Each example runs as its own ``__main__`` in this process (the interpreter and torch are
already loaded, so a test costs the example's work only), and the numbers behind each paper's
check are recomputed here, independently of the example, from the runs it recorded.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import weightspace as ws
from _util import run_script

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, out: Path) -> dict:
    """Run ``examples/NAME.py --quick --out OUT`` (in this process) and return its summary."""
    stdout = run_script(EXAMPLES / f"{name}.py", "--quick", "--out", str(out))
    assert "paper:" in stdout and "measured:" in stdout
    return json.loads((out / "summary.json").read_text())


def leaves(x, where=""):
    """Every (path, value) at the leaves of a nested dict/list."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield from leaves(v, f"{where}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, f"{where}[{i}]")
    else:
        yield where, x


def check_outputs(out: Path, summary: dict, figures: list[str], tables: list[str]) -> None:
    for name in figures:
        png = out / f"{name}.png"
        assert png.stat().st_size > 1000, png
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in tables:
        md = (out / f"{name}.md").read_text()
        csv = (out / f"{name}.csv").read_text().splitlines()
        assert md.count("\n") >= 3 and len(csv) >= 2
    for where, v in leaves(summary):
        assert isinstance(v, (bool, int, float)), f"summary{where} = {v!r}"
        assert isinstance(v, bool) or math.isfinite(v), f"summary{where} = {v!r}"
    assert not list(out.rglob(".*.tmp")), "a temporary file was left behind"


def turning_angles(xy: np.ndarray) -> np.ndarray:
    v = np.diff(xy, axis=0)
    cos = np.sum(v[:-1] * v[1:], axis=1) / np.linalg.norm(v[:-1], axis=1)
    cos /= np.linalg.norm(v[1:], axis=1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_lorch_momentum(tmp_path):
    out = tmp_path / "lorch"
    s = run_example("lorch_momentum", out)
    check_outputs(out, s, ["lorch_pc_pairs", "lorch_parametric_3d"], ["lorch_table"])
    angles = s["check"]["mean_turn_pc12_deg"]
    assert s["check"]["holds"] is True
    assert angles[0] > angles[1] > angles[2]  # smoother with more momentum
    # the angles again, from the recorded runs, by a plain SVD of all snapshots (one PCA)
    runs = [ws.Trajectory.load(out / "runs" / f"sgd-m{m}") for m in s["check"]["momenta"]]
    runs.append(ws.Trajectory.load(out / "runs" / "adam"))
    x = np.concatenate([t.array(np.float64) for t in runs])
    u, sv, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    scores = np.split(u[:, :2] * sv[:2], np.cumsum([len(t) for t in runs])[:-1])
    mine = [turning_angles(sc).mean() for sc in scores[:3]]
    # float32 snapshots: the library centres them in float32, this SVD in float64
    np.testing.assert_allclose(mine, angles, rtol=5e-3)
    np.testing.assert_allclose(
        s["joint_explained_variance_ratio"][:2], sv[:2] ** 2 / np.sum(sv**2), rtol=1e-6
    )


def final_loss(theta: np.ndarray) -> float:
    """Mean cross-entropy of the digits MLP at ``theta`` on the training split, in float64."""
    problem = ws.zoo.problem("digits-mlp")
    model = problem.model.double()
    layout = ws.ParamLayout.from_module(model)
    params = layout.unflatten(torch.from_numpy(theta))
    x, y = problem.data
    with torch.no_grad():
        logits = torch.func.functional_call(model, params, (x.double(),))
        return float(torch.nn.functional.cross_entropy(logits, y))


def test_lipton_paths(tmp_path):
    out = tmp_path / "lipton"
    s = run_example("lipton_paths", out)
    check_outputs(
        out,
        s,
        ["lipton_distances", "lipton_pcs", "lipton_endpoint_distances"],
        ["lipton_runs", "lipton_endpoint_distances", "lipton_same_init_pairs"],
    )
    names = ["reference", "init-1", "init-2", "order-1", "order-2", "clone-1", "clone-2"]
    finals = np.stack([ws.Trajectory.load(out / "runs" / n).array(np.float64)[-1] for n in names])
    dist = np.linalg.norm(finals[:, None] - finals[None], axis=-1)
    # float32 snapshots: the library's Gram route streams float32 blocks, this is float64
    np.testing.assert_allclose(s["final_distances"], dist, rtol=1e-4)
    losses = [final_loss(th) for th in finals]
    np.testing.assert_allclose(s["final_loss"], losses, rtol=1e-6)
    # the criterion, recomputed: d >= factor * sqrt(2 |ΔL| / λ_max) for every pair of runs
    # from the same initialisation (reference, order-1, order-2)
    check = s["check"]
    same = [0, 3, 4]
    assert [(p["i"], p["j"]) for p in check["pairs"]] == list(itertools.combinations(same, 2))
    ratios = []
    for p in check["pairs"]:
        i, j = p["i"], p["j"]
        assert p["distance"] == pytest.approx(dist[i, j], rel=1e-4)
        assert p["loss_difference"] == pytest.approx(abs(losses[i] - losses[j]), abs=1e-7)
        assert p["lambda_max"] > 0
        ratios.append(dist[i, j] / math.sqrt(2 * abs(losses[i] - losses[j]) / p["lambda_max"]))
    assert min(ratios) == pytest.approx(check["min_ratio"], rel=1e-3)
    assert check["holds"] is True
    assert min(ratios) >= check["factor"] == 3.0


def test_li_landscape(tmp_path):
    meshio = pytest.importorskip("meshio")
    out = tmp_path / "li"
    s = run_example("li_landscape", out)
    check_outputs(
        out, s, ["li_contours", "li_mesh_3d", "li_contour_mesh_pca", "li_lines"], ["li_table"]
    )
    n = s["grid"]
    for plane in ("random", "pca"):
        mesh = meshio.read(out / f"li_{plane}.ply")
        assert mesh.points.shape == (n * n, 3)
        loss = mesh.point_data["loss"]
        p = s["planes"][plane]
        assert loss.min() == pytest.approx(p["loss min"]) and loss.max() == pytest.approx(
            p["loss max"]
        )
        assert meshio.read(out / f"li_{plane}.vtk").points.shape[0] > n * n  # grid + path
        assert 0 <= p["mean off-plane residual"] <= p["max off-plane residual"] <= 1
    # the path lies closer to its PCA plane than to a random plane (Li et al.)
    pca, rnd = s["planes"]["pca"], s["planes"]["random"]
    assert s["check"]["holds"] is (pca["mean off-plane residual"] < rnd["mean off-plane residual"])
    assert s["check"]["holds"] is True
    assert rnd["mean off-plane residual"] > 0.9  # random directions miss the path


def test_gradvis_hessian(tmp_path):
    out = tmp_path / "gradvis"
    s = run_example("gradvis_hessian", out)
    figures = [
        "gradvis_planes",
        "gradvis_spectra_training",
        "gradvis_top_eigenvalues",
        "gradvis_spectra_interpolation",
        "gradvis_interpolation",
    ]
    check_outputs(out, s, figures, ["gradvis_planes", "gradvis_table", "gradvis_minima"])
    # λ_max at A's minimum computed twice (last checkpoint; α = 0 of the line) agrees
    assert s["lambda_max_training"][-1] == pytest.approx(s["lambda_max_interpolation"][0], 1e-6)
    # the barrier, recomputed from the line: max over [0, 1] of the loss above the chord
    a, v = np.array(s["interpolation"]["alphas"]), np.array(s["interpolation"]["loss"])
    i0, i1 = np.flatnonzero(np.isclose(a, 0))[0], np.flatnonzero(np.isclose(a, 1))[0]
    chord = v[i0] + (a[i0 : i1 + 1] - 0) * (v[i1] - v[i0])
    assert s["barrier"] == pytest.approx(float(np.max(v[i0 : i1 + 1] - chord)), rel=1e-9)
    assert s["barrier"] > 0  # minima from two initialisations: a barrier between them
    ranges = s["check"]["loss_range"]
    assert s["check"]["eigen_plane_steepest"] is (ranges[0] > max(ranges[1:]))
    assert s["check"]["eigen_plane_steepest"] is True
