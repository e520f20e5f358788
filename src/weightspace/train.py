"""A plain training loop with recording, for users who have a model factory and no loop.

Initialisation and data order have separate seeds, so "same initialisation, different
shuffles" and "clones after partial training" (Lipton 2016) are one flag each.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from .errors import WeightspaceError
from .layout import ParamLayout
from .objective import Problem, _as_batches
from .record import Recorder
from .trajectory import Trajectory

OptimizerName = Literal["sgd", "adam", "adamw"]
OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(
    params, name: OptimizerName, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise WeightspaceError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")


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
    start_step: int = 0,
    dtype: str = "float32",
    metadata: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Path:
    """Train ``problem.model`` with minibatch updates, recording every ``every`` steps.

    Step 0 (or the starting step of a clone) is the initial point; step ``s`` is the point
    after ``s`` optimizer updates. Each record carries the minibatch ``loss`` and ``acc``.

    Args:
        problem: model, loss and training data (``(X, y)`` tensors are shuffled with
            ``data_seed`` every epoch; an iterable of batches is cycled as given).
        run_dir: the run directory to write; must not exist.
        optimizer, lr, momentum, weight_decay: the update rule.
        batch_size: minibatch size for ``(X, y)`` data.
        steps: optimizer updates to take.
        every: record every ``every`` steps.
        data_seed: seed of the data order, separate from the initialisation.
        init_from: ``(run_dir, step)`` to start from a recorded point (``step=None``: the
            last); numbering continues from that step.
        start_theta: ``(n,)`` a flat parameter vector to start from instead of the model's
            current weights (laid out as ``ParamLayout.from_module(problem.model)``);
            exclusive with ``init_from``.
        start_step: the step number of ``start_theta``; numbering continues from it.
        dtype: snapshot storage dtype.
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
        with torch.no_grad():
            for name, value in parent.layout.unflatten(theta).items():
                dict(model.named_parameters())[name].copy_(value)
        meta.update(init_from=str(init_from[0]), init_step=start)
    elif start_theta is not None:
        layout = ParamLayout.from_module(model)
        if tuple(start_theta.shape) != (layout.numel,):
            raise WeightspaceError(
                f"start_theta: expected a flat vector of shape ({layout.numel},), got "
                f"{tuple(start_theta.shape)}; lay it out like the model's parameters"
            )
        with torch.no_grad():
            for name, value in layout.unflatten(start_theta.detach()).items():
                dict(model.named_parameters())[name].copy_(value)
        start = start_step
    meta.update(metadata or {})
    batches = _batch_stream(problem.data, batch_size, data_seed)
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
            out = model(inputs)
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


def _accuracy(out: torch.Tensor, targets: torch.Tensor) -> float | None:
    if out.ndim == 2 and not targets.is_floating_point() and targets.ndim == 1:
        return float((out.argmax(-1) == targets).float().mean())
    return None


def _batch_stream(data: Any, batch_size: int, seed: int):
    """Endless minibatches: shuffled ``(X, y)`` epochs, or the user's batches cycled."""
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(v, torch.Tensor) for v in data)
    ):
        X, y = data
        gen = torch.Generator().manual_seed(int(seed))
        while True:
            order = torch.randperm(len(y), generator=gen)
            for a in range(0, len(y) - batch_size + 1 if len(y) >= batch_size else 1, batch_size):
                idx = order[a : a + batch_size]
                yield X[idx], y[idx]
    batches = _as_batches(data, None, "data")
    while True:
        yield from batches
