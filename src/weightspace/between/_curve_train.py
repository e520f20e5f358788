"""The run behind :func:`weightspace.between.curve.train_curve`, resumable bit for bit.

A resumed run ends equal to an uninterrupted one, bit for bit (on the CPU, or a GPU with
deterministic kernels), because:

* every ``checkpoint_every`` steps and at the end, the state (bends, optimizer state, the
  losses and t's so far) is one ``torch.save`` file, written to a temporary name, fsynced
  and renamed (:data:`STATE`), after the recorder has flushed the snapshots up to that step;
* step ``s`` draws its ``t`` and the seed of the model's own randomness (dropout) from a
  generator seeded by ``(seed, s)`` (:func:`draws`); the model runs under a forked global
  RNG seeded with it (:func:`seeded`), which leaves the caller's global RNG as it was;
* the minibatches are ``minibatches(data, batch_size, data_seed)`` advanced past the steps
  done;
* on resume the directory is rewound to the saved step (:func:`rewind`): snapshots and
  metrics lines that the killed process wrote after it are dropped, then written again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._batches import map_tensors, minibatches
from .._progress import progress_bar
from ..buffers import RECOMPUTE_RULE
from ..checks import as_vector
from ..errors import CorruptRunError, WeightspaceError, first_line
from ..layout import ParamLayout
from ..objective import Objective
from ..problems import Problem
from ..record import Recorder
from ..store import (
    METRICS,
    RUN_JSON,
    SNAPSHOT_RE,
    SNAPSHOTS,
    atomic_path,
    read_run_header,
    regular_file,
)
from ..train import make_optimizer
from ._curve_random import draws, seeded

__all__ = ["OBJECTIVE_RULE", "STATE", "LoopResult", "endpoint_hash", "existing_metadata"]
__all__ += ["initial_bends", "read_state", "run_metadata", "train_bends", "train_objective"]

log = logging.getLogger(__name__)

STATE = "curve_state.pt"  # the checkpoint: bends, optimizer state, history (torch.save)
STATE_FORMAT = 1
KIND = "curve"
DIVERGE_FACTOR = 100.0  # a loss this many times the first step's (at least 1): diverged
OBJECTIVE_RULE = "the objective's at every point"
TRAINING_RULE = "batch statistics: the model runs in train mode at φ(t) (Garipov et al. 2018)"
# settings that must be the same to resume (``steps`` may grow: no number depends on it)
RESUME_KEYS = tuple(
    "curve bends optimizer lr momentum weight_decay batch_size every checkpoint_every seed "
    "data_seed init dtype n_params theta_a_sha256 theta_b_sha256 recompute_bn".split()
)


@dataclass(frozen=True)
class LoopResult:
    """What training leaves: bends ``(b, n)``, per-step ``losses`` and ``ts`` ``(steps,)``."""

    bends: torch.Tensor
    losses: np.ndarray
    ts: np.ndarray
    steps_done: int


# ---------------------------------------------------------------------------- the inputs
def train_objective(problem: Any, batch_size: int, theta_a: Any, theta_b: Any) -> tuple:
    """A train-mode objective that runs the model at a point (its own data: one training
    batch; the loop feeds it minibatches of ``problem.data``), and the ends as ``(n,)``
    vectors on its device in ``theta_a``'s dtype."""
    if isinstance(problem, Objective):
        prob, layout, device = problem.problem, problem.layout, problem.device
        buffers = problem.buffers() if len(problem.buffer_layout) else None
    elif isinstance(problem, Problem):
        prob, layout, buffers = problem, ParamLayout.from_module(problem.model), None
        device = next(problem.model.parameters()).device
    else:
        raise WeightspaceError(
            f"problem: expected a weightspace Problem or Objective, got {type(problem).__name__}"
        )
    a = as_vector(theta_a, layout.numel, "theta_a", device=device)
    if a.dtype not in (torch.float32, torch.float64):
        raise WeightspaceError(f"theta_a: expected float32 or float64 values, got {a.dtype}")
    b = as_vector(theta_b, layout.numel, "theta_b", dtype=a.dtype, device=device)
    first = next(minibatches(prob.data, batch_size, 0))
    obj = Objective(prob, "train", layout=layout, data=[first], device=device, buffers=buffers)
    return obj, a, b


def initial_bends(init: Any, line: Callable[[int], torch.Tensor], a: torch.Tensor, k: int):
    """``(k, n)`` starting bends: ``line(k)`` for ``"midpoint"``, else ``init`` checked."""
    if isinstance(init, str):
        if init != "midpoint":
            raise WeightspaceError(f"init: expected 'midpoint' or ({k}, n) bends, got {init!r}")
        return line(k)
    t = init.detach() if isinstance(init, torch.Tensor) else torch.as_tensor(np.asarray(init))
    t = t[None] if t.ndim == 1 else t
    if tuple(t.shape) != (k, a.shape[0]) or not t.is_floating_point():
        raise WeightspaceError(
            f"init: expected {k} bend(s) of shape ({a.shape[0]},), got {tuple(t.shape)} "
            f"{t.dtype}; give one row per bend"
        )
    if not bool(torch.isfinite(t).all()):
        raise WeightspaceError("init: holds NaN or inf values; give finite bends")
    return t.to(a)


def endpoint_hash(theta: torch.Tensor) -> str:
    """SHA-256 of a vector's values in float64 (the endpoints' identity in a curve run)."""
    arr = theta.detach().to(device="cpu", dtype=torch.float64).contiguous().numpy()
    return hashlib.sha256(arr.tobytes()).hexdigest()


def run_metadata(obj: Objective, s: Any, ends: tuple, init: Any, **facts: Any) -> dict:
    """``run.json``'s metadata: the settings, the ends' hashes and provenance, the rules."""
    a, b, start = ends
    return {
        **dict(facts["metadata"] or {}),
        "kind": KIND,
        "problem": obj.problem.name,
        **asdict(s),
        "init": "midpoint" if isinstance(init, str) else f"given sha256:{endpoint_hash(start)}",
        "dtype": str(a.dtype).removeprefix("torch."),
        "n_params": int(a.shape[0]),
        "theta_a_sha256": endpoint_hash(a),
        "theta_b_sha256": endpoint_hash(b),
        "endpoints": dict(facts["endpoints"] or {}),
        "recompute_bn": facts["recompute_bn"],
        "buffers_rule": RECOMPUTE_RULE if facts["recompute_bn"] else OBJECTIVE_RULE,
        "training_buffers": TRAINING_RULE,
    }


# ---------------------------------------------------------------------------- the directory
def existing_metadata(out: Path) -> dict[str, Any] | None:
    """The metadata of the curve run at ``out``; None when there is none yet.

    Raises:
        WeightspaceError: ``out`` is a file, or a directory holding something else.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise WeightspaceError(f"out: {str(out)!r} is a file; give a directory")
    if not (out / RUN_JSON).exists():
        if any(p.name != ".lock" for p in out.iterdir()):
            raise WeightspaceError(
                f"out: {str(out)!r} is not empty and holds no curve run; choose a new directory"
            )
        return None
    meta = read_run_header(out)["metadata"]
    if meta.get("kind") != KIND:
        raise WeightspaceError(
            f"out: {str(out)!r} holds a run that is not a curve (kind {meta.get('kind')!r}); "
            "choose a new directory"
        )
    return meta


def check_same(stored: Mapping[str, Any], new: Mapping[str, Any], out: Path) -> None:
    """Refuse to resume the run at ``out`` with settings other than its own (one line)."""
    for key in RESUME_KEYS:
        old, now = stored.get(key), new.get(key)
        if old != now:
            if key.endswith("_sha256"):
                old, now = f"sha256 {str(old)[:12]}…", f"sha256 {str(now)[:12]}…"
            raise WeightspaceError(
                f"{key.removesuffix('_sha256')}: the curve run in {str(out)!r} was trained "
                f"with {old!r}, got {now!r}; resume with the same settings, or choose a new "
                "directory"
            )


def read_state(out: Path, n_bends: int, n: int) -> dict[str, Any] | None:
    """The saved state at ``out`` (None when none was saved), checked for its form."""
    path = out / STATE
    if not path.exists():
        return None
    try:
        state = torch.load(regular_file(path, "curve state"), map_location="cpu", weights_only=True)
        ok = (
            state.get("format") == STATE_FORMAT
            and isinstance(state["step"], int)
            and tuple(state["bends"].shape) == (n_bends, n)
            and len(state["losses"]) == len(state["ts"]) == state["step"]
        )
    except CorruptRunError:
        raise
    except Exception as e:
        ok, why = False, first_line(e)
    else:
        why = "not a state of this curve run"
    if not ok:
        raise CorruptRunError(f"curve state {path}: {why}; remove it to start again")
    return state


def _write_state(out: Path, step: int, bends: torch.Tensor, opt: Any, hist: Any) -> None:
    losses, ts = hist
    state = {
        "format": STATE_FORMAT,
        "step": int(step),
        "bends": bends.detach().cpu().clone(),
        "optimizer": opt.state_dict(),
        "losses": losses[:step].detach().cpu().clone(),
        "ts": ts[:step].clone(),
    }
    with atomic_path(out / STATE) as tmp:
        torch.save(state, tmp)


def rewind(out: Path, step: int) -> None:
    """Drop the snapshots and metrics lines after ``step`` (written after the last saved
    state by a process that was killed); call with the directory's lock held."""
    snaps = out / SNAPSHOTS
    for p in snaps.iterdir() if snaps.is_dir() else ():
        m = SNAPSHOT_RE.match(p.name)
        if m and int(m.group(1)) > step:
            p.unlink()
    if not (out / METRICS).is_file():
        return
    with open(out / METRICS, "rb+") as f:  # the recorder appends (O_APPEND) after the cut
        keep = 0
        for line in f.read().splitlines(keepends=True):
            try:
                if int(json.loads(line)["step"]) > step:
                    break
            except (ValueError, KeyError, TypeError):
                break
            keep += len(line)
        f.truncate(keep)


# ---------------------------------------------------------------------------- the loop
def _loss(obj: Objective, theta: torch.Tensor, batch: Any, step: int) -> torch.Tensor:
    try:
        return obj.forward_loss(theta, *batch)[1].reshape(())
    except WeightspaceError:
        raise
    except Exception as e:  # the user's model or loss failing on the data, or not a scalar
        raise WeightspaceError(
            f"problem: the model or loss_fn raised {type(e).__name__} on the batch of step "
            f"{step}: {first_line(e)}; check that the data fit the model and that the loss "
            "is a scalar"
        ) from e


def _check_finite(losses: torch.Tensor, since: int, step: int, bends: torch.Tensor) -> None:
    """Divergence: in steps ``since+1 .. step`` a loss that is not finite or above
    ``DIVERGE_FACTOR × max(1, the loss of the first step)`` (at the starting bends), or
    bends that are not finite."""
    ref = max(1.0, float(losses[0]))
    window = losses[since:step]
    bad = torch.nonzero(~torch.isfinite(window) | (window > DIVERGE_FACTOR * ref)).flatten()
    if len(bad) or not bool(torch.isfinite(bends).all()):
        at = since + 1 + int(bad[0]) if len(bad) else step
        value = float(losses[at - 1]) if len(bad) else math.inf
        raise WeightspaceError(
            f"lr: curve training diverged at step {at} (loss {value:.4g}, first step's "
            f"{float(losses[0]):.4g}); lower the learning rate"
        )


def run_loop(
    obj: Objective,
    phi: Callable[[torch.Tensor, float], torch.Tensor],
    holder: torch.nn.Module,
    opt: torch.optim.Optimizer,
    rec: Recorder,
    settings: Any,
    state: dict[str, Any] | None,
    progress: bool,
) -> LoopResult:
    """Train ``holder.bends`` from ``state`` (None: from step 0) to ``settings.steps``:
    ``obj`` (train mode) runs the model at ``phi(bends, t)`` on minibatches of its problem's
    training data."""
    s, device, dtype = settings, obj.device, holder.bends.dtype
    first = 0 if state is None else state["step"]
    losses = torch.full((s.steps,), math.nan, dtype=torch.float64, device=device)
    ts = torch.full((s.steps,), math.nan, dtype=torch.float64)
    if state is None:
        rec.record(0)
    else:
        with torch.no_grad():
            holder.bends.copy_(state["bends"])
        opt.load_state_dict(state["optimizer"])
        losses[:first], ts[:first] = state["losses"], state["ts"]

    def stage(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

    batches = minibatches(obj.problem.data, s.batch_size, s.data_seed)
    for _ in range(first):  # the batches of the steps before the saved state
        next(batches)
    checked, steps = first, range(first + 1, s.steps + 1)
    bar = progress_bar(steps, desc=f"curve {rec.path.name}", unit="step", enabled=progress,
                       total=s.steps, initial=first)  # fmt: skip
    for step in bar:
        t, model_seed = draws(s.seed, step)
        batch = map_tensors(next(batches), stage)
        opt.zero_grad(set_to_none=True)
        with seeded(model_seed, device):
            loss = _loss(obj, phi(holder.bends, t), batch, step)
            loss.backward()
        opt.step()
        losses[step - 1], ts[step - 1] = loss.detach(), t
        save = step % s.checkpoint_every == 0 or step == s.steps
        if rec.wants(step) or save:
            _check_finite(losses, checked, step, holder.bends.detach())
            checked = step
            if rec.record(step, loss=losses[step - 1], t=t):
                bar.set_postfix(loss=f"{float(losses[step - 1]):.4g}")
        if save:
            rec.flush()  # the snapshots up to this step are on disk before the state says so
            _write_state(rec.path, step, holder.bends, opt, (losses, ts))
    return LoopResult(holder.bends.detach().clone(), losses.cpu().numpy(), ts.numpy(), s.steps)


# ---------------------------------------------------------------------------- the run
class _Bends(torch.nn.Module):
    """The trained tensor, as a module the recorder snapshots (layout ``bends: (b, n)``)."""

    def __init__(self, bends: torch.Tensor) -> None:
        super().__init__()
        self.bends = torch.nn.Parameter(bends.detach().clone())


def train_bends(
    obj: Objective,
    phi: Callable[[torch.Tensor, float], torch.Tensor],
    start: torch.Tensor,
    out: Path,
    settings: Any,
    meta: dict[str, Any],
    progress: bool,
) -> LoopResult:
    """Train the bends from ``start`` ``(b, n)`` into the run at ``out``, or resume it there.

    A run that diverges, or whose problem fails, is removed if this call created it; one
    stopped otherwise (Ctrl-C, a full disk) is kept once a state is saved, to be resumed.
    """
    s, n = settings, int(start.shape[1])
    stored = existing_metadata(out)
    if stored is not None:
        check_same(stored, meta, out)
        state = read_state(out, s.bends, n)
        if state is not None and state["step"] > s.steps:
            raise WeightspaceError(
                f"steps: the curve run in {str(out)!r} has taken {state['step']} steps; give "
                "at least as many to resume it"
            )
        log.info("resuming the curve run in %s", out)
    holder = _Bends(start)
    opt = make_optimizer(holder.parameters(), s.optimizer, s.lr, s.momentum, s.weight_decay)
    rec = Recorder(holder, out, every=s.every, dtype=meta["dtype"], metadata=meta)
    try:
        state = read_state(out, s.bends, n)  # again, now that the lock is held
        rewind(out, -1 if state is None else state["step"])
        result = run_loop(obj, phi, holder, opt, rec, s, state, progress)
        rec.close()
    except BaseException as e:
        if isinstance(e, WeightspaceError) or not (out / STATE).exists():
            rec.discard()  # resuming would fail the same way, or has nothing to start from
        else:
            with contextlib.suppress(Exception):
                rec.close()
        raise
    return result
