"""``weightspace project RUN [RUN ...]``: project runs (PCA, PHATE, t-SNE, UMAP) and measure
them against the random-walk null.

Writes ``OUT.npz`` + ``OUT.json`` (``kind: "projection"``). Arrays, for run ``r`` (0-based,
in the order given): ``coords_r (T_r, k)`` joint coordinates, ``steps_r``, ``metric_r_NAME``
(recorded metrics), the run's own PCA ``ratios_r``, ``null_ratios_r``, ``correlations_r``
(score–cosine), path metrics ``norm_r``, ``distance_from_init_r``, ``distance_to_final_r``,
``step_lengths_r``, ``update_cosines_r``, ``layer_norms_r``; jointly
``explained_variance_ratio`` and, with ``--save-components``, ``components (k, n)`` and
``center (n,)``. The sidecar holds labels, verdicts and every setting.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..analysis import monotonicity, oscillations, path_metrics
from ..errors import WeightspaceError
from ..projection.embed import TSNE, UMAP, require_umap, trajectory_preservation
from ..projection.gram import center_gram, centering_weights
from ..projection.nulls import compare_to_random_walk
from ..projection.pca import PCA, pca_from_gram
from ..projection.phate import PHATE
from ..store import save_result
from ..trajectory import Trajectory
from . import add_command, show_progress
from .record import positive_int

EXAMPLES = """
  weightspace project runs/sgd -o out/sgd_pca
  weightspace project runs/sgd runs/adam --components 3 --centering final -o out/joint_pca
  weightspace project runs/sgd runs/adam --method phate -o out/phate --json
  weightspace project runs/sgd --method tsne --perplexity 10 -o out/tsne
"""

METHODS = ("pca", "phate", "tsne", "umap")


def add_parser(sub) -> None:
    p = add_command(
        sub, "project", "project runs by PCA, PHATE, t-SNE or UMAP and test them", EXAMPLES
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (one joint fit)")
    p.add_argument("-o", "--out", required=True, help="result path without suffix")
    p.add_argument("--method", choices=METHODS, default="pca")
    p.add_argument(
        "--components",
        type=positive_int,
        help="dimensions (default: 12 for pca, at most T−1; 2 otherwise)",
    )
    p.add_argument("--centering", choices=("mean", "final"), default="mean", help="PCA centring")
    p.add_argument("--solver", choices=("auto", "exact", "randomized"), default="auto")
    p.add_argument(
        "--distance",
        choices=("cosine", "euclidean", "cosine_raw"),
        default="cosine",
        help="distance for phate/tsne/umap (default: cosine between centred PCA scores)",
    )
    p.add_argument("--knn", type=positive_int, default=5, help="PHATE kNN (default 5)")
    p.add_argument("--decay", type=float, default=40.0, help="PHATE α (default 40)")
    p.add_argument("--t", default="auto", help="PHATE diffusion time (default auto)")
    p.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity")
    p.add_argument("--neighbors", type=positive_int, default=15, help="UMAP n_neighbors")
    p.add_argument("--seed", type=int, default=0, help="seed of randomized/t-SNE/UMAP")
    p.add_argument(
        "--save-components",
        action="store_true",
        help="also store the PCA directions (k, n) and centre (n,) (large)",
    )
    p.set_defaults(func=run)


def _embedder(args: argparse.Namespace, k: int, progress: bool):
    if args.method == "phate":
        t: int | str = args.t
        if t != "auto":
            try:
                t = int(t)
            except ValueError:
                raise WeightspaceError(f"--t: expected 'auto' or an integer, got {t!r}") from None
        return PHATE(
            k, knn=args.knn, decay=args.decay, t=t, distance=args.distance, progress=progress
        )
    if args.method == "tsne":
        return TSNE(
            k, perplexity=args.perplexity, distance=args.distance, seed=args.seed,
            progress=progress,
        )  # fmt: skip
    require_umap()
    return UMAP(
        k, n_neighbors=args.neighbors, distance=args.distance, seed=args.seed, progress=progress
    )


def _per_run(
    pca: PCA, traj: Trajectory, sl: slice, k: int, r: int, arrays: dict, progress: bool
) -> dict[str, Any]:
    """The run's own PCA (from the joint Gram block), its null test, Lorch's checks, paths."""
    t = sl.stop - sl.start
    kr = min(k, t - 1)
    if pca.gram_ is not None:
        g = center_gram(pca.gram_[sl, sl], centering_weights(t, "mean"))
        lam, _, scores = pca_from_gram(g, kr)
        ratios = lam / np.trace(g)
    else:
        own = PCA(kr, solver=pca.solver_, seed=pca.seed, progress=progress).fit(traj)
        scores, ratios = own.scores_, own.explained_variance_ratio_
    null = compare_to_random_walk(scores, ratios)
    arrays[f"ratios_{r}"] = ratios
    arrays[f"null_ratios_{r}"] = null.null_ratios
    arrays[f"correlations_{r}"] = null.correlations
    pm = path_metrics(traj, progress=progress)
    for name in ("norm", "distance_from_init", "distance_to_final", "step_lengths"):
        arrays[f"{name}_{r}"] = getattr(pm, name)
    arrays[f"update_cosines_{r}"] = pm.update_cosines
    arrays[f"layer_norms_{r}"] = pm.layer_norms
    for name, values in traj.metrics.items():
        arrays[f"metric_{r}_{name}"] = values
    out: dict[str, Any] = {
        "verdict": null.verdict,
        "indistinguishable_from_random_walk": null.indistinguishable,
        "ratios": [round(float(v), 6) for v in ratios[: null.n_checked]],
        "null_ratios": [round(float(v), 6) for v in null.null_ratios[: null.n_checked]],
        "path_length": pm.path_length,
        "displacement": pm.displacement,
        "straightness": pm.straightness,
    }
    if t >= 4:
        osc = oscillations(scores)
        out["pc1_monotonicity"] = monotonicity(scores[:, 0])
        out["dominant_frequency"] = [float(f) for f in osc.frequency]
        out["lissajous_pairs"] = [[int(i) + 1, int(j) + 1] for i, j in osc.pairs]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    trajs = [Trajectory.load(r) for r in args.runs]
    progress = show_progress(args)
    if args.method == "umap":
        require_umap()
    t_total = sum(len(tr) for tr in trajs)
    k_pca = min(12, t_total - 1)
    if args.method == "pca" and args.components is not None:
        k_pca = args.components
    pca = PCA(
        k_pca, centering=args.centering, solver=args.solver, seed=args.seed, progress=progress
    ).fit(trajs)
    arrays: dict[str, np.ndarray] = {
        "explained_variance_ratio": pca.explained_variance_ratio_,
        "explained_variance": pca.explained_variance_,
    }
    meta: dict[str, Any] = {"method": args.method}
    if args.method == "pca":
        coords = pca.transform_runs_
        dims = pca.n_components_
        if args.save_components:
            arrays["components"] = pca.components_
            arrays["center"] = pca.center_
    else:
        dims = args.components or 2
        emb = _embedder(args, dims, progress).fit(trajs)
        coords = emb.embedding_runs_
        meta["trajectory_preservation"] = trajectory_preservation(
            emb.embedding_, runs=[len(tr) for tr in trajs], n_neighbors=min(5, t_total - 1)
        )
        if args.method == "phate":
            meta["phate_t"] = int(emb.t_)
            if emb.entropy_ is not None:
                arrays["entropy"] = emb.entropy_
    runs = []
    for r, (traj, sl) in enumerate(zip(trajs, pca.run_slices_)):
        arrays[f"coords_{r}"] = coords[r]
        arrays[f"steps_{r}"] = traj.steps
        info = _per_run(pca, traj, sl, pca.n_components_, r, arrays, progress)
        runs.append(
            {"label": pca.labels_[r], "run": str(traj.path), "snapshots": len(traj), **info}
        )
    arrays = {k: v for k, v in arrays.items() if v is not None}
    meta.update(
        {
            "labels": pca.labels_,
            "runs": runs,
            "components": dims,
            "pca_components": pca.n_components_,
            "centering": args.centering,
            "solver": pca.solver_,
            "distance": args.distance if args.method != "pca" else None,
            "seed": args.seed,
            "parameters": pca.n_features_,
            "total_variance": pca.total_variance_,
            "settings": {
                k: getattr(args, k)
                for k in ("knn", "decay", "t", "perplexity", "neighbors", "save_components")
            },
            "metadata": [tr.metadata for tr in trajs],
        }
    )
    path = save_result(args.out, "projection", arrays, meta)
    summary = {
        "result": str(path),
        "sidecar": str(path.with_suffix(".json")),
        "method": args.method,
        "components": dims,
        "explained_variance_ratio": [round(float(v), 6) for v in pca.explained_variance_ratio_],
        "runs": runs,
    }
    if "trajectory_preservation" in meta:
        summary["trajectory_preservation"] = meta["trajectory_preservation"]
    if not args.json:
        top = ", ".join(f"{v:.1%}" for v in pca.explained_variance_ratio_[:3])
        print(f"{args.method} of {len(trajs)} run(s), {t_total} snapshots -> {path}")
        print(f"PCA variance explained (PC1..3): {top}")
        for info in runs:
            print(f"  {info['label']}: {info['verdict']}")
    return summary
