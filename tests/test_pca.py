"""PCA of trajectories: exact streaming Gram route, randomized route, directions, errors."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

import weightspace as ws
from weightspace.projection import gram_matrix
from weightspace.projection import pca as pca_module
from weightspace.projection._randomized import randomized_pca
from weightspace.projection._stream import as_snapshots
from weightspace.projection.pca import fix_signs
from weightspace.testing import write_run


def plane_trajectory(t=30, n=500, seed=0):
    """``c + a_t u + b_t v``: a trajectory in a known plane; returns (x, basis (2, n))."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(n, 2)))[0].T
    coeffs = np.stack([np.linspace(-3, 4, t) ** 2, np.sin(np.linspace(0, 3, t))], axis=1)
    return 5.0 + rng.normal(size=n) + coeffs @ basis, basis


def low_rank(t, n, rank, seed=0, decay=0.6):
    """Data with a geometric spectrum ``decay**i`` of given rank plus an offset."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.normal(size=(t, rank)))[0]
    v = np.linalg.qr(rng.normal(size=(n, rank)))[0]
    return 3.0 + (u * 10 * decay ** np.arange(rank)) @ v.T


def numpy_pca(x, k, centering="mean"):
    """Reference: SVD of the explicitly centred data, signs by ``fix_signs``."""
    xc = x - (x.mean(axis=0) if centering == "mean" else x[-1])
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    signs = fix_signs(u[:, :k])
    return (s[:k] ** 2) / (s**2).sum(), u[:, :k] * s[:k], vt[:k] * signs[:, None]


def test_plane_trajectory_is_spanned_and_round_trips(tmp_path):
    x, basis = plane_trajectory()
    traj = ws.Trajectory.load(write_run(tmp_path / "plane", x))
    for centering in ("mean", "final"):
        pca = ws.PCA(2, centering=centering, chunk_size=37).fit(traj)
        assert np.max(subspace_angles(pca.components_.T, basis.T)) < 1e-8
        np.testing.assert_allclose(pca.explained_variance_ratio_.sum(), 1.0, rtol=1e-12)
        back = pca.inverse_transform(pca.transform(traj))
        np.testing.assert_allclose(back, x, rtol=0, atol=1e-10 * np.abs(x).max())
        center = x.mean(axis=0) if centering == "mean" else x[-1]
        np.testing.assert_allclose(pca.center_, center, rtol=1e-12)


@pytest.mark.parametrize(
    ("t", "n", "rank", "k"),
    [(120, 40, 40, 5), (40, 300, 39, 5), (50, 200, 3, 5)],
    ids=["tall", "wide", "rank-deficient"],
)
def test_exact_randomized_and_numpy_svd_agree(t, n, rank, k):
    x = low_rank(t, n, rank)
    ratios, scores, comps = numpy_pca(x, k)
    live = ratios > 1e-12
    exact = ws.PCA(k, solver="exact", chunk_size=17).fit(x)
    rand = ws.PCA(k, solver="randomized", chunk_size=23, seed=1).fit(x)
    rand2 = ws.PCA(k, solver="randomized", chunk_size=64, seed=torch.Generator().manual_seed(5))
    rand2.fit(x)
    for fit in (exact, rand, rand2):
        np.testing.assert_allclose(fit.explained_variance_ratio_, ratios, rtol=1e-9, atol=1e-13)
        # signs are compared as they come: no alignment
        np.testing.assert_allclose(fit.scores_[:, live], scores[:, live], atol=1e-8)
        np.testing.assert_allclose(fit.components_[live], comps[live], atol=1e-8)
        assert np.all(fit.components_[~live] == 0)
    np.testing.assert_allclose(
        exact.explained_variance_, (scores**2).sum(axis=0) / (t - 1), rtol=1e-9, atol=1e-13
    )


def test_final_centering_matches_svd_of_differences_to_last():
    x = low_rank(30, 80, 10, seed=3)
    ratios, scores, comps = numpy_pca(x, 4, centering="final")
    pca = ws.PCA(4, centering="final").fit(x)
    np.testing.assert_allclose(pca.explained_variance_ratio_, ratios, rtol=1e-10)
    np.testing.assert_allclose(pca.scores_, scores, atol=1e-9)
    np.testing.assert_allclose(pca.scores_[-1], 0.0, atol=1e-9)
    np.testing.assert_allclose(pca.components_, comps, atol=1e-9)


def test_joint_pca_equals_pca_of_concatenation(tmp_path):
    rng = np.random.default_rng(1)
    a = np.cumsum(rng.normal(size=(25, 300)), axis=0)
    b = 2.0 + np.cumsum(rng.normal(size=(15, 300)) + 0.2, axis=0)
    ta = ws.Trajectory.load(write_run(tmp_path / "a", a))
    tb = ws.Trajectory.load(write_run(tmp_path / "b", b, steps=range(0, 150, 10)))
    joint = ws.PCA(6, chunk_size=50).fit([ta, tb])
    concat = ws.PCA(6).fit(np.concatenate([a, b]))
    np.testing.assert_allclose(joint.explained_variance_ratio_, concat.explained_variance_ratio_)
    np.testing.assert_allclose(joint.scores_, concat.scores_, atol=1e-9)
    np.testing.assert_allclose(joint.components_, concat.components_, atol=1e-11)
    np.testing.assert_allclose(joint.transform_runs_[1], concat.scores_[25:], atol=1e-9)
    assert joint.labels_ == ["a", "b"]
    np.testing.assert_array_equal(joint.steps_[1], np.arange(0, 150, 10))
    per_run = joint.transform_runs([ta, tb])
    assert [r.shape for r in per_run] == [(25, 6), (15, 6)]
    np.testing.assert_allclose(per_run[0], joint.transform_runs_[0], atol=1e-9)
    np.testing.assert_allclose(per_run[1], joint.transform_runs_[1], atol=1e-9)
    stacked = joint.transform([ta, tb])  # one (m, k) array, runs stacked in order
    assert isinstance(stacked, np.ndarray) and stacked.shape == (40, 6)
    np.testing.assert_array_equal(stacked, np.concatenate(per_run))
    assert [r.shape for r in joint.transform_runs(tb)] == [(15, 6)]


def test_transform_projects_other_points_on_the_fitted_axes():
    x = low_rank(30, 60, 8, seed=2)
    other = np.random.default_rng(7).normal(size=(5, 60))
    pca = ws.PCA(3).fit(x)
    expected = (other - x.mean(axis=0)) @ pca.components_.T
    np.testing.assert_allclose(pca.transform(other), expected, atol=1e-10)
    point = pca.transform(torch.from_numpy(other[0]))  # a point is one snapshot: (1, k)
    np.testing.assert_allclose(point, expected[:1], atol=1e-10)
    np.testing.assert_allclose(pca.transform(x), pca.scores_, atol=1e-9)
    np.testing.assert_allclose(pca.components_ @ pca.components_.T, np.eye(3), atol=1e-12)
    center, dirs = pca.directions(2, dtype=torch.float64)
    assert dirs.shape == (2, 60) and center.shape == (60,)
    np.testing.assert_allclose(dirs.norm(dim=1).numpy(), 1.0, rtol=1e-12)


def test_exact_fit_takes_its_gram_matrix_from_gram_matrix(monkeypatch):
    x = low_rank(20, 50, 6, seed=6)
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return gram_matrix(*args, **kwargs)

    monkeypatch.setattr(pca_module, "gram_matrix", spy)
    for centering in ("mean", "final"):
        pca = ws.PCA(3, solver="exact", centering=centering, chunk_size=7).fit(x)
        np.testing.assert_array_equal(pca.gram_, gram_matrix(x, center=centering, chunk_size=7))
    assert [c["center"] for c in calls] == ["mean", "final"]
    assert all(c["chunk_size"] == 7 for c in calls)


def test_randomized_solver_stands_alone_on_its_arguments():
    x = low_rank(30, 50, 6, seed=8)
    pca = ws.PCA(3, solver="randomized", centering="final", seed=4, chunk_size=9).fit(x)
    lam, u, total = randomized_pca(
        as_snapshots(x), 3, centering="final", n_oversamples=10, n_iter=4, seed=4, chunk_size=9
    )
    np.testing.assert_allclose(np.maximum(lam, 0.0), pca.singular_values_**2, rtol=1e-14)
    assert total == pytest.approx(pca.total_variance_ * 29, rel=1e-14)
    np.testing.assert_allclose(np.abs(u), np.abs(pca.scores_ / pca.singular_values_), atol=1e-12)


def test_float32_gram_keeps_precision_relative_to_the_spread():
    rng = np.random.default_rng(4)
    walk = np.cumsum(rng.normal(size=(40, 20_000)), axis=0) * 1e-4
    x32 = (1.0 + rng.normal(size=20_000) + walk).astype(np.float32)  # weights ≫ displacement
    exact = gram_matrix(x32.astype(np.float64), center="mean")
    streamed = gram_matrix(x32, center="mean", chunk_size=3000)
    assert np.abs(streamed - exact).max() < 1e-5 * np.abs(exact).max()


def test_streaming_stays_under_the_memory_budget(tmp_path):
    rng = np.random.default_rng(5)
    t, n = 40, 200_000  # 32 MB of float32 snapshots
    walk = np.cumsum(rng.normal(size=(t, n)).astype(np.float32), axis=0)
    traj = ws.Trajectory.load(write_run(tmp_path / "big", walk))
    budget = 2 * 2**20
    reference = ws.PCA(4).fit(walk.astype(np.float64))
    tracemalloc.start()
    try:
        pca = ws.PCA(4, max_bytes=budget).fit(traj)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < budget, f"peak {peak} bytes over the {budget}-byte budget"
    assert peak < walk.nbytes / 10
    np.testing.assert_allclose(
        pca.explained_variance_ratio_, reference.explained_variance_ratio_, rtol=1e-5
    )


def test_auto_solver_switches_to_randomized_for_long_runs(monkeypatch):
    x = low_rank(30, 50, 6)
    monkeypatch.setattr(pca_module, "AUTO_EXACT_MAX_T", 20)
    pca = ws.PCA(3).fit(x)
    assert pca.solver_ == "randomized" and pca.gram_ is None
    np.testing.assert_allclose(pca.explained_variance_ratio_, numpy_pca(x, 3)[0], rtol=1e-9)


def test_default_components_are_twelve_or_fewer():
    assert ws.PCA().fit(low_rank(8, 20, 7)).n_components_ == 7
    assert ws.PCA().fit(low_rank(40, 20, 15)).n_components_ == 12


def _one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_bad_input_one_line_errors(tmp_path, tiny_model):
    with pytest.raises(ws.WeightspaceError, match="at least 2 snapshots") as e:
        ws.PCA(1).fit(np.ones((1, 10)))
    _one_line(e)
    with pytest.raises(ws.WeightspaceError, match="T − 1 = 4") as e:
        ws.PCA(5).fit(low_rank(5, 10, 4))
    _one_line(e)
    with pytest.raises(ws.WeightspaceError, match="n_components"):
        ws.PCA(0).fit(low_rank(5, 10, 4))
    with pytest.raises(ws.WeightspaceError, match="centering"):
        ws.PCA(2, centering="median").fit(low_rank(5, 10, 4))
    with pytest.raises(ws.WeightspaceError, match=r"\(T, n\)"):
        ws.PCA(2).fit(np.ones(10))
    with pytest.raises(ws.WeightspaceError, match="identical"):
        ws.PCA(1).fit(np.ones((4, 10)))


def test_joint_fit_refuses_runs_of_different_models(tmp_path):
    a = write_run(tmp_path / "a", np.zeros((3, 6)), layout=ws.ParamLayout(("w",), ((6,),)))
    b = write_run(tmp_path / "b", np.zeros((3, 6)), layout=ws.ParamLayout(("v",), ((2, 3),)))
    with pytest.raises(ws.LayoutMismatchError, match="same model") as e:
        ws.PCA(2).fit([ws.Trajectory.load(a), ws.Trajectory.load(b)])
    _one_line(e)
    with pytest.raises(ws.WeightspaceError, match="parameters"):
        ws.PCA(2).fit([np.zeros((3, 6)), np.zeros((3, 7))])


def test_nan_snapshot_is_reported_with_its_step(tmp_path):
    x = np.cumsum(np.ones((6, 50), dtype=np.float32), axis=0)
    x[4, 30] = np.nan
    traj = ws.Trajectory.load(write_run(tmp_path / "nan", x, steps=range(0, 60, 10)))
    with pytest.raises(ws.WeightspaceError, match="step 40 of run 'nan'") as e:
        ws.PCA(2, chunk_size=16).fit(traj)
    _one_line(e)
