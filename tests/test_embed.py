"""t-SNE/UMAP wrappers and the trajectory-preservation score."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import weightspace as ws
from weightspace.projection import trajectory_preservation, trustworthiness


def test_preservation_of_a_path_and_of_a_shuffled_path():
    t = 100
    line = np.stack([np.arange(t, dtype=float), np.zeros(t)], axis=1)
    assert trajectory_preservation(line, n_neighbors=4) == 1.0
    shuffled = line[np.random.default_rng(0).permutation(t)]
    assert trajectory_preservation(shuffled, n_neighbors=4) < 0.2
    # window 1 with 2 neighbours: interior points keep both, the two ends keep one of two
    assert trajectory_preservation(line, n_neighbors=2, window=1) == pytest.approx(
        (2 * (t - 2) + 2) / (2 * t)
    )


def test_preservation_counts_only_the_same_run():
    a = np.stack([np.arange(10.0), np.zeros(10)], axis=1)
    b = a + np.array([0.0, 1e-3])  # a second run lying on top of the first
    both = np.concatenate([a, b])
    assert trajectory_preservation(both, n_neighbors=1, runs=[10, 10]) == 0.0
    assert trajectory_preservation(both[:10], n_neighbors=1) == 1.0
    with pytest.raises(ws.WeightspaceError, match="sum"):
        trajectory_preservation(both, runs=[10, 5])


def test_trustworthiness_of_an_isometry_is_one():
    x = np.random.default_rng(1).normal(size=(40, 2))
    rotation = np.array([[0.6, -0.8], [0.8, 0.6]])
    assert trustworthiness(cdist(x, x), x @ rotation, n_neighbors=5) == pytest.approx(1.0)


def test_tsne_is_seeded_and_split_by_run():
    rng = np.random.default_rng(2)
    a = np.cumsum(rng.normal(size=(40, 100)) + 0.5, axis=0)
    b = np.cumsum(rng.normal(size=(30, 100)) - 0.5, axis=0)
    tsne = ws.TSNE(perplexity=10, seed=3).fit([a, b])
    assert [e.shape for e in tsne.embedding_runs_] == [(40, 2), (30, 2)]
    again = ws.TSNE(perplexity=10, seed=3).fit_transform([a, b])
    np.testing.assert_allclose(again, tsne.embedding_)
    score = trajectory_preservation(tsne.embedding_, runs=tsne.run_lengths_)
    assert 0.0 <= score <= 1.0
    with pytest.raises(ws.WeightspaceError, match="perplexity"):
        ws.TSNE(perplexity=80).fit(a)


def test_umap_missing_dependency_names_the_pip_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError
    with pytest.raises(ws.WeightspaceError, match="pip install umap-learn"):
        ws.UMAP().fit(np.random.default_rng(0).normal(size=(20, 5)))


@pytest.mark.slow
def test_umap_embeds_a_walk():
    pytest.importorskip("umap")
    x = np.cumsum(np.random.default_rng(4).normal(size=(60, 50)) + 0.5, axis=0)
    umap_fit = ws.UMAP(n_neighbors=10, seed=0).fit(x)
    assert umap_fit.embedding_.shape == (60, 2)
    assert np.isfinite(umap_fit.embedding_).all()
    assert trajectory_preservation(umap_fit.embedding_) > 0.3
