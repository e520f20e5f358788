"""Curvature along a recorded run and between two points, against closed forms.

The model is ``L(w) = ½ wᵀAw + Σ w_i⁴/12`` with Hessian ``A + diag(w²)``: with ``A = 0`` its
eigenpairs are ``(w_i², e_i)``, and with any ``A`` the difference of the Hessians at two
points is diagonal, so Hutchinson estimates with common random numbers differ by exactly
``Σ Δ(w²)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import weightspace as ws
from weightspace.curvature import (
    CurvatureSettings,
    curvature_along,
    curvature_at,
    curvature_between,
)
from weightspace.errors import LayoutMismatchError, WeightspaceError

F64 = torch.float64


class Quartic(nn.Module):
    def __init__(self, n: int, A: torch.Tensor | None = None) -> None:
        super().__init__()
        self.A = torch.zeros(n, n, dtype=F64) if A is None else A
        self.w = nn.Parameter(torch.zeros(n, dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.w
        return (0.5 * w @ self.A @ w + (w**4).sum() / 12) + 0 * x.sum(1)


def objective(model: nn.Module) -> ws.Objective:
    data = (torch.zeros(4, 1, dtype=F64), torch.zeros(4))
    return ws.Objective(ws.Problem(model, lambda out, t: out.mean(), data))


def record(path, model: Quartic, points, metadata=None):
    with ws.Recorder(model, path, every=1, dtype="float64", metadata=metadata or {}) as rec:
        for step, w in enumerate(points):
            with torch.no_grad():
                model.w.copy_(torch.as_tensor(w, dtype=F64))
            rec.record(step, loss=0.0)
    return ws.Trajectory.load(path)


POINTS = [
    [3.0, 2.0, 1.0, 0.5, 0.2, 0.1],  # top-2 axes {e0, e1}
    [3.0, 2.5, 1.0, 0.5, 0.2, 0.1],  # {e0, e1}: overlap 1
    [1.0, 2.0, 3.0, 0.5, 0.2, 0.1],  # {e2, e1}: overlap 1/2
    [0.1, 0.2, 0.5, 1.0, 2.0, 3.0],  # {e5, e4}: overlap 0
]


def test_top_k_overlap_and_edge_of_stability_along_a_run(tmp_path):
    model = Quartic(6)
    traj = record(tmp_path / "run", model, POINTS, {"lr": 0.1, "optimizer": "sgd"})
    out = curvature_along(objective(model), traj, top_k=2, trace_probes=3, density=True, n_steps=6)
    np.testing.assert_array_equal(out.positions, [0, 1, 2, 3])
    expected = np.sort(np.square(POINTS), axis=1)[:, ::-1][:, :2]
    np.testing.assert_allclose(out.eigenvalues, expected, atol=1e-10)
    np.testing.assert_allclose(out.overlap, [1.0, 0.5, 0.0], atol=1e-10)
    np.testing.assert_allclose(out.trace, np.square(POINTS).sum(1), atol=1e-10)  # diagonal
    np.testing.assert_allclose(out.lambda_max_lr, 0.1 * expected[:, 0], atol=1e-10)
    assert out.stability_threshold == 2.0
    # densities share one grid, each with its own σ (1 % of its own node range, at least two
    # grid steps); each mean is tr/n exactly (diagonal, Rademacher)
    assert len({id(d.grid) for d in out.densities}) == 1 or all(
        np.array_equal(d.grid, out.densities[0].grid) for d in out.densities
    )
    step = out.densities[0].grid[1] - out.densities[0].grid[0]
    for d in out.densities:
        live = d.nodes[d.weights > 0]
        assert d.sigma == pytest.approx(max(0.01 * (live.max() - live.min()), 2 * step))
    assert out.metadata["sigma"] == [d.sigma for d in out.densities]
    assert len({d.sigma for d in out.densities}) > 1  # the points' ranges differ
    for d, w in zip(out.densities, POINTS):
        assert d.mean == pytest.approx(np.square(w).mean(), abs=1e-10)
    assert out.eigenvectors.shape == (2, 6)
    assert np.stack([d.density for d in out.densities]).shape == (4, 1000)
    assert np.stack([d.nodes for d in out.densities]).shape == (4, 10, 6)


def test_momentum_raises_the_stability_threshold(tmp_path):
    model = Quartic(6)
    meta = {"lr": 0.05, "optimizer": "sgd", "momentum": 0.9}
    traj = record(tmp_path / "run", model, POINTS[:2], meta)
    out = curvature_along(objective(model), traj, top_k=1)
    assert out.stability_threshold == pytest.approx(3.8)
    np.testing.assert_allclose(out.lambda_max_lr, [0.45, 0.45], atol=1e-10)


def test_common_random_numbers_make_trace_differences_exact(tmp_path):
    g = torch.Generator().manual_seed(0)
    B = torch.randn(6, 6, generator=g, dtype=F64)
    model = Quartic(6, 0.5 * (B + B.T))
    points = [POINTS[0], POINTS[0], POINTS[2]]
    traj = record(tmp_path / "run", model, points)
    obj = objective(model)
    out = curvature_along(obj, traj, top_k=0, trace_probes=5, density=True, n_probes=3, n_steps=4)
    assert out.trace_stderr[0] > 0.1  # each estimate is noisy (A is not diagonal) ...
    assert out.trace[0] == out.trace[1]  # ... the same point gives the same numbers
    np.testing.assert_array_equal(out.densities[0].density, out.densities[1].density)
    exact_diff = np.square(points[2]).sum() - np.square(points[0]).sum()
    assert out.trace[2] - out.trace[0] == pytest.approx(exact_diff, abs=1e-10)
    assert out.lambda_max_lr is None and out.metadata["common_random_numbers"]


def test_every_k_keeps_the_last_snapshot(tmp_path):
    model = Quartic(6)
    traj = record(tmp_path / "run", model, POINTS)
    out = curvature_along(objective(model), traj, every=2, top_k=1)
    np.testing.assert_array_equal(out.positions, [0, 2, 3])


def test_between_two_points_on_the_line():
    model = Quartic(6)
    a = torch.tensor(POINTS[0], dtype=F64)
    b = torch.tensor(POINTS[3], dtype=F64)
    out = curvature_between(objective(model), a, b, 5, top_k=2, which="both")
    alphas = np.linspace(0, 1, 5)
    np.testing.assert_allclose(out.positions, alphas)
    for i, al in enumerate(alphas):
        lam = np.sort(((1 - al) * a + al * b).numpy() ** 2)
        np.testing.assert_allclose(
            out.eigenvalues[i], [lam[-1], lam[-2], lam[0], lam[1]], atol=1e-10
        )
    np.testing.assert_allclose(
        out.loss, [(((1 - al) * a + al * b) ** 4).sum() / 12 for al in alphas]
    )
    assert out.axis == "alpha" and out.metadata["distance"] == pytest.approx(float((b - a).norm()))


def test_a_run_of_another_model_is_a_layout_mismatch(tmp_path):
    traj = record(tmp_path / "run", Quartic(6), POINTS[:1])
    with pytest.raises(LayoutMismatchError):
        curvature_along(objective(Quartic(5)), traj, top_k=1)


def test_settings_are_checked_before_the_first_point(tmp_path):
    model = Quartic(6)
    traj = record(tmp_path / "run", model, POINTS[:1])
    with pytest.raises(WeightspaceError, match=r"top_k: expected 0 <= k < n=6"):
        curvature_along(objective(model), traj, top_k=6)
    with pytest.raises(WeightspaceError, match=r"n_steps: expected 1..6"):
        curvature_along(objective(model), traj, top_k=1, density=True, n_steps=7)
    with pytest.raises(WeightspaceError, match="nothing to compute"):
        curvature_along(objective(model), traj, top_k=0)


def test_a_non_finite_point_names_its_step(tmp_path):
    model = Quartic(6)
    traj = record(tmp_path / "run", model, [POINTS[0], [float("inf"), *POINTS[0][1:]]])
    with pytest.raises(WeightspaceError, match=r"^at step 1: theta: the loss is (inf|nan)"):
        curvature_along(objective(model), traj, top_k=1)


def test_every_keyword_of_curvature_at_overrides_a_settings_object():
    model = Quartic(6)
    obj = objective(model)
    points = [
        (0, torch.tensor(POINTS[0], dtype=F64)),  # (position, theta)
        (1, torch.tensor(POINTS[2], dtype=F64), obj),  # (position, theta, objective)
    ]
    keywords = {
        "top_k": 2, "trace_probes": 3, "density": True, "n_probes": 2, "n_steps": 6,
        "sigma": 0.1, "grid_points": 50, "seed": 1, "tol": 1e-9, "block_size": 1,
        "dtype": F64, "include": None, "method": "auto", "split": "auto",
    }  # fmt: skip
    run = {"lr": 0.1, "momentum": 0.0, "optimizer": None, "n_points": 2, "progress": False}
    out = curvature_at(obj, points, **keywords, **run)
    settings = CurvatureSettings(**keywords)
    same = curvature_at(obj, iter(points), settings, lr=0.1)
    half = curvature_at(obj, points, CurvatureSettings(top_k=5, density=True), **keywords)
    expected = np.sort(np.square([POINTS[0], POINTS[2]]), axis=1)[:, ::-1][:, :2]
    for result in (out, same, half):
        np.testing.assert_allclose(result.eigenvalues, expected, atol=1e-9)
        np.testing.assert_array_equal(result.trace, out.trace)
        np.testing.assert_array_equal(result.densities[1].density, out.densities[1].density)
    assert out.densities[0].grid.shape == (50,) and out.metadata["sigma"] == 0.1
    np.testing.assert_allclose(out.lambda_max_lr, 0.1 * expected[:, 0], atol=1e-9)
    # "auto" lets plan_hessian decide at each point; its decisions are recorded
    assert settings.n_products() == 21 + 2 + 3 + 12
    assert out.metadata["hvp_plans"] == [{"route": "double-backward", "block": None}] * 2
    plan = out.metadata["hvp_plan"]
    assert plan["method"] == "auto" and plan["n_products"] == settings.n_products()
    forward = curvature_at(obj, points, settings, method="forward")
    assert [p["route"] for p in forward.metadata["hvp_plans"]] == ["forward", "forward"]
    np.testing.assert_allclose(forward.eigenvalues, expected, atol=1e-9)


def test_settings_are_frozen_and_unknown_keywords_are_one_line_errors():
    obj = objective(Quartic(6))
    points = [(0, torch.tensor(POINTS[0], dtype=F64))]
    settings = CurvatureSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.top_k = 3
    with pytest.raises(WeightspaceError, match=r"^topk: not a curvature setting") as e:
        curvature_at(obj, points, topk=2)
    assert "\n" not in str(e.value)
    with pytest.raises(WeightspaceError, match=r"^settings: expected a CurvatureSettings"):
        curvature_at(obj, points, {"top_k": 2})
    with pytest.raises(WeightspaceError, match=r"split='nothing\.\*' matched none"):
        curvature_at(obj, points, top_k=1, split="nothing.*")
    with pytest.raises(WeightspaceError, match=r"method: expected one of 'auto'"):
        curvature_at(obj, points, top_k=1, method="fast")
