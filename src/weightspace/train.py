"""A plain training loop with recording, for users who have a model factory and no loop.

Initialisation and data order have separate seeds, so "same initialisation, different
shuffles" and "clones after partial training" (Lipton 2016) are one flag each; a clone
(``init_from``) keeps the optimizer settings of the run it comes from unless told otherwise,
so that a comparison changes one thing at a time.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._batches import call_model, minibatches
from ._progress import progress_bar
from .checks import check_seed, non_negative_int, positive_int, replaced
from .errors import WeightspaceError, first_line
from .layout import ParamLayout
from .optimizers import canonical_name
from .outputs import check_run_target
from .problems import Problem
from .record import Recorder
from .trajectory import Trajectory

__all__ = ["StartPoint", "TrainSettings", "make_optimizer", "train"]

OptimizerName = str  # a torch.optim optimizer, by its lower-case name ("sgd", "adamw", ...)
_NEEDS_CLOSURE = ("lbfgs", "sparseadam")


def _torch_optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    found = {}
    for name, cls in vars(torch.optim).items():
        if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer):
            key = canonical_name(name)
            if cls is not torch.optim.Optimizer and key not in _NEEDS_CLOSURE:
                found[key] = cls
    return dict(sorted(found.items()))


TORCH_OPTIMIZERS = _torch_optimizers()
OPTIMIZERS = tuple(TORCH_OPTIMIZERS)


def make_optimizer(
    params, name: OptimizerName, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer ``name`` (canonical or class name: ``"SGD"`` works) with
    ``lr``, ``weight_decay`` and, where it has one, ``momentum``."""
    key = canonical_name(name)
    if key not in TORCH_OPTIMIZERS:
        raise WeightspaceError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")
    cls = TORCH_OPTIMIZERS[key]
    accepts = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {"lr": lr}
    if "weight_decay" in accepts:
        kwargs["weight_decay"] = weight_decay
    elif weight_decay:
        raise WeightspaceError(f"weight_decay: optimizer {key!r} has none; leave it at 0")
    if "momentum" in accepts:
        kwargs["momentum"] = momentum
    elif momentum:
        raise WeightspaceError(f"momentum: optimizer {key!r} has none; leave it at 0")
    return cls(params, **kwargs)


@dataclass(frozen=True)
class TrainSettings:
    """The update rule and the data order of :func:`train`.

    Attributes:
        optimizer: a ``torch.optim`` optimizer by name (``"sgd"``, ``"adamw"``, ...).
        lr, momentum, weight_decay: its settings (momentum only where it has one).
        batch_size: minibatch size for ``(X, y)`` data.
        steps: optimizer updates to take.
        every: record every ``every`` steps.
        data_seed: seed of the data order, separate from the initialisation.
    """

    optimizer: OptimizerName = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 64
    steps: int = 500
    every: int = 10
    data_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "optimizer", canonical_name(self.optimizer) or self.optimizer)
        rules = {
            "lr": (lambda v: 0 < v < math.inf, "a finite positive number"),
            "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "weight_decay": (lambda v: 0 <= v < math.inf, "a finite non-negative number"),
        }
        for name, (ok, expected) in rules.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not ok(value):
                raise WeightspaceError(f"{name}: expected {expected}, got {value!r}")
        for name in ("batch_size", "steps", "every"):
            positive_int(getattr(self, name), name)
        check_seed(self.data_seed, "data_seed")
        if self.optimizer not in TORCH_OPTIMIZERS:
            raise WeightspaceError(
                f"optimizer: expected one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )

    @classmethod
    def of(cls, base: TrainSettings | None, changes: Mapping[str, Any]) -> TrainSettings:
        """``base`` (default: the defaults) with ``changes``, unknown names refused."""
        return replaced(cls, base, changes, "training")


INHERITED = ("optimizer", "lr", "momentum", "weight_decay", "batch_size")


@dataclass(frozen=True)
class StartPoint:
    """Where training starts: a flat parameter vector (laid out as
    ``ParamLayout.from_module(problem.model)``), the model's buffers there, and its step
    number (the numbering continues from it)."""

    theta: torch.Tensor
    buffers: Mapping[str, torch.Tensor] | None = None
    step: int = 0


def _from_run(
    problem: Problem, init_from: tuple[str | os.PathLike, int | None]
) -> tuple[StartPoint, dict[str, Any], dict[str, Any]]:
    """A recorded point as a start, the run's training settings, and facts for run.json."""
    parent = Trajectory.load(init_from[0])
    i = len(parent) - 1 if init_from[1] is None else parent.index_of(init_from[1])
    layout = ParamLayout.from_module(problem.model)
    parent.layout.check_compatible(layout, what=f"init_from {init_from[0]}")
    theta = parent.theta(i, dtype=next(problem.model.parameters()).dtype)
    start = StartPoint(theta, parent.buffers(i), int(parent.steps[i]))
    inherited = {k: parent.metadata[k] for k in INHERITED if k in parent.metadata}
    return start, inherited, {"init_from": str(init_from[0]), "init_step": start.step}


def train(
    problem: Problem,
    run_dir: str | os.PathLike,
    settings: TrainSettings | None = None,
    *,
    init_from: tuple[str | os.PathLike, int | None] | None = None,
    start: StartPoint | None = None,
    dtype: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    **changes: Any,
) -> Path:
    """Train ``problem.model`` with minibatch updates, recording every ``every`` steps.

    Step 0 (or the starting step of a clone) is the initial point; step ``s`` is the point
    after ``s`` optimizer updates. Each record carries the minibatch ``loss`` and ``acc``.
    If training diverges, the run directory this call created is removed.

    Args:
        problem: model, loss and training data (``(X, y)`` tensors, or dicts of them, are
            shuffled with ``data_seed`` every epoch; an iterable of batches is cycled as
            given). Inputs may be tensors, tuples or dicts, targets tensors or dicts.
        run_dir: the run directory to write; must not exist.
        settings: the update rule and data order (:class:`TrainSettings`).
        init_from: ``(run_dir, step)`` to start from a recorded point (``step=None``: the
            last), its buffers (BatchNorm statistics) included; numbering continues from
            that step, and the run's optimizer settings (optimizer, lr, momentum, weight
            decay, batch size) are inherited unless given.
        start: a :class:`StartPoint` instead of the model's current weights; exclusive with
            ``init_from``.
        dtype: snapshot storage dtype (default: float64 for a float64 model, else float32).
        metadata: extra facts for ``run.json``.
        overwrite: replace a run that exists at ``run_dir`` (only a directory holding
            nothing but a weightspace run is replaced).
        progress: show a progress bar.
        **changes: fields of :class:`TrainSettings` (``lr=0.05``, ``steps=200``, ...).

    Returns:
        the run directory.

    Example::

        train(ws.zoo.problem("digits-mlp"), "runs/sgd", lr=0.05, momentum=0.9)
    """
    run_dir = Path(run_dir)
    if start is not None and init_from is not None:
        raise WeightspaceError("start: give start or init_from, not both")
    facts: dict[str, Any] = {}
    if init_from is not None:
        start, inherited, facts = _from_run(problem, init_from)
        changes = {**inherited, **changes}
    settings = TrainSettings.of(settings, changes)  # checked before anything is written
    check_run_target(run_dir, overwrite=overwrite)
    if start is not None:
        _load_point(problem.model, start)
    meta = {"problem": problem.name, **dataclasses.asdict(settings), **facts, **(metadata or {})}
    opt = make_optimizer(
        problem.model.parameters(),
        settings.optimizer,
        settings.lr,
        settings.momentum,
        settings.weight_decay,
    )
    rec = Recorder(
        problem.model, run_dir, every=settings.every, dtype=dtype, metadata=meta, append=False
    )
    try:
        _loop(problem, rec, opt, settings, 0 if start is None else start.step, progress)
        rec.close()
    except BaseException:
        rec.discard()  # a half run is worse than none (only a directory this call made)
        raise
    return run_dir


def _loop(
    problem: Problem,
    rec: Recorder,
    opt: torch.optim.Optimizer,
    s: TrainSettings,
    first: int,
    progress: bool,
) -> None:
    model = problem.model
    batches = minibatches(problem.data, s.batch_size, s.data_seed)
    model.train()
    rec.record(first)
    bar = progress_bar(
        range(first + 1, first + s.steps + 1),
        enabled=progress,
        unit="step",
        desc=f"train {rec.path.name}",
        leave=False,
    )
    for step in bar:
        inputs, targets = next(batches)
        opt.zero_grad(set_to_none=True)
        out, loss = _forward(problem, inputs, targets, step)
        loss.backward()
        opt.step()
        if rec.wants(step) or step == first + s.steps:  # checked at the last step too
            loss_v = loss.item()
            if not torch.isfinite(loss.detach()):
                raise WeightspaceError(
                    f"lr: training diverged at step {step} (loss {loss_v}); lower the learning rate"
                )
            acc = _accuracy(out, targets)
            rec.record(step, loss=loss_v, **({"acc": acc} if acc is not None else {}))
            bar.set_postfix(loss=f"{loss_v:.4f}")


def _forward(problem: Problem, inputs: Any, targets: Any, step: int) -> tuple[Any, torch.Tensor]:
    """The model's outputs and the scalar loss of one batch; the user's model or loss
    failing on the data (a width mismatch, a wrong target type) is reported as such."""
    try:
        out = call_model(problem.model, inputs)
        loss = problem.loss_fn(out, targets)
    except WeightspaceError:
        raise
    except Exception as e:
        raise WeightspaceError(
            f"problem: the model or loss_fn raised {type(e).__name__} on the batch of step "
            f"{step}: {first_line(e)}; check that the data fit the model"
        ) from e
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise WeightspaceError(
            f"problem.loss_fn: returned {shape}, expected a scalar tensor; reduce over the "
            "batch (e.g. reduction='mean')"
        )
    return out, loss.reshape(())


def _load_point(model: torch.nn.Module, start: StartPoint) -> None:
    """Set the model's parameters (and buffers, when given) to a start point."""
    layout = ParamLayout.from_module(model)
    if tuple(start.theta.shape) != (layout.numel,):
        raise WeightspaceError(
            f"start: expected a flat vector of shape ({layout.numel},), got "
            f"{tuple(start.theta.shape)}; lay it out like the model's parameters"
        )
    non_negative_int(start.step, "start.step")
    named, own = dict(model.named_parameters()), dict(model.named_buffers())
    with torch.no_grad():
        for name, value in layout.unflatten(start.theta.detach()).items():
            named[name].copy_(value)
        for name, value in (start.buffers or {}).items():
            if name in own:
                own[name].copy_(value)


def _accuracy(out: Any, targets: Any) -> float | None:
    if (
        isinstance(out, torch.Tensor)
        and isinstance(targets, torch.Tensor)
        and out.ndim == 2
        and not targets.is_floating_point()
        and targets.ndim == 1
    ):
        return float((out.argmax(-1) == targets).float().mean())
    return None
