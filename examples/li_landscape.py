"""Sharpness, batch size and filter normalisation (Li et al. 2018), as claims that can fail.

H. Li, Z. Xu, G. Taylor, C. Studer and T. Goldstein, "Visualizing the Loss Landscape of
Neural Nets", NeurIPS 2018. Their main claim about sharpness: small-batch training finds
wider minima than large-batch training, and the wider minimum generalises better, *when the
landscape is plotted along filter-normalised directions* (every filter of a Gaussian
direction scaled to the norm of the matching filter of the solution). Without filter
normalisation the comparison misleads: with weight decay, the small-batch minimum looks
*sharper* along raw directions (their Figure 2, weight decay on), because its weights are
larger and the same step is relatively smaller for it, yet it still generalises better.

The runs. For each seed ``s`` (``--seeds`` of them, from ``--seed``), the digits MLP
(``weightspace.zoo``) trained with SGD (lr 0.05, momentum 0.9, weight decay 5e-4, the paper's)
for ``steps`` steps: ``small`` (batch 16, initialisation ``s``, data order ``s``); ``large``
(batch 512, initialisation ``s``, data order ``s``); and ``small-replicate`` (batch 16,
initialisation and data order ``s + 1000``), the control. All numbers are in float64 at the
final snapshot.

The measurements at a run's final point ``θ*``:

* basin width: ``N_DIRECTIONS`` Gaussian directions per seed (``ws.random_directions``,
  seed ``s``; the same Gaussian draws for the three runs of a seed). Along each, the 1-D
  line ``L(θ* + α·d)`` (``ws.evaluate_line``) on ``alphas = linspace(−A, A, n)``; the width
  is the distance between the first crossings of ``L(θ*) + DELTA`` left and right of
  ``α = 0``, found by linear interpolation between grid points (a side that never crosses
  counts as ``A``, and is counted in ``censored``). The run's width is the mean over the
  directions. Filter-normalised directions (``normalization="filter"``, biases zeroed,
  ``A = 1``) give ``width_filter``; the same Gaussian draws, biases included, rescaled to
  unit Euclidean norm (``normalization="none"``, ``ignore=None``, then ``d / ‖d‖``;
  ``A = RAW_SPAN``) give ``width_raw``.
* ``lambda_max``: the largest Hessian eigenvalue (``ws.top_eigenpairs``, Lanczos,
  ``tol = 1e-10``) of the mean training loss.
* ``test_accuracy``: accuracy on the digits test split (``ws.curves_of_runs``).

The claims, with statistics, controls and rules (stated before anything is computed, and
printed before the runs; intervals are 95 % bootstrap intervals of the mean over seeds,
``examples/_verdict.py``). Every statistic is a per-seed paired difference; the control is
the same difference between ``small`` and ``small-replicate`` (same batch size, another seed:
what noise alone gives). Each control is also judged by its claim's rule.

a. ``small_wider``: small batch, wider filter-normalised basin. Statistic:
   ``width_filter(small) − width_filter(large)``. Rule: ``above(difference, 0)``.
b. ``large_sharper``: large batch, larger λ_max (the curvature module, independent of the
   directions). Statistic: ``lambda_max(large) − lambda_max(small)``. Control:
   ``lambda_max(small-replicate) − lambda_max(small)``. Rule: ``above(difference, 0)``.
c. ``small_generalises``: the wider minimum generalises better. Statistic:
   ``test_accuracy(small) − test_accuracy(large)``. Rule: ``above(difference, 0)``.
d. ``raw_misleads``: without filter normalisation, under weight decay, the small-batch basin
   looks narrower. Statistic: ``width_raw(small) − width_raw(large)``. Rule:
   ``below(difference, 0)``. "Not reproduced" here means raw directions give the same
   ordering as filter-normalised ones on this setting.

The summary holds the per-seed raw numbers (widths per direction, censored sides, λ_max,
test accuracies, centre losses, weight norms) from which every statistic can be recomputed.

Run: ``python examples/li_landscape.py --out out/li`` (``--quick``: 3 seeds, seconds).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import claims_table, fresh_dir, parse_args, save, write_summary, write_table
from _verdict import Claim, above, below, judge_claims

import weightspace as ws
from weightspace.render import new_figure
from weightspace.train import train

LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4
BATCHES = {"small": 16, "large": 512, "small-replicate": 16}
REPLICATE_OFFSET = 1000  # the replicate's initialisation and data order: seed + 1000
LABELS = tuple(BATCHES)
N_DIRECTIONS = 3
DELTA = 0.1  # the loss increase (nats) that defines the basin's edge
FILTER_SPAN = 1.0  # A for filter-normalised directions (Li et al.'s plots span ±1)
RAW_SPAN = 25.0  # A for unit-norm raw directions (weight-space units)

CLAIMS = [
    Claim(
        "small_wider",
        "small-batch training finds wider minima along filter-normalised directions",
        f"per seed: width_filter(small) − width_filter(large); width = distance between the "
        f"crossings of L(θ*) + {DELTA} on 1-D filter-normalised lines, mean over "
        f"{N_DIRECTIONS} directions",
        "the same difference between small and a small-batch replicate (another seed)",
        "above(paired difference, 0)",
    ),
    Claim(
        "large_sharper",
        "the large-batch minimum is sharper (larger top Hessian eigenvalue)",
        "per seed: lambda_max(large) − lambda_max(small) (Lanczos)",
        "lambda_max(small-replicate) − lambda_max(small)",
        "above(paired difference, 0)",
    ),
    Claim(
        "small_generalises",
        "the wider (small-batch) minimum generalises better",
        "per seed: test accuracy(small) − test accuracy(large)",
        "test accuracy(small) − test accuracy(small-replicate)",
        "above(paired difference, 0)",
    ),
    Claim(
        "raw_misleads",
        "without filter normalisation, under weight decay, the small-batch minimum looks "
        "narrower (the comparison misleads)",
        f"per seed: width_raw(small) − width_raw(large), unit-norm raw Gaussian directions "
        f"(the same draws), span ±{RAW_SPAN}",
        "the same difference between small and the small-batch replicate",
        "below(paired difference, 0)",
    ),
]
NOTES: dict[str, str] = {  # written after the full-mode results, by the reviewer
    "small_generalises": (
        "test-accuracy differences on digits are below 1 % and below the seed-to-seed spread at 6"
        " seeds"
    ),
    "raw_misleads": (
        "weight decay 5e-4 over this short training does not shrink the large-batch weights "
        "enough to flip the raw comparison (the paper trained CIFAR-10 networks for hundreds of "
        "epochs)"
    ),
}
RULES = {
    "small_wider": lambda est: above(est, 0.0),
    "large_sharper": lambda est: above(est, 0.0),
    "small_generalises": lambda est: above(est, 0.0),
    "raw_misleads": lambda est: below(est, 0.0),
}


# ---------------------------------------------------------------------------- measurements
def basin_width(alphas: np.ndarray, loss: np.ndarray, delta: float) -> tuple[float, int]:
    """Distance between the first crossings of ``loss[centre] + delta`` on each side of the
    centre ``α = 0`` (linear interpolation), and how many sides never cross (counted at the
    end of the grid)."""
    alphas, loss = np.asarray(alphas, np.float64), np.asarray(loss, np.float64)
    c = int(np.argmin(np.abs(alphas)))
    level = loss[c] + delta
    edges, censored = [], 0
    for step in (1, -1):
        i = c
        while 0 <= i + step < len(alphas) and loss[i + step] < level:
            i += step
        if not 0 <= i + step < len(alphas):
            edges.append(alphas[i])
            censored += 1
            continue
        j = i + step
        frac = (level - loss[i]) / (loss[j] - loss[i])
        edges.append(alphas[i] + frac * (alphas[j] - alphas[i]))
    return float(edges[0] - edges[1]), censored


def directions(theta: torch.Tensor, layout: ws.ParamLayout, seed: int) -> dict:
    """The seed's filter-normalised and unit-norm raw directions, from the same draws."""
    filt = ws.random_directions(
        theta, layout, N_DIRECTIONS, normalization="filter", ignore="biasbn", seed=seed
    )
    raw = ws.random_directions(
        theta, layout, N_DIRECTIONS, normalization="none", ignore=None, seed=seed
    )
    return {
        "filter": [d for d in filt],
        "raw": [d / torch.linalg.vector_norm(d) for d in raw],
    }


def widths(objective: ws.Objective, theta: torch.Tensor, dirs: list, span: float, n: int):
    """Per-direction widths, censored sides and the lines' values."""
    alphas = np.linspace(-span, span, n)
    out = {"width": [], "censored": 0, "lines": []}
    for d in dirs:
        line = ws.evaluate_line(objective, theta, d, alphas)
        w, cens = basin_width(line.alphas, line.values, DELTA)
        out["width"].append(w)
        out["censored"] += cens
        out["lines"].append(line.values)
    return out


def train_seed(problem: str, seed: int, runs_dir: Path, steps: int) -> dict:
    """Train a seed's three runs; returns label -> run directory."""
    runs = {}
    for label, batch in BATCHES.items():
        s = seed + (REPLICATE_OFFSET if label == "small-replicate" else 0)
        runs[label] = train(
            ws.zoo.problem(problem, seed=s),
            runs_dir / label,
            optimizer="sgd",
            lr=LR,
            momentum=MOMENTUM,
            weight_decay=WEIGHT_DECAY,
            batch_size=batch,
            steps=steps,
            every=steps,
            data_seed=s,
            metadata={"label": label, "init_seed": s},
        )
    return runs


def measure_seed(objective, test, seed: int, runs: dict, n: int) -> tuple[dict, dict]:
    """Every raw number of one seed, and the lines of its first direction (for figures)."""
    curves = ws.curves_of_runs(test, [runs[lab] for lab in LABELS], at="final")
    out = {"seed": seed, "width_filter": {}, "width_raw": {}, "censored": {}}
    out.update({"lambda_max": {}, "test_accuracy": {}, "centre_loss": {}, "norm": {}})
    lines = {}
    for lab, curve in zip(LABELS, curves.runs):
        theta = ws.Trajectory.load(runs[lab]).theta(-1, dtype=torch.float64)
        dirs = directions(theta, objective.layout, seed)
        filt = widths(objective, theta, dirs["filter"], FILTER_SPAN, n)
        raw = widths(objective, theta, dirs["raw"], RAW_SPAN, n)
        eig = ws.top_eigenpairs(
            ws.HessianOperator(objective, theta), k=1, which="largest", tol=1e-10, seed=seed
        )
        out["width_filter"][lab] = filt["width"]
        out["width_raw"][lab] = raw["width"]
        out["censored"][lab] = {"filter": filt["censored"], "raw": raw["censored"]}
        out["lambda_max"][lab] = float(eig.eigenvalues[0])
        out["test_accuracy"][lab] = float(curve.accuracy[-1])
        out["centre_loss"][lab] = float(objective(theta))
        out["norm"][lab] = float(torch.linalg.vector_norm(theta))
        lines[lab] = (filt["lines"][0], raw["lines"][0])
    return out, lines


# ---------------------------------------------------------------------------- statistics
def statistics(per_seed: list[dict]) -> dict[str, tuple]:
    """Each claim's per-seed paired numbers ``((a, b), (a_control, b_control))``: the
    statistic is ``a − b`` per seed, the control ``a_control − b_control``."""

    def col(name: str, lab: str) -> list[float]:
        return [float(np.mean(p[name][lab])) for p in per_seed]

    rep = "small-replicate"
    out = {}
    for key, name in (("small_wider", "width_filter"), ("raw_misleads", "width_raw")):
        out[key] = ((col(name, "small"), col(name, "large")), (col(name, "small"), col(name, rep)))
    lam = ("lambda_max", "small")
    out["large_sharper"] = (
        (col("lambda_max", "large"), col(*lam)),
        (col("lambda_max", rep), col(*lam)),
    )
    acc = col("test_accuracy", "small")
    out["small_generalises"] = (
        (acc, col("test_accuracy", "large")),
        (acc, col("test_accuracy", rep)),
    )
    return out


def judge(stats: dict[str, tuple]) -> dict[str, dict]:
    """The estimates and verdicts of every claim (and of its control under the same rule),
    from :func:`statistics`' numbers alone."""
    return judge_claims(CLAIMS, RULES, stats)


# ---------------------------------------------------------------------------- figures
def figure(out: Path, lines: dict, n: int) -> None:
    """The first seed's first direction: small vs large batch, with and without filter
    normalisation."""
    fig = new_figure((11.0, 4.0))
    axes = [fig.add_subplot(1, 2, k + 1) for k in range(2)]
    for k, (ax, span, what) in enumerate(
        zip(axes, (FILTER_SPAN, RAW_SPAN), ("filter-normalised", "raw, unit norm"))
    ):
        alphas = np.linspace(-span, span, n)
        for lab in LABELS:
            ax.plot(alphas, lines[lab][k], label=f"{lab} (batch {BATCHES[lab]})", lw=1.3)
        ax.set(title=f"L(θ* + α·d), {what} direction", xlabel="α", ylabel="loss")
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    save(fig, out, "li_lines")


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    args = parse_args(__doc__, argv, problem="digits-mlp", steps=0, seeds=0, points=0)
    steps = args.steps or (150 if args.quick else 1500)
    n_seeds = args.seeds or (3 if args.quick else 6)
    n = args.points or (41 if args.quick else 81)
    seeds = [args.seed + i for i in range(n_seeds)]
    for claim in CLAIMS:  # the pre-registration, before anything is computed
        print(claim.describe())
    out, runs_dir = args.out, fresh_dir(args.out / "runs")
    problem = ws.zoo.problem(args.problem, seed=args.seed)
    problem.model.double()  # every measurement in float64
    objective = ws.Objective(problem)
    test = ws.Objective(problem, data=problem.test_data)
    per_seed, first_lines = [], None
    for seed in seeds:
        runs = train_seed(args.problem, seed, runs_dir / f"seed{seed}", steps)
        numbers, lines = measure_seed(objective, test, seed, runs, n)
        per_seed.append(numbers)
        first_lines = first_lines or lines
    figure(out, first_lines, n)

    verdicts = judge(statistics(per_seed))
    claims = claims_table(CLAIMS, verdicts, out, "li_claims")
    seed_rows = []
    for p in per_seed:
        for lab in LABELS:
            seed_rows.append(
                {
                    "seed": p["seed"],
                    "run": lab,
                    "batch": BATCHES[lab],
                    "width (filter)": float(np.mean(p["width_filter"][lab])),
                    "width (raw)": float(np.mean(p["width_raw"][lab])),
                    "censored sides": sum(p["censored"][lab].values()),
                    "λ_max": p["lambda_max"][lab],
                    "test accuracy": p["test_accuracy"][lab],
                    "train loss": p["centre_loss"][lab],
                    "‖θ*‖": p["norm"][lab],
                }
            )
    write_table(seed_rows, out, "li_per_seed")
    summary = {
        "claims": claims,
        "control_verdicts": {k: v["control_verdict"] for k, v in verdicts.items()},
        "seeds": n_seeds,
        "seed_list": seeds,
        "settings": {
            "steps": steps,
            "points": n,
            "lr": LR,
            "momentum": MOMENTUM,
            "weight_decay": WEIGHT_DECAY,
            "batches": BATCHES,
            "n_directions": N_DIRECTIONS,
            "delta": DELTA,
            "filter_span": FILTER_SPAN,
            "raw_span": RAW_SPAN,
            "replicate_offset": REPLICATE_OFFSET,
        },
        "per_seed": per_seed,
        "seconds": time.perf_counter() - start,
    }
    write_summary(out, summary)
    print(f"{n_seeds} seeds, {summary['seconds']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
