"""Jump and retrain around an optimum, PHATE against t-SNE/UMAP, and loss persistence
(Horoi et al.).

S. Horoi, J. Huang, B. Rieck, G. Lajoie, G. Wolf, S. Krishnaswamy, "Exploring the Geometry
and Topology of Neural Network Loss Landscapes", IDA 2022 (arXiv:2102.00485, 2021). They
sample the neighbourhood of a trained network by "jump and retrain": from the optimum, jump
along filter-normalised random directions of sizes 0.25, 0.5, 0.75 and 1.0 (in units of the
weights' own filter norms) with several seeds, retrain each jump, and embed the original run
and every retraining jointly. PHATE keeps the retraining paths as continuous strands where
t-SNE and UMAP break them into clusters; sublevel-set persistent homology of the loss on the
embedding's k-nearest-neighbour graph then counts the loss basins the samples fall into.

This example trains the digits MLP (``weightspace.zoo``), jumps from its last snapshot with
every size and several seeds (``weightspace.jump_and_retrain``), retrains each jump, and
embeds all runs jointly with PHATE, t-SNE and, when umap-learn is installed, UMAP (all on the
same cosine distances between centred PCA scores). Each embedding, and the joint PCA scores
in weight space as the reference, is scored by step continuity (share of consecutive
snapshots of a run that are among each other's 5 nearest neighbours), the largest over the
median step along a run (large when a path is cut into pieces), trajectory preservation
(share of a point's 5 nearest neighbours that are its time neighbours in the same run),
trustworthiness (scikit-learn, against the input distances), and the loss persistence on its
kNN graph (total persistence, significant basins, and the graph's connected components, each
of which holds one essential basin).

The check, Horoi et al.'s comparison as a number: "PHATE keeps the trajectories as unbroken
strands where t-SNE/UMAP cut them": PHATE's step continuity is at least t-SNE's (and UMAP's
when present). It is printed as holds / does not hold and stored as ``summary["check"]``.
Trajectory preservation, which rewards compact clusters, is printed beside it. A second table
gives, per jump size, the jump length, the loss right after the jump and after retraining,
and how far retraining ends from the optimum relative to the jump.

Run: ``python examples/horoi_jump_retrain.py --out out/horoi`` (``--quick`` for seconds;
quick mode leaves UMAP out, whose numba compilation alone takes longer, unless ``--umap``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import check_line, fresh_dir, parse_args, save, write_summary, write_table

import weightspace as ws
from weightspace.projection.embed import trajectory_preservation, trustworthiness
from weightspace.render import plot_persistence, static
from weightspace.topology import loss_topology
from weightspace.train import train

SIZES = (0.25, 0.5, 0.75, 1.0)
NEIGHBOURS = 5  # neighbours of the preservation and trustworthiness scores


def settings(quick: bool) -> dict:
    """Training, sampling and graph sizes of the quick and the full run."""
    if quick:
        return {
            "steps": 100,
            "every": 10,
            "seeds": (0, 1),
            "retrain": 20,
            "retrain_every": 5,
            "k": 10,
        }
    return {
        "steps": 500,
        "every": 10,
        "seeds": (0, 1, 2, 3, 4),
        "retrain": 200,
        "retrain_every": 10,
        "k": 10,
    }


def embed(trajs: list, seed: int, umap: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Joint 2-D embeddings of all runs, and the input distances they share."""
    n = sum(len(t) for t in trajs)
    phate = ws.PHATE(2, knn=5).fit(trajs)
    out = {"PHATE": phate.embedding_}
    tsne = ws.TSNE(2, perplexity=float(min(30, n // 4)), seed=seed).fit(trajs)
    out["t-SNE"] = tsne.embedding_
    if not umap:
        print("note: UMAP skipped in --quick mode (numba compiles it for ~20 s); add --umap")
    elif importlib.util.find_spec("umap") is None:
        print("note: umap-learn is not installed, UMAP skipped (pip install umap-learn)")
    else:
        out["UMAP"] = ws.UMAP(2, n_neighbors=min(15, n - 1), seed=seed).fit(trajs).embedding_
    return out, phate.distances_


def _run_starts(lengths: list[int]) -> np.ndarray:
    return np.cumsum([0, *lengths[:-1]])


def continuity(points: np.ndarray, lengths: list[int], k: int = NEIGHBOURS) -> float:
    """Share of consecutive snapshots ``(t, t+1)`` of a run where either is among the other's
    ``k`` nearest points: 1 when every path is an unbroken strand."""
    sq = np.sum(points**2, axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * points @ points.T
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1, kind="stable")[:, :k]
    kept = [
        (t + 1 in near[t]) or (t in near[t + 1])
        for s, n in zip(_run_starts(lengths), lengths)
        for t in range(s, s + n - 1)
    ]
    return float(np.mean(kept))


def break_ratio(points: np.ndarray, lengths: list[int]) -> float:
    """Median over runs of (largest / median step between consecutive snapshots): large when
    a path is broken into pieces placed apart."""
    ratios = []
    for s, n in zip(_run_starts(lengths), lengths):
        steps = np.linalg.norm(np.diff(points[s : s + n], axis=0), axis=1)
        ratios.append(steps.max() / max(np.median(steps), 1e-300))
    return float(np.median(ratios))


def jump_rows(samples: ws.JumpSamples) -> list[dict]:
    """Per jump size, means over the seeds."""
    parent = ws.Trajectory.load(samples.origin)
    theta = parent.snapshot(parent.index_of(samples.origin_step)).astype(np.float64)
    rows = []
    for size in samples.sizes:
        sel = np.flatnonzero(samples.run_sizes == size)
        back = []
        for r in sel:
            end = ws.Trajectory.load(samples.runs[r]).snapshot(-1).astype(np.float64)
            back.append(np.linalg.norm(end - theta) / samples.distances[r])
        rows.append(
            {
                "size": float(size),
                "runs": int(sel.size),
                "jump length": float(samples.distances[sel].mean()),
                "loss after jump": float(samples.start_losses[sel].mean()),
                "loss after retraining": float(samples.final_losses[sel].mean()),
                "end distance / jump": float(np.mean(back)),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__, argv, problem="digits-mlp", umap=False)
    cfg = settings(args.quick)
    out, runs_dir = args.out, fresh_dir(args.out / "runs")
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
        seeds=cfg["seeds"],
        retrain_steps=cfg["retrain"],
        every=cfg["retrain_every"],
    )
    trajs = samples.trajectories()
    lengths = [len(t) for t in trajs]
    objective = ws.Objective(ws.zoo.problem(args.problem, seed=args.seed))
    loss = np.concatenate([ws.points_losses(objective, t) for t in trajs])
    embeddings, distances = embed(trajs, args.seed, umap=args.umap or not args.quick)

    # the reference: persistence on the joint PCA scores, i.e. in weight space
    pca = ws.PCA(min(10, len(loss) - 1)).fit(trajs)
    spaces = {f"PCA-{pca.n_components_} (weight space)": pca.scores_, **embeddings}
    topologies = {name: loss_topology(e, loss, k=cfg["k"]) for name, e in spaces.items()}
    rows = [
        {
            "space": name,
            "step continuity": continuity(e, lengths),
            "largest/median step": break_ratio(e, lengths),
            "trajectory preservation": trajectory_preservation(
                e, n_neighbors=NEIGHBOURS, runs=lengths
            ),
            "trustworthiness": trustworthiness(distances, e, NEIGHBOURS),
            "total persistence": topologies[name].total_persistence,
            "significant basins": topologies[name].n_significant_basins,
            "graph components": topologies[name].metadata["n_components"],
        }
        for name, e in spaces.items()
    ]
    write_table(rows, out, "table")
    size_rows = jump_rows(samples)
    write_table(size_rows, out, "jumps")

    figures(out, samples, embeddings, loss, lengths, topologies)
    cont = {r["space"]: r["step continuity"] for r in rows[1:]}
    holds = all(cont["PHATE"] >= v for k, v in cont.items() if k != "PHATE")
    check_line(
        "PHATE keeps the retraining trajectories continuous where t-SNE/UMAP break them up",
        f"step continuity (share of consecutive snapshots among each other's {NEIGHBOURS} "
        "nearest embedding neighbours): "
        + ", ".join(f"{k} {v:.3f}" for k, v in cont.items())
        + " (PHATE must be highest)",
        holds,
    )
    summary = {
        "check": {"holds": holds, "step_continuity": cont},
        "origin_loss": samples.origin_loss,
        "origin_step": samples.origin_step,
        "spaces": {r["space"]: {k: v for k, v in r.items() if k != "space"} for r in rows},
        "jumps": {str(r["size"]): {k: v for k, v in r.items() if k != "size"} for r in size_rows},
        "n_points": len(loss),
        "n_runs": len(trajs),
        "k": cfg["k"],
        "umap": "UMAP" in embeddings,
        "seed": args.seed,
    }
    write_summary(out, summary)
    return summary


def figures(out, samples, embeddings, loss, lengths, topologies) -> None:
    """The embeddings coloured by loss, PHATE by jump size, and persistence diagrams."""
    scores = {}
    for name, e in embeddings.items():
        scores[name] = trajectory_preservation(e, n_neighbors=NEIGHBOURS, runs=lengths)
    fig, _ = static.plot_embeddings(embeddings, scores, color=loss, color_label="loss")
    save(fig, out, "horoi_embeddings")

    fig = Figure(figsize=(5.6, 4.6), layout="constrained")
    ax = fig.subplots()
    parts = np.split(embeddings["PHATE"], np.cumsum(lengths)[:-1])
    cmap = colormaps["plasma"]
    for r, part in enumerate(parts[1:]):
        size = samples.run_sizes[r]
        label = f"jump {size:g}" if samples.run_seeds[r] == samples.seeds[0] else None
        ax.plot(part[:, 0], part[:, 1], "-o", ms=2.5, lw=1, color=cmap(size / 1.15), label=label)
        ax.plot(*part[0], "x", color=cmap(size / 1.15), ms=6)
    ax.plot(parts[0][:, 0], parts[0][:, 1], "-o", ms=3, lw=2, color="black", label="original")
    ax.set_title("PHATE of the original run and every retraining (x: jump)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7)
    save(fig, out, "horoi_phate_runs")

    fig = Figure(figsize=(4.4 * len(topologies), 4.2), layout="constrained")
    axes = fig.subplots(1, len(topologies))
    for a, (name, topo) in zip(np.atleast_1d(axes), topologies.items()):
        plot_persistence(topo, ax=a)
        a.set_title(
            f"{name}: {topo.n_significant_basins} basins, total {topo.total_persistence:.3g}"
        )
    save(fig, out, "horoi_persistence")


if __name__ == "__main__":
    main()
