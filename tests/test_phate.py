"""Native PHATE: kernel, entropy knee, MDS, trajectories kept intact, agreement with the paper's
reference package."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist
from scipy.stats import spearmanr

import weightspace as ws
from weightspace.projection import distance_matrix, trajectory_preservation
from weightspace.projection.phate import (
    alpha_decay_kernel,
    classical_mds,
    knee_point,
    smacof,
    von_neumann_entropy,
)
from weightspace.testing import write_run


def drifting_walk(t=200, n=2000, drift=0.3, seed=0):
    return np.cumsum(np.random.default_rng(seed).normal(size=(t, n)) + drift, axis=0)


def noisy_helix(t=240, n=200, seed=0):
    rng = np.random.default_rng(seed)
    s = np.linspace(0, 6 * np.pi, t)
    helix = np.stack([np.cos(s), np.sin(s), s / 5], axis=1)
    return helix @ rng.normal(size=(3, n)) + 0.05 * rng.normal(size=(t, n))


def test_knn_bandwidth_uses_the_nearest_points_not_the_farthest():
    pos = np.array([0.0, 1.0, 3.0, 7.0, 15.0, 31.0])  # gaps double: neighbours are unambiguous
    d = np.abs(pos[:, None] - pos[None, :])
    for knn in (1, 2, 3):
        k, bandwidth = alpha_decay_kernel(d, knn=knn, decay=2.0, thresh=0.0)
        expected = np.sort(d + np.diag(np.full(6, np.inf)), axis=1)[:, knn - 1]
        np.testing.assert_array_equal(bandwidth, expected)
    k, bandwidth = alpha_decay_kernel(d, knn=1, decay=2.0, thresh=0.0)
    assert bandwidth[0] == 1.0  # the nearest other point; the farthest is 31 away
    a = np.exp(-((d / bandwidth[:, None]) ** 2))
    np.testing.assert_allclose(k, 0.5 * (a + a.T))
    assert k[0, 1] > k[0, 5]


def test_entropy_and_knee_closed_forms():
    np.testing.assert_allclose(von_neumann_entropy(np.ones(8), 5), np.log(8))
    h = von_neumann_entropy(np.array([1.0, 0.5, 0.5]), 3)
    p = np.array([1.0, 0.25, 0.25]) / 1.5  # t = 2
    assert h[1] == pytest.approx(-(p * np.log(p)).sum())
    curve = np.concatenate([np.linspace(10, 2, 13), np.linspace(2, 1.5, 40)[1:]])
    assert knee_point(curve) == 12


def test_classical_mds_and_smacof_recover_euclidean_configurations():
    y = np.random.default_rng(0).normal(size=(30, 2))
    d = cdist(y, y)
    init = classical_mds(d, 2)
    np.testing.assert_allclose(cdist(init, init), d, atol=1e-10)
    noisy = init + 0.3 * np.random.default_rng(1).normal(size=init.shape)
    fitted, stress = smacof(d, noisy, max_iter=2000, tol=1e-12)
    assert stress < 1e-10
    np.testing.assert_allclose(cdist(fitted, fitted), d, atol=1e-5)


def test_drifting_random_walk_keeps_time_neighbours(tmp_path):
    x = drifting_walk()
    traj = ws.Trajectory.load(write_run(tmp_path / "walk", x.astype(np.float32)))
    ph = ws.PHATE(chunk_size=500)
    emb = ph.fit_transform(traj)
    assert emb.shape == (200, 2)
    assert trajectory_preservation(emb, n_neighbors=5) >= 0.9
    assert 1 <= ph.t_ <= 100 and ph.entropy_.shape == (100,)
    np.testing.assert_allclose(ph.diff_op_.sum(axis=1), 1.0)
    np.testing.assert_array_equal(ph.fit_transform(traj), emb)  # deterministic


def test_noisy_helix_keeps_its_order():
    x = noisy_helix()
    emb = ws.PHATE(n_components=3).fit_transform(x)
    assert trajectory_preservation(emb, n_neighbors=5) >= 0.9
    # along the curve: embedding distance grows with time separation, for nearby times
    i, j = np.triu_indices(len(x), 1)
    near = (j - i) <= 40
    dist = np.linalg.norm(emb[i] - emb[j], axis=1)
    assert spearmanr(j[near] - i[near], dist[near])[0] > 0.8


def test_joint_embedding_of_two_runs(tmp_path):
    a = drifting_walk(t=60, n=300, seed=1)
    b = drifting_walk(t=40, n=300, seed=2)
    trajs = [ws.Trajectory.load(write_run(tmp_path / n, x)) for n, x in (("a", a), ("b", b))]
    ph = ws.PHATE().fit(trajs)
    assert [e.shape for e in ph.embedding_runs_] == [(60, 2), (40, 2)]
    assert ph.labels_ == ["a", "b"]


def test_cosine_distance_is_on_centred_pca_scores():
    x = drifting_walk(t=50, n=400)
    xc = x - x.mean(axis=0)
    np.testing.assert_allclose(
        distance_matrix(x, "cosine", n_pca=None), cdist(xc, xc, "cosine"), atol=1e-10
    )
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    scores = u[:, :5] * s[:5]
    np.testing.assert_allclose(
        distance_matrix(x, "cosine", n_pca=5), cdist(scores, scores, "cosine"), atol=1e-10
    )
    np.testing.assert_allclose(distance_matrix(x, "cosine_raw"), cdist(x, x, "cosine"), atol=1e-10)
    np.testing.assert_allclose(distance_matrix(x, "euclidean", n_pca=None), cdist(x, x), atol=1e-8)


def test_agreement_with_the_reference_package():
    phate = pytest.importorskip("phate")
    x = drifting_walk(t=200, n=1000, seed=3)
    ours = ws.PHATE().fit_transform(x)
    ref = phate.PHATE(knn_dist="cosine", verbose=0, random_state=0, n_jobs=1).fit_transform(x)
    assert spearmanr(pdist(ours), pdist(ref))[0] >= 0.9


def test_phate_bad_input():
    x = drifting_walk(t=20, n=30)
    with pytest.raises(ws.WeightspaceError, match="n_components: expected 2 or 3"):
        ws.PHATE(n_components=4).fit(x)
    with pytest.raises(ws.WeightspaceError, match="knn: expected an integer in 1..19"):
        ws.PHATE(knn=20).fit(x)
    with pytest.raises(ws.WeightspaceError, match="at least 3 snapshots"):
        ws.PHATE().fit(x[:2])
    with pytest.raises(ws.WeightspaceError, match="exceed max_points=10"):
        ws.PHATE(max_points=10).fit(x)
    with pytest.raises(ws.WeightspaceError, match="distance: expected"):
        ws.PHATE(distance="manhattan").fit(x)
    bad = x.copy()
    bad[3, 0] = np.inf
    with pytest.raises(ws.WeightspaceError, match="step 3"):
        ws.PHATE().fit(bad)
