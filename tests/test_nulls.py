"""The random-walk null (Antognini & Sohl-Dickstein 2018) against closed forms and walks."""

from __future__ import annotations

import numpy as np
import pytest

import weightspace as ws
from weightspace.analysis import path_metrics


def expected_gram(t, steps=None):
    """``J L S² Lᵀ J``: the expected centred Gram matrix of a walk, built independently."""
    s = np.ones(t - 1) if steps is None else steps
    increments = np.diag(s**2)
    cumsum = np.zeros((t, t - 1))
    for i in range(t):
        cumsum[i, :i] = 1.0
    j = np.eye(t) - 1.0 / t
    return j @ cumsum @ increments @ cumsum.T @ j


def test_closed_form_is_the_expected_gram_spectrum():
    t = 50
    lam = np.linalg.eigvalsh(expected_gram(t))[::-1][: t - 1]
    null = ws.random_walk_null(t)
    np.testing.assert_allclose(null.ratios, lam / lam.sum(), rtol=1e-10)
    np.testing.assert_allclose(null.ratios.sum(), 1.0, rtol=1e-12)
    big = ws.random_walk_null(100_000, 4).ratios
    np.testing.assert_allclose(big, 6 / (np.pi**2 * np.arange(1, 5) ** 2), rtol=1e-6)
    tt = np.arange(1, t + 1)
    for k in (1, 2, 5):
        cosine = np.cos(np.pi * k * (tt - 0.5) / t)
        assert abs(np.corrcoef(null.curves[:, k - 1], cosine)[0, 1]) > 1 - 1e-12


def test_random_walk_matches_the_null():
    gen = np.random.default_rng(0)
    walk = np.cumsum(gen.normal(size=(200, 10_000)), axis=0)
    pca = ws.PCA(5).fit(walk)
    null = ws.random_walk_null(200, 5)
    np.testing.assert_allclose(pca.explained_variance_ratio_, null.ratios, rtol=0.05)
    cmp = ws.compare_to_random_walk(pca.scores_, pca.explained_variance_ratio_)
    assert np.all(cmp.correlations > 0.99)
    assert cmp.indistinguishable and cmp.verdict.startswith("indistinguishable")
    np.testing.assert_allclose(cmp.null_ratios, null.ratios)


def test_straight_line_has_ratio_one_and_straightness_one():
    direction = np.random.default_rng(1).normal(size=300)
    line = 2.0 + np.outer(np.arange(40.0) ** 1.5, direction)  # monotone, uneven speed
    pca = ws.PCA(3).fit(line)
    assert pca.explained_variance_ratio_[0] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(path_metrics(line).straightness, 1.0, rtol=1e-12)
    cmp = ws.compare_to_random_walk(pca.scores_, pca.explained_variance_ratio_)
    assert not cmp.indistinguishable
    assert "PC1 explains 100.0%" in cmp.verdict


def test_step_size_schedule_null():
    t = 60
    steps = np.linspace(2.0, 0.2, t - 1)  # a decaying learning rate
    null = ws.random_walk_null(t, 4, step_sizes=steps)
    lam = np.linalg.eigvalsh(expected_gram(t, steps))[::-1]
    np.testing.assert_allclose(null.ratios, lam[:4] / lam.sum(), rtol=1e-10)
    constant = ws.random_walk_null(t, 4, step_sizes=np.full(t - 1, 3.0))
    np.testing.assert_allclose(constant.ratios, ws.random_walk_null(t, 4).ratios, rtol=1e-10)
    np.testing.assert_allclose(constant.curves, ws.random_walk_null(t, 4).curves, atol=1e-8)
    gen = np.random.default_rng(2)
    walk = np.cumsum(gen.normal(size=(t - 1, 20_000)) * steps[:, None], axis=0)
    walk = np.vstack([np.zeros(20_000), walk])
    pca = ws.PCA(4).fit(walk)
    np.testing.assert_allclose(pca.explained_variance_ratio_[:2], null.ratios[:2], rtol=0.05)
    cmp = ws.compare_to_random_walk(pca.scores_, pca.explained_variance_ratio_, step_sizes=steps)
    assert cmp.indistinguishable


def test_null_bad_input():
    with pytest.raises(ws.WeightspaceError, match="n_points"):
        ws.random_walk_null(1)
    with pytest.raises(ws.WeightspaceError, match=r"1\.\.9"):
        ws.random_walk_null(10, 10)
    with pytest.raises(ws.WeightspaceError, match="step_sizes: expected 9"):
        ws.random_walk_null(10, 2, step_sizes=np.ones(10))
    with pytest.raises(ws.WeightspaceError, match="scores, ratios"):
        ws.compare_to_random_walk(np.ones((10, 3)), np.ones(2))
