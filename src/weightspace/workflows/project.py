"""Project runs and test them: one joint fit, the random-walk null, Lorch's checks and
Lipton's path metrics for every run (what ``weightspace project`` computes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ..analysis import monotonicity, oscillations, path_metrics
from ..errors import WeightspaceError
from ..projection._gram import center_gram, centering_weights
from ..projection.embed import TSNE, UMAP, require_umap, trajectory_preservation
from ..projection.nulls import compare_to_random_walk
from ..projection.pca import PCA, pca_from_gram
from ..projection.phate import PHATE
from ..results import Projection, RunProjection
from ..trajectory import Trajectory
from ._endpoints import EndpointAlignment, check_alignment, endpoint_distances
from ._runs import RunLike, as_runs

__all__ = ["project_runs", "run_projection"]

Method = Literal["pca", "phate", "tsne", "umap"]
METHODS = ("pca", "phate", "tsne", "umap")
EMBEDDING_OPTIONS = {
    "phate": ("knn", "decay", "t"),
    "tsne": ("perplexity",),
    "umap": ("n_neighbors",),
}


PHATE_KNN = 5  # the reference implementation's default
TSNE_PERPLEXITY = 30.0  # scikit-learn's default
UMAP_NEIGHBORS = 15  # umap-learn's default


def embedding_options(method: str, options: Mapping[str, Any], t_total: int) -> dict[str, Any]:
    """The embedding's options, with the neighbourhood defaults fitted to few snapshots:
    PHATE's ``knn`` and UMAP's ``n_neighbors`` at most ``T - 1``, t-SNE's ``perplexity`` at
    most ``(T - 1) / 3``.
    Options given are kept as they are (and refused by the embedding when impossible)."""
    allowed = EMBEDDING_OPTIONS[method]
    unknown = [name for name in options if name not in allowed]
    if unknown:
        raise WeightspaceError(
            f"options: {unknown[0]!r} is not an option of {method} (its options: "
            f"{', '.join(allowed)})"
        )
    out = dict(options)
    if method == "phate" and "knn" not in out:
        out["knn"] = max(1, min(PHATE_KNN, t_total - 1))
    if method == "tsne" and "perplexity" not in out:
        out["perplexity"] = max(1.0, min(TSNE_PERPLEXITY, (t_total - 1) / 3))
    if method == "umap" and "n_neighbors" not in out:
        out["n_neighbors"] = max(2, min(UMAP_NEIGHBORS, t_total - 1))
    return out


def _embedder(method: str, k: int, distance: str, seed: int, options: Mapping[str, Any], progress):
    if method == "phate":
        return PHATE(k, distance=distance, progress=progress, **options)
    if method == "tsne":
        return TSNE(k, distance=distance, seed=seed, progress=progress, **options)
    require_umap()
    return UMAP(k, distance=distance, seed=seed, progress=progress, **options)


def run_projection(
    pca: PCA, traj: Trajectory, r: int, coords: np.ndarray, progress: bool = False
) -> RunProjection:
    """One run's part: its own PCA (from the joint Gram block when there is one) against the
    random-walk null, Lorch's checks on its scores, its path metrics and recorded metrics."""
    sl = pca.run_slices_[r]
    t = sl.stop - sl.start
    kr = min(pca.n_components_, t - 1)
    if pca.gram_ is not None:
        g = center_gram(pca.gram_[sl, sl], centering_weights(t, "mean"))
        lam, _, scores = pca_from_gram(g, kr)
        ratios = lam / np.trace(g)
    else:
        own = PCA(kr, solver=pca.solver_, seed=pca.seed, progress=progress).fit(traj)
        scores, ratios = own.scores_, own.explained_variance_ratio_
    long = t >= 4
    return RunProjection(
        label=pca.labels_[r],
        run=str(traj.path),
        steps=np.asarray(traj.steps),
        coords=coords,
        metrics=traj.metrics,
        paths=path_metrics(traj, progress=progress),
        null=compare_to_random_walk(scores, ratios),
        pc1_monotonicity=monotonicity(scores[:, 0]) if long else None,
        oscillations=oscillations(scores) if long else None,
        metadata=dict(traj.metadata),
    )


def check_snapshot_counts(trajs: Sequence[Trajectory], what: str = "runs") -> None:
    """A trajectory is at least two snapshots: each run's own PCA and its null need them."""
    for traj in trajs:
        if len(traj) < 2:
            raise WeightspaceError(
                f"{what}: run {str(traj.path)!r} has {len(traj)} snapshot; a projection needs at "
                "least 2 per run; record it with more steps or a smaller every"
            )


def project_runs(
    runs: RunLike | Sequence[RunLike],
    method: Method = "pca",
    *,
    components: int | None = None,
    centering: Literal["mean", "final"] = "mean",
    solver: Literal["auto", "exact", "randomized"] = "auto",
    distance: Literal["cosine", "euclidean", "cosine_raw"] = "cosine",
    seed: int = 0,
    keep_components: bool = False,
    options: Mapping[str, Any] | None = None,
    align: EndpointAlignment | None = None,
    progress: bool = False,
) -> Projection:
    """Project runs jointly and test each against the random-walk null.

    A joint PCA of all snapshots is computed whatever the method (its spectrum and each
    run's own PCA are what the null test reads); ``method`` chooses the embedding the
    coordinates come from. With several runs, the distances between their final points
    (Lipton 2016) are measured too, and with ``align`` also after permutation alignment
    (Ainsworth et al. 2023; Entezari et al. 2022), so that "are all pairs equally far
    apart?" can be asked modulo the permutations of hidden units.

    Args:
        runs: run directories or Trajectories (one joint fit; each run once).
        method: ``"pca"``, ``"phate"``, ``"tsne"`` or ``"umap"``.
        components: dimensions (default: 12 for PCA, at most T - 1; 2 for embeddings).
        centering: PCA centring, over time (``"mean"``) or on the last point (``"final"``,
            the θ_i − θ_n convention of Li et al. and GradVis).
        solver: PCA solver.
        distance: the distance the embeddings use (default: cosine between centred PCA
            scores; ``"cosine_raw"`` between raw vectors).
        seed: seed of the randomized PCA, t-SNE and UMAP.
        keep_components: keep the PCA's ``(k, n)`` directions and centre (large).
        options: the embedding's own options: PHATE ``knn``, ``decay``, ``t``; t-SNE
            ``perplexity``; UMAP ``n_neighbors``. Defaults: ``knn`` 5, ``perplexity`` 30 and
            ``n_neighbors`` 15, lowered to what few snapshots allow (``T - 1``,
            ``(T - 1) / 3``); the values used are in ``metadata["options"]``.
        align: None (default), or an :class:`EndpointAlignment` (method ``"weights"`` or
            ``"activations"``, the runs' problem, the reference run, a seed): every run's
            final point is aligned to the reference's before the aligned distances are
            measured; the unaligned ones are kept beside them, and the projection itself is
            never aligned. Distances to the reference never grow under weight matching;
            distances between two other runs are measured in the reference's unit order
            and may.
        progress: show progress bars.

    Returns:
        :class:`~weightspace.results.Projection`.

    Example::

        proj = ws.project_runs(["runs/sgd", "runs/adam"])
        proj.runs[0].null.verdict
    """
    if method not in METHODS:
        raise WeightspaceError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    trajs = as_runs(runs)
    check_snapshot_counts(trajs)
    check_alignment(trajs, align)
    if method == "umap":
        require_umap()
    t_total = sum(len(tr) for tr in trajs)
    k_pca = components if method == "pca" and components is not None else min(12, t_total - 1)
    pca = PCA(k_pca, centering=centering, solver=solver, seed=seed, progress=progress).fit(trajs)
    meta: dict[str, Any] = {"method": method}
    entropy = None
    if method == "pca":
        coords, dims = pca.transform_runs_, pca.n_components_
    else:
        dims = components or 2
        options = embedding_options(method, options or {}, t_total)
        emb = _embedder(method, dims, distance, seed, options, progress).fit(trajs)
        coords = emb.embedding_runs_
        meta["trajectory_preservation"] = trajectory_preservation(
            emb.embedding_, runs=[len(tr) for tr in trajs], n_neighbors=min(5, t_total - 1)
        )
        if method == "phate":
            meta["phate_t"] = int(emb.t_)
            entropy = emb.entropy_
    per_run = tuple(
        run_projection(pca, traj, r, coords[r], progress) for r, traj in enumerate(trajs)
    )
    distances, aligned, how = endpoint_distances(trajs, align, progress)
    meta.update(
        components=dims,
        pca_components=pca.n_components_,
        centering=centering,
        solver=pca.solver_,
        distance=distance if method != "pca" else None,
        seed=seed,
        options=dict(options or {}),
        parameters=pca.n_features_,
        total_variance=pca.total_variance_,
        align=how,
    )
    return Projection(
        method=method,
        runs=per_run,
        explained_variance_ratio=pca.explained_variance_ratio_,
        explained_variance=pca.explained_variance_,
        components=pca.components_ if keep_components else None,
        center=pca.center_ if keep_components else None,
        entropy=entropy,
        endpoint_distances=distances,
        aligned_distances=aligned,
        metadata=meta,
    )
