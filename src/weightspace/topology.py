"""Sublevel-set persistent homology of the loss on a k-nearest-neighbour graph.

Horoi et al. (2022) summarise how rugged the loss is over a cloud of weight-space samples
(snapshots, or jump-and-retrain samples, usually through their PHATE embedding): connect
every point to its k nearest neighbours and grow the sublevel sets ``{v : loss(v) ≤ t}`` of
the loss on that graph (lower-star filtration: a vertex enters at its loss, an edge at the
larger loss of its endpoints). Every local minimum opens a basin (an H0 class); when two
basins meet, the one born later dies (the elder rule) and leaves a bar ``(birth, death)``,
so a bar's persistence ``death − birth`` is the barrier between a basin's minimum and a
deeper basin. The deepest basin of each connected component never dies (``death = inf``).

H0 is computed here natively by union-find (exact, ``O(E log E)``). H1 (loops of the flag
complex of the graph, through its triangles) uses gudhi, an optional extra:
``pip install weightspace[topology]``. Finite H1 bars are loops of the loss that fill in
at higher loss; essential ones are holes of the graph itself (chordless cycles of four or
more points), which no loss value fills.

The reference code connects each point to its *farthest* neighbours; here the graph is the
symmetric k-*nearest*-neighbour graph (``DESIGN.md``), built by :mod:`weightspace.neighbours`.

Example:
    >>> import numpy as np
    >>> sublevel_persistence(np.array([3.0, 1, 4, 0, 5, 2, 6]), path_edges(7)).tolist()
    [[0.0, inf], [1.0, 4.0], [2.0, 5.0]]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .checks import as_array
from .errors import WeightspaceError
from .neighbours import knn_graph

__all__ = ["LossTopology", "loss_topology", "path_edges", "sublevel_persistence"]

logger = logging.getLogger(__name__)

SIGNIFICANCE_RULE = "persistence > significance × (max loss − min loss)"
TOTAL_RULE = "sum of death − birth over the finite bars of every computed dimension (p = 1)"
INSTALL = "pip install weightspace[topology]"


def _check_values(values: Any, name: str = "values") -> np.ndarray:
    f = as_array(values, name, 1)
    if f.size == 0:
        raise WeightspaceError(f"{name}: expected at least one value, got none")
    bad = ~np.isfinite(f)
    if bad.any():
        raise WeightspaceError(
            f"{name}: expected finite values, got {int(bad.sum())} NaN/inf (first at index "
            f"{int(np.argmax(bad))}); drop the diverged points or clip their loss"
        )
    return f


def _check_edges(edges: Any, n: int) -> np.ndarray:
    e = np.asarray(edges.detach().cpu() if hasattr(edges, "detach") else edges)
    if e.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if e.ndim != 2 or e.shape[1] != 2 or not np.issubdtype(e.dtype, np.integer):
        raise WeightspaceError(
            f"edges: expected an integer array of shape (E, 2), got {e.dtype} {e.shape}; "
            "pass vertex index pairs, e.g. from knn_graph"
        )
    if e.min() < 0 or e.max() >= n:
        raise WeightspaceError(
            f"edges: expected vertex indices in 0..{n - 1}, got {int(e.min())}..{int(e.max())}; "
            "index the values array"
        )
    return e.astype(np.int64, copy=False)


def path_edges(n: int) -> np.ndarray:
    """Edges ``(n − 1, 2)`` of the path graph ``0 − 1 − … − (n − 1)``."""
    i = np.arange(max(int(n) - 1, 0), dtype=np.int64)
    return np.stack([i, i + 1], axis=1)


def _h0_pairs(f: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union-find with the elder rule: ``(birth_vertex (m,), death (m,))`` for every H0 class,
    zero-persistence ones included; ``death = inf`` for one class per component."""
    n = f.size
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), f))] = np.arange(n)  # age: lower loss, then lower index
    ef = np.maximum(f[edges[:, 0]], f[edges[:, 1]])
    order = np.argsort(ef, kind="stable")
    parent = list(range(n))
    size = [1] * n
    oldest = list(range(n))  # per root: the component's minimum (its birth vertex)
    rk = rank.tolist()
    births: list[int] = []
    deaths: list[float] = []

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for e, u, v in zip(order.tolist(), edges[order, 0].tolist(), edges[order, 1].tolist()):
        ru, rv = find(u), find(v)
        if ru == rv:
            continue
        ou, ov = oldest[ru], oldest[rv]
        elder, young = (ou, ov) if rk[ou] < rk[ov] else (ov, ou)
        births.append(young)
        deaths.append(float(ef[e]))
        if size[ru] < size[rv]:
            ru, rv = rv, ru
        parent[rv] = ru
        size[ru] += size[rv]
        oldest[ru] = elder
    roots = [oldest[r] for r in range(n) if parent[r] == r]
    births += roots
    deaths += [np.inf] * len(roots)
    return np.asarray(births, dtype=np.int64), np.asarray(deaths, dtype=np.float64)


def _sorted_bars(f: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero H0 bars ``(m, 2)`` sorted by birth, then death, and their birth vertices."""
    vertex, death = _h0_pairs(f, edges)
    birth = f[vertex]
    keep = death > birth  # a vertex merged on entry leaves a zero-length bar: dropped
    vertex, birth, death = vertex[keep], birth[keep], death[keep]
    order = np.lexsort((vertex, death, birth))
    return np.stack([birth[order], death[order]], axis=1), vertex[order]


def sublevel_persistence(values: Any, edges: Any) -> np.ndarray:
    """0-dimensional sublevel-set persistence of a function on the vertices of a graph.

    Lower-star filtration: vertex ``v`` enters at ``values[v]``, edge ``{u, v}`` at
    ``max(values[u], values[v])``. Components are merged by union-find in edge order; when two
    meet, the younger (higher minimum; on equal minima, the higher vertex index) dies.
    Bars of zero length are left out.

    Args:
        values: (N,) function values (e.g. the loss at each point).
        edges: (E, 2) integer vertex pairs (e.g. from :func:`knn_graph`).

    Returns:
        (m, 2) float64 ``(birth, death)`` rows sorted by birth, then death; ``death = inf``
        for one class per connected component (isolated vertices included).

    Raises:
        WeightspaceError: non-finite values or edges that are not vertex index pairs.
    """
    f = _check_values(values)
    return _sorted_bars(f, _check_edges(edges, f.size))[0]


def _gudhi() -> Any:
    """The gudhi module, or a one-line error naming the extra that installs it."""
    try:
        import gudhi
    except ImportError:
        raise WeightspaceError(
            f"dims: H1 (dims containing 1) needs the optional gudhi package, which is not "
            f"installed; run `{INSTALL}` or pass dims=(0,)"
        ) from None
    return gudhi


def _flag_tree(f: np.ndarray, edges: np.ndarray) -> Any:
    """gudhi ``SimplexTree`` of the graph's flag complex up to triangles, lower-star filtered."""
    st = _gudhi().SimplexTree()
    ef = np.maximum(f[edges[:, 0]], f[edges[:, 1]])
    if hasattr(st, "insert_batch"):  # int64 indices: gudhi 3.13 misreads int32 ones
        st.insert_batch(np.arange(f.size, dtype=np.int64)[None, :], f)
        st.insert_batch(edges.T.astype(np.int64), ef)
    else:  # an older gudhi without insert_batch
        for v, fv in enumerate(f.tolist()):
            st.insert([v], fv)
        for (u, v), fe in zip(edges.tolist(), ef.tolist()):
            st.insert([u, v], fe)
    st.expansion(2)  # flag complex: a triangle enters with its last edge
    return st


def _h1_gudhi(f: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, str]:
    st = _flag_tree(f, edges)
    st.compute_persistence(
        homology_coeff_field=2, min_persistence=0.0, persistence_dim_max=st.dimension() < 2
    )
    bars = np.asarray(st.persistence_intervals_in_dimension(1), dtype=np.float64).reshape(-1, 2)
    bars = bars[bars[:, 1] > bars[:, 0]]
    return bars[np.lexsort((bars[:, 1], bars[:, 0]))], f"gudhi {_gudhi().__version__}"


@dataclass(frozen=True)
class LossTopology:
    """Persistence of the loss's sublevel sets on a kNN graph.

    Attributes:
        diagram: (m, 2) ``(birth, death)`` bars, H0 first, each dimension sorted by birth;
            ``death = inf`` for essential classes.
        dims: (m,) homology dimension of each bar.
        birth_vertex: (m,) the point whose loss opens each H0 bar (its basin's minimum);
            -1 for H1 bars.
        n_significant_basins: H0 classes that are essential or whose persistence exceeds
            ``threshold``.
        threshold: absolute persistence a basin needs to count, ``significance`` × the loss
            range.
        significance: the fraction of the loss range used for ``threshold``.
        k: neighbours per point of the graph.
        edges: (E, 2) the graph's edges.
        metadata: every parameter used, the rules, and the H1 backend.
    """

    diagram: np.ndarray
    dims: np.ndarray
    birth_vertex: np.ndarray
    n_significant_basins: int
    threshold: float
    significance: float
    k: int
    edges: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def persistence(self) -> np.ndarray:
        """(m,) ``death − birth`` of every bar (inf for essential classes)."""
        return self.diagram[:, 1] - self.diagram[:, 0]

    @property
    def total_persistence(self) -> float:
        """Sum of ``death − birth`` over the finite bars of every computed dimension (p = 1;
        essential classes excluded); see :meth:`total` for one dimension."""
        return self.total()

    def bars(self, dim: int = 0) -> np.ndarray:
        """The (m_dim, 2) bars of one homology dimension."""
        return self.diagram[self.dims == dim]

    def total(self, dim: int | None = None) -> float:
        """Total persistence (finite bars, p = 1) of one dimension, or of all when None."""
        p = self.persistence if dim is None else self.persistence[self.dims == dim]
        return float(np.sum(p[np.isfinite(p)]))


def _check_dims(dims: Any) -> tuple[int, ...]:
    items = list(dims) if isinstance(dims, (Sequence, np.ndarray)) else []
    ok = bool(items) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d in (0, 1) for d in items
    )
    if not ok:
        raise WeightspaceError(
            f"dims: expected homology dimensions from {{0, 1}}, got {dims!r}; pass (0,) or (0, 1)"
        )
    return tuple(sorted({int(d) for d in items}))


def loss_topology(
    points: Any,
    loss: Any,
    *,
    k: int = 10,
    dims: Sequence[int] = (0,),
    significance: float = 0.1,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    metadata: Mapping[str, Any] | None = None,
) -> LossTopology:
    """Sublevel-set persistence of ``loss`` on the k-nearest-neighbour graph of ``points``.

    Args:
        points: (N, d) coordinates, e.g. a PHATE embedding of snapshots or samples.
        loss: (N,) loss at each point.
        k: neighbours per point (``1 ≤ k < N``); the graph is symmetrised by union.
        dims: homology dimensions, from ``{0, 1}``; 1 needs gudhi
            (``pip install weightspace[topology]``).
        significance: a basin counts in ``n_significant_basins`` when its persistence
            exceeds ``significance × (max loss − min loss)`` (default 0.1: a tenth of the
            loss range); essential basins always count.
        metric: distance of the kNN graph, ``"euclidean"`` or ``"cosine"``.
        metadata: extra entries to record (problem, run names, ...).

    Returns:
        a :class:`LossTopology`.

    Raises:
        WeightspaceError: mismatched shapes, NaN/inf loss, ``k`` out of range, unknown
            ``dims``, a significance outside [0, 1], or ``dims`` with 1 and no gudhi.

    Example:
        >>> x = np.arange(-6, 7)[:, None] / 4  # a double well, minima at ±1, barrier 1 at 0
        >>> topo = loss_topology(x, (x[:, 0] ** 2 - 1) ** 2, k=2)
        >>> topo.n_significant_basins, topo.total_persistence
        (2, 1.0)
    """
    x = as_array(points, "points", 2)
    f = _check_values(loss, "loss")
    if f.size != x.shape[0]:
        raise WeightspaceError(
            f"loss: expected {x.shape[0]} values (one per row of points), got {f.size}; "
            "pass the loss of every point"
        )
    dims = _check_dims(dims)
    if not isinstance(significance, (int, float)) or not 0.0 <= significance <= 1.0:
        raise WeightspaceError(
            f"significance: expected a fraction of the loss range in [0, 1], got "
            f"{significance!r}; e.g. 0.1"
        )
    if 1 in dims:
        _gudhi()  # fail before building the graph
    edges = knn_graph(x, k, metric=metric)
    h0, vertex = _sorted_bars(f, edges)
    h1, backend = _h1_gudhi(f, edges) if 1 in dims else (np.zeros((0, 2)), None)
    parts = [(h0, vertex, 0)] if 0 in dims else []
    if 1 in dims:
        parts.append((h1, np.full(len(h1), -1, np.int64), 1))
    diagram = np.concatenate([b for b, _, _ in parts])
    verts = np.concatenate([v for _, v, _ in parts])
    dim_of = np.concatenate([np.full(len(b), d, np.int64) for b, _, d in parts])
    threshold = float(significance) * float(f.max() - f.min())
    significant = int(np.sum(h0[:, 1] - h0[:, 0] > threshold))  # inf counts: essential basins
    meta = {
        **dict(metadata or {}),
        "method": "sublevel-set persistent homology on the kNN graph (Horoi et al. 2022)",
        "filtration": "lower star: vertex at its loss, edge and triangle at their largest loss",
        "graph": "symmetric k-nearest-neighbour graph (union), ties to the lower index",
        "k": int(k),
        "metric": metric,
        "dims": list(dims),
        "significance": float(significance),
        "threshold": threshold,
        "significance_rule": SIGNIFICANCE_RULE,
        "total_persistence_rule": TOTAL_RULE,
        "n_points": int(f.size),
        "n_edges": len(edges),
        "n_components": int(np.sum(~np.isfinite(h0[:, 1]))),
        "loss_min": float(f.min()),
        "loss_max": float(f.max()),
        "h1_backend": backend,
    }
    logger.info("loss topology: %d bars, %d significant basins", len(diagram), significant)
    return LossTopology(
        diagram=diagram,
        dims=dim_of,
        birth_vertex=verts,
        n_significant_basins=significant,
        threshold=threshold,
        significance=float(significance),
        k=int(k),
        edges=edges,
        metadata=meta,
    )
