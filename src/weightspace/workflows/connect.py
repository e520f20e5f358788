"""Between two solutions (what ``weightspace connect`` computes): the straight line from A to
B, the same line after aligning B's hidden units to A's (Ainsworth et al. 2023, "Git
Re-Basin"; Entezari et al. 2022), and a trained low-loss curve (Garipov et al. 2018), with
loss, accuracy and barrier along each on train and test data, optional spectra along the
paths (GradVis §3.4) and the plane through A, B and the bend with the paths drawn on it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..between.curve import CurveSettings
from ..between.results import PATHS, Connection
from ..checks import check_seed, one_of, positive_int, replaced
from ..errors import WeightspaceError
from ..landscape import EngineOptions, check_axis
from ..problems import Problem
from . import _connect_steps as _cs
from ._runs import RunLike

__all__ = ["ConnectSettings", "connect_runs"]


@dataclass(frozen=True)
class ConnectSettings:
    """What :func:`connect_runs` computes, and how.

    Attributes:
        step_a, step_b: the recorded steps of A and B (default: each run's last snapshot).
        align: ``"weights"`` (weight matching), ``"activations"`` (correlation of unit
            activations on ``align_samples`` training inputs) or ``"none"``; the
            permutation structure is derived from the model
            (:func:`~weightspace.between.align`).
        curve: ``"bezier"`` (Garipov et al.'s quadratic Bézier for one bend),
            ``"polychain"`` or ``"none"``.
        bends: the curve's bend points; steps: its training steps.
        lr, momentum, curve_batch_size: the curve's SGD (Garipov et al.'s defaults).
        curve_options: more :class:`~weightspace.between.curve.CurveSettings` fields
            (``checkpoint_every``, ``every``, ``optimizer``, ``weight_decay``, ``data_seed``).
        ts: the ``t`` at which every path is evaluated: their number on ``[0, 1]`` or the
            values (increasing; 0 and 1 included for a barrier).
        test: also evaluate on the problem's test data (default: when it has some).
        spectra_at: the ``t`` at which to compute the top ``top_k`` Hessian eigenvalues on
            each path (training data; None: none); curvature: more
            :class:`~weightspace.CurvatureSettings` fields (``density=True``, ``tol``, ...).
        grid: ``(nx, ny)`` points of the surface on the plane (None: no surface); margin:
            how far it reaches beyond the paths, as a share of their extent.
        recompute_bn: re-estimate BatchNorm statistics at every evaluated point (one pass
            over the training data each; Garipov et al.). Default: when the model has
            buffers. Without it the lines read the ends' recorded buffers interpolated
            along ``t``, the curve and the surface A's.
        align_samples: training inputs for activation matching.
        seed: the alignment's group order, the curve's ``t`` draws, the spectra's probes.
        batch_size: evaluation batch size (memory only; the values do not depend on it).
        device: where to compute (default: the model's); dtype: the compute dtype (default:
            the model's).
    """

    step_a: int | None = None
    step_b: int | None = None
    align: Literal["weights", "activations", "none"] = "weights"
    curve: Literal["bezier", "polychain", "none"] = "bezier"
    bends: int = 1
    steps: int = 500
    lr: float = 0.01
    momentum: float = 0.9
    curve_batch_size: int = 64
    curve_options: Mapping[str, Any] | None = None
    ts: int | Sequence[float] | np.ndarray = 21
    test: bool | None = None
    spectra_at: Sequence[float] | None = None
    top_k: int = 3
    curvature: Mapping[str, Any] | None = None
    grid: tuple[int, int] | None = (21, 21)
    margin: float = 0.2
    recompute_bn: bool | None = None
    align_samples: int = 512
    seed: int = 0
    batch_size: int | None = None
    device: torch.device | str | None = None
    dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        one_of(self.align, ("weights", "activations", "none"), "align")
        one_of(self.curve, ("bezier", "polychain", "none"), "curve")
        for name in ("top_k", "align_samples", "bends", "steps"):
            positive_int(getattr(self, name), name)
        check_seed(self.seed, "seed")
        grid = self.grid
        if grid is not None and (
            len(grid) != 2 or not all(isinstance(g, int) and g >= 2 for g in grid)
        ):
            raise WeightspaceError(f"grid: expected (nx, ny), each at least 2, got {grid!r}")
        if not (isinstance(self.margin, (int, float)) and self.margin >= 0):
            raise WeightspaceError(f"margin: expected a non-negative number, got {self.margin!r}")
        at = None if self.spectra_at is None else np.asarray(self.spectra_at, dtype=np.float64)
        if at is not None and (at.ndim != 1 or not at.size or not ((at >= 0) & (at <= 1)).all()):
            raise WeightspaceError(
                f"spectra_at: expected t values in [0, 1], got {list(np.ravel(at))!r}"
            )
        self.t_values()
        if self.curve != "none":
            self.curve_settings()

    def t_values(self) -> np.ndarray:
        """``(m,)`` the ``t`` of the profiles, checked."""
        ts = self.ts
        if isinstance(ts, int):
            ts = np.linspace(0.0, 1.0, positive_int(ts, "ts"))
        ts = check_axis(ts, "ts")
        if ts[0] < 0 or ts[-1] > 1:
            raise WeightspaceError(f"ts: expected values in [0, 1], got {ts[0]:g} .. {ts[-1]:g}")
        return ts

    def curve_settings(self) -> CurveSettings:
        """The curve's :class:`~weightspace.between.curve.CurveSettings`."""
        fixed = {"curve": self.curve, "bends": self.bends, "steps": self.steps, "lr": self.lr,
                 "momentum": self.momentum, "batch_size": self.curve_batch_size,
                 "seed": self.seed}  # fmt: skip
        return CurveSettings.of(None, {**dict(self.curve_options or {}), **fixed})

    @classmethod
    def of(cls, base: ConnectSettings | None, changes: Mapping[str, Any]) -> ConnectSettings:
        """``base`` (default: the defaults) with ``changes``, unknown names refused."""
        return replaced(cls, base, changes, "connect")


def connect_runs(
    problem: Problem,
    run_a: RunLike,
    run_b: RunLike,
    settings: ConnectSettings | None = None,
    *,
    curve_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    engine: EngineOptions | Mapping[str, Any] | None = None,
    progress: bool = False,
    metadata: Mapping[str, Any] | None = None,
    **changes: Any,
) -> Connection:
    """What lies between two trained networks A and B: loss and barrier along the straight
    line, along the line after aligning B's units to A's, and along a trained curve.

    The barrier of a path φ is ``max_t L(φ(t)) − [(1−t)L(0) + tL(1)]`` over the evaluated
    ``t`` (Frankle et al. 2020). The curve is trained between A and the aligned B (B when
    ``align="none"``) by :func:`~weightspace.between.curve.train_curve`: a run of its own
    in ``curve_dir`` that ``resume=True`` continues after a crash, bit for bit.

    Args:
        problem: the model, loss, training data and (optionally) test data.
        run_a, run_b: the runs (directories or Trajectories) of the same model.
        settings: :class:`ConnectSettings`; ``**changes`` overrides its fields
            (``align="activations"``, ``steps=2000``, ``ts=41``, ``spectra_at=[0, .5, 1]``).
        curve_dir: the curve run's directory (None: a temporary one, removed afterwards).
        resume: continue the curve run in ``curve_dir`` (same settings); without it an
            existing curve run there is refused.
        overwrite: replace a curve run in ``curve_dir`` instead.
        engine: how to evaluate points (:class:`~weightspace.EngineOptions`).
        progress: progress bars (curve training, evaluations, spectra).
        metadata: more facts to record.

    Returns:
        :class:`~weightspace.between.results.Connection`.

    Raises:
        WeightspaceError: runs of another model (``run_b: ...``), a model whose permutation
            structure cannot be derived (naming the module), a curve whose training
            diverges (``lr: ...``), a curve run in ``curve_dir`` without ``resume``.

    Example::

        conn = ws.connect_runs(ws.zoo.problem("digits-mlp"), "runs/a", "runs/b", steps=300)
        conn.barriers  # {"line": {"train": ..., "test": ...}, "aligned": ..., "curve": ...}
    """
    s = ConnectSettings.of(settings, changes)  # checked before any work
    engine = EngineOptions.of(engine)
    ts = s.t_values()
    pair = _cs.pair_of(problem, run_a, run_b, s)
    perms, distance_after, align_meta = _cs.align_ends(problem, pair, s)
    where = {"curve_dir": curve_dir, "resume": resume, "overwrite": overwrite}
    run = _cs.trained_curve(pair, s, where, progress)
    lines = _cs.profiles(pair, run, ts, engine)
    spectra = _cs.spectra(pair, run, s, progress)
    surface = _cs.plane(pair, run, lines, s, engine)
    rule = (
        "the model has no buffers" if not pair.has_buffers
        else "recomputed at every point" if pair.recompute
        else "lines: the ends' interpolated; curve and surface: A's"
    )  # fmt: skip
    hidden = ("theta_a_sha256", "theta_b_sha256", "path")
    meta = {
        "problem": problem.name,
        "a": pair.points[0],
        "b": pair.points[1],
        "align": align_meta,
        "curve": None if run is None else {k: v for k, v in run.metadata.items()
                                           if k not in hidden},
        "curve_losses": None if run is None else run.losses.tolist(),
        "settings": {k: v for k, v in dataclasses.asdict(s).items() if k not in ("device",)},
        "buffers_rule": rule,
        "dtype": str(pair.a.dtype).removeprefix("torch."),
        **dict(metadata or {}),
    }  # fmt: skip
    return Connection(
        paths=tuple(p for p in PATHS if f"{p}/train" in lines),
        splits=tuple(pair.objectives),
        profiles=lines,
        distance_before=float(torch.linalg.vector_norm((pair.a - pair.b).double())),
        distance_after=distance_after,
        perms=perms,
        bends=None if run is None else run.bends.detach().cpu().numpy(),
        surface=surface,
        spectra=spectra,
        metadata=meta,
    )
