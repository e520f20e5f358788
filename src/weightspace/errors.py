"""Errors raised on bad user input.

Every message names the argument (or file), what was expected, what came, and the fix, on
one line, so that the command-line tool can print it as is.
"""

from __future__ import annotations

__all__ = ["CorruptRunError", "LayoutMismatchError", "WeightspaceError"]


class WeightspaceError(ValueError):
    """A user-facing error: bad input, a corrupt file, an inconsistent run."""


class LayoutMismatchError(WeightspaceError):
    """Two parameter layouts (a run, a model, a checkpoint) do not match."""


class CorruptRunError(WeightspaceError):
    """A run directory or one of its files cannot be read."""
