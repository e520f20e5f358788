"""One writer per directory: an exclusive advisory lock that the kernel drops with the process.

A writer (a recorder, an import, a sampling, a surface's partial results) holds
``fcntl.flock(LOCK_EX)`` on a lock file for as long as it writes; a second writer gets a
one-line error naming the directory and the holder's pid. ``kill -9`` leaves no stale lock:
the kernel releases it when the process dies. Readers never lock. Where ``fcntl`` does not
exist (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WeightspaceError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DirectoryLock", "LockedError"]


class LockedError(WeightspaceError):
    """Another process is writing where this one wants to write."""


class DirectoryLock:
    """An exclusive lock on the lock file ``path``, for the writer of ``what``.

    Example::

        with DirectoryLock(run / ".lock", f"run_dir {str(run)!r}"):
            ...  # write the run
    """

    def __init__(self, path: str | os.PathLike, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        """Take the lock now, or raise :class:`LockedError` naming the holder."""
        if fcntl is None or self._fd is not None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise LockedError(
                    f"{self.what} is being written by another process (pid {holder}); wait "
                    "for it to finish or choose another directory"
                ) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder removed the file as it let go: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the lock go (the lock file stays: removing it would race with a new writer)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None or fcntl is None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a lock file removed by its
    last holder must not be locked: a newcomer would lock a new file beside it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
