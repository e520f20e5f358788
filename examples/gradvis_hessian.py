"""Hessian-eigenvector planes, spectra through training, and between two minima (GradVis).

A. Chatzimichailidis, F.-J. Pfreundt, N. R. Gauger and J. Keuper, "GradVis: Visualization
and Second Order Analysis of Optimization Surfaces during the Training of Deep Neural
Networks", MLHPC workshop at SC 2019 (arXiv:1909.12108). GradVis draws loss surfaces on the
plane of the top two Hessian eigenvectors at the optimum beside PCA planes of the path
(``θ_i − θ_n``) and random planes; computes Hessian spectra (Lanczos with full
reorthogonalisation, stochastic Lanczos quadrature densities) at checkpoints through
training; and interpolates between two minima with the spectrum at points along the line.

This example trains the digits MLP (``weightspace.zoo``) twice with SGD from two
initialisations (runs A and B). At A's final point it evaluates the loss on three planes with
unit-norm directions and one span, ``±r`` with ``r`` a quarter of the length of A's displacement
from its initialisation: the top-2 Hessian eigenvectors (``ws.top_eigenpairs``), the top-2
PCA directions of A's path (``θ_i − θ_n``), and two filter-normalised random directions
rescaled to unit norm; the surfaces are drawn side by side, with A's path on each. Along A's
training it computes the top eigenvalues, a Hutchinson trace and an SLQ density at several
checkpoints (``ws.curvature_along``, common random numbers), and on the line from A to B the
loss, its barrier and the same spectra at points along it (``ws.evaluate_line``,
``ws.curvature_between``). Tables: λ_max, λ_2 and the trace at every point; the two minima
with the interpolation barrier. At one span the eigenvector plane is expected to be the
steepest of the three; the summary stores whether it is (``eigen_plane_steepest``).

Run: ``python examples/gradvis_hessian.py --out out/gradvis`` (``--quick`` for seconds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import check_line, fresh_dir, parse_args, save, write_summary, write_table

import weightspace as ws
from weightspace.render import new_figure, static
from weightspace.train import train

LR, MOMENTUM = 0.05, 0.9


def unit(d: torch.Tensor) -> torch.Tensor:
    return d / torch.linalg.vector_norm(d)


def planes(obj, traj, center, seed: int) -> dict[str, ws.Directions]:
    """Unit-norm eigenvector, PCA and random planes through ``center``."""
    eig = ws.top_eigenpairs(ws.HessianOperator(obj, center), k=2, which="largest", seed=seed)
    pca = ws.PCA(n_components=2, centering="final").fit(traj)
    rnd = ws.random_directions(center, obj.layout, 2, normalization="filter", seed=seed)
    return {
        "Hessian eigenvectors": ws.directions_from_vectors(
            eig.eigenvectors, kind="eigen", metadata={"eigenvalues": eig.eigenvalues.tolist()}
        ),
        "PCA of θ_i − θ_n": ws.directions_from_vectors(
            torch.from_numpy(pca.components_[:2]).to(center.dtype),
            kind="pca",
            metadata={"explained_variance_ratio": pca.explained_variance_ratio_.tolist()},
        ),
        "random (filter-normalised)": ws.directions_from_vectors(
            torch.stack([unit(v) for v in rnd]), kind="random", metadata=rnd.metadata
        ),
    }


def density_figure(along: ws.CurvatureAlong, what: str):
    """Densities overlaid (left) and as a heat map over the positions (right)."""
    fig = new_figure((12.0, 4.2))
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for pos, dens in zip(along.positions, along.densities):
        static.plot_density(dens.grid, dens.density, dens.sigma, label=f"{what} {pos:g}", ax=a1)
    a1.set_title(f"SLQ eigenvalue densities ({what}s)")
    dens = np.stack([d.density for d in along.densities])
    static.plot_density_heatmap(
        along.positions, along.densities[0].grid, dens, along.densities[0].sigma, ax=a2
    )
    a2.set_xlabel(what)
    return fig


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__, argv, problem="digits-mlp", steps=0, every=0, grid=0)
    q = args.quick
    steps = args.steps or (100 if q else 600)
    every = args.every or (5 if q else 10)
    n = args.grid or (11 if q else 25)
    spec = {
        "trace_probes": 5 if q else 50,
        "density": True,
        "n_probes": 2 if q else 5,
        "n_steps": 15 if q else 60,
        "seed": args.seed,
        "dtype": torch.float64,
    }
    out, runs = args.out, fresh_dir(args.out / "runs")
    trajs = []
    for name, init, order in (("A", args.seed, args.seed), ("B", args.seed + 1, args.seed + 1)):
        train(
            ws.zoo.problem(args.problem, seed=init),
            runs / name,
            optimizer="sgd",
            lr=LR,
            momentum=MOMENTUM,
            steps=steps,
            every=every,
            data_seed=order,
        )
        trajs.append(ws.Trajectory.load(runs / name))
    obj = ws.Objective(ws.zoo.problem(args.problem, seed=args.seed))
    theta_a, theta_b = (t.theta(-1, dtype=torch.float64) for t in trajs)

    # ---- three planes at one span
    r = 0.25 * float(torch.linalg.vector_norm(theta_a - trajs[0].theta(0, dtype=torch.float64)))
    xs = np.linspace(-r, r, n)
    surfs, plane_rows = {}, []
    for name, d in planes(obj, trajs[0], theta_a, args.seed).items():
        s = ws.evaluate_plane(obj, theta_a, d[0], d[1], xs, xs, metadata=d.describe())
        path = ws.trajectories_on_plane(obj, [trajs[0]], theta_a, d[0], d[1], names=["A"])[0]
        surfs[name] = (s, path)
        plane_rows.append(
            {
                "plane": name,
                "loss min": float(np.nanmin(s.values)),
                "loss max": float(np.nanmax(s.values)),
                "mean off-plane residual of A": float(path.residual.mean()),
            }
        )
    fig = new_figure((16.0, 9.0))
    for k, (name, (s, path)) in enumerate(surfs.items()):
        static.plot_surface_contour(
            s.xs, s.ys, s.values, [path], log=True, title=name, ax=fig.add_subplot(2, 3, k + 1)
        )
        static.plot_surface_3d(
            s.xs,
            s.ys,
            s.values,
            log=True,
            title=name,
            ax=fig.add_subplot(2, 3, k + 4, projection="3d"),
        )
    fig.suptitle(f"loss around A's minimum on three planes, unit directions, span ±{r:.3g}")
    save(fig, out, "gradvis_planes")
    write_table(plane_rows, out, "gradvis_planes")

    # ---- spectra through training and between the minima
    through = ws.curvature_along(
        obj, trajs[0], every=max(1, (len(trajs[0]) - 1) // 4), top_k=3, **spec
    )
    save(density_figure(through, "step"), out, "gradvis_spectra_training")
    fig, _ = static.plot_top_eigenvalues(through.positions, through.eigenvalues, through.trace)
    save(fig, out, "gradvis_top_eigenvalues")
    alphas = np.linspace(-0.25, 1.25, 6 * (4 if q else 8) + 1)  # holds 0 and 1 exactly
    line = ws.evaluate_line(obj, theta_a, theta_b - theta_a, alphas)
    between = ws.curvature_between(obj, theta_a, theta_b, 5 if q else 11, top_k=2, **spec)
    save(density_figure(between, "α"), out, "gradvis_spectra_interpolation")
    fig = new_figure((11.0, 4.0))
    se = line.stderr if np.isfinite(line.stderr).any() else None  # NaN with one batch
    static.plot_line(
        line.alphas,
        line.values,
        se,
        line.barrier,
        title="loss from A (α=0) to B (α=1)",
        ax=fig.add_subplot(1, 2, 1),
    )
    static.plot_top_eigenvalues(
        between.positions, between.eigenvalues, between.trace, ax=fig.add_subplot(1, 2, 2)
    )
    fig.axes[1].set_xlabel("α")
    save(fig, out, "gradvis_interpolation")

    rows = []
    for where, c in (("training step", through), ("A→B α", between)):
        for p in range(len(c.positions)):
            rows.append(
                {
                    "where": where,
                    "position": float(c.positions[p]),
                    "loss": float(c.loss[p]),
                    "λ_max": float(c.eigenvalues[p, 0]),
                    "λ_2": float(c.eigenvalues[p, 1]),
                    "trace": float(c.trace[p]),
                    "trace stderr": float(c.trace_stderr[p]),
                }
            )
    write_table(rows, out, "gradvis_table")
    ends = [between.eigenvalues[0, 0], between.eigenvalues[-1, 0]]
    minima = [
        {
            "minimum": m,
            "loss": float(between.loss[i]),
            "λ_max": float(ends[k]),
            "trace": float(between.trace[i]),
            "barrier A→B": line.barrier,
        }
        for k, (m, i) in enumerate((("A", 0), ("B", -1)))
    ]
    write_table(minima, out, "gradvis_minima")

    ranges = [row["loss max"] - row["loss min"] for row in plane_rows]
    steepest = bool(ranges[0] > max(ranges[1:]))
    check_line(
        "the top-2 Hessian eigenvectors span the plane of steepest loss; two minima from "
        "different initialisations are separated by a barrier on the straight line",
        f"loss range at span ±{r:.3g}: eigenvectors {ranges[0]:.3g}, PCA {ranges[1]:.3g}, "
        f"random {ranges[2]:.3g}; barrier A→B {line.barrier:.3g}; λ_max at A {ends[0]:.3g}, "
        f"at B {ends[1]:.3g}",
        steepest,
    )
    summary = {
        "check": {"eigen_plane_steepest": steepest, "loss_range": ranges},
        "barrier": line.barrier,
        "interpolation": {"alphas": line.alphas.tolist(), "loss": line.values.tolist()},
        "lambda_max_training": through.eigenvalues[:, 0].tolist(),
        "trace_training": through.trace.tolist(),
        "lambda_max_interpolation": between.eigenvalues[:, 0].tolist(),
        "trace_interpolation": between.trace.tolist(),
        "sigma_training": through.densities[0].sigma,
        "span": r,
        "steps": steps,
        "seed": args.seed,
    }
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
