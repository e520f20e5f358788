"""Loss landscapes on random and on PCA planes, with the training path (Li et al. 2018).

H. Li, Z. Xu, G. Taylor, C. Studer and T. Goldstein, "Visualizing the Loss Landscape of
Neural Nets", NeurIPS 2018; and the Oregon State University term project that re-implemented
it with contour, mesh and contour-plus-mesh views and exported the surfaces for OpenGL
viewers. Li et al. plot ``f(α, β) = L(θ* + α·δ + β·η)`` around a solution ``θ*`` along two
random Gaussian directions, each filter-normalised (every filter of ``δ`` scaled to the norm
of the matching filter of ``θ*``; biases zeroed), and 1-D lines ``L(θ* + α·δ)``. They observe
that a training path cannot be drawn on random directions: in high dimension two random
directions are nearly orthogonal to the path, so the path's projection is a dot at the
centre. Directions from a PCA of ``θ_i − θ_n`` (the snapshots relative to the final point)
capture the path, whose top two PCs explain most of its variance.

This example trains the digits MLP (``weightspace.zoo``) with SGD, then evaluates the loss on
a grid of two planes through the final point: filter-normalised random directions (span
±1 in filter-normalised units) and the top two PCA directions of the run (unit vectors;
the span covers the projected path). On each plane it draws the 2-D contour with the path
(coordinates by least squares) and the 3-D mesh, and contour plus mesh on the PCA plane;
it draws 1-D lines along the first random and the first PCA direction, and exports both
surfaces as PLY meshes and VTK files with the path (``weightspace.render.export``). The
table gives, for each plane, the path's off-plane residual
``‖θ_t − c − a·d1 − b·d2‖ / ‖θ_t − c‖`` (largest and mean over snapshots) and the loss
range on the plane. The summary stores whether the PCA plane
holds the path better than the random plane (smaller mean residual; the largest is at the
last snapshots, which are close to the centre and jitter off any plane), as Li et al. found.

Run: ``python examples/li_landscape.py --out out/li`` (``--quick`` for a few seconds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import check_line, fresh_dir, parse_args, save, write_summary, write_table

import weightspace as ws
from weightspace.landscape import plane_extent
from weightspace.render import export, new_figure, static
from weightspace.train import train


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__, argv, problem="digits-mlp", steps=0, every=0, grid=0)
    steps = args.steps or (100 if args.quick else 600)
    every = args.every or (5 if args.quick else 10)
    n = args.grid or (11 if args.quick else 31)
    out = args.out
    run = train(
        ws.zoo.problem(args.problem, seed=args.seed),
        fresh_dir(out / "runs") / "sgd",
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        steps=steps,
        every=every,
        data_seed=args.seed,
    )
    traj = ws.Trajectory.load(run)
    obj = ws.Objective(ws.zoo.problem(args.problem, seed=args.seed))
    center = traj.theta(-1)

    random = ws.random_directions(
        center, obj.layout, 2, normalization="filter", ignore="biasbn", seed=args.seed
    )
    pca = ws.PCA(n_components=2, centering="final").fit(traj)
    ratio = pca.explained_variance_ratio_
    pcs = ws.directions_from_vectors(
        pca.components_[:2], kind="pca", metadata={"explained_variance_ratio": ratio.tolist()}
    )
    coords, _ = ws.plane_coordinates(traj, center, pcs[0], pcs[1])
    (x0, x1), (y0, y1) = plane_extent(coords, margin=0.15)
    planes = {
        "random": (random, np.linspace(-1, 1, n), np.linspace(-1, 1, n)),
        "pca": (pcs, np.linspace(x0, x1, n), np.linspace(y0, y1, n)),
    }
    surfaces, paths = {}, {}
    for name, (d, xs, ys) in planes.items():
        surf = ws.evaluate_plane(obj, center, d[0], d[1], xs, ys, metadata=d.describe())
        paths[name] = ws.trajectories_on_plane(obj, [traj], center, d[0], d[1])
        surfaces[name] = surf
        export.write_ply(out / f"li_{name}.ply", xs, ys, surf.values, log=True)
        export.write_vtk(out / f"li_{name}.vtk", xs, ys, surf.values, paths[name], log=True)
        print(f"meshes: {out / f'li_{name}.ply'}, {out / f'li_{name}.vtk'}")

    titles = {
        "random": "random filter-normalised directions",
        "pca": f"PCA directions ({100 * ratio.sum():.1f}% of the path's variance)",
    }
    fig = new_figure((12.0, 4.8))
    axes = [fig.add_subplot(1, 2, k + 1) for k in range(2)]
    for ax, (name, surf) in zip(axes, surfaces.items()):
        static.plot_surface_contour(
            surf.xs, surf.ys, surf.values, paths[name], log=True, title=titles[name], ax=ax
        )
    save(fig, out, "li_contours")
    fig = new_figure((12.0, 5.0))
    axes = [fig.add_subplot(1, 2, k + 1, projection="3d") for k in range(2)]
    for ax, (name, surf) in zip(axes, surfaces.items()):
        static.plot_surface_3d(
            surf.xs, surf.ys, surf.values, paths[name], log=True, title=titles[name], ax=ax
        )
    save(fig, out, "li_mesh_3d")
    surf = surfaces["pca"]
    fig, _ = static.plot_contour_and_mesh(
        surf.xs, surf.ys, surf.values, paths["pca"], log=True, title=titles["pca"]
    )
    save(fig, out, "li_contour_mesh_pca")

    fig = new_figure((11.0, 4.0))
    axes = [fig.add_subplot(1, 2, k + 1) for k in range(2)]
    lines = {}
    for ax, (name, (d, _, _)) in zip(axes, planes.items()):
        alphas = np.linspace(-1, 1, 2 * n - 1) if name == "random" else np.linspace(x0, x1, 2 * n)
        line = ws.evaluate_line(obj, center, d[0], alphas)
        lines[name] = line
        se = line.stderr if np.isfinite(line.stderr).any() else None  # NaN with one batch
        static.plot_line(
            line.alphas,
            line.values,
            se,
            xlabel=f"α ({name} direction 1)",
            title=f"1-D: L(θ* + α·d1), {titles[name]}",
            ax=ax,
        )
    save(fig, out, "li_lines")

    rows = []
    for name, surf in surfaces.items():
        res = paths[name][0].residual
        rows.append(
            {
                "plane": name,
                "max off-plane residual": float(np.max(res)),
                "mean off-plane residual": float(np.mean(res)),
                "loss min": float(np.nanmin(surf.values)),
                "loss max": float(np.nanmax(surf.values)),
                "loss range": float(np.nanmax(surf.values) - np.nanmin(surf.values)),
                "centre loss": float(surf.metadata["engine"]["center_loss"]),
                "cos(d1, d2)": float(surf.metadata["cosine"]),
            }
        )
    write_table(rows, out, "li_table")
    rnd_res, pca_res = (r["mean off-plane residual"] for r in rows)
    holds = pca_res < rnd_res
    check_line(
        "a training path lies almost in its top-2 PCA plane but is nearly orthogonal to "
        "random directions",
        f"mean off-plane residual of the path: PCA plane {pca_res:.3g}, random plane {rnd_res:.3g}",
        holds,
    )
    summary = {
        "check": {"holds": holds},
        "planes": {r["plane"]: {k: v for k, v in r.items() if k != "plane"} for r in rows},
        "lines": {
            k: {"min": float(np.nanmin(v.values)), "max": float(np.nanmax(v.values))}
            for k, v in lines.items()
        },
        "explained_variance_ratio": ratio.tolist(),
        "grid": n,
        "steps": steps,
        "seed": args.seed,
    }
    write_summary(out, summary)
    return summary


if __name__ == "__main__":
    main()
