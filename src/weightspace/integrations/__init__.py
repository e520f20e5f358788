"""Callbacks that record runs from training frameworks, in the standard run format.

* :class:`weightspace.integrations.lightning.WeightspaceCallback` for PyTorch Lightning
  (``pip install lightning``, or the older ``pytorch-lightning``);
* :class:`weightspace.integrations.huggingface.WeightspaceTrainerCallback` for the Hugging Face
  ``transformers`` Trainer (``pip install transformers accelerate``).

Both write through :class:`weightspace.Recorder`, number snapshots by optimizer steps, and keep
the parameters after the update of that step. The frameworks are imported only when their
module is: ``import weightspace`` never imports them, and importing an integration without its
framework raises :class:`MissingFrameworkError` with the line that installs it.

Example::

    from weightspace.integrations.lightning import WeightspaceCallback
    cb = WeightspaceCallback("runs/a", every=10)
    lightning.Trainer(max_steps=1000, callbacks=[cb]).fit(module, loader)
"""

from __future__ import annotations

import atexit
import importlib
import logging
import numbers
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..errors import WeightspaceError
from ..layout import NameFilter
from ..optimizers import optimizer_settings
from ..record import Recorder
from ..store import STORAGE_DTYPES

log = logging.getLogger(__name__)

__all__ = ["MissingFrameworkError", "WeightspaceCallback", "WeightspaceTrainerCallback"]

_LAZY = {
    "WeightspaceCallback": "weightspace.integrations.lightning",
    "WeightspaceTrainerCallback": "weightspace.integrations.huggingface",
}


class MissingFrameworkError(WeightspaceError, ImportError):
    """An integration was imported but its training framework is not installed."""


def __getattr__(name: str) -> Any:
    """Import a callback class on first use, so that this package stays framework-free."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def require(modules: tuple[str, ...], pip_line: str, integration: str) -> ModuleType:
    """Import the first importable module of ``modules``, or fail with the install line.

    Raises:
        MissingFrameworkError: none of ``modules`` can be imported (one line, naming the
        pip package).
    """
    for name in modules:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingFrameworkError(
        f"{integration} needs {' or '.join(modules)}, which is not installed; "
        f"install it with `{pip_line}`"
    )


def check_options(every: int, dtype: str | None) -> None:
    """Validate the recorder options when a callback is built, before training starts."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise WeightspaceError(
            f"every: expected a positive integer (record every N optimizer steps), got {every!r}"
        )
    if dtype is not None and dtype not in STORAGE_DTYPES:
        raise WeightspaceError(f"dtype: expected one of {STORAGE_DTYPES}, got {dtype!r}")


def _number(value: Any) -> float | int | None:
    """A JSON-safe number from a Python/NumPy number or a one-element tensor, else None."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            return None
        value = value.detach().reshape(()).item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def scalar_metrics(values: Mapping[str, Any] | None) -> dict[str, float]:
    """The entries of ``values`` that are real scalars, as floats (``step`` is reserved)."""
    out: dict[str, float] = {}
    for key, value in (values or {}).items():
        number = _number(value)
        if number is not None and key != "step":
            out[str(key)] = float(number)
    return out


def optimizer_metadata(optimizer: Any) -> dict[str, Any]:
    """The optimizer's canonical settings (:func:`weightspace.optimizers.optimizer_settings`):
    lower-case name, first parameter group's lr, momentum, betas, weight decay, and every
    group's when there are several."""
    return optimizer_settings(optimizer)


class RunWriter:
    """A :class:`~weightspace.Recorder` that a callback opens, feeds and closes exactly once.

    The recorder is also closed at interpreter exit (after calling ``at_exit``), so that
    snapshots still queued when training dies with an uncaught exception reach the disk.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        run_dir: str | os.PathLike,
        *,
        every: int,
        dtype: str | None,
        include: NameFilter,
        metadata: Mapping[str, Any],
        at_exit: Callable[[], None] | None = None,
    ) -> None:
        self.at_exit = at_exit
        self.recorder = Recorder(
            model, run_dir, every=every, dtype=dtype, include=include, metadata=metadata
        )
        self.path = Path(run_dir)
        atexit.register(self._close_at_exit)
        log.info("recording %s parameters to %s", self.recorder.layout.numel, self.path)

    def wants(self, step: int) -> bool:
        """Whether ``step`` is one to keep (``step % every == 0``)."""
        return self.recorder.wants(step)

    def record(self, step: int, metrics: Mapping[str, float]) -> bool:
        """Snapshot the parameters now as ``step`` with ``metrics``."""
        return self.recorder.record(int(step), **metrics)

    def close(self, *, quiet: bool = False) -> None:
        """Drain and close the recorder; with ``quiet``, log a write failure instead of raising."""
        atexit.unregister(self._close_at_exit)
        try:
            self.recorder.close()
        except Exception as e:
            if not quiet:
                raise
            log.error("weightspace: closing the run %s failed: %s", self.path, e)

    def _close_at_exit(self) -> None:
        try:
            if self.at_exit is not None:
                self.at_exit()
        except Exception as e:
            log.error("weightspace: writing the last step of %s failed: %s", self.path, e)
        self.close(quiet=True)
