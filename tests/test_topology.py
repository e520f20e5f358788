"""Sublevel-set persistence on kNN graphs, against hand-worked diagrams and brute force."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

import weightspace as ws
from weightspace.errors import WeightspaceError
from weightspace.render import plot_barcode, plot_persistence, save_figure
from weightspace.topology import path_edges

INF = np.inf


def line(n: int) -> np.ndarray:
    """``n`` points on a line one apart: their 1-NN graph (ties to the lower index) is a path."""
    return np.arange(n, dtype=np.float64)[:, None]


def double_well(scale: float = 1.0, shift: float = 0.0):
    """A 13 × 9 grid (step 1/4, exact) and ``scale·((x² − 1)² + y²) + shift``: minima at
    ``(±1, 0)`` of value ``shift``; the lowest pass between them, at ``(0, 0)``, is
    ``shift + scale``."""
    x, y = np.meshgrid(np.arange(-6, 7) / 4, np.arange(-4, 5) / 4)
    points = np.stack([x.ravel(), y.ravel()], axis=1)
    return points, scale * ((points[:, 0] ** 2 - 1) ** 2 + points[:, 1] ** 2) + shift


def components(f: np.ndarray, edges: np.ndarray, t: float) -> int:
    """Connected components of the subgraph induced by ``{v : f(v) ≤ t}``."""
    keep = np.flatnonzero(f <= t)
    if keep.size == 0:
        return 0
    idx = -np.ones(f.size, dtype=np.int64)
    idx[keep] = np.arange(keep.size)
    e = edges[(idx[edges[:, 0]] >= 0) & (idx[edges[:, 1]] >= 0)]
    adj = coo_matrix((np.ones(len(e)), (idx[e[:, 0]], idx[e[:, 1]])), shape=(keep.size,) * 2)
    return connected_components(adj, directed=False)[0]


def elder_rule_brute(f: np.ndarray, edges: np.ndarray) -> list[tuple[int, float, float]]:
    """Bars from the definition: vertex v's class dies at the first t ≥ f(v) at which its
    component of the sublevel graph holds an older vertex (lower value, then lower index)."""
    levels = np.unique(f)
    out = []
    for v in range(f.size):
        death = INF
        for t in levels[levels >= f[v]]:
            keep = f <= t
            e = edges[keep[edges[:, 0]] & keep[edges[:, 1]]]
            adj = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(f.size,) * 2)
            labels = connected_components(adj, directed=False)[1]
            mine = np.flatnonzero((labels == labels[v]) & keep)
            if any((f[u], u) < (f[v], v) for u in mine):
                death = float(t)
                break
        if death > f[v]:
            out.append((v, float(f[v]), death))
    return sorted(out, key=lambda b: (b[1], b[2], b[0]))


def sublevel_bars(f, edges) -> list[tuple[float, float]]:
    return [tuple(map(float, row)) for row in ws.sublevel_persistence(f, edges)]


def knn_brute(points: np.ndarray, k: int) -> set[tuple[int, int]]:
    d = cdist(points, points)
    np.fill_diagonal(d, INF)
    out = set()
    for i in range(len(points)):
        for j in np.argsort(d[i], kind="stable")[:k]:
            out.add((min(i, int(j)), max(i, int(j))))
    return out


# ------------------------------------------------------------------------- H0 by the elder rule
def test_elder_rule_on_a_path_with_known_minima():
    f = np.array([3.0, 1, 4, 0, 5, 2, 6])
    assert sublevel_bars(f, path_edges(7)) == [(0.0, INF), (1.0, 4.0), (2.0, 5.0)]
    topo = ws.loss_topology(line(7), f, k=1)  # the 1-NN graph of a line is the path
    np.testing.assert_array_equal(topo.edges, path_edges(7))
    np.testing.assert_array_equal(topo.diagram, [[0, INF], [1, 4], [2, 5]])
    np.testing.assert_array_equal(topo.birth_vertex, [3, 1, 5])  # the basins' minima
    assert topo.total_persistence == (4 - 1) + (5 - 2)
    assert topo.n_significant_basins == 3  # threshold 0.1 × 6 = 0.6 < both barriers


@pytest.mark.parametrize(
    ("values", "bars", "minima"),
    [
        ([0.0, 2, 0], [(0, 2), (0, INF)], [2, 0]),  # equal minima: the higher index dies
        ([1.0, 1, 1], [(1, INF)], [0]),  # a plateau is one class
        ([0.0, 5, 1, 5, 2], [(0, INF), (1, 5), (2, 5)], [0, 2, 4]),  # two deaths at one level
        ([2.0, 5, 1, 3, 1, 4, 0], [(0, INF), (1, 3), (1, 4), (2, 5)], [6, 4, 2, 0]),
    ],
)
def test_elder_rule_hand_worked_ties(values, bars, minima):
    f = np.asarray(values)
    assert sublevel_bars(f, path_edges(f.size)) == bars
    topo = ws.loss_topology(line(f.size), f, k=1)
    np.testing.assert_array_equal(topo.birth_vertex, minima)


def test_several_components_each_keep_an_essential_class():
    f = np.array([4.0, 1, 3, 2, 0, 5, 7, 6])
    edges = np.array([[0, 1], [1, 2], [2, 3], [5, 6]])  # 0-1-2-3, 5-6, and 4, 7 isolated
    # in 0-1-2-3 the basin of 3 (born at 2) dies when 2 enters at 3; 4 and 7 stay alone
    assert sublevel_bars(f, edges) == [(0, INF), (1, INF), (2, 3), (5, INF), (6, INF)]


def test_star_merging_three_basins_at_one_vertex():
    f = np.array([5.0, 2, 0, 1])
    edges = np.array([[0, 1], [0, 2], [0, 3]])
    assert sublevel_bars(f, edges) == [(0, INF), (1, 5), (2, 5)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_path_matches_sublevel_component_counts(seed):
    rng = np.random.default_rng(seed)
    f = rng.integers(0, 8, size=40).astype(np.float64)  # many ties
    edges = path_edges(40)
    bars = ws.sublevel_persistence(f, edges)
    for t in np.concatenate([np.unique(f), np.unique(f) + 0.5, [f.min() - 1]]):
        alive = int(np.sum((bars[:, 0] <= t) & (t < bars[:, 1])))
        assert alive == components(f, edges, t), t


@pytest.mark.parametrize("seed", [0, 1])
def test_random_knn_graph_matches_the_elder_rule_definition(seed):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(30, 2))
    f = np.round(rng.normal(size=30), 1)  # ties in value too
    topo = ws.loss_topology(points, f, k=2)
    got = sorted(
        zip(topo.birth_vertex.tolist(), topo.diagram[:, 0].tolist(), topo.diagram[:, 1].tolist()),
        key=lambda b: (b[1], b[2], b[0]),
    )
    assert got == elder_rule_brute(f, topo.edges)
    for t in np.unique(f):
        alive = int(np.sum((topo.diagram[:, 0] <= t) & (t < topo.diagram[:, 1])))
        assert alive == components(f, topo.edges, t)


# ------------------------------------------------------------------------- kNN graph
def test_knn_graph_takes_the_nearest_neighbours():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert ws.knn_graph(x, 1).tolist() == [[0, 1], [1, 2], [2, 3]]
    # 0→{1,2}, 1→{0,2}, 2→{1,0}, 3→{2,1}; the farthest pair (0, 3) is never joined
    assert ws.knn_graph(x, 2).tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]


def test_knn_graph_breaks_ties_by_lower_index():
    square = np.array([[0.0, 0], [1, 0], [0, 1], [1, 1]])
    # 0: 1|2 → 1; 1: 0|3 → 0; 2: 0|3 → 0; 3: 1|2 → 1
    assert ws.knn_graph(square, 1).tolist() == [[0, 1], [0, 2], [1, 3]]


@pytest.mark.parametrize("dim", [3, 20])  # a KD-tree up to 16 dimensions, distance blocks above
def test_knn_graph_matches_brute_force_symmetric_and_chunked(dim):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, dim))
    edges = ws.knn_graph(x, 4)
    assert set(map(tuple, edges.tolist())) == knn_brute(x, 4)
    assert np.all(edges[:, 0] < edges[:, 1]) and len(np.unique(edges, axis=0)) == len(edges)
    assert np.all(np.bincount(edges.ravel(), minlength=60) >= 4)
    np.testing.assert_array_equal(ws.knn_graph(x, 4, chunk_size=7), edges)


@pytest.mark.parametrize("dim", [2, 20])
def test_knn_graph_ties_and_duplicates_go_to_lower_indices(dim):
    # 6 copies of one point, then 4 points equally far from each other (a simplex)
    x = np.zeros((10, dim))
    x[6:, :4] = np.eye(4) * 10 if dim >= 4 else 0
    if dim < 4:
        x[6:, :2] = 10 * np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    x[6:, 0] += 100
    edges = set(map(tuple, ws.knn_graph(x, 2).tolist()))
    assert edges == knn_brute(x, 2)
    # each copy's 2 nearest are the two lowest-indexed other copies
    assert {e for e in edges if max(e) < 6} == {(0, 1), (0, 2), (1, 2)} | {
        (i, j) for j in range(3, 6) for i in (0, 1)
    }


def test_knn_graph_cosine_metric_uses_angles():
    angles = np.array([0.0, 0.1, 1.0, 3.0])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.array([[1], [50], [0.1], [3]])
    assert ws.knn_graph(x, 1, metric="cosine").tolist() == [[0, 1], [1, 2], [2, 3]]


@pytest.mark.parametrize("k", [0, 5, -1, 2.5, True, "3"])
def test_knn_graph_validates_k(k):
    with pytest.raises(WeightspaceError, match=r"^k: expected an integer in 1\.\.4") as e:
        ws.knn_graph(np.zeros((5, 2)), k)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------- basins, totals
def test_double_well_on_a_grid_has_two_basins_and_the_barrier_as_total():
    points, f = double_well(scale=3.0, shift=0.5)
    topo = ws.loss_topology(points, f, k=4)
    np.testing.assert_array_equal(topo.diagram, [[0.5, 3.5], [0.5, INF]])
    assert topo.n_significant_basins == 2
    assert topo.total_persistence == 3.0  # the barrier height, scale × (f(0,0) − f(±1,0))
    assert topo.threshold == pytest.approx(0.1 * (f.max() - f.min()))


def test_noisy_double_well_has_two_significant_basins():
    rng = np.random.default_rng(0)
    points = rng.uniform([-1.5, -1.0], [1.5, 1.0], size=(400, 2))
    f = (points[:, 0] ** 2 - 1) ** 2 + points[:, 1] ** 2 + 0.01 * rng.normal(size=400)
    topo = ws.loss_topology(points, f, k=8)
    assert topo.n_significant_basins == 2
    finite = topo.persistence[np.isfinite(topo.persistence)]
    assert finite.max() == pytest.approx(1.0, abs=0.15)  # the barrier between the wells
    assert np.sort(finite)[-2] < topo.threshold  # the rest is noise
    single = ws.loss_topology(points, points[:, 0] ** 2 + points[:, 1] ** 2, k=8)
    assert single.n_significant_basins == 1


def test_total_persistence_is_the_sum_of_finite_bars():
    f = np.array([3.0, 1, 4, 0, 5, 2, 6])
    topo = ws.loss_topology(line(7), f, k=1, significance=0.5)
    assert topo.total() == topo.total(0) == topo.total_persistence == 6.0
    assert topo.n_significant_basins == 1  # 3 = 0.5 × 6 is not above the threshold
    assert topo.metadata["threshold"] == 3.0 and topo.metadata["k"] == 1


# ------------------------------------------------------------------------- H1 and gudhi
def ring(n: int, center: bool) -> np.ndarray:
    a = 2 * np.pi * np.arange(n) / n
    pts = np.stack([np.cos(a), np.sin(a)], axis=1)
    return np.vstack([pts, [[0.0, 0.0]]]) if center else pts


def test_h1_of_a_ring_is_one_essential_loop():
    pytest.importorskip("gudhi")
    f = np.array([0.3, 0.1, 0.7, 0.2, 0.5, 0.0, 0.6, 0.4])
    topo = ws.loss_topology(ring(8, center=False), f, k=2, dims=(0, 1))
    assert len(topo.edges) == 8  # the cycle graph: no triangle fills it
    # the loop closes with the last edge, at the highest loss of the ring
    np.testing.assert_array_equal(topo.bars(1), [[0.7, INF]])
    np.testing.assert_array_equal(topo.birth_vertex[topo.dims == 1], [-1])
    assert topo.bars(0)[0].tolist() == [0.0, INF]


def test_h1_of_a_wheel_dies_when_the_hub_fills_it():
    pytest.importorskip("gudhi")
    f = np.array([0.3, 0.1, 0.6, 0.2, 0.5, 0.0, 2.0])  # a hexagon of low loss, a high hub
    topo = ws.loss_topology(ring(6, center=True), f, k=3, dims=(0, 1))
    assert len(topo.edges) == 12  # 6 rim + 6 spokes
    np.testing.assert_array_equal(topo.bars(1), [[0.6, 2.0]])
    assert topo.total(0) == pytest.approx((0.3 - 0.1) + (0.5 - 0.2))
    assert topo.total_persistence == pytest.approx(topo.total(0) + 1.4)
    assert topo.metadata["h1_backend"].startswith("gudhi")
    only = ws.loss_topology(ring(6, center=True), f, k=3, dims=(1,))
    np.testing.assert_array_equal(only.diagram, [[0.6, 2.0]])
    assert only.dims.tolist() == [1] and only.n_significant_basins == topo.n_significant_basins


def test_native_h0_matches_gudhi():
    gudhi = pytest.importorskip("gudhi")
    rng = np.random.default_rng(5)
    points = rng.normal(size=(200, 2))
    f = np.round(rng.normal(size=200), 2)
    edges = ws.knn_graph(points, 5)
    st = gudhi.SimplexTree()
    for v in range(200):
        st.insert([v], float(f[v]))
    for u, v in edges.tolist():
        st.insert([u, v], float(max(f[u], f[v])))
    st.compute_persistence(min_persistence=0.0, persistence_dim_max=True)
    ref = np.asarray(st.persistence_intervals_in_dimension(0))
    ref = ref[np.lexsort((ref[:, 1], ref[:, 0]))]
    np.testing.assert_array_equal(ws.sublevel_persistence(f, edges), ref)


def test_the_gudhi_complex_for_h1_has_the_native_h0():
    pytest.importorskip("gudhi")
    from weightspace.topology import _flag_tree

    rng = np.random.default_rng(6)
    points, f = rng.normal(size=(150, 2)), rng.normal(size=150)
    edges = ws.knn_graph(points, 4)
    st = _flag_tree(f, edges)
    for simplex, value in st.get_filtration():  # lower star: each simplex at its largest loss
        assert value == f[simplex].max()
    st.compute_persistence(min_persistence=0.0)
    ref = np.asarray(st.persistence_intervals_in_dimension(0))
    np.testing.assert_array_equal(
        ws.sublevel_persistence(f, edges), ref[np.lexsort((ref[:, 1], ref[:, 0]))]
    )


def test_h1_without_gudhi_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gudhi", None)  # import gudhi → ImportError
    with pytest.raises(WeightspaceError, match=r"pip install weightspace\[topology\]") as e:
        ws.loss_topology(ring(8, center=False), np.arange(8.0), k=2, dims=(0, 1))
    assert "\n" not in str(e.value)
    assert len(ws.loss_topology(ring(8, center=False), np.arange(8.0), k=2).diagram) == 1


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": np.zeros(4)}, r"^loss: expected 5 values"),
        ({"loss": np.array([0, 1, np.nan, 2, 3])}, r"^loss: expected finite values"),
        ({"points": np.zeros(5)}, r"^points: expected a 2-D array"),
        ({"k": 5}, r"^k: expected an integer in 1\.\.4"),
        ({"dims": (0, 2)}, r"^dims: expected homology dimensions"),
        ({"dims": ()}, r"^dims: expected homology dimensions"),
        ({"dims": (0.5,)}, r"^dims: expected homology dimensions"),
        ({"significance": 1.5}, r"^significance: expected a fraction"),
        ({"significance": "0.1"}, r"^significance: expected a fraction"),
        ({"k": 0}, r"^k: expected an integer in 1\.\.4"),
    ],
)
def test_loss_topology_rejects_bad_input(kwargs, match):
    args = {"points": np.arange(10.0).reshape(5, 2), "loss": np.arange(5.0), **kwargs}
    with pytest.raises(WeightspaceError, match=match) as e:
        ws.loss_topology(args.pop("points"), args.pop("loss"), **args)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("edges", "match"),
    [
        (np.array([[0, 3]]), r"^edges: expected vertex indices in 0\.\.2"),
        (np.array([[0.0, 1.0]]), r"^edges: expected an integer array"),
        (np.array([0, 1]), r"^edges: expected an integer array"),
    ],
)
def test_sublevel_persistence_rejects_bad_edges(edges, match):
    with pytest.raises(WeightspaceError, match=match):
        ws.sublevel_persistence(np.zeros(3), edges)


# ------------------------------------------------------------------------- figures
def test_persistence_figure_writes_png_and_draws_inf_on_the_top_line(tmp_path):
    points, f = double_well()
    topo = ws.loss_topology(points, f, k=4)
    fig, ax = plot_persistence(topo)
    path = save_figure(fig, tmp_path / "diagram.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    offsets = ax.collections[-1].get_offsets()
    top = [ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(top) == 1 and top[0] > 1.0  # above every finite death
    np.testing.assert_array_equal(np.asarray(offsets), [[0.0, 1.0], [0.0, top[0]]])
    assert "2 significant basins" in ax.get_title()
    assert any(c.get_label() == "not significant" for c in ax.collections)  # the band


def test_figures_draw_on_a_given_ax_and_take_plain_diagrams():
    from matplotlib.figure import Figure

    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    diagram = np.array([[0.0, INF], [1.0, 4.0], [2.0, 5.0]])
    got_fig, got_ax = plot_persistence(diagram, ax=ax1, threshold=0.5)
    assert got_fig is fig and got_ax is ax1 and len(ax1.collections) == 2
    got_fig, got_ax = plot_barcode(diagram, ax=ax2)
    assert got_fig is fig and got_ax is ax2 and len(ax2.lines) == 3 + 1  # bars + the ∞ line
    fig.savefig(io.BytesIO(), format="png")


@pytest.mark.parametrize(
    "bad", [np.zeros((3, 3)), np.array([[np.nan, 1.0]]), np.array([[INF, INF]]), "diagram"]
)
def test_figures_reject_bad_diagrams(bad):
    with pytest.raises(WeightspaceError, match="^topo_or_diagram: expected"):
        plot_persistence(bad)
    with pytest.raises(WeightspaceError, match="^threshold: expected"):
        plot_barcode(np.zeros((0, 2)), threshold=-1.0)
