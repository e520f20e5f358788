"""Where runs end: initialisations, data orders and clones (Lipton 2016), as claims that can fail.

Z. C. Lipton, "Stuck in a What? Adventures in Weight Space", ICLR 2016 workshop
(arXiv:1602.07320). Lipton trained networks from several initialisations, from one
initialisation with different data orders, and as clones that share the first part of a run
and continue with different orders. He reports that the solutions are all roughly equally far
apart and equally far from the origin, whichever way they were made, and that the top 2 and
top 10 principal components of one long run explain 81.39 % and 95.63 % of its variance.

The runs. For each seed ``s`` (``--seeds`` of them, from ``--seed``), the digits MLP
(``weightspace.zoo``) trained with SGD (lr 0.05, momentum 0.9, batch 64) for ``steps`` steps:
``reference`` (initialisation ``s``, data order ``s``); ``init`` (initialisation ``s + 1000``,
data order ``s``); ``order`` (initialisation ``s``, data order ``s + 1000``); and ``clone``,
which continues the reference run from step ``K`` (``--clone-step``) to ``steps`` with data
order ``s + 2000`` (``train(..., init_from=(reference, K))``). Distances are between final
points, in float64 (``endpoint_matrices``):

* (i) ``d_inits = ‖reference − init‖``: different initialisations;
* (ii) ``d_orders = ‖reference − order‖``: one initialisation, different data orders;
* (iii) ``d_clones = ‖reference − clone‖``: a shared history up to step ``K``, then different
  data orders;
* the control ``d_stretch = ‖θ_ref(steps) − θ_ref(K)‖``: how far the reference run itself moves
  over the last ``steps − K`` steps, the stretch over which the clone differs from it.

Random walk (the control of the variance claims). For seed ``s``, a Gaussian random walk with
the reference run's number of snapshots ``T`` and parameters ``n``: ``x_0 = 0``,
``x_t = Σ_{j<t} ξ_j``, ``ξ = np.random.default_rng([2018, s, 0]).standard_normal((T − 1, n))``.

The claims, with statistics, controls and rules (stated before anything is computed, and
printed before the runs; intervals are 95 % bootstrap intervals of the mean over seeds,
``examples/_verdict.py``):

a. ``orders_vs_inits``: one initialisation with different data orders ends as far apart as
   different initialisations. Statistic per seed: ``d_orders / d_inits``.
b. ``clones_vs_inits``: clones end as far apart as different initialisations. Statistic per
   seed: ``d_clones / d_inits``.

   Control of a and b: ``d_stretch / d_inits``. If a single run moves that far over the
   clones' stretch anyway, "as far apart" says no more than "runs keep moving". Rule of a
   and b: ``within(ratio, 2/3, 3/2)``: "roughly equal" read as equal within a factor 1.5
   either way (a band symmetric on a log scale); the control is judged by the same rule.
c. ``top2``: the top 2 PCs of one long run explain most of its variance (paper: 81.39 %).
   Statistic per seed: the share of the reference run's variance (centred over time)
   explained by its top 2 PCs (``variance_explained``). Control: the same share for the
   random walk (a random walk's expected share is ≈ 6/π²·(1 + 1/4) ≈ 0.76 for many
   snapshots, so a high share alone is no evidence of structure). Rule:
   ``above(share, 0.7139)``, the paper's value minus 10 percentage points.
d. ``top10``: the same for the top 10 PCs (paper: 95.63 %). Rule: ``above(share, 0.8563)``.

The summary holds the per-seed raw numbers (distances, final norms and losses, shares) from
which every statistic can be recomputed, and each control's verdict under its claim's rule.

Run: ``python examples/lipton_paths.py --out out/lipton`` (``--quick``: 3 seeds, seconds).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import claims_table, fresh_dir, parse_args, save, write_summary, write_table
from _verdict import Claim, above, judge_claims, within

import weightspace as ws
from weightspace.analysis import endpoint_matrices, path_metrics, variance_explained
from weightspace.render import new_figure, static
from weightspace.train import train

LR, MOMENTUM, BATCH_SIZE = 0.05, 0.9, 64
OTHER = 1000  # the other initialisation / data order: seed + 1000
CLONE_ORDER = 2000  # the clone's data order: seed + 2000
BAND = (2 / 3, 3 / 2)  # "roughly equal": within a factor 1.5 either way
PAPER_TOP2, PAPER_TOP10 = 0.8139, 0.9563
MARGIN = 0.10  # claims c, d: above the paper's share minus 10 points
WALK_ENTROPY = 2018
RUNS = ("reference", "init", "order", "clone")

CLAIMS = [
    Claim(
        "orders_vs_inits",
        "runs from one initialisation with different data orders end as far apart as runs "
        "from different initialisations",
        "per seed: d_orders / d_inits, distances between final points",
        "d_stretch / d_inits: the reference run's own displacement over the clones' last "
        "steps - K steps",
        "within(ratio, 2/3, 3/2)",
    ),
    Claim(
        "clones_vs_inits",
        "clones that share a run's first K steps and then see other data orders end as far "
        "apart as runs from different initialisations",
        "per seed: d_clones / d_inits, distances between final points",
        "d_stretch / d_inits, as above",
        "within(ratio, 2/3, 3/2)",
    ),
    Claim(
        "top2",
        "the top 2 PCs of one long run explain most of its variance (81.39 %)",
        "per seed: share of the reference run's variance explained by its top 2 PCs",
        "the same share for a Gaussian random walk with the run's T and n",
        f"above(share, {PAPER_TOP2 - MARGIN:.4f}) (the paper's value minus 10 points)",
    ),
    Claim(
        "top10",
        "the top 10 PCs of one long run explain nearly all of its variance (95.63 %)",
        "per seed: share of the reference run's variance explained by its top 10 PCs",
        "the same share for the random walk",
        f"above(share, {PAPER_TOP10 - MARGIN:.4f}) (the paper's value minus 10 points)",
    ),
]
NOTES: dict[str, str] = {  # written after the full-mode results, by the reviewer
    "orders_vs_inits": (
        "in 600 SGD steps on digits, runs from one initialisation end close together (the "
        "initialisation sets where they end); the paper's networks were larger and trained far "
        "longer"
    ),
    "clones_vs_inits": ("as above: clones share more of the path still, so they end closer still"),
    "top2": (
        "a random walk of the same length passes the paper's threshold too: the share alone does "
        "not separate training from diffusion"
    ),
    "top10": ("as for top 2: the random-walk control passes as well"),
}

RULES = {
    "orders_vs_inits": lambda est: within(est, *BAND),
    "clones_vs_inits": lambda est: within(est, *BAND),
    "top2": lambda est: above(est, PAPER_TOP2 - MARGIN),
    "top10": lambda est: above(est, PAPER_TOP10 - MARGIN),
}


def random_walk(t: int, n: int, seed: int) -> np.ndarray:
    """The ``(t, n)`` Gaussian random walk of ``seed`` (see the module docstring)."""
    steps = np.random.default_rng([WALK_ENTROPY, seed, 0]).standard_normal((t - 1, n))
    return np.vstack([np.zeros((1, n)), np.cumsum(steps, axis=0)])


# ---------------------------------------------------------------------------- one seed
def train_seed(problem: str, seed: int, runs_dir: Path, steps: int, every: int, k: int) -> dict:
    """Train a seed's four runs (the clone from the reference run's step ``k``)."""
    plan = {  # label: (initialisation, data order, start)
        "reference": (seed, seed, None),
        "init": (seed + OTHER, seed, None),
        "order": (seed, seed + OTHER, None),
        "clone": (seed, seed + CLONE_ORDER, k),
    }
    runs = {}
    for label, (init, order, start) in plan.items():
        runs[label] = train(
            ws.zoo.problem(problem, seed=init),
            runs_dir / label,
            optimizer="sgd",
            lr=LR,
            momentum=MOMENTUM,
            batch_size=BATCH_SIZE,
            steps=steps - (start or 0),
            every=every,
            data_seed=order,
            init_from=None if start is None else (runs["reference"], start),
            metadata={"label": label, "init_seed": init},
        )
    return runs


def measure_seed(objective: ws.Objective, seed: int, runs: dict, k: int) -> dict:
    """Every raw number of one seed (float64 snapshots throughout)."""
    points = [ws.Trajectory.load(runs[lab]).array(np.float64) for lab in RUNS]
    ends = endpoint_matrices(points)
    d = {lab: float(ends.distances[0, i]) for i, lab in enumerate(RUNS)}
    ref = ws.Trajectory.load(runs["reference"])
    paths = path_metrics(points[0])
    walk = random_walk(*points[0].shape, seed)
    share, walk_share = variance_explained(points[0], 10), variance_explained(walk, 10)
    return {
        "seed": seed,
        "d_inits": d["init"],
        "d_orders": d["order"],
        "d_clones": d["clone"],
        "d_stretch": float(paths.distance_to_final[ref.index_of(k)]),
        "final_norm": {lab: float(np.linalg.norm(x[-1])) for lab, x in zip(RUNS, points)},
        "final_loss": {
            lab: float(ws.points_losses(objective, x[-1:])[0]) for lab, x in zip(RUNS, points)
        },
        "top2": float(share[1]),
        "top10": float(share[9]),
        "walk_top2": float(walk_share[1]),
        "walk_top10": float(walk_share[9]),
    }


# ---------------------------------------------------------------------------- statistics
def statistics(per_seed: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Each claim's per-seed statistic and control, from the raw numbers of the seeds."""
    stretch = [p["d_stretch"] / p["d_inits"] for p in per_seed]
    return {
        "orders_vs_inits": ([p["d_orders"] / p["d_inits"] for p in per_seed], stretch),
        "clones_vs_inits": ([p["d_clones"] / p["d_inits"] for p in per_seed], stretch),
        "top2": ([p["top2"] for p in per_seed], [p["walk_top2"] for p in per_seed]),
        "top10": ([p["top10"] for p in per_seed], [p["walk_top10"] for p in per_seed]),
    }


def judge(stats: dict[str, tuple[list[float], list[float]]]) -> dict[str, dict]:
    """The estimates and verdicts of every claim (and of its control under the same rule),
    from :func:`statistics`' numbers alone."""
    return judge_claims(CLAIMS, RULES, stats)


# ---------------------------------------------------------------------------- figures
def figures(out: Path, runs: dict, verdicts: dict, k: int) -> None:
    """The first seed's distances over training, and every seed's ratios against the band."""
    metrics = {lab: path_metrics(ws.Trajectory.load(runs[lab])) for lab in RUNS}

    def series(attr: str) -> dict:
        return {lab: (m.steps, getattr(m, attr)) for lab, m in metrics.items()}

    fig, _ = static.plot_metrics_panel(
        {
            "distance from the origin ‖θ‖": series("norm"),
            f"distance from the start (clone: step {k})": series("distance_from_init"),
            "distance to the run's final point": series("distance_to_final"),
        }
    )
    save(fig, out, "lipton_distances")
    fig = new_figure((6.4, 3.6))
    ax = fig.add_subplot()
    ax.axhspan(*BAND, color="0.9", label="band 2/3 … 3/2")
    keys = ("orders_vs_inits", "clones_vs_inits")
    for x, key in enumerate(keys):
        for dx, part, color in ((-0.12, "value", "C0"), (0.12, "control", "C3")):
            est = verdicts[key][part]
            ax.plot([x + dx] * est.n, est.values, "o", color=color, alpha=0.5, ms=4)
            ax.errorbar(
                x + dx,
                est.mean,
                [[est.mean - est.low], [est.high - est.mean]],
                fmt="s",
                color=color,
                capsize=4,
            )
    ax.plot([], [], "s", color="C0", label="claim: d_(ii) or d_(iii) / d_(i)")
    ax.plot([], [], "s", color="C3", label="control: d_stretch / d_(i)")
    ax.set_xticks(range(len(keys)), ["orders / inits", "clones / inits"])
    ax.set_xlim(-0.6, len(keys) - 0.4)
    ax.set_yscale("log")
    ax.set_ylabel("ratio of distances (per seed, mean, 95 %)")
    ax.legend(fontsize=7)
    save(fig, out, "lipton_ratios")


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    args = parse_args(__doc__, argv, problem="digits-mlp", steps=0, every=0, clone_step=0, seeds=0)
    steps = args.steps or (100 if args.quick else 600)
    every = args.every or (5 if args.quick else 10)
    k = args.clone_step or (30 if args.quick else 150)
    n_seeds = args.seeds or (3 if args.quick else 10)
    seeds = [args.seed + i for i in range(n_seeds)]
    for claim in CLAIMS:  # the pre-registration, before anything is computed
        print(claim.describe())
    out, runs_dir = args.out, fresh_dir(args.out / "runs")
    problem = ws.zoo.problem(args.problem, seed=args.seed)
    problem.model.double()  # losses in float64, as the snapshots are read
    objective = ws.Objective(problem)
    per_seed, first = [], None
    for seed in seeds:
        runs = train_seed(args.problem, seed, runs_dir / f"seed{seed}", steps, every, k)
        per_seed.append(measure_seed(objective, seed, runs, k))
        first = first or runs

    verdicts = judge(statistics(per_seed))
    figures(out, first, verdicts, k)
    claims = claims_table(CLAIMS, verdicts, out, "lipton_claims")
    names = (
        "seed",
        "d_inits",
        "d_orders",
        "d_clones",
        "d_stretch",
        "top2",
        "top10",
        "walk_top2",
        "walk_top10",
    )
    seed_rows = [{name: p[name] for name in names} for p in per_seed]
    for row, p in zip(seed_rows, per_seed):
        row.update({f"final loss {lab}": p["final_loss"][lab] for lab in RUNS})
    write_table(seed_rows, out, "lipton_per_seed")

    summary = {
        "claims": claims,
        "control_verdicts": {key: v["control_verdict"] for key, v in verdicts.items()},
        "seeds": n_seeds,
        "seed_list": seeds,
        "settings": {
            "steps": steps,
            "every": every,
            "clone_step": k,
            "lr": LR,
            "momentum": MOMENTUM,
            "band": list(BAND),
            "paper_top2": PAPER_TOP2,
            "paper_top10": PAPER_TOP10,
            "margin": MARGIN,
        },
        "per_seed": per_seed,
        "seconds": time.perf_counter() - start,
    }
    write_summary(out, summary)
    print(f"{n_seeds} seeds, {summary['seconds']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
