"""Weight-space metrics of training trajectories (Lipton 2016; Lorch 2016).

Pure NumPy on Trajectories or ``(T, n)`` arrays; parameter columns are streamed, so runs
larger than RAM work. Path metrics: distances from the origin, the initial and the final
point, per-layer weight norms, step lengths, path length, straightness and the cosine between
consecutive updates. Across snapshots or runs' endpoints: distance and cosine matrices.
Lorch's checks on PC scores: monotonicity of PC1 and oscillations (dominant frequency and
phase of each score series, pairs that trace circles or Lissajous figures).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import spearmanr

from .errors import WeightspaceError
from .layout import ParamLayout
from .projection._gram import center_gram, distances_from_gram, gram_matrix
from .projection._stream import (
    DEFAULT_MAX_BYTES,
    SnapshotInput,
    Snapshots,
    as_snapshots,
    iter_blocks,
)
from .trajectory import Trajectory

__all__ = [
    "EndpointMatrices",
    "Oscillations",
    "PathMetrics",
    "cosine_similarities",
    "endpoint_matrices",
    "monotonicity",
    "oscillations",
    "pairwise_distances",
    "path_metrics",
    "variance_explained",
]


@dataclass(frozen=True)
class PathMetrics:
    """Geometry of one run's path through weight space.

    Attributes:
        steps: ``(T,)`` recorded steps.
        norm: ``(T,)`` ``‖θ_t‖``, the distance from the origin.
        distance_from_init: ``(T,)`` ``‖θ_t − θ_0‖``.
        distance_to_final: ``(T,)`` ``‖θ_t − θ_T‖``.
        step_lengths: ``(T−1,)`` ``‖θ_{t+1} − θ_t‖``.
        path_length: sum of step lengths.
        displacement: ``‖θ_T − θ_0‖``.
        straightness: displacement / path length (1 for a straight, monotone path).
        update_cosines: ``(T−2,)`` cosine between consecutive updates (NaN for a zero step).
        layer_norms: ``(T, L)`` norm of each tensor, or None without a layout.
        layer_names: the ``L`` tensor names.
    """

    steps: np.ndarray
    norm: np.ndarray
    distance_from_init: np.ndarray
    distance_to_final: np.ndarray
    step_lengths: np.ndarray
    path_length: float
    displacement: float
    straightness: float
    update_cosines: np.ndarray
    layer_norms: np.ndarray | None
    layer_names: tuple[str, ...]


def _rowsq(a: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, a)


def path_metrics(
    x: Trajectory | np.ndarray,
    *,
    layout: ParamLayout | None = None,
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = False,
) -> PathMetrics:
    """Distances, step lengths, straightness and layer norms of one run, in one pass.

    Args:
        x: one run: a Trajectory or a ``(T, n)`` array.
        layout: tensor layout for per-layer norms (default: the trajectory's).
        chunk_size, max_bytes: streaming (float64 work, about four blocks of memory).
        progress: show a progress bar.

    Returns:
        a :class:`PathMetrics`.

    Example:
        >>> line = np.outer(np.arange(5.0), [3.0, 4.0])
        >>> m = path_metrics(line)
        >>> m.path_length, m.straightness
        (20.0, 1.0)
    """
    if isinstance(x, (list, tuple)):
        raise WeightspaceError("x: expected one run; call path_metrics on each run")
    snaps = as_snapshots(x)
    snaps = dataclasses.replace(snaps, dtype=np.dtype(np.float64))
    layout = layout if layout is not None else snaps.layout
    if layout is not None and layout.numel != snaps.n:
        raise WeightspaceError(
            f"layout: has {layout.numel} parameters but the run has {snaps.n}; pass the "
            "run's own layout"
        )
    t = len(snaps)
    norm2, init2, final2 = np.zeros(t), np.zeros(t), np.zeros(t)
    step2, dots = np.zeros(t - 1), np.zeros(max(t - 2, 0))
    offsets = np.asarray(layout.offsets) if layout is not None else None
    layers = np.zeros((t, len(layout))) if layout is not None else None
    budget = max(1, max_bytes // 4)
    for start, b in iter_blocks(snaps, chunk_size=chunk_size, max_bytes=budget, progress=progress):
        stop = start + b.shape[1]
        norm2 += _rowsq(b)
        if layers is not None:
            first = int(np.searchsorted(offsets, start, side="right")) - 1
            last = int(np.searchsorted(offsets, stop, side="left"))
            for li in range(first, last):
                a, z = max(offsets[li], start) - start, min(offsets[li + 1], stop) - start
                layers[:, li] += _rowsq(b[:, a:z])
        init2 += _rowsq(b - b[0])
        final2 += _rowsq(b - b[-1])
        diffs = np.diff(b, axis=0)
        step2 += _rowsq(diffs)
        dots += np.einsum("ij,ij->i", diffs[:-1], diffs[1:])
    steps = np.sqrt(step2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dots / (steps[:-1] * steps[1:])
    path = float(steps.sum())
    disp = float(np.sqrt(init2[-1]))
    return PathMetrics(
        steps=snaps.steps[0],
        norm=np.sqrt(norm2),
        distance_from_init=np.sqrt(init2),
        distance_to_final=np.sqrt(final2),
        step_lengths=steps,
        path_length=path,
        displacement=disp,
        straightness=disp / path if path > 0 else float("nan"),
        update_cosines=np.where(np.isfinite(cos), cos, np.nan),
        layer_norms=None if layers is None else np.sqrt(layers),
        layer_names=() if layout is None else tuple(layout.names),
    )


# ---------------------------------------------------------------------------- across points
def pairwise_distances(
    x: SnapshotInput, *, chunk_size: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> np.ndarray:
    """Euclidean distances ``(T, T)`` between all snapshots (of one run or several stacked).

    Computed from the centred Gram matrix, which is translation invariant and so free of
    the cancellation of ``‖θ‖`` against small distances.
    """
    g = gram_matrix(x, center="mean", chunk_size=chunk_size, max_bytes=max_bytes)
    return distances_from_gram(g, "euclidean")


def cosine_similarities(
    x: SnapshotInput,
    *,
    relative_to: Literal["origin", "init", "mean"] = "origin",
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """Cosines ``(T, T)`` between snapshots as vectors from the origin, from the first
    snapshot (the directions moved) or from the mean. Zero vectors give 0."""
    if relative_to not in ("origin", "init", "mean"):
        raise WeightspaceError(
            f"relative_to: expected 'origin', 'init' or 'mean', got {relative_to!r}"
        )
    if relative_to == "origin":
        g = gram_matrix(x, center="none", chunk_size=chunk_size, max_bytes=max_bytes)
    else:
        g = gram_matrix(x, center="mean", chunk_size=chunk_size, max_bytes=max_bytes)
        if relative_to == "init":
            w = np.zeros(len(g))
            w[0] = 1.0
            g = center_gram(g, w)
    return _cosines(g)


def _cosines(g: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.maximum(np.diag(g), 0.0))
    denom = np.outer(norms, norms)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0, g / np.where(denom > 0, denom, 1.0), 0.0)
    return np.clip(0.5 * (cos + cos.T), -1.0, 1.0)


@dataclass(frozen=True)
class EndpointMatrices:
    """Pairwise comparisons of several runs' endpoints.

    Attributes:
        labels: the ``R`` run labels.
        distances: ``(R, R)`` ``‖θ_r − θ_s‖`` between final points.
        cosines: ``(R, R)`` cosine between final points (from the origin).
        displacement_cosines: ``(R, R)`` cosine between ``θ_final − θ_init`` of the runs.
        init_distances: ``(R, R)`` distances between the initial points.
    """

    labels: tuple[str, ...]
    distances: np.ndarray
    cosines: np.ndarray
    displacement_cosines: np.ndarray
    init_distances: np.ndarray


def endpoint_matrices(
    runs: Sequence[Trajectory | np.ndarray], *, chunk_size: int | None = None
) -> EndpointMatrices:
    """Distances and cosines between runs' final (and initial) points (Lipton 2016).

    Args:
        runs: at least two Trajectories or ``(T_i, n)`` arrays of the same model.
    """
    if not isinstance(runs, (list, tuple)) or len(runs) < 2:
        raise WeightspaceError("runs: expected a list of at least 2 runs to compare")
    snaps = as_snapshots(list(runs), what="runs")
    pts = snaps.take([i for s in snaps.run_slices for i in (s.start, s.stop - 1)])
    r = len(runs)  # rows of pts: init_0, final_0, init_1, ...
    g = gram_matrix(pts, center="mean", chunk_size=chunk_size)
    raw = gram_matrix(pts, center="none", chunk_size=chunk_size)
    init, final = np.arange(0, 2 * r, 2), np.arange(1, 2 * r, 2)
    d = distances_from_gram(g, "euclidean")
    disp = g[np.ix_(final, final)] - g[np.ix_(final, init)]
    disp = disp - g[np.ix_(init, final)] + g[np.ix_(init, init)]
    return EndpointMatrices(
        labels=snaps.labels,
        distances=d[np.ix_(final, final)],
        cosines=_cosines(raw[np.ix_(final, final)]),
        displacement_cosines=_cosines(disp),
        init_distances=d[np.ix_(init, init)],
    )


def variance_explained(
    x: SnapshotInput | Snapshots, k: int = 12, *, chunk_size: int | None = None
) -> np.ndarray:
    """Cumulative share of the variance explained by the top ``1..k`` PCs ``(k,)``."""
    g = gram_matrix(x, center="mean", chunk_size=chunk_size)
    if isinstance(k, bool) or not 1 <= k <= len(g) - 1:
        raise WeightspaceError(f"k: expected 1..{len(g) - 1} (T − 1), got {k!r}")
    lam = np.clip(np.linalg.eigvalsh(g)[::-1], 0.0, None)
    return np.cumsum(lam[:k]) / lam.sum()


# ---------------------------------------------------------------------------- Lorch's checks
def monotonicity(series: np.ndarray) -> float:
    """Spearman rank correlation of a series with time: ±1 for a monotone series."""
    series = np.asarray(series, dtype=np.float64)
    if series.ndim != 1 or len(series) < 3:
        raise WeightspaceError(f"series: expected a 1-D series of ≥ 3 values, got {series.shape}")
    if np.ptp(series) == 0:
        return 0.0
    return float(spearmanr(np.arange(len(series)), series)[0])


@dataclass(frozen=True)
class Oscillations:
    """Dominant oscillation of each score series, ``s(t) ≈ A cos(2πf(t+½)/T + φ)``.

    Attributes:
        frequency: ``(k,)`` cycles per run (a random walk's PC k: k/2).
        phase: ``(k,)`` ``φ`` in radians, in ``(−π, π]``.
        share: ``(k,)`` share of the series' variance that the cosine explains.
        pairs: ``(P, 2)`` PC index pairs (0-based) that trace a closed figure: both
            oscillate (``share ≥ min_share``) at frequencies in a ratio ``p:q``, p, q ≤ 4.
        pair_ratio: ``(P, 2)`` the integers ``(p, q)`` with ``f_i/f_j = p/q``.
        pair_phase: ``(P,)`` phase difference ``φ_j − φ_i`` wrapped to ``(−π, π]``.
        circles: ``(P,)`` 1:1 pairs a quarter-period apart (``|Δφ| ≈ π/2``): circles.
    """

    frequency: np.ndarray
    phase: np.ndarray
    share: np.ndarray
    pairs: np.ndarray
    pair_ratio: np.ndarray
    pair_phase: np.ndarray
    circles: np.ndarray


def _wrap(a: np.ndarray) -> np.ndarray:
    return np.pi - np.mod(np.pi - a, 2 * np.pi)


def oscillations(
    scores: np.ndarray, *, resolution: int = 8, min_share: float = 0.5, rtol: float = 0.05
) -> Oscillations:
    """Dominant frequency and phase of each PC score series, and Lissajous pairs (Lorch).

    For each frequency on a grid of step ``1/resolution`` cycles per run from ½ to T/2, a
    cosine and a sine are fitted by least squares; the frequency explaining most variance
    wins.

    Args:
        scores: ``(T, k)`` PC scores of one run.
        resolution: grid points per cycle per run (even, so half-integers are on the grid).
        min_share: a series oscillates when its cosine explains at least this share.
        rtol: relative tolerance of the frequency ratio ``p:q``.

    Returns:
        an :class:`Oscillations`.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < 4:
        raise WeightspaceError(f"scores: expected (T ≥ 4, k), got shape {s.shape}")
    t, k = s.shape
    s = s - s.mean(axis=0)
    total = np.maximum(_rowsq(s.T), 1e-300)
    grid = np.arange(0.5, t / 2 + 1e-9, 1.0 / resolution)
    best = np.full(k, -1.0)
    freq, phase = np.zeros(k), np.zeros(k)
    tt = (np.arange(t) + 0.5) / t
    for lo in range(0, len(grid), 512):
        f = grid[lo : lo + 512]
        arg = 2 * np.pi * f[:, None] * tt[None, :]
        c, sn = np.cos(arg), np.sin(arg)
        c -= c.mean(axis=1, keepdims=True)
        sn -= sn.mean(axis=1, keepdims=True)
        cc, ss, cs = _rowsq(c), _rowsq(sn), np.einsum("ij,ij->i", c, sn)
        cy, sy = c @ s, sn @ s  # (F, k)
        det = cc * ss - cs**2
        ok = det > 1e-12 * cc * ss
        det = np.where(ok, det, 1.0)[:, None]
        a = (ss[:, None] * cy - cs[:, None] * sy) / det
        b = (cc[:, None] * sy - cs[:, None] * cy) / det
        explained = np.where(ok[:, None], a * cy + b * sy, 0.0) / total
        j = np.argmax(explained, axis=0)
        cols = np.arange(k)
        better = explained[j, cols] > best
        best = np.where(better, explained[j, cols], best)
        freq = np.where(better, f[j], freq)
        phase = np.where(better, np.arctan2(-b[j, cols], a[j, cols]), phase)
    share = np.clip(best, 0.0, 1.0)
    pairs, ratios, dphi = [], [], []
    for i in range(k):
        for j in range(i + 1, k):
            if share[i] < min_share or share[j] < min_share:
                continue
            for p in range(1, 5):
                q = round(p * freq[j] / freq[i])
                if 1 <= q <= 4 and abs(freq[i] * q - freq[j] * p) <= rtol * freq[j] * p:
                    g = np.gcd(p, q)
                    pairs.append((i, j))
                    ratios.append((p // g, q // g))
                    dphi.append(float(_wrap(np.array(phase[j] - phase[i]))))
                    break
    ratio_arr = np.array(ratios, dtype=np.int64).reshape(-1, 2)
    dphi_arr = np.array(dphi, dtype=np.float64)
    circles = (ratio_arr[:, 0] == ratio_arr[:, 1]) & (np.abs(np.abs(dphi_arr) - np.pi / 2) < 0.35)
    return Oscillations(
        frequency=freq,
        phase=_wrap(phase),
        share=share,
        pairs=np.array(pairs, dtype=np.int64).reshape(-1, 2),
        pair_ratio=ratio_arr,
        pair_phase=dphi_arr,
        circles=circles,
    )
