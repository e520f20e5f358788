"""PyTorch Lightning callback that records a run in the standard format.

Works with ``lightning`` (``lightning.pytorch``) or, when only it is installed, the older
``pytorch_lightning`` package; Lightning calls callback hooks by name, so one class serves both
trainers.

Example::

    import lightning as L
    from weightspace.integrations.lightning import WeightspaceCallback
    cb = WeightspaceCallback("runs/lit", every=10, metadata={"seed": 0})
    L.Trainer(max_steps=1000, callbacks=[cb]).fit(module, loader)
    traj = weightspace.Trajectory.load("runs/lit")  # steps 0, 10, 20, ...
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..layout import NameFilter
from . import RunWriter, check_options, optimizer_metadata, require, scalar_metrics

_pl = require(
    ("lightning.pytorch", "pytorch_lightning"),
    "pip install lightning",
    "weightspace.integrations.lightning",
)

log = logging.getLogger(__name__)

__all__ = ["WeightspaceCallback"]


class WeightspaceCallback(_pl.Callback):
    """Record the LightningModule's trainable parameters every ``every`` optimizer steps.

    The initial point is recorded when training starts (``trainer.global_step``, 0 for a
    fresh run); afterwards, at the end of every batch whose optimizer step brought
    ``trainer.global_step`` to a multiple of ``every``, the parameters after that update are
    recorded with the batch's training loss (``loss``, undone from gradient-accumulation
    scaling) and the scalar metrics logged so far (``trainer.callback_metrics``: the latest
    value of each). The run is closed when training ends or fails (``on_exception``), so
    every step recorded before a crash is on disk. Under distributed training only global
    rank 0 writes; parameters sharded across ranks (FSDP, DeepSpeed stage 3) are not
    supported.

    ``run.json`` metadata holds the optimizer (class name, lr, momentum, betas, weight decay
    of the first parameter group), trainer settings, ``PL_GLOBAL_SEED`` when
    ``seed_everything`` was called, and ``metadata`` (which wins on conflicts).

    Args:
        run_dir: the run directory; created if missing, appended to if it holds a run with
            the same layout (a resumed fit).
        every: record every ``every`` optimizer steps.
        include: record only parameters whose names match (glob pattern(s) or predicate).
        metadata: JSON-serialisable facts to store with the run.
        dtype: parameter storage dtype, ``"float32"``, ``"float64"`` or ``"float16"``
            (default: float64 for a float64 model, else float32).
        log_metrics: also store ``trainer.callback_metrics`` with each snapshot.

    Raises:
        WeightspaceError: bad ``every`` or ``dtype`` (at construction); a run in ``run_dir``
        with another layout or dtype (when training starts).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        every: int = 1,
        include: NameFilter = None,
        metadata: Mapping[str, Any] | None = None,
        dtype: str | None = None,
        log_metrics: bool = True,
    ) -> None:
        super().__init__()
        check_options(every, dtype)
        self.run_dir = Path(run_dir)
        self.every = every
        self.include = include
        self.metadata = dict(metadata or {})
        self.dtype = dtype
        self.log_metrics = log_metrics
        self._writer: RunWriter | None = None
        self._last_step: int | None = None

    @property
    def state_key(self) -> str:
        return f"WeightspaceCallback[{self.run_dir}]"

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_step = int(trainer.global_step)
        if not trainer.is_global_zero:
            return
        self.close()
        meta = {**self._trainer_metadata(trainer), **self.metadata}
        self._writer = RunWriter(
            pl_module,
            self.run_dir,
            every=self.every,
            dtype=self.dtype,
            include=self.include,
            metadata=meta,
        )
        self._writer.record(self._last_step, {})

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = int(trainer.global_step)
        if step == self._last_step:  # accumulating gradients: no optimizer step yet
            return
        self._last_step = step
        if self._writer is None or not self._writer.wants(step):
            return
        self._writer.record(step, self._metrics(trainer, pl_module, outputs))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.close(quiet=True)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.close(quiet=True)

    def close(self, *, quiet: bool = False) -> None:
        """Write out everything recorded so far and close the run (idempotent)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close(quiet=quiet)

    # ------------------------------------------------------------------ helpers
    def _metrics(self, trainer: Any, pl_module: Any, outputs: Any) -> dict[str, float]:
        metrics = scalar_metrics(trainer.callback_metrics) if self.log_metrics else {}
        # automatic optimization hands over {"loss": loss / accumulate_grad_batches, ...};
        # manual optimization, whatever training_step returned
        step_out = scalar_metrics(outputs if isinstance(outputs, Mapping) else {"loss": outputs})
        if "loss" in step_out and getattr(pl_module, "automatic_optimization", False):
            step_out["loss"] *= int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
        metrics.update(step_out)
        return metrics

    @staticmethod
    def _trainer_metadata(trainer: Any) -> dict[str, Any]:
        package = type(trainer).__module__.split(".")[0]  # lightning or pytorch_lightning
        meta: dict[str, Any] = {
            "framework": f"{package} {getattr(sys.modules.get(package), '__version__', '?')}",
            "recorded_by": f"weightspace {__version__} WeightspaceCallback",
            "step_unit": "optimizer step",
        }
        optimizers = list(getattr(trainer, "optimizers", None) or [])
        if len(optimizers) == 1:
            meta.update(optimizer_metadata(optimizers[0]))
        elif optimizers:
            meta["optimizers"] = [optimizer_metadata(o) for o in optimizers]
        for key in ("max_steps", "max_epochs", "accumulate_grad_batches", "world_size"):
            value = getattr(trainer, key, None)
            if isinstance(value, int) and not isinstance(value, bool):
                meta[key] = value
        meta["precision"] = str(getattr(trainer, "precision", ""))
        meta["strategy"] = type(getattr(trainer, "strategy", None)).__name__
        seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is not None and seed.lstrip("-").isdigit():
            meta["seed"] = int(seed)
        return meta
