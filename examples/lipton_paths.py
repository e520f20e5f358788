"""Where runs go: initialisations, data orders and clones (Lipton 2016).

Z. C. Lipton, "Stuck in a What? Adventures in Weight Space", ICLR 2016 workshop
(arXiv:1602.07320). Lipton trained networks from several initialisations, from one
initialisation with different data orders, and as clones that share the first part of a run
and then continue with different orders; he measured the distance of the weights from the
origin over training, the distances between the solutions, the path lengths and how much of
each path its top principal components explain. Runs from one initialisation with different
shuffles end far apart in weight space while their losses are nearly the same.

This example trains the digits MLP (``weightspace.zoo``) with SGD (momentum 0.9): a
reference run (initialisation ``seed``, data order ``seed``), two runs from other
initialisations, two runs from the reference initialisation with other data orders, and two
clones of the reference run from step K on with other data orders. It draws the distances
from the origin, from the initialisation and to the final point over training, the joint
PCA of all runs, and the pairwise distances between the final points, and it tabulates path
lengths and the variance explained by the top 1-3 PCs of each run.

The check, "runs from the same initialisation with different shuffles end farther apart than
their final loss difference would suggest", is made exact with a quadratic model. Near a
minimum a loss difference ``ΔL`` needs a displacement of at least
``d_q = sqrt(2·|ΔL| / λ_max)`` (moving along the stiffest direction, curvature ``λ_max``).
For every pair of same-initialisation runs we measure their final distance ``d``, their
full-training-set losses and ``λ_max`` at both endpoints (``ws.top_eigenpairs``; the smaller
of the two, which makes ``d_q`` larger and the check harder). The check holds when
``d ≥ 3·d_q`` for every such pair. The summary stores the boolean and, for each pair, ``d``,
``ΔL`` and ``λ_max``, from which ``d / d_q`` can be recomputed. For context the summary also
holds the ratio of the mean same-initialisation distance to the mean distance between
different initialisations' endpoints, and the curvature along each pair's displacement.

Run: ``python examples/lipton_paths.py --out out/lipton`` (``--quick`` for a few seconds).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import check_line, fresh_dir, parse_args, save, write_summary, write_table

import weightspace as ws
from weightspace.analysis import endpoint_matrices, path_metrics, variance_explained
from weightspace.render import new_figure, static
from weightspace.train import train

FACTOR = 3.0  # the check: d >= FACTOR * d_q
LR, MOMENTUM = 0.05, 0.9


def plan(seed: int, clone_step: int) -> list[dict]:
    """The runs: label, group, initialisation seed, data seed, parent run for clones."""
    s = seed
    return [
        {"label": "reference", "group": "reference", "init": s, "order": s, "parent": None},
        {"label": "init +1", "group": "inits", "init": s + 1, "order": s, "parent": None},
        {"label": "init +2", "group": "inits", "init": s + 2, "order": s, "parent": None},
        {"label": "order +1", "group": "shuffles", "init": s, "order": s + 1, "parent": None},
        {"label": "order +2", "group": "shuffles", "init": s, "order": s + 2, "parent": None},
        {"label": "clone +1", "group": "clones", "init": s, "order": s + 101, "parent": clone_step},
        {"label": "clone +2", "group": "clones", "init": s, "order": s + 102, "parent": clone_step},
    ]


def record(args, runs_dir: Path, specs: list[dict], steps: int, every: int) -> list:
    """Train every run in ``specs`` (clones from the reference run's step K)."""
    trajs = []
    for spec in specs:
        run = runs_dir / spec["label"].replace(" +", "-")
        k = spec["parent"]
        train(
            ws.zoo.problem(args.problem, seed=spec["init"]),
            run,
            optimizer="sgd",
            lr=LR,
            momentum=MOMENTUM,
            batch_size=64,
            steps=steps - (k or 0),
            every=every,
            data_seed=spec["order"],
            init_from=None if k is None else (runs_dir / "reference", k),
            metadata={"label": spec["label"], "init_seed": spec["init"]},
        )
        trajs.append(ws.Trajectory.load(run))
    return trajs


def lambda_max(obj: ws.Objective, theta: torch.Tensor) -> float:
    """Largest Hessian eigenvalue of the training loss at ``theta``."""
    eig = ws.top_eigenpairs(ws.HessianOperator(obj, theta), k=1, which="largest", seed=0)
    return float(eig.eigenvalues[0])


def curvature_along(obj: ws.Objective, theta: torch.Tensor, delta: torch.Tensor) -> float:
    """Rayleigh quotient ``δᵀHδ / δᵀδ`` at ``theta``: the curvature along ``delta``."""
    hd = ws.HessianOperator(obj, theta) @ delta
    return float(delta @ hd / (delta @ delta))


def distance_figure(labels: list[str], d: np.ndarray):
    """Heat map of the pairwise distances between final points, with the numbers."""
    fig = new_figure((6.4, 5.2))
    ax = fig.add_subplot()
    im = ax.imshow(d, cmap="viridis")
    mid = 0.5 * (d.min() + d.max())
    for i, j in itertools.product(range(len(d)), repeat=2):
        color = "k" if d[i, j] > mid else "w"  # readable on the light and the dark end
        ax.text(j, i, f"{d[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(d)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(d)), labels)
    ax.set_title("‖θ_i − θ_j‖ between final points")
    fig.colorbar(im, ax=ax, label="distance")
    return fig


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__, argv, problem="digits-mlp", steps=0, every=0, clone_step=0)
    steps = args.steps or (100 if args.quick else 600)
    every = args.every or (5 if args.quick else 10)
    clone_step = args.clone_step or (30 if args.quick else 150)
    out = args.out
    specs = plan(args.seed, clone_step)
    trajs = record(args, fresh_dir(out / "runs"), specs, steps, every)
    labels = [s["label"] for s in specs]

    obj = ws.Objective(ws.zoo.problem(args.problem, seed=args.seed))
    finals = [t.theta(-1, dtype=torch.float64) for t in trajs]
    loss = [float(obj(th)) for th in finals]
    metrics = [path_metrics(t) for t in trajs]
    ends = endpoint_matrices(trajs)
    pca = ws.PCA(n_components=3).fit(trajs)

    def series(attr: str) -> dict:
        return {lab: (m.steps, getattr(m, attr)) for lab, m in zip(labels, metrics)}

    fig, _ = static.plot_metrics_panel(
        {
            "distance from the origin ‖θ‖": series("norm"),
            "distance from the start (clones: the branch point)": series("distance_from_init"),
            "distance to the run's final point": series("distance_to_final"),
        }
    )
    save(fig, out, "lipton_distances")
    fig, _ = static.plot_pc_pairs(pca.transform_runs_, labels, k=3)
    fig.suptitle(f"joint PCA of {len(trajs)} runs (clones branch off at step {clone_step})")
    save(fig, out, "lipton_pcs")
    save(distance_figure(labels, ends.distances), out, "lipton_endpoint_distances")

    rows = []
    for spec, t, m, lo in zip(specs, trajs, metrics, loss):
        ve = variance_explained(t, 3)
        rows.append(
            {
                "run": spec["label"],
                "init seed": spec["init"],
                "data seed": spec["order"],
                "start step": int(t.steps[0]),
                "path length": m.path_length,
                "straightness": m.straightness,
                "final ‖θ‖": float(m.norm[-1]),
                "final loss": lo,
                "var PC1": float(ve[0]),
                "var PC1-2": float(ve[1]),
                "var PC1-3": float(ve[2]),
            }
        )
    write_table(rows, out, "lipton_runs")
    print("pairwise distances between final points:")
    dist_rows = [
        {"": a, **{b: float(ends.distances[i, j]) for j, b in enumerate(labels)}}
        for i, a in enumerate(labels)
    ]
    write_table(dist_rows, out, "lipton_endpoint_distances")

    same = [i for i, s in enumerate(specs) if s["group"] in ("reference", "shuffles")]
    inits = [i for i, s in enumerate(specs) if s["group"] in ("reference", "inits")]
    lam = {i: lambda_max(obj, finals[i]) for i in same}
    pairs, pair_rows = [], []
    for i, j in itertools.combinations(same, 2):
        d, dl = float(ends.distances[i, j]), abs(loss[i] - loss[j])
        lmax = min(lam[i], lam[j])
        d_q = float(np.sqrt(2 * dl / lmax))
        along = curvature_along(obj, finals[i], finals[j] - finals[i])
        pairs.append(
            {
                "i": i,
                "j": j,
                "distance": d,
                "loss_difference": dl,
                "lambda_max": lmax,
                "curvature_along_displacement": along,
            }
        )
        pair_rows.append(
            {
                "pair": f"{labels[i]} / {labels[j]}",
                "distance d": d,
                "|ΔL|": dl,
                "λ_max": lmax,
                "d_q = sqrt(2|ΔL|/λ_max)": d_q,
                "d / d_q": d / d_q if d_q > 0 else float("inf"),
                "curvature along θ_j−θ_i": along,
            }
        )
    write_table(pair_rows, out, "lipton_same_init_pairs")
    ratios = [r["d / d_q"] for r in pair_rows]
    holds = bool(min(ratios) >= FACTOR)
    mean_same = float(np.mean([p["distance"] for p in pairs]))
    init_d = [float(ends.distances[i, j]) for i, j in itertools.combinations(inits, 2)]
    check_line(
        "runs from one initialisation with different data orders end far apart although "
        "their losses are nearly equal",
        f"same-initialisation pairs end d / d_q = {', '.join(f'{r:.3g}' for r in ratios)} "
        f"times farther apart than the quadratic model needs for their loss difference "
        f"(d_q = sqrt(2|ΔL|/λ_max)); criterion d ≥ {FACTOR:g}·d_q for every pair. Their mean "
        f"distance is {mean_same / np.mean(init_d):.2f} × the mean distance between different "
        "initialisations' endpoints",
        holds,
    )
    summary = {
        "check": {
            "holds": holds,
            "factor": FACTOR,
            "pairs": pairs,
            "min_ratio": min(ratios),
            "same_init_over_different_init_distance": mean_same / float(np.mean(init_d)),
        },
        "final_distances": ends.distances.tolist(),
        "final_loss": loss,
        "path_length": [m.path_length for m in metrics],
        "joint_explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
        "clone_step": clone_step,
        "steps": steps,
        "seed": args.seed,
    }
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
