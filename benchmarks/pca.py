"""Exact PCA of an on-disk run: weightspace's streaming Gram route against scikit-learn.

Writes a synthetic run of 1,000 snapshots × 145,578 parameters (the size of Lorch's CIFAR-10
network; ~580 MB of float32 on disk) in the run format, warms the page cache, then runs each
method in its own subprocess (so that peak memory, ru_maxrss, is its own):

- weightspace ``PCA(12, solver="exact")`` streaming from the run (then its components pass),
- weightspace ``PCA(12, solver="randomized")``,
- scikit-learn ``PCA(12, svd_solver="full")`` and ``svd_solver="randomized"`` on the
  snapshots loaded into one in-memory float32 array (load time reported separately).

Prints median times, peak memory, the speed-up over scikit-learn's exact PCA and the largest
difference of explained-variance ratios and the largest principal angle between components.

    python benchmarks/pca.py            # full size (several minutes; scikit-learn full SVD)
    python benchmarks/pca.py --quick    # smoke run (200 × 20,000)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit, machine_line

import weightspace as ws
from weightspace.store import (
    SNAPSHOTS,
    make_run_header,
    save_array,
    snapshot_name,
    write_json,
)

K = 12


def write_synthetic_run(path: Path, t: int, n: int, seed: int = 0) -> None:
    """A training-like path: a curved drift with decaying noisy steps, written row by row."""
    rng = np.random.default_rng(seed)
    layout = ws.ParamLayout(("weights",), ((n,),), "float32")
    (path / SNAPSHOTS).mkdir(parents=True)
    write_json(path / "run.json", make_run_header(layout, every=1, dtype="float32", metadata={}))
    theta = rng.normal(0, 0.05, n)
    drift = rng.normal(0, 1e-3, (3, n))
    for i in range(t):
        s = i / t
        step = drift[0] * np.exp(-3 * s) + drift[1] * np.cos(4 * s) + drift[2] * s
        theta = theta + step + rng.normal(0, 2e-3 * (1 - 0.8 * s), n)
        save_array(path / SNAPSHOTS / snapshot_name(i), theta.astype(np.float32), fsync=False)


def worker(method: str, run: Path, repeats: int, out: Path) -> None:
    """Run one method in this process; print a JSON line with times and peak memory."""
    from sklearn.decomposition import PCA as SkPCA

    traj = ws.Trajectory.load(run)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times, extra = [], {}
    for _ in range(repeats):
        if method.startswith("weightspace"):
            solver = method.split("-")[1]
            start = time.perf_counter()
            pca = ws.PCA(K, solver=solver, seed=0).fit(traj)
            times.append(time.perf_counter() - start)
            ratios = pca.explained_variance_ratio_
        else:
            start = time.perf_counter()
            x = traj.array(np.float32)
            load = time.perf_counter() - start
            solver = method.split("-")[1]
            start = time.perf_counter()
            pca = SkPCA(K, svd_solver=solver, random_state=0).fit(x)
            times.append(time.perf_counter() - start)
            extra["load_s"] = load
            ratios = pca.explained_variance_ratio_
            comps = pca.components_
            del x
    if method.startswith("weightspace"):
        start = time.perf_counter()
        comps = pca.components_
        extra["components_s"] = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    np.save(out / f"{method}_components.npy", np.asarray(comps, dtype=np.float64))
    record = {
        "method": method,
        "times": times,
        "peak_bytes": peak - base,
        "ratios": [float(r) for r in ratios],
        **extra,
    }
    print(json.dumps(record))


def run_worker(method: str, run: Path, repeats: int, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--run", str(run), "--out", str(out)]
    proc = subprocess.run(
        [*cmd, "--repeats", str(repeats)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def max_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Largest principal angle (radians) between row spaces of the first rows, per PC."""
    cos = np.abs(np.sum(a * b, axis=1)) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.arccos(np.clip(cos, -1, 1)).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--snapshots", type=int, default=1000)
    parser.add_argument("--params", type=int, default=145_578)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--save", help="write the report here (default: print only)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, Path(args.run), args.repeats, Path(args.out))
        return
    t, n, repeats = (200, 20_000, 2) if args.quick else (args.snapshots, args.params, args.repeats)
    lines = [
        f"PCA of an on-disk run: {t} snapshots x {n:,} parameters (float32), k={K}",
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.machine()}, weightspace {ws.__version__}",
        machine_line(),
    ]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        start = time.perf_counter()
        write_synthetic_run(d / "run", t, n)
        for f in sorted((d / "run" / SNAPSHOTS).iterdir()):
            f.read_bytes()  # warm the page cache: every method reads from memory
        lines.append(f"wrote and cached the run in {time.perf_counter() - start:.1f} s")
        methods = {
            "weightspace-exact": repeats,
            "weightspace-randomized": repeats,
            "sklearn-full": 1,
            "sklearn-randomized": repeats,
        }
        results = {m: run_worker(m, d / "run", r, d) for m, r in methods.items()}
        comps = {m: np.load(d / f"{m}_components.npy") for m in methods}
    ref = results["weightspace-exact"]
    lines.append(
        f"{'method':<24}{'median s':>10}{'load s':>9}{'peak MiB':>10}"
        f"{'max |Δratio|':>14}{'max angle':>11}"
    )
    for m, r in results.items():
        dr = np.abs(np.subtract(r["ratios"], ref["ratios"])).max()
        angle = max_angle(comps[m], comps["weightspace-exact"])
        lines.append(
            f"{m:<24}{statistics.median(r['times']):>10.2f}{r.get('load_s', 0.0):>9.2f}"
            f"{r['peak_bytes'] / 2**20:>10.1f}{dr:>14.2e}{angle:>11.1e}"
        )
    ours = statistics.median(ref["times"])
    full = results["sklearn-full"]
    sk = statistics.median(full["times"])
    lines += [
        f"weightspace components pass (second streaming pass): {ref['components_s']:.2f} s",
        f"speed-up of weightspace exact over sklearn full: {sk / ours:.1f}x "
        f"({(sk + full['load_s']) / ours:.1f}x counting sklearn's load)",
        f"speed-up over sklearn randomized: "
        f"{statistics.median(results['sklearn-randomized']['times']) / ours:.1f}x",
        f"peak memory ratio sklearn full / weightspace exact: "
        f"{full['peak_bytes'] / max(ref['peak_bytes'], 1):.1f}x",
        "explained-variance ratios (weightspace exact): "
        + ", ".join(f"{v:.6f}" for v in ref["ratios"][:5]),
    ]
    emit(lines, args.save)


if __name__ == "__main__":
    main()
