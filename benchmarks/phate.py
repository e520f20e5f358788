"""Native PHATE against the reference ``phate`` package (test-time peer only).

Same data for both: a drifting random walk of 1,000 snapshots × 100,000 parameters written as
an on-disk run. weightspace streams it from disk (Gram matrix → cosine distances between
centred PCA scores → kernel → potential → MDS); the package gets the snapshots as one
in-memory array with ``knn_dist="cosine"`` (its PCA to 100 components, kNN graph, potential
and SGD-MDS). Prints median times, the diffusion time each chose, the Spearman rank
correlation of the two embeddings' pairwise distances, and each embedding's
trajectory-preservation score.

    python benchmarks/phate.py            # full size (a few minutes)
    python benchmarks/phate.py --quick    # smoke run (200 × 5,000)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit, machine_line
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

import weightspace as ws
from weightspace.projection import trajectory_preservation
from weightspace.store import (
    SNAPSHOTS,
    make_run_header,
    save_array,
    snapshot_name,
    write_json,
)


def write_walk(path: Path, t: int, n: int, seed: int = 0) -> None:
    """A random walk with a drift, written snapshot by snapshot (float32)."""
    rng = np.random.default_rng(seed)
    layout = ws.ParamLayout(("weights",), ((n,),), "float32")
    (path / SNAPSHOTS).mkdir(parents=True)
    write_json(path / "run.json", make_run_header(layout, every=1, dtype="float32", metadata={}))
    theta = rng.normal(size=n)
    drift = 0.3 * rng.normal(size=n) / np.sqrt(n) * 30
    for i in range(t):
        theta = theta + drift + rng.normal(size=n) / np.sqrt(n) * 30
        save_array(path / SNAPSHOTS / snapshot_name(i), theta.astype(np.float32), fsync=False)


def import_reference():
    """The ``phate`` package, not this file (whose directory is first on ``sys.path``)."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import phate  # the peer: a test-time reference only

    return phate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--snapshots", type=int, default=1000)
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--save", help="write the report here (default: print only)")
    args = parser.parse_args()
    phate = import_reference()

    t, n, repeats = (200, 5_000, 1) if args.quick else (args.snapshots, args.params, args.repeats)
    lines = [
        f"PHATE of {t} snapshots x {n:,} parameters (float32), cosine distance, knn=5, decay=40",
        f"python {platform.python_version()}, numpy {np.__version__}, phate "
        f"{getattr(phate, '__version__', '?')}, weightspace {ws.__version__}",
        machine_line(),
    ]
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        write_walk(run, t, n)
        traj = ws.Trajectory.load(run)
        for f in traj.files:
            f.read_bytes()  # warm the page cache
        ours_t, ref_t = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            ours = ws.PHATE(distance="cosine")
            emb = ours.fit_transform(traj)
            ours_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            x = traj.array(np.float32)
            ref = phate.PHATE(knn_dist="cosine", verbose=0, random_state=0, n_jobs=1)
            ref_emb = ref.fit_transform(x)
            ref_t.append(time.perf_counter() - start)
            del x
    rho = spearmanr(pdist(emb), pdist(ref_emb))[0]
    a, b = statistics.median(ours_t), statistics.median(ref_t)
    lines += [
        f"{'method':<28}{'median s':>10}{'t':>5}{'preservation':>14}",
        f"{'weightspace PHATE (disk)':<28}{a:>10.2f}{ours.t_:>5}"
        f"{trajectory_preservation(emb):>14.3f}",
        f"{'phate package (in memory)':<28}{b:>10.2f}{ref.optimal_t:>5}"
        f"{trajectory_preservation(ref_emb):>14.3f}",
        f"speed-up of weightspace over the phate package: {b / a:.1f}x",
        f"Spearman rank correlation of pairwise embedding distances: {rho:.4f}",
    ]
    emit(lines, args.save)


if __name__ == "__main__":
    main()
