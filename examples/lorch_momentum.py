"""Momentum and the shape of the path through weight space (Lorch 2016), as claims that can fail.

E. Lorch, "Visualizing Deep Network Training Trajectories with PCA", ICML 2016 Workshop on
Visualization for Deep Learning. Lorch projected runs trained with SGD at several momentum
values on their principal components and observed (a) that higher momentum gives a smoother,
less zig-zagging path, (b) that PC 1 of a run moves monotonically while PC 2 rises and falls
once, and (c) oscillations: pairs of PCs trace Lissajous-like curves. Antognini &
Sohl-Dickstein (2018) showed that the PCA of a high-dimensional random walk draws the same
pictures: PC ``k``'s scores follow ``cos(πk(t − ½)/T)``. Claims (b) and (c) are therefore
tested against random walks of the same length and dimension.

The runs. For each seed ``s`` (``--seeds`` of them, from ``--seed``): the digits MLP
(``weightspace.zoo``, initialisation ``s``) trained with SGD at μ = 0.5, 0.9 and 0.99 on data
order ``s``, with ``lr = 0.5·(1 − μ)`` so that the effective step ``lr / (1 − μ)`` is the same
and momentum is the only difference; and a replicate at μ = 0.5 on data order ``s + 1000``
(the control of claim a). Full-training-set losses are computed at every snapshot, in float64.

Equal training progress (claim a). A seed's target loss is the largest final loss among its
four runs times 1.1; each run is taken up to its first snapshot whose loss is at or below the
target (every run reaches it), but at least up to its 5th snapshot (three turning angles).

Random walks (claims b and c). For run ``i`` (μ = 0.5, 0.9, 0.99 as i = 0, 1, 2) of seed ``s``,
the walk has the run's number of snapshots ``T`` and parameters ``n``:
``x_0 = 0``, ``x_t = Σ_{j<t} ξ_j``, ``ξ = np.random.default_rng([2018, s, i]).standard_normal((T
− 1, n))``; the second walks of claim c's control use ``[2018, s, 3 + i]``. Each run and each
walk gets its own PCA (centred over time), computed in float64.

The claims, with their statistics, controls and rules (stated before anything is computed;
each is printed before the runs start; intervals are 95 % bootstrap intervals of the mean over
seeds, ``examples/_verdict.py``):

a. ``smoother_pc`` and ``smoother_full``: higher momentum, smoother path. Statistic per seed:
   the mean turning angle (degrees) between consecutive recorded steps at μ = 0.5 minus the
   same at μ = 0.99, at equal training progress; in the run's own PC 1–2 plane
   (``smoother_pc``) and in the full weight space (``smoother_full``). The difference of the
   extreme momenta is used rather than a rank correlation over the three momenta: with three
   values Spearman's ρ takes four values only, while the difference is continuous, has units
   and shares them with its control. Control: the same difference between the μ = 0.5 run and
   its replicate (same momentum, another data order), which only noise separates. Rule:
   ``above(paired difference, 0)``.
b. ``pc_shape``: PC 1 monotone, PC 2 rises then falls. Statistic per seed: the share of the
   three momentum runs (whole runs) whose own PC 1 has ``|Spearman(PC 1, t)| ≥ 0.9`` and whose
   own PC 2, with one of its two signs, peaks in the middle 80 % of the run with
   ``Spearman ≥ 0.9`` up to the peak and ``≤ −0.9`` from it. Control: the same share for the
   random walks. Rule: ``at_least(share, 0.8)``. A control that also passes says the shape is
   what diffusion draws, not a finding about training.
c. ``random_walk_like``: the oscillations are a random walk's. Statistic per seed: the mean,
   over the three momentum runs and PCs 1–2, of ``|Pearson r|`` between the PC's scores and
   ``cos(πk(t − ½)/T)`` (``ws.compare_to_random_walk``), divided by the same mean for the
   random walks. Control: the same ratio with the second set of random walks in place of the
   runs (the ratio when the claim holds by construction). Rule: ``within(ratio, 0.9, 1/0.9)``;
   the band is the library's own ``min_correlation = 0.9`` of ``compare_to_random_walk``.

Each control is also judged by its claim's rule (``summary["control_verdicts"]``). The
summary holds the per-seed raw numbers (losses, cut points, angles, monotonicities, shapes,
correlations) from which every statistic can be recomputed.

Run: ``python examples/lorch_momentum.py --out out/lorch`` (``--quick``: 3 seeds, seconds).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import claims_table, fresh_dir, parse_args, save, write_summary, write_table
from _verdict import Claim, above, at_least, judge_claims, within

import weightspace as ws
from weightspace.analysis import monotonicity, path_metrics
from weightspace.render import new_figure, static
from weightspace.train import train

MOMENTA = (0.5, 0.9, 0.99)
EFFECTIVE_LR = 0.5  # lr / (1 − μ), the same for every momentum
BATCH_SIZE = 64
REPLICATE = "m0.5-replicate"  # the control of claim a: μ = 0.5, data order seed + 1000
REPLICATE_ORDER = 1000
TARGET_FACTOR = 1.1  # equal progress: the seed's largest final loss × 1.1
MIN_POINTS = 5  # every run is taken up to at least its 5th snapshot
MONOTONE = 0.9  # |Spearman| of a monotone series
MIDDLE = 0.1  # PC 2's peak lies in the middle 1 − 2·MIDDLE of the run
BAND = (0.9, 1 / 0.9)  # claim c: compare_to_random_walk's min_correlation
WALK_ENTROPY = 2018
LABELS = tuple(f"m{m}" for m in MOMENTA)

CLAIMS = [
    Claim(
        "smoother_pc",
        "higher momentum gives a smoother path (smaller turning angles) in the PC 1-2 plane",
        "per seed: mean turning angle (deg) in the run's own PC 1-2 plane at μ = 0.5 minus at "
        "μ = 0.99, each run up to equal progress (first snapshot with full-data loss ≤ 1.1 × "
        "the seed's largest final loss)",
        "the same difference between the μ = 0.5 run and a μ = 0.5 replicate on another data "
        "order (only noise separates them)",
        "above(paired difference, 0)",
    ),
    Claim(
        "smoother_full",
        "higher momentum gives a smoother path (smaller turning angles) in weight space",
        "per seed: mean turning angle (deg) between consecutive updates in the full weight "
        "space at μ = 0.5 minus at μ = 0.99, at equal progress as above",
        "the same difference between the μ = 0.5 run and its replicate",
        "above(paired difference, 0)",
    ),
    Claim(
        "pc_shape",
        "PC 1 of a run is monotone and PC 2 rises then falls",
        "per seed: share of the 3 momentum runs with |Spearman(PC1, t)| ≥ 0.9 and PC 2 (either "
        "sign) peaking in the middle 80 % with Spearman ≥ 0.9 before and ≤ -0.9 after the peak",
        "the same share for Gaussian random walks with the runs' T and n",
        "at_least(share, 0.8)",
    ),
    Claim(
        "random_walk_like",
        "the PC oscillations (Lissajous curves) are what a random walk draws",
        "per seed: mean |r| of PC 1-2 scores with cos(πk(t-½)/T) over the 3 momentum runs, "
        "divided by the same mean for random walks of the same T and n",
        "the same ratio for a second set of random walks in place of the runs",
        "within(ratio, 0.9, 1/0.9)",
    ),
]
NOTES: dict[str, str] = {  # written after the full-mode results, by the reviewer
    "pc_shape": (
        "the random-walk control has the same shape in every seed: this shape is what any "
        "diffusive path draws on its top PCs"
    ),
    "random_walk_like": (
        "the runs' PC scores follow the random-walk cosines less than walks do (ratio 0.64): the "
        "descent's drift dominates PC 1 in these short runs"
    ),
}


# ---------------------------------------------------------------------------- measurements
def turning_angles(xy: np.ndarray) -> np.ndarray:
    """Angles (degrees) between consecutive steps of a path: ``xy (T, d) -> (T − 2,)``."""
    v = np.diff(xy, axis=0)
    norms = np.linalg.norm(v, axis=1)
    ok = (norms[:-1] > 0) & (norms[1:] > 0)
    cos = np.einsum("ij,ij->i", v[:-1], v[1:])[ok] / (norms[:-1] * norms[1:])[ok]
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def own_pca(points: np.ndarray, k: int = 2) -> ws.PCA:
    """The PCA (centred over time, float64) of one run's ``(T, n)`` snapshots."""
    return ws.PCA(n_components=k).fit(np.asarray(points, dtype=np.float64))


def mean_turn_pc(points: np.ndarray) -> float:
    """Mean turning angle (degrees) in the path's own PC 1–2 plane."""
    return float(turning_angles(own_pca(points).scores_).mean())


def mean_turn_full(points: np.ndarray) -> float:
    """Mean turning angle (degrees) between consecutive steps in the full space."""
    cos = path_metrics(points).update_cosines
    return float(np.degrees(np.arccos(np.clip(cos[np.isfinite(cos)], -1.0, 1.0))).mean())


def progress_cut(loss: np.ndarray, target: float) -> int:
    """Index of the first snapshot at or below ``target`` (at least ``MIN_POINTS − 1``)."""
    below_target = np.flatnonzero(np.asarray(loss) <= target)
    return max(int(below_target[0]), MIN_POINTS - 1)


def rises_then_falls(series: np.ndarray) -> bool:
    """PC 2's shape: with one of its two signs, the series peaks in the middle of the run and
    is monotone up to the peak and from it (Spearman ≥ ``MONOTONE`` / ≤ −``MONOTONE``)."""
    s = np.asarray(series, dtype=np.float64)
    t = len(s)
    lo, hi = math.ceil(MIDDLE * (t - 1)), math.floor((1 - MIDDLE) * (t - 1))
    for x in (s, -s):
        m = int(np.argmax(x))
        if lo <= m <= hi and m >= 2 and t - m >= 3:
            if monotonicity(x[: m + 1]) >= MONOTONE and monotonicity(x[m:]) <= -MONOTONE:
                return True
    return False


def shape_of(points: np.ndarray) -> dict:
    """Claim b's and c's numbers for one path: PC 1 monotonicity, PC 2's shape, and the
    ``|r|`` of PC 1–2 with the random-walk cosines."""
    pca = own_pca(points)
    null = ws.compare_to_random_walk(pca.scores_, pca.explained_variance_ratio_)
    return {
        "pc1_monotonicity": monotonicity(pca.scores_[:, 0]),
        "pc2_rises_falls": rises_then_falls(pca.scores_[:, 1]),
        "correlation": [float(c) for c in null.correlations[:2]],
    }


def random_walk(t: int, n: int, seed: int, index: int) -> np.ndarray:
    """The ``(t, n)`` Gaussian random walk ``index`` of ``seed`` (see the module docstring)."""
    steps = np.random.default_rng([WALK_ENTROPY, seed, index]).standard_normal((t - 1, n))
    return np.vstack([np.zeros((1, n)), np.cumsum(steps, axis=0)])


def shape_holds(m: dict) -> bool:
    return abs(m["pc1_monotonicity"]) >= MONOTONE and m["pc2_rises_falls"]


# ---------------------------------------------------------------------------- one seed
def train_seed(problem: str, seed: int, runs_dir: Path, steps: int, every: int) -> dict:
    """Train a seed's four runs; returns label -> run directory."""
    specs = [(lab, m, seed) for lab, m in zip(LABELS, MOMENTA)]
    specs.append((REPLICATE, MOMENTA[0], seed + REPLICATE_ORDER))
    runs = {}
    for label, mu, order in specs:
        runs[label] = train(
            ws.zoo.problem(problem, seed=seed),
            runs_dir / label,
            optimizer="sgd",
            lr=EFFECTIVE_LR * (1 - mu),
            momentum=mu,
            batch_size=BATCH_SIZE,
            steps=steps,
            every=every,
            data_seed=order,
            metadata={"label": label, "init_seed": seed},
        )
    return runs


def measure_seed(objective: ws.Objective, seed: int, runs: dict) -> dict:
    """Every raw number of one seed (float64 snapshots throughout)."""
    points = {lab: ws.Trajectory.load(run).array(np.float64) for lab, run in runs.items()}
    loss = {lab: ws.points_losses(objective, x) for lab, x in points.items()}
    target = TARGET_FACTOR * max(float(v[-1]) for v in loss.values())
    cut = {lab: progress_cut(v, target) for lab, v in loss.items()}
    t, n = points[LABELS[0]].shape
    walks = [random_walk(t, n, seed, i) for i in range(2 * len(MOMENTA))]
    shapes = {lab: shape_of(points[lab]) for lab in LABELS}
    walk_shapes = [shape_of(w) for w in walks]
    return {
        "seed": seed,
        "target_loss": target,
        "loss": {lab: v.tolist() for lab, v in loss.items()},
        "cut_index": cut,
        "angle_pc": {lab: mean_turn_pc(x[: cut[lab] + 1]) for lab, x in points.items()},
        "angle_full": {lab: mean_turn_full(x[: cut[lab] + 1]) for lab, x in points.items()},
        "runs": shapes,
        "walks": walk_shapes[: len(MOMENTA)],
        "walks2": walk_shapes[len(MOMENTA) :],
    }


# ---------------------------------------------------------------------------- statistics
def statistics(per_seed: list[dict]) -> dict[str, tuple]:
    """Each claim's per-seed statistic and control, from the raw numbers of the seeds: a
    list of values per seed, or for a paired difference the pair of lists ``(a, b)``
    (the statistic is ``a − b`` per seed)."""
    low, high = LABELS[0], LABELS[-1]

    def share(shapes: list[dict]) -> float:
        return float(np.mean([shape_holds(m) for m in shapes]))

    def mean_r(shapes: list[dict]) -> float:
        return float(np.mean([m["correlation"] for m in shapes]))

    def runs(p: dict) -> list[dict]:
        return [p["runs"][lab] for lab in LABELS]

    out: dict = {}
    for key, name in (("smoother_pc", "angle_pc"), ("smoother_full", "angle_full")):
        a = [p[name] for p in per_seed]
        base = [x[low] for x in a]
        out[key] = ((base, [x[high] for x in a]), (base, [x[REPLICATE] for x in a]))
    out["pc_shape"] = ([share(runs(p)) for p in per_seed], [share(p["walks"]) for p in per_seed])
    out["random_walk_like"] = (
        [mean_r(runs(p)) / mean_r(p["walks"]) for p in per_seed],
        [mean_r(p["walks2"]) / mean_r(p["walks"]) for p in per_seed],
    )
    return out


RULES = {
    "smoother_pc": lambda est: above(est, 0.0),
    "smoother_full": lambda est: above(est, 0.0),
    "pc_shape": lambda est: at_least(est, 0.8),
    "random_walk_like": lambda est: within(est, *BAND),
}


def judge(stats: dict[str, tuple]) -> dict[str, dict]:
    """The estimates and verdicts of every claim (and of its control under the same rule),
    from :func:`statistics`' numbers alone."""
    return judge_claims(CLAIMS, RULES, stats)


# ---------------------------------------------------------------------------- figures
def figures(out: Path, runs: dict, walk: np.ndarray, steps: int) -> None:
    """Seed 0: the joint PCA's PC pairs, and each run's own PC 1–2 against the null."""
    trajs = [ws.Trajectory.load(runs[lab]) for lab in (*LABELS, REPLICATE)]
    pca = ws.PCA(n_components=3).fit(trajs)
    fig, _ = static.plot_pc_pairs(pca.transform_runs_, [*LABELS, REPLICATE], k=3)
    fig.suptitle(f"one joint PCA of the first seed's runs ({steps} steps)")
    save(fig, out, "lorch_pc_pairs")
    fig = new_figure((9.0, 3.6))
    axes = fig.subplots(1, 2)
    paths = [(lab, trajs[i].array(np.float64)) for i, lab in enumerate(LABELS)]
    for label, x in [*paths, ("random walk", walk)]:
        scores = own_pca(x).scores_
        tt = (np.arange(len(x)) + 0.5) / len(x)
        for k, ax in enumerate(axes):
            s = scores[:, k] - scores[:, k].mean()
            ax.plot(tt, s / np.linalg.norm(s), label=label, lw=1.2)
    null = ws.random_walk_null(len(walk), 2)
    for k, ax in enumerate(axes):
        c = null.curves[:, k] - null.curves[:, k].mean()
        ax.plot(tt, c / np.linalg.norm(c), "k--", lw=1, label="cos(πk(t-½)/T)")
        ax.set(title=f"own PC {k + 1} (unit norm)", xlabel="t / T")
    axes[0].legend(fontsize=7)
    save(fig, out, "lorch_scores_vs_null")


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    args = parse_args(__doc__, argv, problem="digits-mlp", steps=0, every=0, seeds=0)
    steps = args.steps or (100 if args.quick else 800)
    every = args.every or (4 if args.quick else 5)
    n_seeds = args.seeds or (3 if args.quick else 10)
    seeds = [args.seed + i for i in range(n_seeds)]
    for claim in CLAIMS:  # the pre-registration, before anything is computed
        print(claim.describe())
    out, runs_dir = args.out, fresh_dir(args.out / "runs")
    problem = ws.zoo.problem(args.problem, seed=args.seed)
    problem.model.double()  # full-data losses in float64, as the snapshots are read
    objective = ws.Objective(problem)
    per_seed, first = [], None
    for seed in seeds:
        runs = train_seed(args.problem, seed, runs_dir / f"seed{seed}", steps, every)
        per_seed.append(measure_seed(objective, seed, runs))
        first = first or runs
    t = len(per_seed[0]["loss"][LABELS[0]])
    figures(out, first, random_walk(t, objective.layout.numel, seeds[0], 0), steps)

    stats = statistics(per_seed)
    verdicts = judge(stats)
    claims = claims_table(CLAIMS, verdicts, out, "lorch_claims")
    seed_rows = []
    for i, p in enumerate(per_seed):
        row = {"seed": p["seed"], "target loss": p["target_loss"]}
        row.update({f"turn PC {lab}": p["angle_pc"][lab] for lab in (*LABELS, REPLICATE)})
        row.update({f"turn full {lab}": p["angle_full"][lab] for lab in (*LABELS, REPLICATE)})
        for key in ("pc_shape", "random_walk_like"):
            row[key] = verdicts[key]["value"].values[i]
            row[f"{key} control"] = verdicts[key]["control"].values[i]
        seed_rows.append(row)
    write_table(seed_rows, out, "lorch_per_seed")

    summary = {
        "claims": claims,
        "control_verdicts": {k: v["control_verdict"] for k, v in verdicts.items()},
        "seeds": n_seeds,
        "seed_list": seeds,
        "settings": {
            "steps": steps,
            "every": every,
            "momenta": list(MOMENTA),
            "effective_lr": EFFECTIVE_LR,
            "target_factor": TARGET_FACTOR,
            "min_points": MIN_POINTS,
            "replicate_order_offset": REPLICATE_ORDER,
        },
        "per_seed": per_seed,
        "seconds": time.perf_counter() - start,
    }
    write_summary(out, summary)
    print(f"{n_seeds} seeds, {summary['seconds']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
