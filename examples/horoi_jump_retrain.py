"""Jump and retrain around an optimum: PHATE against t-SNE and UMAP (Horoi et al.), as a
claim that can fail.

S. Horoi, J. Huang, B. Rieck, G. Lajoie, G. Wolf, S. Krishnaswamy, "Exploring the Geometry
and Topology of Neural Network Loss Landscapes", IDA 2022 (arXiv:2102.00485, 2021). They
sample the neighbourhood of a trained network by "jump and retrain": from the optimum, jump
along filter-normalised random directions of sizes 0.25, 0.5, 0.75 and 1.0 (in units of the
weights' own filter norms), retrain each jump, and embed the original run and every
retraining jointly. Their claim: PHATE keeps the retraining trajectories intact, as paths
that leave the jump and travel back toward the basin, where t-SNE and UMAP break them into
clusters of points that no longer read as paths.

The runs. The digits MLP (``weightspace.zoo``, initialisation ``--seed``) trained with SGD
(lr 0.1, momentum 0.9, batch 64); from its last snapshot, for each jump seed ``j``
(``--seeds`` of them, from ``--seed``), one jump of every size along a direction drawn with
seed ``j``, each retrained (``ws.jump_and_retrain``). Jump seed ``j``'s set is the original
run and its four retrainings; each set is embedded on its own, jointly, in 2-D by PHATE
(``ws.PHATE``, knn 5), t-SNE (``ws.TSNE``, perplexity ``min(30, N/4)``) and UMAP
(``ws.UMAP``, ``n_neighbors = min(15, N − 1)``, when umap-learn is installed; ``--quick``
leaves it out unless ``--umap``: numba compiles it for ~20 s), all on the same cosine
distances between centred PCA scores, with seed ``j``.

The measure, chosen before any embedding was scored: **path monotonicity**, the mean over the
set's runs of Spearman's rank correlation between time along the run (snapshot index) and the
embedded Euclidean distance from the run's first point. Horoi et al. describe what PHATE keeps
as trajectories that *move away from where they start and stay in order*; a run drawn as a
path does that and scores 1, a run torn into clusters or folded back onto itself scores
less. A rank correlation is the standard scale-free measure of such an ordering (it does not
reward an embedding for its spread, which differs between methods), it needs no neighbour
count, and it can be computed for weight space too: the same statistic with the distance in
weight space (``weight space``, not judged) shows how monotone the runs themselves are, the
ceiling an embedding can honestly reach. Beside it, not judged, the library's
``trajectory_preservation`` (share of each point's 5 nearest neighbours that are its time
neighbours in the same run), which rewards compact clusters.

The claims, with statistics, controls and rules (stated before anything is computed, and
printed before the runs; intervals are 95 % bootstrap intervals of the mean over the jump
seeds, ``examples/_verdict.py``):

a. ``phate_over_tsne``: PHATE keeps the trajectories more intact than t-SNE. Statistic: path
   monotonicity of PHATE, per jump seed. Control: the same for t-SNE. Rule
   ``interval_above(value, control)``: reproduced when PHATE's interval lies wholly above
   t-SNE's (``low > control's high``), not reproduced when it lies at or below it
   (``high ≤ control's low``, ties included), else inconclusive.
b. ``phate_over_umap``: the same against UMAP; inconclusive when UMAP was not run.
c. ``phate_over_both``: the claim as Horoi et al. make it: PHATE's interval lies above both
   others'. Statistic: PHATE's; control: the better of the other two (higher mean). Rule:
   ``all_hold(a, b)``: reproduced when a and b are, not reproduced when either is not.

Each control is judged by the same rule with the roles swapped (is the other method's
interval above PHATE's?). The embeddings of every set are written to
``OUT/embeddings/seed<j>.npz`` (one array per method, and the run lengths), so every
statistic can be recomputed; ``summary.json`` holds the per-seed numbers.

Run: ``python examples/horoi_jump_retrain.py --out out/horoi`` (``--quick``: 3 seeds,
seconds).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cell, claims_table, fresh_dir, parse_args, save, write_summary, write_table
from _verdict import Claim, Estimate, all_hold, estimate

import weightspace as ws
from weightspace.projection.embed import trajectory_preservation
from weightspace.render import static
from weightspace.store import atomic_path
from weightspace.train import train

SIZES = (0.25, 0.5, 0.75, 1.0)
NEIGHBOURS = 5  # neighbours of trajectory_preservation
METHODS = ("PHATE", "t-SNE", "UMAP")

CLAIMS = [
    Claim(
        "phate_over_tsne",
        "PHATE keeps the retraining trajectories intact where t-SNE breaks them",
        "per jump seed: path monotonicity of PHATE (mean over the runs of Spearman ρ between "
        "time and embedded distance from the run's first point)",
        "the same for t-SNE on the same samples and input distances",
        "interval_above(PHATE, t-SNE)",
    ),
    Claim(
        "phate_over_umap",
        "PHATE keeps the retraining trajectories intact where UMAP breaks them",
        "per jump seed: path monotonicity of PHATE",
        "the same for UMAP (inconclusive when UMAP was not run)",
        "interval_above(PHATE, UMAP)",
    ),
    Claim(
        "phate_over_both",
        "PHATE keeps the trajectories more intact than both t-SNE and UMAP",
        "per jump seed: path monotonicity of PHATE",
        "the better of t-SNE and UMAP (higher mean)",
        "all_hold(phate_over_tsne, phate_over_umap)",
    ),
]
NOTES: dict[str, str] = {  # written after the full-mode results, by the reviewer
    "phate_over_tsne": (
        "PHATE scores exactly 1 on every seed here; with short retraining runs (quick mode) the "
        "order reverses, and the library's trajectory_preservation ranks PHATE last"
    ),
    "phate_over_umap": ("as above; UMAP's spread across seeds is wide"),
    "phate_over_both": ("as above: the result depends on the retraining length"),
}


# ---------------------------------------------------------------------------- measure
def run_slices(lengths: list[int]) -> list[slice]:
    ends = np.cumsum(lengths)
    return [slice(int(e - n), int(e)) for e, n in zip(ends, lengths)]


def path_monotonicity(points: np.ndarray, lengths: list[int]) -> float:
    """Mean over runs of Spearman's ρ between time and the distance from the run's first
    point: ``points (N, d)`` stacked run after run, ``lengths`` the runs' lengths."""
    rhos = []
    for part in run_slices(lengths):
        x = np.asarray(points[part], dtype=np.float64)
        dist = np.linalg.norm(x - x[0], axis=1)
        rhos.append(float(spearmanr(np.arange(len(x)), dist).statistic))
    return float(np.mean(rhos))


def interval_above(value: Estimate, control: Estimate | None) -> str:
    """Reproduced when ``value``'s interval lies wholly above ``control``'s, not reproduced
    when it lies at or below it (ties included), else (or without a control) inconclusive."""
    if control is None or value.n < 2 or control.n < 2:
        return "inconclusive"
    if value.low > control.high:
        return "reproduced"
    return "not reproduced" if value.high <= control.low else "inconclusive"


def judge(stats: dict[str, list[float] | None]) -> dict[str, dict]:
    """The estimates and verdicts of the claims from the per-seed path monotonicity of each
    method (``None`` for a method that was not run)."""
    est = {m: None if v is None else estimate(v) for m, v in stats.items()}
    phate = est["PHATE"]
    out = {}
    for key, other in (("phate_over_tsne", "t-SNE"), ("phate_over_umap", "UMAP")):
        out[key] = {
            "value": phate,
            "control": est[other],
            "verdict": interval_above(phate, est[other]),
            "control_verdict": "inconclusive"
            if est[other] is None
            else interval_above(est[other], phate),
        }
    others = [est[m] for m in ("t-SNE", "UMAP") if est[m] is not None]
    best = max(others, key=lambda e: e.mean)
    out["phate_over_both"] = {
        "value": phate,
        "control": best,
        "verdict": all_hold(out["phate_over_tsne"]["verdict"], out["phate_over_umap"]["verdict"]),
        "control_verdict": interval_above(best, phate),
    }
    return out


# ---------------------------------------------------------------------------- one seed
def embed(trajs: list, seed: int, umap: bool) -> dict[str, np.ndarray]:
    """Joint 2-D embeddings of one set of runs."""
    n = sum(len(t) for t in trajs)
    out = {"PHATE": ws.PHATE(2, knn=5).fit(trajs).embedding_}
    out["t-SNE"] = ws.TSNE(2, perplexity=float(min(30, n // 4)), seed=seed).fit(trajs).embedding_
    if umap:
        out["UMAP"] = ws.UMAP(2, n_neighbors=min(15, n - 1), seed=seed).fit(trajs).embedding_
    return out


def measure_seed(seed: int, trajs: list, umap: bool, out: Path) -> tuple[dict, dict]:
    """Path monotonicity and trajectory preservation of every method on one set, the
    weight-space reference; the embeddings are written to ``out/embeddings``."""
    lengths = [len(t) for t in trajs]
    emb = embed(trajs, seed, umap)
    weights = np.concatenate([t.array(np.float64) for t in trajs])
    path = out / "embeddings" / f"seed{seed}.npz"
    path.parent.mkdir(exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, lengths=np.asarray(lengths), **emb)
    numbers = {
        "seed": seed,
        "lengths": lengths,
        "monotonicity": {m: path_monotonicity(e, lengths) for m, e in emb.items()},
        "preservation": {
            m: trajectory_preservation(e, n_neighbors=NEIGHBOURS, runs=lengths)
            for m, e in emb.items()
        },
        "weight_space_monotonicity": path_monotonicity(weights, lengths),
    }
    return numbers, emb


def jump_rows(samples: ws.JumpSamples) -> list[dict]:
    """Per jump size, means over the seeds."""
    rows = []
    for size in samples.sizes:
        sel = np.flatnonzero(samples.run_sizes == size)
        rows.append(
            {
                "size": float(size),
                "runs": int(sel.size),
                "jump length": float(samples.distances[sel].mean()),
                "loss after jump": float(samples.start_losses[sel].mean()),
                "loss after retraining": float(samples.final_losses[sel].mean()),
            }
        )
    return rows


def figures(out: Path, emb: dict, lengths: list[int], scores: dict, loss) -> None:
    """The first set's embeddings coloured by loss, and PHATE's paths by jump size."""
    fig, _ = static.plot_embeddings(emb, scores, color=loss, color_label="loss")
    save(fig, out, "horoi_embeddings")
    fig = Figure(figsize=(5.6 * len(emb), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(emb)))
    cmap = colormaps["plasma"]
    for ax, (name, e) in zip(axes, emb.items()):
        parts = [e[s] for s in run_slices(lengths)]
        for size, part in zip(SIZES, parts[1:]):
            ax.plot(*part.T, "-o", ms=2.5, lw=1, color=cmap(size / 1.15), label=f"jump {size:g}")
            ax.plot(*part[0], "x", color=cmap(size / 1.15), ms=6)
        ax.plot(*parts[0].T, "-o", ms=3, lw=2, color="black", label="original")
        ax.set(title=f"{name}: the runs as paths (x: jump)", xticks=[], yticks=[])
    axes[0].legend(fontsize=7)
    save(fig, out, "horoi_paths")


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    args = parse_args(__doc__, argv, problem="digits-mlp", umap=False, seeds=0)
    q = args.quick
    cfg = {
        "steps": 100 if q else 500,
        "every": 10,
        "retrain": 20 if q else 200,
        "retrain_every": 5 if q else 10,
    }
    n_seeds = args.seeds or (3 if q else 6)
    seeds = [args.seed + i for i in range(n_seeds)]
    for claim in CLAIMS:  # the pre-registration, before anything is computed
        print(claim.describe())
    umap = args.umap or not q
    if umap and importlib.util.find_spec("umap") is None:
        print("note: umap-learn is not installed, UMAP skipped (pip install umap-learn)")
        umap = False
    elif not umap:
        print("note: UMAP skipped in --quick mode (numba compiles it for ~20 s); add --umap")
    out, runs_dir = args.out, fresh_dir(args.out / "runs")
    fresh_dir(out / "embeddings")
    origin = train(
        ws.zoo.problem(args.problem, seed=args.seed),
        runs_dir / "original",
        lr=0.1,
        momentum=0.9,
        batch_size=64,
        steps=cfg["steps"],
        every=cfg["every"],
        data_seed=args.seed,
        metadata={"label": "original"},
    )
    samples = ws.jump_and_retrain(
        ws.zoo.problem(args.problem, seed=args.seed),
        origin,
        runs_dir / "jumps",
        sizes=SIZES,
        seeds=seeds,
        retrain_steps=cfg["retrain"],
        every=cfg["retrain_every"],
    )
    original = ws.Trajectory.load(origin)
    per_seed = []
    for seed in seeds:
        sel = np.flatnonzero(samples.run_seeds == seed)
        trajs = [original, *(ws.Trajectory.load(samples.runs[r]) for r in sel)]
        numbers, emb = measure_seed(seed, trajs, umap, out)
        per_seed.append(numbers)
        if len(per_seed) == 1:
            objective = ws.Objective(ws.zoo.problem(args.problem, seed=args.seed))
            loss = np.concatenate([ws.points_losses(objective, t) for t in trajs])
            figures(out, emb, numbers["lengths"], numbers["preservation"], loss)

    ran = [m for m in METHODS if m in per_seed[0]["monotonicity"]]
    stats = {m: [p["monotonicity"][m] for p in per_seed] if m in ran else None for m in METHODS}
    verdicts = judge(stats)
    claims = claims_table(CLAIMS, verdicts, out, "horoi_claims")
    method_rows = [
        {
            "space": m,
            "path monotonicity [95 %]": cell(estimate(stats[m])),
            "trajectory preservation [95 %]": cell(
                estimate([p["preservation"][m] for p in per_seed])
            ),
        }
        for m in ran
    ]
    method_rows.append(
        {
            "space": "weight space (reference)",
            "path monotonicity [95 %]": cell(
                estimate([p["weight_space_monotonicity"] for p in per_seed])
            ),
            "trajectory preservation [95 %]": "—",
        }
    )
    write_table(method_rows, out, "horoi_methods")
    write_table(jump_rows(samples), out, "horoi_jumps")
    summary = {
        "claims": claims,
        "control_verdicts": {k: v["control_verdict"] for k, v in verdicts.items()},
        "seeds": n_seeds,
        "seed_list": seeds,
        "umap": umap,
        "settings": {**cfg, "sizes": list(SIZES), "neighbours": NEIGHBOURS},
        "origin_loss": samples.origin_loss,
        "per_seed": per_seed,
        "seconds": time.perf_counter() - start,
    }
    write_summary(out, summary)
    print(f"{n_seeds} seeds, {summary['seconds']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
