"""Trained low-loss curves between two minima (Garipov et al. 2018, "Loss surfaces, mode
connectivity, and fast ensembling of DNNs").

A curve ``φ(t)`` from ``φ(0) = θ_a`` to ``φ(1) = θ_b`` (:func:`bezier`, :func:`polychain`)
has bend points ``θ_c`` trained to minimise ``E_{t~U[0,1]} L(φ(t))`` with the ends fixed
(:func:`train_curve`: a run of the bends, resumable bit for bit after ``kill -9``). The
Bézier curve is computed as the straight line plus ``Σ_k B_k(t)·(θ_k − ℓ_k)``, ``ℓ_k`` the
line's points at ``k/(b+1)``: bends on the line give the line bit for bit, and both ends are
exact. BatchNorm: in training the model runs in train mode at ``φ(t)`` (batch statistics, as
Garipov et al.); :func:`curve_losses` re-estimates the running statistics at every evaluated
point by a pass over the training data (``recompute_bn``, recorded as ``buffers_rule``). The
barrier is ``max_t L(φ(t)) − [(1−t)L(0) + tL(1)]``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..buffers import RECOMPUTE_RULE, recomputed
from ..checks import as_vector, check_seed, one_of, positive_int
from ..errors import CorruptRunError, WeightspaceError
from ..landscape._engine import EngineOptions
from ..landscape.grid import _barrier, _run, check_axis
from ..landscape.results import Line
from ..objective import Objective
from ..problems import Problem
from ..train import TrainSettings, make_optimizer
from . import _curve_train as _ct
from ._curve_points import POINTS, bezier_points, line_points, polychain_points

__all__ = ["CurveRun", "CurveSettings", "bezier", "curve_losses", "curve_points"]
__all__ += ["load_curve", "polychain", "train_curve"]

CurveKind = Literal["bezier", "polychain"]
CURVES = ("bezier", "polychain")


# ---------------------------------------------------------------------------- curves
def _as_bends(bends: Any, a: torch.Tensor, name: str) -> torch.Tensor:
    """``bends`` as ``(b, n)`` in ``a``'s dtype and device (``(n,)`` is one bend)."""
    t = bends.detach() if isinstance(bends, torch.Tensor) else torch.as_tensor(np.asarray(bends))
    t = t[None] if t.ndim == 1 else t
    if t.ndim != 2 or t.shape[1] != a.shape[0] or not t.is_floating_point():
        raise WeightspaceError(
            f"{name}: expected floating-point bends of shape (b, {a.shape[0]}) or "
            f"({a.shape[0]},), got {tuple(t.shape)} {t.dtype}; lay them out like theta_a"
        )
    return t.to(dtype=a.dtype, device=a.device)


def _validated(theta_a: Any, bends: Any, theta_b: Any, t: Any, name: str) -> tuple:
    shape = tuple(theta_a.shape) if hasattr(theta_a, "shape") else np.shape(theta_a)
    if len(shape) != 1:
        raise WeightspaceError(f"theta_a: expected a flat vector (n,), got shape {shape}")
    a = as_vector(theta_a, shape[0], "theta_a")
    b = as_vector(theta_b, a.shape[0], "theta_b", dtype=a.dtype, device=a.device)
    ts = np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float64)
    if ts.ndim > 1 or not np.isfinite(ts).all():
        raise WeightspaceError(f"t: expected a finite number or a 1-D array, got shape {ts.shape}")
    return a, _as_bends(bends, a, name), b, torch.from_numpy(ts.reshape(-1).copy()), ts.ndim == 0


def bezier(theta_a: Any, theta_c: Any, theta_b: Any, t: Any) -> torch.Tensor:
    """The quadratic Bézier curve ``(1−t)²θ_a + 2t(1−t)θ_c + t²θ_b`` (Garipov et al. 2018).

    Args:
        theta_a, theta_b: ``(n,)`` the ends (``φ(0)``, ``φ(1)``, exactly).
        theta_c: ``(n,)`` the bend; or ``(b, n)`` bends, the Bézier curve of degree ``b + 1``.
        t: a number, or ``(m,)``.

    Returns:
        ``(n,)`` for a number, else ``(m, n)``, in ``theta_a``'s dtype and device. A bend at
        the midpoint gives the straight line ``(1−t)θ_a + tθ_b`` exactly.

    Example:
        >>> a, b = torch.tensor([0.0, 0.0]), torch.tensor([2.0, 0.0])
        >>> bezier(a, torch.tensor([1.0, 2.0]), b, 0.5)
        tensor([1., 1.])
        >>> bezier(a, (a + b) / 2, b, [0.25]).tolist()  # a bend on the line: the line
        [[0.5, 0.0]]
    """
    a, bends, b, ts, scalar = _validated(theta_a, theta_c, theta_b, t, "theta_c")
    out = bezier_points(a, bends, b, ts)
    return out[0] if scalar else out


def polychain(theta_a: Any, bends: Any, theta_b: Any, t: Any) -> torch.Tensor:
    """The polygonal chain ``θ_a → bends[0] → … → θ_b``, uniformly parametrised: segment
    ``j`` is ``t ∈ [j/(b+1), (j+1)/(b+1)]``, so bend ``k`` (from 1) is ``t = k/(b+1)``.

    Args:
        theta_a, theta_b: ``(n,)``; bends: ``(n,)`` or ``(b, n)``; t: a number or ``(m,)``.

    Returns:
        ``(n,)`` for a number, else ``(m, n)``; exact at the ends and at the bends.

    Example:
        >>> a, b = torch.tensor([0.0, 0.0]), torch.tensor([2.0, 0.0])
        >>> polychain(a, torch.tensor([1.0, 1.0]), b, [0.25, 0.5, 1.0]).tolist()
        [[0.5, 0.5], [1.0, 1.0], [2.0, 0.0]]
    """
    a, pts, b, ts, scalar = _validated(theta_a, bends, theta_b, t, "bends")
    out = polychain_points(a, pts, b, ts)
    return out[0] if scalar else out


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class CurveSettings(TrainSettings):
    """:class:`~weightspace.train.TrainSettings` for the bends, and the curve.

    The update (``optimizer``, ``lr``, ``momentum``, ``weight_decay``, acting on the bends),
    ``batch_size``, ``steps``, ``every`` (snapshots) and ``data_seed`` (the data order) are as
    in :func:`~weightspace.train`; the defaults follow Garipov et al. (SGD, momentum 0.9).

    Attributes:
        curve: ``"bezier"`` or ``"polychain"``; bends: how many bend points.
        checkpoint_every: save the state (bends, optimizer) every this many steps.
        seed: the ``t`` of each step and the model's own randomness (dropout).
    """

    lr: float = 0.01
    momentum: float = 0.9
    steps: int = 1000
    curve: CurveKind = "bezier"
    bends: int = 1
    checkpoint_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of(self.curve, CURVES, "curve")
        positive_int(self.bends, "bends")
        positive_int(self.checkpoint_every, "checkpoint_every")
        check_seed(self.seed, "seed")
        probe = [torch.zeros(1, requires_grad=True)]  # momentum/weight decay it has: now
        make_optimizer(probe, self.optimizer, self.lr, self.momentum, self.weight_decay)


@dataclass(frozen=True)
class CurveRun:
    """A trained curve.

    Attributes:
        curve: ``"bezier"`` or ``"polychain"``.
        bends: ``(b, n)`` the trained bend points, in the endpoints' dtype.
        endpoints: ``theta_a_sha256``, ``theta_b_sha256`` and the caller's ``provenance``.
        losses: ``(steps,)`` the minibatch loss at ``φ(t_s)`` of each step (before its update).
        ts: ``(steps,)`` the ``t`` drawn at each step.
        settings: :class:`CurveSettings`.
        metadata: the run's ``run.json`` metadata (settings, ``init``, ``dtype``,
            ``buffers_rule``, ...) with ``path`` and ``steps_done``.
    """

    curve: str
    bends: torch.Tensor
    endpoints: dict[str, Any]
    losses: np.ndarray
    ts: np.ndarray
    settings: CurveSettings
    metadata: dict[str, Any] = field(default_factory=dict)


def _check_endpoints(run: CurveRun, a: torch.Tensor, b: torch.Tensor) -> None:
    for name, theta in (("theta_a", a), ("theta_b", b)):
        if _ct.endpoint_hash(theta) != run.endpoints[f"{name}_sha256"]:
            raise WeightspaceError(
                f"{name}: not the endpoint the curve was trained from (sha256 differs); give "
                "the same vector, in the dtype it was trained in"
            )


def curve_points(run: CurveRun, theta_a: Any, theta_b: Any, ts: Any) -> torch.Tensor:
    """Points of a trained curve: ``(m, n)`` for ``ts (m,)`` (``(n,)`` for a number).

    Raises:
        WeightspaceError: ``theta_a``/``theta_b`` are not the curve's endpoints.
    """
    a, bends, b, tt, scalar = _validated(theta_a, run.bends, theta_b, ts, "run.bends")
    _check_endpoints(run, a, b)
    out = POINTS[run.curve](a, bends, b, tt)
    return out[0] if scalar else out


def _result(s: CurveSettings, bends: torch.Tensor, hist: tuple, meta: dict, out: Any, done: int):
    ends = {k: meta[k] for k in ("theta_a_sha256", "theta_b_sha256")}
    ends["provenance"] = meta.get("endpoints", {})
    extra = {"path": str(out), "steps_done": int(done)}
    return CurveRun(s.curve, bends, ends, *hist, s, {**meta, **extra})


def load_curve(out: str | os.PathLike) -> CurveRun:
    """The curve run at ``out`` as of its last saved state (``metadata["steps_done"]``).

    Raises:
        WeightspaceError: no curve run there, or no state of it saved yet.
    """
    meta, state = _ct.existing_metadata(Path(out)), None
    if meta is not None:
        try:
            s = CurveSettings(**{f.name: meta[f.name] for f in dataclasses.fields(CurveSettings)})
            state = _ct.read_state(Path(out), s.bends, int(meta["n_params"]))
            dtype = getattr(torch, meta["dtype"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CorruptRunError(f"out: {str(out)!r}: not a curve run's run.json ({e})") from None
    if state is None:
        raise WeightspaceError(f"out: {str(out)!r} holds no curve run with a saved state")
    hist = (state["losses"].numpy(), state["ts"].numpy())
    return _result(s, state["bends"].to(dtype), hist, meta, out, state["step"])


# ---------------------------------------------------------------------------- training
def _phi(s: CurveSettings, a: torch.Tensor, b: torch.Tensor) -> Callable:
    """``phi(bends, t) -> (n,)``: the curve's point at ``t`` (differentiable in the bends)."""
    if s.curve == "bezier":
        base = line_points(a, b, s.bends)
        return lambda bends, t: bezier_points(a, bends, b, torch.tensor([t]).double(), base)[0]
    return lambda bends, t: polychain_points(a, bends, b, torch.tensor([t]).double())[0]


def train_curve(
    problem: Problem | Objective,
    theta_a: Any,
    theta_b: Any,
    out: str | os.PathLike,
    settings: CurveSettings | None = None,
    *,
    init: Literal["midpoint"] | Any = "midpoint",
    provenance: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    recompute_bn: bool = True,
    progress: bool = False,
    **changes: Any,
) -> CurveRun:
    """Train the bend(s) of a curve from ``theta_a`` to ``theta_b`` (Garipov et al. 2018).

    Each step draws ``t ~ U[0, 1)`` (seeded by ``(seed, step)``), takes the minibatch loss
    of the model at ``φ(t)`` in train mode (batch statistics, dropout on) and updates the
    bends only. ``out`` is a run of the bends (snapshots every ``every`` steps; ``run.json``
    with the settings and the ends' hashes) with a saved state every ``checkpoint_every``
    steps: the same call on a killed run's directory resumes it and ends bit for bit as an
    uninterrupted run would (a GPU needs deterministic kernels); ``steps`` may grow.

    Args:
        problem: a :class:`~weightspace.Problem`, or an :class:`~weightspace.Objective`
            (its layout, device and buffers); training uses ``problem.data``.
        theta_a, theta_b: ``(n,)`` the ends, fixed; their dtype (float32/64) is the bends'.
        out: the run directory (created; or an unfinished or finished curve run to resume).
        settings: :class:`CurveSettings`; ``**changes`` overrides its fields
            (``curve="polychain"``, ``bends=3``, ``steps=2000``, ``lr=0.05``, ...).
        init: ``"midpoint"`` (bends evenly spaced on the straight line) or ``(b, n)`` bends.
        provenance: where the ends come from (``{"a": "runs/a step 500", ...}``), recorded
            beside their SHA-256 hashes.
        metadata: more facts for ``run.json``.
        recompute_bn: the BatchNorm rule for evaluating the curve (:func:`curve_losses`):
            statistics re-estimated at every point; recorded as ``buffers_rule``.
        progress: a progress bar.

    Returns:
        :class:`CurveRun`.

    Raises:
        WeightspaceError: bad settings or shapes; a run at ``out`` with other settings (one
        line naming the setting); training that diverged: a loss that is not finite, or
        above 100 × max(1, the loss of the first step) (``lr: ...``; the
        directory it created is removed).

    Example::

        run = train_curve(problem, theta_a, theta_b, "runs/curve", steps=2000, lr=0.05)
        line = curve_losses(ws.Objective(problem), theta_a, run, theta_b)
        line.barrier
    """
    s = CurveSettings.of(settings, changes)
    if not isinstance(recompute_bn, bool):
        raise WeightspaceError(f"recompute_bn: expected True or False, got {recompute_bn!r}")
    obj, a, b = _ct.train_objective(problem, s.batch_size, theta_a, theta_b)
    start = _ct.initial_bends(init, lambda k: line_points(a, b, k), a, s.bends)
    facts = {"endpoints": provenance, "metadata": metadata, "recompute_bn": recompute_bn}
    meta = _ct.run_metadata(obj, s, (a, b, start), init, **facts)
    done = _ct.train_bends(obj, _phi(s, a, b), start, Path(out), s, meta, progress)
    return _result(s, done.bends, (done.losses, done.ts), meta, out, done.steps_done)


# ---------------------------------------------------------------------------- evaluation
def curve_losses(
    objective: Objective,
    theta_a: Any,
    theta_c: Any,
    theta_b: Any,
    ts: Any = None,
    *,
    curve: CurveKind | None = None,
    recompute_bn: bool | None = None,
    engine: EngineOptions | Mapping[str, Any] | None = None,
    check: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> Line:
    """Loss and accuracy along a curve, and its barrier, through the grids' point engine.

    Args:
        objective: the loss (its data: e.g. the test set).
        theta_a, theta_b: ``(n,)`` the ends; their dtype is the evaluation dtype.
        theta_c: the bend(s), ``(n,)`` or ``(b, n)``, or a :class:`CurveRun` (its bends,
            kind and BatchNorm rule; the ends must be its own).
        ts: ``(m,)`` increasing, in [0, 1]; default ``linspace(0, 1, 41)``.
        curve: ``"bezier"`` (default) or ``"polychain"``.
        recompute_bn: re-estimate BatchNorm statistics at every point by a pass over the
            training data (default: the run's rule, else True), or read the objective's.
        engine, check, metadata: as in :func:`~weightspace.evaluate_line`.

    Returns:
        :class:`~weightspace.landscape.Line` with ``alphas = ts`` and ``barrier =
        max_t L(φ(t)) − [(1−t)L(0) + tL(1)]`` (NaN unless 0 and 1 are among ``ts``).
    """
    engine = EngineOptions.of(engine)
    ts = check_axis(np.linspace(0, 1, 41) if ts is None else ts, "ts")
    if ts[0] < 0 or ts[-1] > 1:
        raise WeightspaceError(f"ts: expected values in [0, 1], got {ts[0]:g} .. {ts[-1]:g}")
    n = objective.layout.numel
    a = as_vector(theta_a, n, "theta_a", device=objective.device)
    b = as_vector(theta_b, n, "theta_b", dtype=a.dtype, device=objective.device)
    if isinstance(theta_c, CurveRun):
        _check_endpoints(theta_c, a, b)
        curve = one_of(curve or theta_c.curve, (theta_c.curve,), "curve")
        recompute_bn = theta_c.metadata["recompute_bn"] if recompute_bn is None else recompute_bn
        theta_c = theta_c.bends
    kind = one_of(curve or "bezier", CURVES, "curve")
    bends, fn, tt = _as_bends(theta_c, a, "theta_c"), POINTS[kind], torch.from_numpy(ts)

    def write(idx: np.ndarray, out: torch.Tensor) -> None:
        out.copy_(fn(a, bends, b, tt[torch.as_tensor(idx)]))

    recompute_bn = True if recompute_bn is None else recompute_bn
    rule = RECOMPUTE_RULE if recompute_bn else _ct.OBJECTIVE_RULE
    state = recomputed(objective) if recompute_bn else None
    key = (a, bends, b, ts, kind, rule)
    values, stderr, acc, n_bad, info = _run(
        objective, a, write, len(ts), key, "curve", check=check, engine=engine, state=state
    )
    barrier, monotonic = _barrier(ts, values)
    meta = {
        "objective": objective.metadata,
        "curve": kind,
        "bends": int(bends.shape[0]),
        "alphas": {"n": len(ts), "range": [ts[0], ts[-1]], "meaning": "t along the curve"},
        "dtype": str(a.dtype).removeprefix("torch."),
        "engine": info,
        "n_nonfinite": n_bad,
        "barrier": barrier,
        "monotonic": monotonic,
        "buffers_rule": rule if len(objective.buffer_layout) else "the model has no buffers",
        **dict(metadata or {}),
    }
    return Line(ts, values, stderr, acc, n_bad, barrier, monotonic, meta)
