"""A plain training loop with recording, for users who have a model factory and no loop.

Initialisation and data order have separate seeds, so "same initialisation, different
shuffles" and "clones after partial training" (Lipton 2016) are one flag each.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ._batches import call_model, minibatches
from .errors import WeightspaceError
from .layout import ParamLayout
from .objective import Problem
from .optimizers import canonical_name
from .record import Recorder
from .trajectory import Trajectory

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


def _validate(**values: float) -> None:
    rules = {
        "lr": (lambda v: v > 0, "a positive number"),
        "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
        "weight_decay": (lambda v: v >= 0, "a non-negative number"),
        "batch_size": (lambda v: v >= 1, "a positive integer"),
        "steps": (lambda v: v >= 1, "a positive integer"),
        "every": (lambda v: v >= 1, "a positive integer"),
    }
    for name, value in values.items():
        ok, expected = rules[name]
        if not ok(value):
            raise WeightspaceError(f"{name}: expected {expected}, got {value!r}")


def train(
    problem: Problem,
    run_dir: str | os.PathLike,
    *,
    optimizer: OptimizerName = "sgd",
    lr: float = 0.1,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    steps: int = 500,
    every: int = 10,
    data_seed: int = 0,
    init_from: tuple[str | os.PathLike, int | None] | None = None,
    start_theta: torch.Tensor | None = None,
    start_buffers: Mapping[str, torch.Tensor] | None = None,
    start_step: int = 0,
    dtype: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Path:
    """Train ``problem.model`` with minibatch updates, recording every ``every`` steps.

    Step 0 (or the starting step of a clone) is the initial point; step ``s`` is the point
    after ``s`` optimizer updates. Each record carries the minibatch ``loss`` and ``acc``.

    Args:
        problem: model, loss and training data (``(X, y)`` tensors, or dicts of them, are
            shuffled with ``data_seed`` every epoch; an iterable of batches is cycled as
            given). Inputs may be tensors, tuples or dicts, targets tensors or dicts.
        run_dir: the run directory to write; must not exist.
        optimizer, lr, momentum, weight_decay: the update rule.
        batch_size: minibatch size for ``(X, y)`` data.
        steps: optimizer updates to take.
        every: record every ``every`` steps.
        data_seed: seed of the data order, separate from the initialisation.
        init_from: ``(run_dir, step)`` to start from a recorded point (``step=None``: the
            last), its buffers (BatchNorm statistics) included; numbering continues from
            that step.
        start_theta: ``(n,)`` a flat parameter vector to start from instead of the model's
            current weights (laid out as ``ParamLayout.from_module(problem.model)``);
            exclusive with ``init_from``.
        start_buffers: the model's buffers to start from (name -> tensor), with
            ``start_theta``.
        start_step: the step number of ``start_theta``; numbering continues from it.
        dtype: snapshot storage dtype (default: float64 for a float64 model, else float32).
        metadata: extra facts for ``run.json``.
        progress: show a progress bar.

    Returns:
        the run directory.
    """
    _validate(
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        batch_size=batch_size,
        steps=steps,
        every=every,
    )
    run_dir = Path(run_dir)
    if (run_dir / "run.json").exists():
        raise WeightspaceError(f"-o: run {str(run_dir)!r} already exists; choose a new directory")
    if start_theta is not None and init_from is not None:
        raise WeightspaceError("start_theta: give start_theta or init_from, not both")
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
        raise WeightspaceError(f"start_step: expected a non-negative integer, got {start_step!r}")
    model = problem.model
    start = 0
    optimizer = canonical_name(optimizer) or optimizer
    meta: dict[str, Any] = {
        "problem": problem.name,
        "optimizer": optimizer,
        "lr": lr,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "steps": steps,
        "data_seed": data_seed,
    }
    if init_from is not None:
        parent = Trajectory.load(init_from[0])
        i = len(parent) - 1 if init_from[1] is None else parent.index_of(init_from[1])
        start = int(parent.steps[i])
        theta = parent.theta(i, dtype=next(model.parameters()).dtype)
        parent.layout.check_compatible(
            ParamLayout.from_module(model), what=f"--init-from {init_from[0]}"
        )
        _load_point(model, parent.layout.unflatten(theta), parent.buffers(i))
        meta.update(init_from=str(init_from[0]), init_step=start)
    elif start_theta is not None:
        layout = ParamLayout.from_module(model)
        if tuple(start_theta.shape) != (layout.numel,):
            raise WeightspaceError(
                f"start_theta: expected a flat vector of shape ({layout.numel},), got "
                f"{tuple(start_theta.shape)}; lay it out like the model's parameters"
            )
        _load_point(model, layout.unflatten(start_theta.detach()), start_buffers)
        start = start_step
    meta.update(metadata or {})
    batches = minibatches(problem.data, batch_size, data_seed)
    opt = make_optimizer(model.parameters(), optimizer, lr, momentum, weight_decay)
    model.train()
    with Recorder(model, run_dir, every=every, dtype=dtype, metadata=meta) as rec:
        rec.record(start)
        bar = tqdm(
            range(start + 1, start + steps + 1),
            disable=not progress,
            unit="step",
            desc=f"train {run_dir.name}",
            leave=False,
        )
        for step in bar:
            inputs, targets = next(batches)
            opt.zero_grad(set_to_none=True)
            out = call_model(model, inputs)
            loss = problem.loss_fn(out, targets)
            loss.backward()
            opt.step()
            if rec.wants(step):
                loss_v = loss.item()
                if not torch.isfinite(loss.detach()):
                    raise WeightspaceError(
                        f"training diverged at step {step} (loss {loss_v}); lower --lr"
                    )
                acc = _accuracy(out, targets)
                rec.record(step, loss=loss_v, **({"acc": acc} if acc is not None else {}))
                bar.set_postfix(loss=f"{loss_v:.4f}")
    return run_dir


def _load_point(
    model: torch.nn.Module,
    params: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor] | None,
) -> None:
    """Set the model's parameters (and buffers, when given) to a recorded point."""
    named, own = dict(model.named_parameters()), dict(model.named_buffers())
    with torch.no_grad():
        for name, value in params.items():
            named[name].copy_(value)
        for name, value in (buffers or {}).items():
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
