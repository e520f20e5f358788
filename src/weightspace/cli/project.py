"""``weightspace project RUN [RUN ...]``: project runs (PCA, PHATE, t-SNE, UMAP) and measure
them against the random-walk null; writes a ``projection`` result (OUT.npz + OUT.json)."""

from __future__ import annotations

import argparse

from . import Output, _options, add_command, show_progress

__all__ = ["add_parser", "run"]

EXAMPLES = """
  weightspace project runs/sgd -o out/sgd_pca
  weightspace project runs/sgd runs/adam --components 3 --centering final -o out/joint_pca
  weightspace project runs/sgd runs/adam --method phate -o out/phate --json
  weightspace project runs/sgd --method tsne --perplexity 10 -o out/tsne
  weightspace project runs/s0 runs/s1 runs/s2 --align weights --problem digits-mlp -o out/pca
"""

METHODS = ("pca", "phate", "tsne", "umap")


def add_parser(sub) -> None:
    p = add_command(
        sub, "project", "project runs by PCA, PHATE, t-SNE or UMAP and test them", EXAMPLES
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (one joint fit)")
    p.add_argument("-o", "--out", required=True, help="result path without suffix")
    _options.add_overwrite(p)
    p.add_argument("--method", choices=METHODS, default="pca")
    p.add_argument(
        "--components",
        type=_options.positive_int,
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
    p.add_argument(
        "--knn", type=_options.positive_int, help="PHATE kNN (default 5, at most the snapshots - 1)"
    )
    p.add_argument("--decay", type=float, help="PHATE α (default 40)")
    p.add_argument("--t", help="PHATE diffusion time (default auto)")
    p.add_argument(
        "--perplexity",
        type=float,
        help="t-SNE perplexity (default 30, at most (snapshots - 1) / 3)",
    )
    p.add_argument(
        "--neighbors",
        type=_options.positive_int,
        help="UMAP n_neighbors (default 15, at most the snapshots - 1)",
    )
    p.add_argument("--seed", type=_options.seed, default=0, help="seed of randomized/t-SNE/UMAP")
    p.add_argument(
        "--save-components",
        action="store_true",
        help="also store the PCA directions (k, n) and centre (n,) (large)",
    )
    g = p.add_argument_group("endpoint distances (Lipton's table, modulo permutations)")
    g.add_argument(
        "--align",
        choices=("none", "weights", "activations"),
        default="none",
        help="also measure the distances between final points after aligning each run's "
        "hidden units to the reference run's (weight or activation matching); needs --problem",
    )
    g.add_argument(
        "--align-to",
        metavar="RUN",
        help="the reference run of --align, one of the RUNs (default: the first)",
    )
    _options.add_problem(g, required=False)
    p.set_defaults(
        func=run,
        flag_names={
            "n_neighbors": "--neighbors",
            "keep_components": "--save-components",
            "align.method": "--align",
            "align.problem": "--problem",
            "align.reference": "--align-to",
        },
    )


def _options_of(args: argparse.Namespace) -> dict:
    """The chosen embedding's own options that were given."""
    from ..errors import WeightspaceError

    given = {
        "knn": args.knn,
        "decay": args.decay,
        "t": args.t,
        "perplexity": args.perplexity,
        "n_neighbors": args.neighbors,
    }
    own = {"phate": ("knn", "decay", "t"), "tsne": ("perplexity",), "umap": ("n_neighbors",)}
    keep = own.get(args.method, ())
    for name, value in given.items():
        if value is not None and name not in keep:
            flag = "--neighbors" if name == "n_neighbors" else f"--{name}"
            raise WeightspaceError(f"{name}: {flag} is not an option of --method {args.method}")
    out = {k: v for k, v in given.items() if v is not None}
    if "t" in out and out["t"] != "auto":
        try:
            out["t"] = int(out["t"])
        except ValueError:
            raise WeightspaceError(f"t: expected 'auto' or an integer, got {out['t']!r}") from None
    return out


def run(args: argparse.Namespace) -> Output:
    from ..errors import WeightspaceError
    from ..problems import load_problem
    from ..results import save
    from ..workflows import EndpointAlignment, project_runs

    align = None
    if args.align == "none":
        for name in ("align_to", "problem"):
            if getattr(args, name) is not None:
                raise WeightspaceError(f"{name}: used only with --align weights|activations")
    elif args.problem is None:
        raise WeightspaceError(
            f"problem: required by --align {args.align} (the runs' model gives the permutation "
            "structure)"
        )
    base = _options.result_base(args)
    if args.align != "none":
        align = EndpointAlignment(
            args.align,
            load_problem(args.problem, seed=args.init_seed),
            reference=0 if args.align_to is None else args.align_to,
            seed=args.seed,
        )
    proj = project_runs(
        args.runs,
        args.method,
        components=args.components,
        centering=args.centering,
        solver=args.solver,
        distance=args.distance,
        seed=args.seed,
        keep_components=args.save_components,
        options=_options_of(args),
        align=align,
        progress=show_progress(args),
    )
    npz = save(proj, base)
    ratios = proj.explained_variance_ratio
    summary = {
        "method": proj.method,
        "components": proj.metadata["components"],
        "explained_variance_ratio": [round(float(v), 6) for v in ratios],
        "runs": [r.summary() for r in proj.runs],
    }
    if "trajectory_preservation" in proj.metadata:
        summary["trajectory_preservation"] = proj.metadata["trajectory_preservation"]
    if proj.endpoint_distances is not None:
        summary["endpoint_distances"] = proj.endpoint_distances.tolist()
    if proj.aligned_distances is not None:
        summary["aligned_distances"] = proj.aligned_distances.tolist()
        summary["align"] = {k: proj.metadata["align"][k] for k in ("method", "reference")}
    top = ", ".join(f"{v:.1%}" for v in ratios[:3])
    t_total = sum(len(r.steps) for r in proj.runs)
    lines = [
        f"{proj.method} of {len(proj.runs)} run(s), {t_total} snapshots -> {npz}",
        f"PCA variance explained (PC1..3): {top}",
        *(f"  {r.label}: {r.null.verdict}" for r in proj.runs),
    ]
    if proj.aligned_distances is not None:
        ref = proj.metadata["align"]["reference_index"]
        lines += [
            f"distance to {proj.runs[ref].label} (final points), unaligned -> aligned "
            f"({proj.metadata['align']['method']}):",
            *(
                f"  {r.label}: {proj.endpoint_distances[ref, i]:.6g} -> "
                f"{proj.aligned_distances[ref, i]:.6g}"
                for i, r in enumerate(proj.runs)
                if i != ref
            ),
        ]
    return Output({"projection": str(npz)}, summary, str(npz.with_suffix(".json")), lines)
