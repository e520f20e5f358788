"""The random-walk null model of trajectory PCA (Antognini & Sohl-Dickstein 2018).

PCA of a high-dimensional random walk of ``T`` points looks like structure: PC ``k``
explains ``ρₖ = 3 / (2(T²−1)·sin²(πk/2T))`` of the variance (→ 6/(π²k²): 61% for PC1) and its
scores trace ``cos(πk(t−½)/T)``, so pairs of PCs draw Lissajous figures. A trajectory whose
ratios and score shapes match the null says nothing beyond "it diffused". These are the
eigenvalues of the expected centred Gram matrix ``J L Lᵀ J`` (``L`` the cumulative-sum
matrix); for a step-size schedule ``s`` the null is that of ``J L S² Lᵀ J``, computed
numerically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import WeightspaceError
from .pca import fix_signs, pca_from_gram

__all__ = ["NullComparison", "RandomWalkNull", "compare_to_random_walk", "random_walk_null"]


@dataclass(frozen=True)
class RandomWalkNull:
    """Expected PCA of a random walk of ``n_points`` points.

    Attributes:
        ratios: ``(k,)`` expected explained-variance ratios of PC 1..k.
        curves: ``(T, k)`` expected score series, unit norm, signs as :func:`fix_signs`
            (``cos(πk(t−½)/T)`` for constant step sizes).
        n_points: ``T``.
        step_sizes: ``(T−1,)`` the step-size schedule, or None (constant).
    """

    ratios: np.ndarray
    curves: np.ndarray
    n_points: int
    step_sizes: np.ndarray | None = None


@dataclass(frozen=True)
class NullComparison:
    """A trajectory's PCA against the random-walk null.

    Attributes:
        ratios: ``(k,)`` the trajectory's explained-variance ratios.
        null_ratios: ``(k,)`` the null's.
        correlations: ``(k,)`` ``|Pearson r|`` of each score series with the null's curve.
        n_checked: how many leading PCs the verdict looks at.
        indistinguishable: the verdict as a boolean.
        verdict: the verdict in words.
    """

    ratios: np.ndarray
    null_ratios: np.ndarray
    correlations: np.ndarray
    n_checked: int
    indistinguishable: bool
    verdict: str


def _check_t_k(n_points: int, n_components: int | None) -> int:
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise WeightspaceError(f"n_points: expected an integer ≥ 2, got {n_points!r}")
    k = n_points - 1 if n_components is None else n_components
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_points - 1:
        raise WeightspaceError(
            f"n_components: expected 1..{n_points - 1} (T − 1) for {n_points} points, "
            f"got {n_components!r}"
        )
    return int(k)


def random_walk_null(
    n_points: int, n_components: int | None = None, *, step_sizes: np.ndarray | None = None
) -> RandomWalkNull:
    """Expected explained-variance ratios and score shapes of a random walk's PCA.

    Args:
        n_points: snapshots ``T`` (at least 2).
        n_components: PCs to return (default ``T − 1``, all of them).
        step_sizes: ``(T−1,)`` standard deviation of each increment (e.g. the learning-rate
            schedule times the gradient-noise scale); None for constant steps (closed form).

    Returns:
        a :class:`RandomWalkNull`.

    Raises:
        WeightspaceError: ``T < 2``, ``k`` outside ``1..T−1``, wrong schedule length.

    Example:
        >>> null = random_walk_null(1000, 3)
        >>> null.ratios.round(4).tolist()  # → 6/(π²k²) = 0.6079, 0.1520, 0.0675
        [0.6079, 0.152, 0.0675]
    """
    t = int(n_points)
    k = _check_t_k(n_points, n_components)
    ks = np.arange(1, k + 1)
    if step_sizes is None:
        ratios = 3.0 / (2.0 * (t**2 - 1) * np.sin(np.pi * ks / (2 * t)) ** 2)
        tt = np.arange(1, t + 1)[:, None]
        curves = np.cos(np.pi * ks[None, :] * (tt - 0.5) / t)
        curves /= np.linalg.norm(curves, axis=0)
        fix_signs(curves)
        return RandomWalkNull(ratios, curves, t)
    s = np.asarray(step_sizes, dtype=np.float64)
    if s.shape != (t - 1,) or not np.isfinite(s).all() or (s < 0).any() or not s.any():
        raise WeightspaceError(
            f"step_sizes: expected {t - 1} non-negative finite numbers (one per step between "
            f"the {t} snapshots), got shape {s.shape}"
        )
    lower = np.tril(np.ones((t, t - 1)), -1) * s  # x_t = Σ_{j<t} s_j ξ_j
    centred = lower - lower.mean(axis=0)
    g = centred @ centred.T
    lam, u, _ = pca_from_gram(g, k)
    return RandomWalkNull(lam / np.trace(g), u, t, s)


def compare_to_random_walk(
    scores: np.ndarray,
    ratios: np.ndarray,
    *,
    step_sizes: np.ndarray | None = None,
    n_check: int = 3,
    rtol: float = 0.25,
    min_correlation: float = 0.9,
) -> NullComparison:
    """Compare one run's PCA with the random-walk null.

    The run is called indistinguishable from a random walk when, for each of the first
    ``n_check`` PCs, its explained-variance ratio is within ``rtol`` (relative) of the null's
    and its score series correlates with the null's curve at ``|r| ≥ min_correlation``.

    Args:
        scores: ``(T, k)`` PC scores of one run (``pca.scores_`` of a single-run fit).
        ratios: ``(k,)`` its explained-variance ratios.
        step_sizes: optional ``(T−1,)`` step-size schedule for the null.
        n_check, rtol, min_correlation: the verdict's rule.

    Returns:
        a :class:`NullComparison`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    ratios = np.asarray(ratios, dtype=np.float64)
    if scores.ndim != 2 or ratios.shape != (scores.shape[1],):
        raise WeightspaceError(
            f"scores, ratios: expected (T, k) and (k,), got {scores.shape} and {ratios.shape}"
        )
    t, k = scores.shape
    null = random_walk_null(t, k, step_sizes=step_sizes)
    centred = scores - scores.mean(axis=0)
    norms = np.linalg.norm(centred, axis=0)
    curves = null.curves - null.curves.mean(axis=0)
    curves /= np.linalg.norm(curves, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.abs(np.sum(centred * curves, axis=0)) / norms
    corr = np.where(norms > 0, corr, 0.0)
    m = max(1, min(int(n_check), k))
    reasons = []
    for j in range(m):
        if abs(ratios[j] - null.ratios[j]) > rtol * null.ratios[j]:
            reasons.append(
                f"PC{j + 1} explains {ratios[j]:.1%} (random walk: {null.ratios[j]:.1%})"
            )
        elif corr[j] < min_correlation:
            reasons.append(f"PC{j + 1} scores correlate {corr[j]:.2f} with the random-walk cosine")
    same = not reasons
    if same:
        verdict = (
            f"indistinguishable from a random walk: PC1–{m} variance ratios within "
            f"{rtol:.0%} of the null and score–cosine correlations ≥ {min_correlation}"
        )
    else:
        verdict = "distinguishable from a random walk: " + "; ".join(reasons)
    return NullComparison(ratios, null.ratios, corr, m, same, verdict)
