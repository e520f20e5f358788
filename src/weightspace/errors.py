"""Errors raised on bad user input.

Every message names the argument (or file), what was expected, what came, and the fix, on
one line, so that the command-line tool can print it as is.
"""

from __future__ import annotations

__all__ = [
    "CorruptRunError",
    "LayoutMismatchError",
    "WeightspaceError",
    "describe_os_error",
    "first_line",
]


class WeightspaceError(ValueError):
    """A user-facing error: bad input, a corrupt file, an inconsistent run."""


class LayoutMismatchError(WeightspaceError):
    """Two parameter layouts (a run, a model, a checkpoint) do not match."""


class CorruptRunError(WeightspaceError):
    """A run directory or one of its files cannot be read."""


_ADVICE = {
    "ENOSPC": "free space or write somewhere else",
    "EDQUOT": "free space or write somewhere else",
    "EROFS": "the filesystem is read-only; write somewhere else",
    "EACCES": "check the permissions, or write somewhere else",
    "EPERM": "check the permissions, or write somewhere else",
    "ENOTDIR": "a part of the path is a file; choose another path",
    "ENAMETOOLONG": "use a shorter name",
    "ENOENT": "check the path",
    "EISDIR": "give a file, not a directory",
    "EEXIST": "choose another path",
    "ELOOP": "the path has a symbolic-link loop; choose another path",
}


def describe_os_error(e: OSError) -> str:
    """``PATH: no space left on device (ENOSPC); free space or write somewhere else``."""
    import errno
    import os

    code = errno.errorcode.get(e.errno or 0, "")
    what = e.strerror.lower() if e.strerror else (first_line(e) or type(e).__name__)
    if code == "EEXIST" and e.filename and not os.path.isdir(e.filename):
        code, what = "ENOTDIR", "not a directory"  # mkdir(parents=True) met a file
    where = f"{e.filename}: " if e.filename else ""
    advice = _ADVICE.get(code)
    return f"{where}{what}" + (f" ({code})" if code else "") + (f"; {advice}" if advice else "")


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, at most ``limit`` characters (for one-line
    reports of errors raised by user code)."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else "(no message)"
    return line if len(line) <= limit else line[: limit - 1] + "…"
