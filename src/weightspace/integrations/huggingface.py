"""Hugging Face ``transformers`` Trainer callback that records a run in the standard format.

Example::

    from transformers import Trainer, TrainingArguments
    from weightspace.integrations.huggingface import (
        WeightspaceTrainerCallback,
    )
    cb = WeightspaceTrainerCallback("runs/hf", every=10)
    args = TrainingArguments("out", max_steps=1000, logging_steps=10)
    try:
        Trainer(model, args, train_dataset=ds, callbacks=[cb]).train()
    finally:
        cb.close()  # the Trainer has no exception hook: keep what was recorded
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import WeightspaceError
from ..layout import NameFilter
from . import RunWriter, check_options, optimizer_metadata, require, scalar_metrics

_transformers = require(
    ("transformers",),
    "pip install transformers accelerate",
    "weightspace.integrations.huggingface",
)

log = logging.getLogger(__name__)

__all__ = ["WeightspaceTrainerCallback"]

# throughput figures in the Trainer's logs: facts about the machine, not the run
_SPEED_SUFFIXES = ("_runtime", "_per_second", "total_flos")
# TrainingArguments stored in run.json when present
_ARGS = (
    "learning_rate",
    "optim",
    "optim_args",
    "seed",
    "data_seed",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "lr_scheduler_type",
    "warmup_steps",
    "max_grad_norm",
    "gradient_accumulation_steps",
    "per_device_train_batch_size",
    "world_size",
)


def _json_value(value: Any) -> Any:
    """Enums by value; numbers, strings and None as they are; anything else as ``str``."""
    value = getattr(value, "value", value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class WeightspaceTrainerCallback(_transformers.TrainerCallback):
    """Record the model's trainable parameters every ``every`` optimizer steps of a Trainer.

    ``on_train_begin`` marks ``state.global_step`` (0 for a fresh run); ``on_step_end`` marks
    every step with ``state.global_step % every == 0``. A marked step is written before the
    parameters next change (``on_step_begin`` / ``on_pre_optimizer_step``), or when the final
    training summary is logged, so the numbers the Trainer logs at that step (``on_log``:
    ``loss``, ``grad_norm``, ``learning_rate``, ``epoch``, ``eval_*``) are stored with it. The
    Trainer's ``loss`` is the mean training loss since its previous log: set
    ``logging_steps=every`` to have one per snapshot. Only the world process zero writes.

    The Trainer has no exception hook: if training may fail, call :meth:`close` in a
    ``finally`` to write out every recorded step at once (otherwise it happens when the
    interpreter exits).

    ``run.json`` metadata holds the optimizer (class name and first parameter group's lr,
    momentum, betas, weight decay), the main ``TrainingArguments`` (``learning_rate``,
    ``optim``, ``seed``, ...), and ``metadata`` (which wins on conflicts).

    Args:
        run_dir: the run directory; created if missing, appended to if it holds a run with
            the same layout (a resumed training).
        every: record every ``every`` optimizer steps.
        include: record only parameters whose names match (glob pattern(s) or predicate).
        metadata: JSON-serialisable facts to store with the run.
        dtype: parameter storage dtype, ``"float32"``, ``"float64"`` or ``"float16"``
            (default: float64 for a float64 model, else float32).

    Raises:
        WeightspaceError: bad ``every`` or ``dtype`` (at construction); a run in ``run_dir``
        with another layout or dtype (when training begins).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        every: int = 1,
        include: NameFilter = None,
        metadata: Mapping[str, Any] | None = None,
        dtype: str | None = None,
    ) -> None:
        check_options(every, dtype)
        self.run_dir = Path(run_dir)
        self.every = every
        self.include = include
        self.metadata = dict(metadata or {})
        self.dtype = dtype
        self._writer: RunWriter | None = None
        self._pending: int | None = None
        self._pending_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close()
        if not state.is_world_process_zero:
            return
        model = kwargs.get("model")
        if model is None:
            raise WeightspaceError(
                "model: expected the Trainer to pass its model to on_train_begin, got none; "
                "use a transformers.Trainer"
            )
        meta = {**self._run_metadata(args, state, kwargs.get("optimizer")), **self.metadata}
        self._writer = RunWriter(
            model,
            self.run_dir,
            every=self.every,
            dtype=self.dtype,
            include=self.include,
            metadata=meta,
            at_exit=self._write_pending,
        )
        self._mark(state.global_step)
        steps = _json_value(getattr(args, "logging_steps", 0)) or 0
        if _json_value(getattr(args, "logging_strategy", None)) == "steps" and (
            not isinstance(steps, int) or self.every % max(steps, 1)
        ):
            log.info(
                "logging_steps=%s does not divide every=%s: some snapshots will have no loss",
                args.logging_steps,
                self.every,
            )

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._write_pending()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._write_pending()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._write_pending()
        self._mark(state.global_step)

    def on_log(
        self,
        args: Any,
        state: Any,
        control: Any,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._pending is None or int(state.global_step) != self._pending:
            return
        logs = logs or {}
        if "train_runtime" in logs:
            self._write_pending()  # the final summary: the best model may be loaded next
            return
        for key, value in scalar_metrics(logs).items():
            if not key.endswith(_SPEED_SUFFIXES):
                self._pending_metrics[key] = value

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close()

    def close(self, *, quiet: bool = False) -> None:
        """Write the marked step and everything queued, and close the run (idempotent)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            if self._pending is not None:
                writer.record(self._pending, self._pending_metrics)
        finally:
            self._pending, self._pending_metrics = None, {}
            writer.close(quiet=quiet)

    # ------------------------------------------------------------------ helpers
    def _mark(self, step: int) -> None:
        if self._writer is not None and self._writer.wants(int(step)):
            self._pending, self._pending_metrics = int(step), {}

    def _write_pending(self) -> None:
        if self._writer is not None and self._pending is not None:
            step, metrics = self._pending, self._pending_metrics
            self._pending, self._pending_metrics = None, {}
            self._writer.record(step, metrics)

    @staticmethod
    def _run_metadata(args: Any, state: Any, optimizer: Any) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "framework": f"transformers {_transformers.__version__}",
            "recorded_by": f"weightspace {__version__} WeightspaceTrainerCallback",
            "step_unit": "optimizer step",
        }
        for key in _ARGS:
            if hasattr(args, key):
                meta[key] = _json_value(getattr(args, key))
        if getattr(state, "max_steps", None):
            meta["max_steps"] = int(state.max_steps)
        if optimizer is not None:
            opt = optimizer_metadata(optimizer)
            meta["optimizer"] = opt.pop("optimizer")
            for key, value in opt.items():
                meta.setdefault(key, value)
        return meta
