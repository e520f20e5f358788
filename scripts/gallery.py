"""Regenerate the README gallery from a real demo run.

python benchmarks/demo.py --out demo-out      # or: weightspace demo -o demo-out
python scripts/gallery.py --from demo-out     # writes docs/gallery/*.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from weightspace.landscape import load_surface
from weightspace.render import save_figure, static
from weightspace.store import load_result

GALLERY = Path(__file__).resolve().parents[1] / "docs" / "gallery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="src", default="demo-out", help="demo output directory")
    parser.add_argument("--out", default=str(GALLERY))
    args = parser.parse_args()
    art, out = Path(args.src) / "artifacts", Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    surf = load_surface(art / "surface-pca")
    trajs = [
        {
            "coords": t.coords,
            "steps": t.steps,
            "loss": t.loss,
            "label": t.name,
            "residual": t.residual,
            "projected_loss": t.plane_loss,
        }
        for t in surf.trajectories
    ]
    fig, _ = static.plot_surface_contour(
        surf.xs, surf.ys, surf.values, trajs, log=True, title="Four optimisers on one PCA plane"
    )
    save_figure(fig, out / "surface.png", dpi=90)

    arrays, meta = load_result(art / "pca")
    labels = meta["labels"]
    coords = [arrays[f"coords_{r}"] for r in range(len(labels))]
    losses = [arrays[f"metric_{r}_loss"] for r in range(len(labels))]
    fig, _ = static.plot_parametric_3d(coords[:4], losses[:4], labels[:4])
    save_figure(fig, out / "pca_3d.png", dpi=90)
    fig, _ = static.plot_pca_spectrum(
        arrays["ratios_1"], arrays["null_ratios_1"], arrays["correlations_1"], title=labels[1]
    )
    save_figure(fig, out / "pca_null.png", dpi=90)

    emb = {}
    scores = {}
    for name, key in (("PHATE", "phate"), ("t-SNE", "tsne")):
        a, m = load_result(art / key)
        emb[name] = np.concatenate([a[f"coords_{r}"] for r in range(len(m["labels"]))])
        scores[name] = m["trajectory_preservation"]
        steps = np.concatenate([a[f"steps_{r}"] for r in range(len(m["labels"]))])
    fig, _ = static.plot_embeddings(emb, scores, color=steps.astype(float))
    save_figure(fig, out / "embeddings.png", dpi=90)

    spec, smeta = load_result(art / "spectrum-sgd-m0.9")
    fig, _ = static.plot_density_heatmap(
        spec["positions"], spec["grid"], spec["density"], float(smeta["sigma"])
    )
    save_figure(fig, out / "density.png", dpi=90)
    print("\n".join(str(p) for p in sorted(out.glob("*.png"))))


if __name__ == "__main__":
    main()
