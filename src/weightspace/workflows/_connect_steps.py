"""The steps of :func:`~weightspace.workflows.connect.connect_runs`: the two ends, the
alignment, the curve, the profiles along the paths, the spectra and the plane."""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._batches import as_batches
from ..between import _curve_train as _ct
from ..between._curve_points import POINTS
from ..between.align import align as align_units
from ..between.curve import CurveRun, curve_losses, train_curve
from ..between.results import PATHS
from ..buffers import at_snapshot, recompute_batchnorm, recomputed
from ..curvature import CurvatureAlong, curvature_at
from ..directions import plane_through
from ..errors import LayoutMismatchError, WeightspaceError
from ..landscape import EngineOptions, Line, evaluate_line, evaluate_plane, grid_axis
from ..landscape.grid import _run
from ..landscape.overlay import trajectories_on_plane
from ..landscape.results import PlaneTrajectory, Surface
from ..layout import ParamLayout
from ..objective import Objective
from ..problems import Problem
from ._runs import as_point, describe_point

__all__ = ["Pair", "align_ends", "pair_of", "plane", "profiles", "spectra", "trained_curve"]


@dataclass
class Pair:
    """The two ends and everything the steps share.

    Attributes:
        a, b: ``(n,)`` the ends; ``ends``: path -> its end (``"line"``: B, ``"aligned"``:
            the aligned B); ``end_buffers``: path -> the end's buffers (None: none).
        objectives: split -> the objective reading A's buffers.
        recompute: whether BatchNorm statistics are re-estimated at every point.
    """

    a: torch.Tensor
    b: torch.Tensor
    points: tuple[dict[str, Any], dict[str, Any]]
    objectives: dict[str, Objective]
    has_buffers: bool
    recompute: bool
    ends: dict[str, torch.Tensor] = field(default_factory=dict)
    end_buffers: dict[str, Any] = field(default_factory=dict)
    buffers_a: Any = None

    @property
    def end(self) -> torch.Tensor:
        """Where the curve ends: the aligned B, or B."""
        return self.ends.get("aligned", self.b)


def pair_of(problem: Problem, run_a: Any, run_b: Any, s: Any) -> Pair:
    """The ends (checked against the model), their objectives and buffers."""
    ta, ia = as_point(run_a if s.step_a is None else (run_a, s.step_a))
    tb, ib = as_point(run_b if s.step_b is None else (run_b, s.step_b))
    layout = ParamLayout.from_module(problem.model)
    for name, t in (("run_a", ta), ("run_b", tb)):
        try:
            t.layout.check_compatible(layout, what=f"run {str(t.path)!r} vs the problem's model")
        except LayoutMismatchError as e:
            raise LayoutMismatchError(f"{name}: {e}") from None
    test = problem.test_data is not None if s.test is None else s.test
    if test and problem.test_data is None:
        raise WeightspaceError(f"test: problem {problem.name!r} has no test data")
    obj = Objective(problem, "eval", batch_size=s.batch_size, device=s.device)
    dtype = s.dtype or obj.theta0.dtype
    objectives = {"train": at_snapshot(obj, ta, ia)}
    if test:
        tobj = Objective(problem, "eval", data=problem.test_data, batch_size=s.batch_size,
                         device=obj.device)  # fmt: skip
        objectives["test"] = at_snapshot(tobj, ta, ia)
    has_buffers = len(obj.buffer_layout) > 0
    b = tb.theta(ib, dtype=dtype, device=obj.device)
    pair = Pair(
        ta.theta(ia, dtype=dtype, device=obj.device), b,
        (describe_point(ta, ia), describe_point(tb, ib)), objectives, has_buffers,
        has_buffers if s.recompute_bn is None else bool(s.recompute_bn),
    )  # fmt: skip
    pair.ends["line"] = b
    pair.end_buffers["line"] = tb.buffers(ib) if has_buffers and tb.records_buffers else None
    pair.buffers_a = ta.buffers(ia) if has_buffers and ta.records_buffers else None
    return pair


def _sample(problem: Problem, n: int) -> Any:
    """Up to ``n`` training inputs (the first batches), for activation matching."""
    xs, count = [], 0
    for x, _ in as_batches(problem.data, None, "data"):
        xs.append(x)
        if not isinstance(x, torch.Tensor):
            return x
        count += len(x)
        if count >= n:
            break
    return torch.cat(xs)[:n]


def align_ends(problem: Problem, pair: Pair, s: Any) -> tuple[dict, float, dict]:
    """Align B's units to A's (adds the ``"aligned"`` end): perms, distance, metadata."""
    if s.align == "none":
        return {}, math.nan, {"method": "none"}
    obj = pair.objectives["train"]
    x = _sample(problem, s.align_samples if s.align == "activations" else 2)  # (2: tracing)
    buf_b = pair.end_buffers["line"]
    try:
        al = align_units(
            problem.model, pair.a, pair.b, layout=obj.layout, method=s.align, data=x,
            buffers_a=pair.buffers_a or None, buffers_b=buf_b or None,
            buffer_layout=obj.buffer_layout if pair.has_buffers else None, seed=s.seed,
        )  # fmt: skip
    except WeightspaceError as e:
        why = str(e).splitlines()[0] if str(e) else ""
        if not why.startswith("permutation_spec: "):
            raise
        raise WeightspaceError(
            f"align: the permutation structure of {type(problem.model).__name__} cannot be "
            f"derived ({why.removeprefix('permutation_spec: ').rstrip('.')}); use align='none', "
            "or weightspace.between.align with an explicit PermutationSpec"
        ) from None
    pair.ends["aligned"] = al.apply(pair.b)
    flat = obj.buffer_layout.flatten(buf_b) if buf_b else None
    pair.end_buffers["aligned"] = (
        None if flat is None else obj.buffer_layout.unflatten(al.apply_buffers(flat))
    )
    meta = {"method": s.align, **al.metadata, "sweeps": len(al.objective_history) - 1}
    return {g: np.asarray(p) for g, p in al.perms.items()}, float(al.distance_after), meta


def _curve_dir(curve_dir: Any, resume: bool, overwrite: bool) -> tuple[Path, bool]:
    """The curve run's directory and whether it is a temporary one (removed at the end)."""
    if curve_dir is None:
        if resume:
            raise WeightspaceError("resume: needs curve_dir, the curve run to continue")
        return Path(tempfile.mkdtemp(prefix="weightspace-curve-")), True
    path = Path(curve_dir)
    if _ct.existing_metadata(path) is not None and not resume:
        if not overwrite:
            raise WeightspaceError(
                f"curve_dir: {str(path)!r} holds a curve run already; pass resume=True to "
                "continue it, overwrite=True to replace it, or choose a new directory"
            )
        shutil.rmtree(path)  # (existing_metadata: a curve run, nothing else, is replaced)
    return path, False


def trained_curve(pair: Pair, s: Any, where: dict[str, Any], progress: bool) -> CurveRun | None:
    """Train (or resume) the curve from A to the aligned B; None for ``curve="none"``."""
    if s.curve == "none":
        return None
    out, temporary = _curve_dir(where["curve_dir"], where["resume"], where["overwrite"])
    prov = {"a": pair.points[0], "b": pair.points[1], "aligned": s.align}
    try:
        return train_curve(
            pair.objectives["train"], pair.a, pair.end, out, s.curve_settings(),
            provenance=prov, recompute_bn=pair.recompute, progress=progress,
        )  # fmt: skip
    finally:
        if temporary:
            shutil.rmtree(out, ignore_errors=True)


def profiles(pair: Pair, run: CurveRun | None, ts: np.ndarray, engine: EngineOptions):
    """``"path/split"`` -> :class:`Line` along each path on each split."""
    out: dict[str, Line] = {}
    first = True
    for split, o in pair.objectives.items():
        for p in ("line", "aligned"):
            if p not in pair.ends:
                continue
            eb = None if pair.recompute else pair.end_buffers[p]
            out[f"{p}/{split}"] = evaluate_line(
                o, pair.a, pair.ends[p] - pair.a, ts, engine=engine, check=first,
                end_buffers=eb or None, recompute_bn=pair.recompute,
                metadata={"path": p, "split": split},
            )  # fmt: skip
            first = False
        if run is not None:
            out[f"curve/{split}"] = curve_losses(
                o, pair.a, run, pair.end, ts, recompute_bn=pair.recompute, engine=engine,
                check=False, metadata={"path": "curve", "split": split},
            )  # fmt: skip
    return out


def path_points(p: str, pair: Pair, run: CurveRun | None, ts: Any) -> torch.Tensor:
    """``(m, n)``: the points of path ``p`` at ``ts``."""
    tt = torch.as_tensor(np.asarray(ts, dtype=np.float64))
    if p == "curve":
        return POINTS[run.curve](pair.a, run.bends.to(pair.a), pair.end, tt)
    w = tt.to(pair.a)[:, None]
    return (1 - w) * pair.a + w * pair.ends[p]


def spectra(pair: Pair, run: CurveRun | None, s: Any, progress: bool) -> dict:
    """path -> :class:`CurvatureAlong` at ``s.spectra_at`` (training data)."""
    out: dict[str, CurvatureAlong] = {}
    if s.spectra_at is None:
        return out
    o = pair.objectives["train"]
    at_t = np.asarray(s.spectra_at, dtype=np.float64)
    for p in (p for p in PATHS if p in pair.ends or (p == "curve" and run is not None)):
        pts = path_points(p, pair, run, at_t)

        def state(theta: torch.Tensor) -> Objective:
            if not pair.recompute or not pair.has_buffers:
                return o
            return o.with_buffers(recompute_batchnorm(o, theta), source="recomputed at the point")

        points = ((float(t), pts[k], state(pts[k])) for k, t in enumerate(at_t))
        out[p] = curvature_at(
            o, points, axis="alpha", n_points=len(at_t), progress=progress,
            **{"top_k": s.top_k, "seed": s.seed, **dict(s.curvature or {})},
        )  # fmt: skip
    return out


def _plane_losses(obj: Objective, pts: torch.Tensor, recompute: bool, engine: Any) -> np.ndarray:
    """The loss at each row of ``pts`` ``(m, n)`` under the surface's buffers rule."""

    def write(idx: np.ndarray, out: torch.Tensor) -> None:
        out.copy_(pts[torch.as_tensor(idx, device=pts.device)])

    state = recomputed(obj) if recompute else None
    values, *_ = _run(
        obj, pts[0], write, len(pts), (pts, recompute), "plane", check=False, engine=engine,
        state=state,
    )  # fmt: skip
    return values


def plane(pair: Pair, run: CurveRun | None, lines: dict[str, Line], s: Any, engine: Any):
    """The surface on the plane through A, the aligned B and the bend (or, without a curve,
    B), the paths drawn on it; None without a grid or a third point."""
    third = None if run is None else run.bends[len(run.bends) // 2].to(pair.a)
    if third is None and "aligned" in pair.ends:
        third = pair.b
    if s.grid is None or third is None:
        return None
    try:
        d = plane_through(pair.a, pair.end, third, orthogonalize=True)
    except WeightspaceError:  # three collinear points (B aligned to itself): no plane
        return None
    obj, names = pair.objectives["train"], [p.split("/")[0] for p in lines if "/train" in p]
    pts = [path_points(p, pair, run, lines[f"{p}/train"].alphas) for p in names]
    fits = trajectories_on_plane(obj, pts, pair.a, d[0], d[1], names=names, losses=False,
                                 engine=engine)  # fmt: skip
    coords = np.concatenate([f.coords for f in fits])
    lo, hi = coords.min(0), coords.max(0)
    width = np.where(hi - lo > 0, hi - lo, 1.0)
    lo, hi = lo - s.margin * width, hi + s.margin * width
    xs, ys = grid_axis(lo[0], hi[0], s.grid[0], "grid"), grid_axis(lo[1], hi[1], s.grid[1], "grid")
    third_name = "the bend" if run is not None else "theta_b (unaligned)"
    meta = {"directions": d.describe(), "plane": f"theta_a, theta_b (aligned), {third_name}"}
    surf: Surface = evaluate_plane(obj, pair.a, d[0], d[1], xs, ys, engine=engine, check=False,
                                   recompute_bn=pair.recompute, metadata=meta)  # fmt: skip
    trajs = []
    for f in fits:
        proj = pair.a + torch.from_numpy(f.coords).to(pair.a) @ torch.stack([d[0], d[1]])
        on_plane = _plane_losses(obj, proj, pair.recompute, engine)
        true = lines[f"{f.name}/train"].values
        trajs.append(PlaneTrajectory(f.name, f.steps, f.coords, f.residual, true, on_plane,
                                     f.distance))  # fmt: skip
    return dataclasses.replace(surf, trajectories=tuple(trajs))
