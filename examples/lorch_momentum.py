"""Momentum smooths the path through weight space (Lorch 2016).

E. Lorch, "Visualizing Deep Network Training Trajectories with PCA", ICML 2016 Workshop on
Visualization for Deep Learning. Lorch recorded the weights of networks trained with SGD at
several momentum values and with Adam, projected every run on one joint PCA, drew the PC pairs
and 3-D parametric plots (PC 1, PC 2, −loss), and observed that higher momentum gives a
smoother, less zig-zagging path.

This example trains the digits MLP (``weightspace.zoo``) from one initialisation and one data
order with SGD at momentum μ = 0.5, 0.9 and 0.99 and with Adam. The SGD learning rate is
``lr = 0.5·(1 − μ)``, so the effective step ``lr / (1 − μ)`` is the same 0.5 for every μ and
momentum is the only difference. The four runs are projected by one joint PCA; the figures
are the grid of PC pairs and the 3-D parametric plot (PC 1, PC 2, −loss) on one loss colour
scale. For each run the table gives the mean turning angle between consecutive recorded
steps in the joint PC 1–PC 2 plane, the same angle in the full weight space, the
straightness (displacement / path length), the path length and the share of the run's own
variance explained by its PCs 1–2.

The check: Lorch's observation as a number, "the mean turning angle in the PC 1–PC 2 plane
decreases with μ" (0.5 > 0.9 > 0.99); it is printed as holds / does not hold and stored as
``summary["check"]["holds"]`` with the angles it compares.

Run: ``python examples/lorch_momentum.py --out out/lorch`` (``--quick`` for a few seconds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import check_line, fresh_dir, parse_args, save, write_summary, write_table

import weightspace as ws
from weightspace.analysis import path_metrics, variance_explained
from weightspace.render import static
from weightspace.train import train

MOMENTA = (0.5, 0.9, 0.99)
EFFECTIVE_LR = 0.5  # lr / (1 − μ), the same for every momentum
ADAM_LR = 0.002


def turning_angles(xy: np.ndarray) -> np.ndarray:
    """Angles (degrees) between consecutive steps of a path: ``xy (T, d) -> (T − 2,)``."""
    v = np.diff(xy, axis=0)
    norms = np.linalg.norm(v, axis=1)
    ok = (norms[:-1] > 0) & (norms[1:] > 0)
    cos = np.einsum("ij,ij->i", v[:-1], v[1:])[ok] / (norms[:-1] * norms[1:])[ok]
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__, argv, problem="digits-mlp", steps=0, every=0)
    steps = args.steps or (100 if args.quick else 800)
    every = args.every or (4 if args.quick else 5)
    out, runs_dir = args.out, fresh_dir(args.out / "runs")
    specs = [(f"sgd μ={m}", "sgd", EFFECTIVE_LR * (1 - m), m) for m in MOMENTA]
    specs.append(("adam", "adam", ADAM_LR, 0.0))
    trajs = []
    for label, opt, lr, mu in specs:
        run = runs_dir / label.replace(" μ=", "-m")
        train(
            ws.zoo.problem(args.problem, seed=args.seed),
            run,
            optimizer=opt,
            lr=lr,
            momentum=mu,
            batch_size=64,
            steps=steps,
            every=every,
            data_seed=args.seed,
            metadata={"label": label},
        )
        trajs.append(ws.Trajectory.load(run))
    labels = [s[0] for s in specs]

    pca = ws.PCA(n_components=4).fit(trajs)  # one joint PCA of all runs
    scores = pca.transform_runs_
    obj = ws.Objective(ws.zoo.problem(args.problem, seed=args.seed))
    losses = [ws.points_losses(obj, t) for t in trajs]  # full training-set loss at each snapshot

    fig, _ = static.plot_pc_pairs(scores, labels, k=4)
    fig.suptitle(f"one joint PCA of {len(trajs)} runs ({args.problem}, {steps} steps)")
    save(fig, out, "lorch_pc_pairs")
    fig, ax = static.plot_parametric_3d(scores, losses, labels)
    ax.set_title("(PC 1, PC 2, −loss), one loss colour scale")
    save(fig, out, "lorch_parametric_3d")

    rows = []
    for (label, _, lr, _), traj, s, loss in zip(specs, trajs, scores, losses):
        m = path_metrics(traj)
        cos = m.update_cosines[np.isfinite(m.update_cosines)]
        full = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        rows.append(
            {
                "run": label,
                "lr": lr,
                "mean turn PC1-2 (deg)": float(turning_angles(s[:, :2]).mean()),
                "mean turn full space (deg)": float(full.mean()),
                "straightness": m.straightness,
                "path length": m.path_length,
                "own var PC1-2": float(variance_explained(traj, 2)[1]),
                "final loss": float(loss[-1]),
            }
        )
    write_table(rows, out, "lorch_table")

    angles = [r["mean turn PC1-2 (deg)"] for r in rows[: len(MOMENTA)]]
    full_angles = [r["mean turn full space (deg)"] for r in rows[: len(MOMENTA)]]
    holds = bool(np.all(np.diff(angles) < 0))
    check_line(
        "higher momentum gives a smoother path through weight space",
        "mean turning angle in the joint PC 1-PC 2 plane for μ = "
        + ", ".join(f"{m}: {a:.3g}°" for m, a in zip(MOMENTA, angles))
        + " (must decrease with μ); in the full space "
        + ", ".join(f"{a:.3g}°" for a in full_angles),
        holds,
    )
    summary = {
        "check": {
            "holds": holds,
            "momenta": list(MOMENTA),
            "mean_turn_pc12_deg": angles,
            "mean_turn_full_deg": full_angles,
            "full_space_also_decreasing": bool(np.all(np.diff(full_angles) < 0)),
        },
        "joint_explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
        "runs": {r["run"]: {k: v for k, v in r.items() if k != "run"} for r in rows},
        "steps": steps,
        "every": every,
        "seed": args.seed,
    }
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
