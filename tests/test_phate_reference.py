"""PHATE's input distances against the reference package, on both sides of its PCA threshold.

The reference (``phate``, through ``graphtools``) runs its PCA step (``n_pca=100``, centred)
only when the data has more than ``n_pca`` samples *and* more than ``n_pca`` features;
otherwise it measures cosine between the raw, uncentred vectors. weightspace's default
``distance="cosine"`` is always on centred PCA scores, so it equals the reference above the
threshold and ``distance="cosine_raw"`` equals it below. The package is a test-time reference
only (it is non-commercially licensed); these tests skip without it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist
from scipy.stats import spearmanr

import weightspace as ws
from weightspace.projection import distance_matrix

phate = pytest.importorskip("phate", reason="the PHATE reference package is not installed")


def offset_tree(t: int, n: int, seed: int = 0) -> np.ndarray:
    """``(t, n)``: a random-walk trunk that splits into two drifting branches, far from the
    origin (like a training run: a large common offset), so raw and centred cosine differ."""
    rng = np.random.default_rng(seed)
    per = t // 3
    trunk = np.cumsum(rng.normal(size=(t - 2 * per, n)), axis=0)
    branches = [
        trunk[-1] + np.cumsum(rng.normal(size=(per, n)) + rng.normal(size=n), axis=0)
        for _ in range(2)
    ]
    x = np.concatenate([trunk, *branches])
    return x + 6 * np.abs(x).max() * rng.normal(size=n) / np.sqrt(n)


def reference_graph(x: np.ndarray):
    """The reference's graph (``fit`` only: no embedding) with cosine distance."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return phate.PHATE(knn_dist="cosine", verbose=0, random_state=0, n_jobs=1).fit(x)


@pytest.mark.parametrize(
    ("t", "n", "reference_pca"),
    [
        (90, 150, False),  # ≤ 100 samples: no PCA, raw cosine
        (130, 60, False),  # ≤ 100 features: no PCA, raw cosine
        (130, 150, True),  # both > 100: cosine between centred scores on 100 components
    ],
)
def test_input_distances_match_the_reference_on_both_sides_of_its_pca_threshold(
    t, n, reference_pca
):
    x = offset_tree(t, n)
    ref = reference_graph(x)
    used = np.asarray(ref.graph.data_nu)  # what the reference measures distances between
    assert used.shape == ((t, 100) if reference_pca else (t, n))
    d_ref = cdist(used, used, "cosine")
    raw = distance_matrix(x, "cosine_raw")
    centred = distance_matrix(x, "cosine")  # the default: centred PCA scores, n_pca=100
    # independent forms of the two weightspace distances
    np.testing.assert_allclose(raw, cdist(x, x, "cosine"), atol=1e-10)
    same, other = (centred, raw) if reference_pca else (raw, centred)
    # randomized PCA in the reference: its top-100 subspace is close, not exact
    np.testing.assert_allclose(same, d_ref, atol=1e-4 if reference_pca else 1e-10)
    assert np.abs(other - d_ref).max() > 0.1  # the other choice is a different distance


def test_embedding_below_the_threshold_follows_cosine_raw():
    x = offset_tree(90, 150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = reference_graph(x).transform()
    ours = ws.PHATE(distance="cosine_raw").fit_transform(x)
    assert spearmanr(pdist(ours), pdist(ref))[0] >= 0.95
