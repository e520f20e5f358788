"""``weightspace surface``: a 2-D loss landscape around a run, with the runs drawn on it."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

import weightspace as ws

from .. import parallel
from ..buffers import at_snapshot
from ..directions import (
    Directions,
    directions_from_vectors,
    load_directions,
    plane_through,
    random_directions,
)
from ..errors import WeightspaceError
from ..landscape import evaluate_plane, grid_axis, save_surface
from ..objective import Objective
from ..overlay import plane_coordinates, plane_extent, trajectories_on_plane
from ..problems import load_problem
from ..store import save_array
from ..trajectory import Trajectory
from . import add_command, show_progress
from .record import add_problem_option, positive_int

EXAMPLES = """
  weightspace surface --problem digits-cnn runs/sgd -o out/sgd-surface
  weightspace surface --problem digits-cnn runs/sgd runs/adam --directions pca --grid 51 -o out/pca
  weightspace surface --problem digits-cnn runs/sgd --grid 41 --grid-y 21 --span -1 1 \\
      --span-y -0.5 0.5 --seed 3 --resume -o out/wide
  weightspace surface --problem digits-cnn runs/a runs/b runs/c --directions interp -o out/3pts
  weightspace surface --problem digits-cnn runs/sgd --directions pcs.npy -o out/file  # (2, n)
  torchrun --nproc-per-node 4 -m weightspace surface --problem digits-cnn runs/sgd -o out/big
"""


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``surface`` and ``line``: data, model mode, dtype, engine."""
    add_problem_option(p)
    p.add_argument("-o", "--out", required=True, help="result path (OUT.npz + OUT.json)")
    p.add_argument("--data", choices=("train", "test"), default="train", help="evaluation data")
    p.add_argument("--batch-size", type=positive_int, help="evaluation batch size (memory)")
    p.add_argument("--mode", choices=("eval", "train"), default="eval", help="model mode")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0, help="seed of random directions")
    p.add_argument(
        "--normalization",
        choices=("filter", "layer", "none"),
        help="direction normalisation (default: filter for random, none otherwise)",
    )
    p.add_argument(
        "--ignore", choices=("biasbn", "none"), default="biasbn", help="1-D tensors: zero or keep"
    )
    p.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch.compile the point function (auto: when the grid repays it)",
    )
    p.add_argument("--precision", choices=("full", "bf16"), default="full")
    p.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="channels-last image inputs (auto: on for images on the CPU)",
    )
    p.add_argument(
        "--points-per-pass", type=positive_int, default=1, help="grid points per forward (vmap)"
    )
    p.add_argument(
        "--recompute-bn",
        action="store_true",
        help="re-estimate BatchNorm statistics at every point (one pass over the training "
        "data per point; default: the centre's recorded statistics everywhere)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")


def add_parser(sub) -> None:
    p = add_command(
        sub, "surface", "2-D loss landscape around a run, with trajectories on it", EXAMPLES
    )
    p.add_argument("runs", nargs="+", help="run directories; the centre is the first's last point")
    p.add_argument("--runs", dest="more_runs", nargs="+", default=[], help="more runs to draw")
    p.add_argument(
        "--directions",
        default="random",
        help="random | pca | eigen | interp | FILE.npy of shape (2, n) (default random)",
    )
    p.add_argument("--grid", type=int, default=25, help="points along x (default 25)")
    p.add_argument("--grid-y", "--ny", dest="grid_y", type=int, help="points along y")
    p.add_argument(
        "--span",
        nargs="+",
        default=None,
        help="LO HI along x, or auto (default -1 1; auto "
        "for pca/interp/eigen/file directions: covers the trajectories)",
    )
    p.add_argument("--span-y", "--yspan", dest="span_y", nargs=2, type=float, help="LO HI along y")
    p.add_argument("--step", type=int, help="centre: this recorded step of the first run")
    p.add_argument("--margin", type=float, default=0.1, help="auto span margin (default 0.1)")
    p.add_argument("--no-trajectories", action="store_true", help="do not draw the runs")
    add_engine_options(p)
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------- shared helpers
def build_objective(args: argparse.Namespace, trajs: list[Trajectory]) -> Objective:
    """Problem -> Objective on this rank's device; the runs' layout must match the model's."""
    device = parallel.local_device()
    parallel.init_from_env(device)
    problem = load_problem(args.problem)
    problem.model.to(device)
    data = None
    if args.data == "test":
        if problem.test_data is None:
            raise WeightspaceError(f"--data test: problem {args.problem!r} has no test data")
        data = problem.test_data
    obj = Objective(problem, args.mode, data=data, batch_size=args.batch_size, device=device)
    for t in trajs:
        t.layout.check_compatible(
            obj.layout, what=f"run {str(t.path)!r} vs --problem {args.problem}"
        )
    return obj


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "compile": args.compile,
        "precision": args.precision,
        "channels_last": {"auto": None, "on": True, "off": False}[args.channels_last],
        "points_per_pass": args.points_per_pass,
        "progress": show_progress(args),
    }


def data_record(args: argparse.Namespace, obj: Objective) -> dict[str, Any]:
    """What the result records about the data, problem and options."""
    return {
        "problem_spec": args.problem,
        "data": {"split": args.data, "n_samples": obj.n_samples, "batch_size": args.batch_size},
        "mode": args.mode,
        "seed": args.seed,
    }


def out_base(path: str) -> Path:
    base = Path(path)
    return base.with_suffix("") if base.suffix in (".npz", ".json") else base


def normalization(args: argparse.Namespace, kind: str) -> tuple[str, str | None]:
    norm = args.normalization or ("filter" if kind == "random" else "none")
    ignore = None if args.ignore == "none" else args.ignore
    if norm == "none" and kind != "random" and args.normalization is None:
        ignore = None  # PCA/eigen/interp vectors are used as they are unless asked
    return norm, ignore


# ---------------------------------------------------------------------------- directions
def make_directions(
    args: argparse.Namespace, obj: Objective, trajs: list[Trajectory], center: torch.Tensor
) -> tuple[Directions, torch.Tensor]:
    """The plane's two directions and its centre (which ``interp`` may move)."""
    kind = args.directions
    norm, ignore = normalization(args, "random" if kind == "random" else "other")
    layout, dtype = obj.layout, center.dtype
    if kind == "random":
        return random_directions(
            center, layout, 2, normalization=norm, ignore=ignore, seed=args.seed
        ), center
    if kind == "interp":
        return _interp_plane(trajs, dtype, center.device), center
    if kind in ("pca", "eigen"):
        vectors, meta = _peer_vectors(kind, obj, trajs, center)
    elif kind.endswith(".npy"):
        d = load_directions(kind, theta=center, layout=layout, normalization=norm, ignore=ignore)
        _need_two(d, kind)
        return d, center
    else:
        raise WeightspaceError(
            f"--directions: expected random, pca, eigen, interp or a FILE.npy, got {kind!r}"
        )
    d = directions_from_vectors(
        vectors,
        theta=center,
        layout=layout,
        normalization=norm,
        ignore=ignore,
        kind=kind,
        metadata=meta,
    )
    return d, center


def _need_two(d: Directions, what: str) -> None:
    if len(d) < 2:
        raise WeightspaceError(
            f"--directions {what}: holds {len(d)} direction, a plane needs 2; save a (2, n) array"
        )


def _interp_plane(trajs: list[Trajectory], dtype: torch.dtype, device) -> Directions:
    """Plane through three recorded points, centred on the first run's last point."""

    def th(t: Trajectory, i: int) -> torch.Tensor:
        return t.theta(i, dtype=dtype, device=device)

    if len(trajs) >= 3:
        pts = [th(t, -1) for t in trajs[:3]]
        desc = "final points of the first three runs"
    elif len(trajs) == 2:
        pts = [th(trajs[0], -1), th(trajs[0], 0), th(trajs[1], -1)]
        desc = "first run's final and initial points, second run's final point"
    else:
        t = trajs[0]
        if len(t) < 3:
            raise WeightspaceError(
                f"--directions interp: run {str(t.path)!r} has {len(t)} snapshots; a plane "
                "through one run needs 3, or give 2-3 runs"
            )
        pts = [th(t, -1), th(t, 0), th(t, len(t) // 2)]
        desc = "the run's final, initial and middle points"
    d = plane_through(*pts, orthogonalize=True)
    return dataclasses.replace(d, metadata={**d.metadata, "through": desc})


def _peer_vectors(
    kind: str, obj: Objective, trajs: list[Trajectory], center: torch.Tensor
) -> tuple[np.ndarray, dict[str, Any]]:
    """PCA components of the runs, or top Hessian eigenvectors at the centre."""
    if kind == "pca":
        pca_cls = getattr(ws, "PCA", None)
        if pca_cls is None:
            raise WeightspaceError(
                "--directions pca: PCA is not available in this installation; compute "
                "components and pass them as a (2, n) .npy file"
            )
        pca = pca_cls(n_components=2).fit(trajs if len(trajs) > 1 else trajs[0])
        meta = {"explained_variance_ratio": np.asarray(pca.explained_variance_ratio_).tolist()}
        return np.asarray(pca.components_)[:2], meta
    op_cls, top = getattr(ws, "HessianOperator", None), getattr(ws, "top_eigenpairs", None)
    if op_cls is None or top is None:
        raise WeightspaceError(
            "--directions eigen: Hessian eigenvectors are not available in this installation; "
            "pass them as a (2, n) .npy file"
        )
    eig = top(op_cls(obj, center), k=2, which="largest")
    vecs = torch.as_tensor(eig.eigenvectors).detach().cpu().numpy()
    vecs = vecs if vecs.shape[0] == 2 else vecs.T
    return vecs, {"eigenvalues": np.asarray(torch.as_tensor(eig.eigenvalues).cpu()).tolist()}


# ---------------------------------------------------------------------------- the command
def _spans(
    args: argparse.Namespace, coords: list[np.ndarray] | None
) -> tuple[tuple[float, float], tuple[float, float], bool]:
    span = args.span
    auto = span == ["auto"] or (span is None and args.directions != "random" and bool(coords))
    if auto:
        if not coords:
            raise WeightspaceError(
                "--span auto: needs trajectories on the plane; give --span LO HI"
            )
        sx, sy = plane_extent(coords, margin=args.margin)
        return sx, (tuple(args.span_y) if args.span_y else sy), True
    if span is None:
        span = ["-1", "1"]
    try:
        lo, hi = (float(v) for v in span)
    except ValueError:
        raise WeightspaceError(f"--span: expected LO HI or auto, got {' '.join(span)}") from None
    sx = (lo, hi)
    return sx, (tuple(args.span_y) if args.span_y else sx), False


def run(args: argparse.Namespace) -> dict[str, Any]:
    nx = args.grid
    ny = args.grid_y if args.grid_y is not None else nx
    grid_axis(-1.0, 1.0, nx, "--grid")  # validate counts before any work
    grid_axis(-1.0, 1.0, ny, "--grid-y")
    if args.span_y is not None:
        grid_axis(*args.span_y, ny, "--span-y")
    trajs = [Trajectory.load(r) for r in [*args.runs, *args.more_runs]]
    obj = build_objective(args, trajs)
    dtype = getattr(torch, args.dtype)
    first = trajs[0]
    ci = len(first) - 1 if args.step is None else first.index_of(args.step)
    center = first.theta(ci, dtype=dtype, device=obj.device)
    obj = at_snapshot(obj, first, ci)  # the centre's buffers (BatchNorm statistics)
    dirs, center = make_directions(args, obj, trajs, center)
    coords = None
    if not args.no_trajectories:
        coords = [plane_coordinates(t, center, dirs[0], dirs[1])[0] for t in trajs]
    (x0, x1), (y0, y1), auto = _spans(args, coords)
    xs, ys = grid_axis(x0, x1, nx, "--span"), grid_axis(y0, y1, ny, "--span-y")
    base = out_base(args.out)
    meta = {
        **data_record(args, obj),
        "directions": dirs.describe(),
        "center": {"run": str(first.path), "step": int(first.steps[ci])},
        "runs": [str(t.path) for t in trajs],
        "auto_span": auto,
    }
    opts = engine_options(args)
    surf = evaluate_plane(
        obj,
        center,
        dirs[0],
        dirs[1],
        xs,
        ys,
        metadata=meta,
        checkpoint=base,
        resume=args.resume,
        keep_checkpoint=True,
        recompute_bn=args.recompute_bn,
        **opts,
    )
    if not args.no_trajectories:
        on_plane = trajectories_on_plane(obj, trajs, center, dirs[0], dirs[1], **opts)
        surf = dataclasses.replace(surf, trajectories=on_plane)
    npz = base.with_name(base.name + ".npz")
    dir_path = base.with_name(base.name + ".directions.npy")
    with parallel.rank_zero_writes() as writer:
        if writer:
            npz = save_surface(surf, base)
            save_array(dir_path, dirs.vectors.detach().cpu().numpy())
            parallel.remove_partials(base, all_ranks=True)
    if not parallel.is_rank_zero():
        args.json = False  # one summary, from rank 0
    return _summary(surf, npz, dir_path, args.json)


def _summary(surf, npz: Path, dir_path: Path, quiet: bool) -> dict[str, Any]:
    """The --json summary (and a short text report on rank 0)."""
    v = surf.values
    eng = surf.metadata["engine"]
    s = {
        "surface": str(npz),
        "metadata": str(npz.with_suffix(".json")),
        "directions": str(dir_path),
        "grid": [len(surf.ys), len(surf.xs)],
        "span": {"x": [surf.xs[0], surf.xs[-1]], "y": [surf.ys[0], surf.ys[-1]]},
        "min_loss": float(np.nanmin(v)) if np.isfinite(v).any() else None,
        "max_loss": float(np.nanmax(v)) if np.isfinite(v).any() else None,
        "center_loss": eng["center_loss"],
        "n_nonfinite": surf.n_nonfinite,
        "cosine": surf.metadata["cosine"],
        "seconds": eng["seconds"],
        "compiled": eng["compiled"],
        "trajectories": [
            {
                "name": t.name,
                "snapshots": len(t.steps),
                "max_residual": float(np.max(t.residual)),
                "final_loss": float(t.loss[-1]),
                "final_plane_loss": float(t.plane_loss[-1]),
            }
            for t in surf.trajectories
        ],
    }
    if parallel.is_rank_zero() and not quiet:
        print(
            f"surface {s['grid'][0]}x{s['grid'][1]} in {s['seconds']:.1f} s "
            f"(compiled: {s['compiled']}), loss {s['min_loss']:.4g} .. {s['max_loss']:.4g}, "
            f"{s['n_nonfinite']} non-finite -> {npz}"
        )
        for t in s["trajectories"]:
            print(
                f"  {t['name']}: {t['snapshots']} snapshots, max off-plane residual "
                f"{t['max_residual']:.3g}, final loss {t['final_loss']:.4g} "
                f"(on the plane {t['final_plane_loss']:.4g})"
            )
    return s
