"""Weight-space metrics against paths with known geometry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import weightspace as ws
from weightspace.analysis import (
    cosine_similarities,
    endpoint_matrices,
    monotonicity,
    oscillations,
    pairwise_distances,
    path_metrics,
    variance_explained,
)
from weightspace.testing import write_run


def test_path_metrics_of_a_right_angle_path(tmp_path):
    # 0 → (3,0) → (3,4) in two unit-speed legs, plus a constant offset in other coordinates
    pts = np.array([[0, 0], [1, 0], [2, 0], [3, 0], [3, 1], [3, 2], [3, 3], [3, 4]], float)
    x = np.hstack([pts, np.full((8, 4), 2.0)])
    layout = ws.ParamLayout(("a", "b"), ((3,), (3,)), "float64")
    traj = ws.Trajectory.load(write_run(tmp_path / "path", x, layout=layout))
    m = path_metrics(traj, chunk_size=2)  # chunks straddle the two tensors
    np.testing.assert_allclose(m.step_lengths, 1.0)
    assert m.path_length == pytest.approx(7.0)
    assert m.displacement == pytest.approx(5.0)
    assert m.straightness == pytest.approx(5.0 / 7.0)
    np.testing.assert_allclose(m.update_cosines, [1, 1, 0, 1, 1, 1])
    np.testing.assert_allclose(m.norm, np.linalg.norm(x, axis=1))
    np.testing.assert_allclose(m.distance_from_init, np.linalg.norm(x - x[0], axis=1))
    np.testing.assert_allclose(m.distance_to_final, np.linalg.norm(x - x[-1], axis=1))
    np.testing.assert_allclose(m.layer_norms[:, 0], np.linalg.norm(x[:, :3], axis=1))
    np.testing.assert_allclose(m.layer_norms[:, 1], np.linalg.norm(x[:, 3:], axis=1))
    assert m.layer_names == ("a", "b")


def test_zero_step_gives_nan_cosine_and_no_layout_for_arrays():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    m = path_metrics(x)
    assert np.isnan(m.update_cosines).all()
    assert m.layer_norms is None
    with pytest.raises(ws.WeightspaceError, match="one run"):
        path_metrics([x, x])


def test_distance_and_cosine_matrices_match_numpy():
    rng = np.random.default_rng(0)
    x = 10.0 + rng.normal(size=(12, 40))
    np.testing.assert_allclose(pairwise_distances(x, chunk_size=7), cdist(x, x), atol=1e-9)
    np.testing.assert_allclose(cosine_similarities(x), 1 - cdist(x, x, metric="cosine"), atol=1e-12)
    d = x - x[0]
    cos = d @ d.T / np.outer(np.linalg.norm(d, axis=1), np.linalg.norm(d, axis=1)).clip(1e-300)
    cos[0, :] = cos[:, 0] = 0.0  # the first point is the origin of the displacements
    np.testing.assert_allclose(cosine_similarities(x, relative_to="init"), cos, atol=1e-9)


def test_endpoint_matrices_of_three_runs(tmp_path):
    rng = np.random.default_rng(1)
    runs = [rng.normal(size=(t, 30)) for t in (5, 7, 4)]
    trajs = [ws.Trajectory.load(write_run(tmp_path / f"r{i}", r)) for i, r in enumerate(runs)]
    em = endpoint_matrices(trajs)
    finals = np.array([r[-1] for r in runs])
    disp = np.array([r[-1] - r[0] for r in runs])
    np.testing.assert_allclose(em.distances, cdist(finals, finals), atol=1e-10)
    np.testing.assert_allclose(em.cosines, 1 - cdist(finals, finals, "cosine"), atol=1e-10)
    np.testing.assert_allclose(em.displacement_cosines, 1 - cdist(disp, disp, "cosine"), atol=1e-10)
    inits = np.array([r[0] for r in runs])
    np.testing.assert_allclose(em.init_distances, cdist(inits, inits), atol=1e-10)
    assert em.labels == ("r0", "r1", "r2")
    with pytest.raises(ws.WeightspaceError, match="at least 2 runs"):
        endpoint_matrices(trajs[:1])


def test_variance_explained_is_cumulative():
    x = np.random.default_rng(2).normal(size=(20, 50))
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2
    np.testing.assert_allclose(variance_explained(x, 4), np.cumsum(s[:4]) / s.sum(), rtol=1e-10)
    with pytest.raises(ws.WeightspaceError, match="k: expected"):
        variance_explained(x, 20)


def test_monotonicity():
    t = np.arange(50.0)
    assert monotonicity(t**2) == pytest.approx(1.0)
    assert monotonicity(-np.exp(t / 10)) == pytest.approx(-1.0)
    assert abs(monotonicity(np.cos(2 * np.pi * (t + 0.5) / 50))) < 0.1


def test_oscillations_recover_frequency_phase_and_figures():
    t = 200
    tt = (np.arange(t) + 0.5) / t
    scores = np.stack(
        [
            np.cos(2 * np.pi * 3 * tt + 0.7),
            np.sin(2 * np.pi * 3 * tt + 0.7),  # quarter period behind: a circle with PC1
            np.cos(2 * np.pi * 4.5 * tt - 1.0),  # 2:3 with PC1: a Lissajous figure
            np.linspace(0, 1, t) ** 3,  # a trend, no oscillation
        ],
        axis=1,
    )
    osc = oscillations(scores)
    np.testing.assert_allclose(osc.frequency[:3], [3, 3, 4.5])
    np.testing.assert_allclose(osc.phase[:3], [0.7, 0.7 - np.pi / 2, -1.0], atol=1e-9)
    np.testing.assert_allclose(osc.share[:3], 1.0, atol=1e-9)
    pairs = {tuple(p): (tuple(r), c) for p, r, c in zip(osc.pairs, osc.pair_ratio, osc.circles)}
    assert pairs[(0, 1)] == ((1, 1), True)
    assert pairs[(0, 2)] == ((2, 3), False)
    assert not any(3 in p for p in pairs)


def test_random_walk_scores_oscillate_at_half_integers():
    walk = np.cumsum(np.random.default_rng(3).normal(size=(150, 5000)), axis=0)
    osc = oscillations(ws.PCA(3).fit_transform(walk))
    np.testing.assert_allclose(osc.frequency, [0.5, 1.0, 1.5])
    assert [1, 2] in osc.pair_ratio.tolist()
