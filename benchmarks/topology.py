"""Loss topology: native H0 persistence and kNN graph against gudhi and scipy's KD-tree.

Same input for every method: N points in 2-D (the size of a PHATE embedding of many
snapshots or jump-and-retrain samples) with a noisy double-well loss, and one symmetric
k-nearest-neighbour graph. Compares

- 0-dimensional sublevel persistence: weightspace's union-find against gudhi's
  ``SimplexTree`` (vertices at their loss, edges at the larger one, ``persistence()``), and
  checks that the two diagrams are identical;
- the kNN graph against ``scipy.spatial.cKDTree.query`` (same edge set checked; the KD-tree
  breaks distance ties arbitrarily, these data have none): in 2-D, where weightspace uses the
  KD-tree itself and redoes tied rows exactly, and in 64-D (raw vectors), where it computes
  blocks of exact distances;
- H1 through gudhi (flag complex, ``expansion(2)``) for scale.

    python benchmarks/topology.py            # N = 20,000 (5,000 in 64-D), k = 10
    python benchmarks/topology.py --quick    # N = 2,000 (1,000 in 64-D)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import scipy
from _common import emit, machine_line
from scipy.spatial import cKDTree

import weightspace as ws


def timed(fn, repeats: int):
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def gudhi_h0(gudhi, f: np.ndarray, edges: np.ndarray) -> np.ndarray:
    st = gudhi.SimplexTree()
    st.insert_batch(np.arange(f.size, dtype=np.int64)[None, :], f)  # int32 is misread
    st.insert_batch(edges.T.astype(np.int64), np.maximum(f[edges[:, 0]], f[edges[:, 1]]))
    st.compute_persistence(min_persistence=0.0, persistence_dim_max=True)
    bars = np.asarray(st.persistence_intervals_in_dimension(0))
    return bars[np.lexsort((bars[:, 1], bars[:, 0]))]


def kdtree_graph(x: np.ndarray, k: int) -> np.ndarray:
    _, nbr = cKDTree(x).query(x, k + 1)
    i = np.repeat(np.arange(len(x)), k)
    j = nbr[:, 1:].ravel()
    return np.unique(np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1), axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--save", help="write the report here (default: print only)")
    args = parser.parse_args()
    import gudhi  # the peer; pip install weightspace[topology]

    n, repeats = (2_000, 1) if args.quick else (args.points, args.repeats)
    n_high = n // 4 if not args.quick else n // 2
    rng = np.random.default_rng(0)
    x = rng.uniform([-1.5, -1.0], [1.5, 1.0], size=(n, 2))
    f = (x[:, 0] ** 2 - 1) ** 2 + x[:, 1] ** 2 + 0.01 * rng.normal(size=n)

    edges, t_knn = timed(lambda: ws.knn_graph(x, args.k), repeats)
    ref_edges, t_kd = timed(lambda: kdtree_graph(x, args.k), repeats)
    ours, t_h0 = timed(lambda: ws.sublevel_persistence(f, edges), repeats)
    ref, t_gh0 = timed(lambda: gudhi_h0(gudhi, f, edges), repeats)
    topo, t_h1 = timed(lambda: ws.loss_topology(x, f, k=args.k, dims=(0, 1)), repeats)
    xh = rng.normal(size=(n_high, 64))
    high, t_high = timed(lambda: ws.knn_graph(xh, args.k), repeats)
    ref_high, t_kd_high = timed(lambda: kdtree_graph(xh, args.k), repeats)

    lines = [
        f"loss topology of N={n:,} 2-D points (noisy double well), symmetric kNN graph k={args.k}, "
        f"{len(edges):,} edges, median of {repeats}",
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"gudhi {gudhi.__version__}, weightspace {ws.__version__}",
        machine_line(),
        f"{'task':<44}{'median s':>10}",
        f"{'H0: weightspace union-find':<44}{t_h0:>10.3f}",
        f"{'H0: gudhi SimplexTree (same graph)':<44}{t_gh0:>10.3f}",
        f"{'kNN graph 2-D: weightspace (KD-tree, ties)':<44}{t_knn:>10.3f}",
        f"{'kNN graph 2-D: scipy cKDTree':<44}{t_kd:>10.3f}",
        f"{f'kNN graph 64-D, N={n_high:,}: weightspace':<44}{t_high:>10.3f}",
        f"{f'kNN graph 64-D, N={n_high:,}: scipy cKDTree':<44}{t_kd_high:>10.3f}",
        f"{'loss_topology dims=(0, 1) (+ gudhi H1)':<44}{t_h1:>10.3f}",
        f"H0 speed-up of weightspace over gudhi: {t_gh0 / t_h0:.2f}x; "
        f"diagrams identical: {ours.shape == ref.shape and bool(np.array_equal(ours, ref))}",
        f"kNN graph time ratio weightspace / cKDTree: 2-D {t_knn / t_kd:.2f}x, "
        f"64-D {t_high / t_kd_high:.2f}x; same edges: "
        f"{bool(np.array_equal(edges, ref_edges) and np.array_equal(high, ref_high))}",
        f"significant basins: {topo.n_significant_basins}, H0 bars {len(topo.bars(0))}, "
        f"H1 bars {len(topo.bars(1))}, total persistence {topo.total_persistence:.4f}",
    ]
    emit(lines, args.save)


if __name__ == "__main__":
    main()
