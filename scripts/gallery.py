"""Regenerate the README gallery from a real demo run.

python benchmarks/demo.py --out demo-out      # or: weightspace demo -o demo-out
python scripts/gallery.py --from demo-out     # writes docs/gallery/*.png

    # between two solutions: two runs from different initialisations, then
weightspace record --problem digits-mlp --lr 0.1 --steps 300 --every 30 --init-seed 0 -o a
weightspace record --problem digits-mlp --lr 0.1 --steps 300 --every 30 --init-seed 1 -o b
weightspace connect --problem digits-mlp a b --align weights --steps 300 -o ab
python scripts/gallery.py --from none --connect ab.npz   # docs/gallery/connect.png alone
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from weightspace.render import save_figure, static
from weightspace.results import load

GALLERY = Path(__file__).resolve().parents[1] / "docs" / "gallery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="src", default="demo-out", help="demo output directory")
    parser.add_argument("--out", default=str(GALLERY))
    parser.add_argument("--connect", help="a saved Connection (weightspace connect -o)")
    args = parser.parse_args()
    art, out = Path(args.src) / "artifacts", Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.connect:
        connection_figure(args.connect, out / "connect.png")
        if not art.is_dir():  # the connection alone
            return

    surf = load(art / "surface-pca", kind="surface")
    fig, _ = static.plot_surface_contour(
        surf.xs,
        surf.ys,
        surf.values,
        surf.trajectories,  # PlaneTrajectory objects, drawn as they are
        log=True,
        title="Four optimisers on one PCA plane",
    )
    save_figure(fig, out / "surface.png", dpi=90)

    proj = load(art / "pca", kind="projection")
    runs = proj.runs[:4]
    fig, _ = static.plot_parametric_3d(
        [r.coords for r in runs], [r.metrics["loss"] for r in runs], [r.label for r in runs]
    )
    save_figure(fig, out / "pca_3d.png", dpi=90)
    null = proj.runs[1].null
    fig, _ = static.plot_pca_spectrum(
        null.ratios, null.null_ratios, null.correlations, title=proj.runs[1].label
    )
    save_figure(fig, out / "pca_null.png", dpi=90)

    emb, scores, labels = {}, {}, {}
    for name, key in (("PHATE", "phate"), ("t-SNE", "tsne")):
        p = load(art / key, kind="projection")
        emb[name] = [c[:, :2] for c in p.coords]  # each run its own colour
        labels[name] = list(p.labels)
        scores[name] = p.metadata["trajectory_preservation"]
    fig, _ = static.plot_embeddings(emb, scores, labels=labels)
    save_figure(fig, out / "embeddings.png", dpi=90)

    curves = load(art / "curves-test", kind="curves")
    panel = {
        "loss on the test data": {c.label: (c.steps, c.loss) for c in curves.runs},
        "accuracy on the test data": {c.label: (c.steps, c.accuracy) for c in curves.runs},
    }
    fig, axes = static.plot_metrics_panel(panel, ncols=2)
    axes[0].set_yscale("log")
    save_figure(fig, out / "curves.png", dpi=90)

    spec = load(art / "spectrum-sgd-m0.9", kind="spectrum")
    fig, _ = static.plot_density_heatmap(
        spec.positions,
        spec.densities[0].grid,
        np.stack([d.density for d in spec.densities]),
        float(spec.densities[0].sigma),
    )
    save_figure(fig, out / "density.png", dpi=90)
    fig, _ = static.plot_top_eigenvalues(
        spec.positions,
        spec.eigenvalues,
        lr=spec.metadata.get("lr"),
        optimizer=spec.metadata.get("optimizer"),
    )
    save_figure(fig, out / "eigenvalues.png", dpi=90)
    print("\n".join(str(p) for p in sorted(out.glob("*.png"))))


def connection_figure(path: str, png: Path) -> None:
    """Loss along t on the training and test data: the straight line, the line after
    aligning B's units to A's, and the trained curve."""
    from weightspace.between.results import PATH_LABELS

    conn = load(path, kind="connection")
    panel = {
        f"loss on the {split} data": {
            PATH_LABELS[p]: (
                conn.profiles[f"{p}/{split}"].alphas,
                conn.profiles[f"{p}/{split}"].values,
            )
            for p in conn.paths
        }
        for split in ("train", "test")
        if split in conn.splits
    }
    fig, axes = static.plot_metrics_panel(panel, ncols=2)
    for ax in axes:
        ax.set_xlabel("t (0: A, 1: B)")
    save_figure(fig, png, dpi=90)


if __name__ == "__main__":
    main()
