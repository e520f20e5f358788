"""Progress of long loops: a tqdm bar on a terminal, a plain line now and then elsewhere.

Every loop that can take more than a few seconds asks :func:`progress_bar` for its bar. On a
terminal (or in a Jupyter kernel) that is a ``tqdm`` bar, which shows the elapsed and the
remaining time. When stderr is a file or a pipe (a batch job, ``2> log``), a redrawn bar
would be noise: the bar writes one plain line at most every :data:`INTERVAL` seconds, e.g.
``weightspace: curvature 3/13 points (23%), 2m10s elapsed, ~7m left``, and a last line when
it finishes if it ran that long. Every plain bar shares one limiter, so loops nested in each
other (points, then Lanczos steps, then products) still write one line per interval: the
line of whichever bar moves first once the interval is over, naming every open bar from the
outermost in. Disabled, it is ``tqdm(disable=True)``: nothing is written.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm.auto import tqdm

__all__ = ["INTERVAL", "progress_bar", "progress_note"]

INTERVAL = 30.0  # seconds between plain progress lines (tests monkeypatch it)
PREFIX = "weightspace: "
clock = time.monotonic  # the clock of the plain lines (tests monkeypatch it)

_open: list[_Lines] = []  # the plain bars now open, outermost first
_last = [-math.inf]  # when the last plain line was written, by any bar


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    unit: str,
    enabled: bool,
    total: float | None = None,
    initial: int = 0,
    leave: bool = False,
    file: TextIO | None = None,
) -> Any:
    """A progress bar over ``iterable`` (or one moved by ``update``), as the output allows.

    Args:
        iterable: what to iterate over (its ``len`` is the default ``total``), or None.
        desc: what the loop does (``"curvature"``, ``"train run-a"``).
        unit: what one step is, singular (``"point"``, ``"product"``).
        enabled: False gives a bar that shows nothing.
        total: the number of steps, when known (a budget is fine: the bar may end early).
        initial: steps already done (a resumed loop); they do not count for the rate.
        leave: keep a terminal bar on screen when it closes (inner bars: False).
        file: the stream (default ``sys.stderr`` at the call).

    Returns:
        ``tqdm``, or an object with its small interface: iteration, ``with``, ``update``,
        ``set_postfix``, ``set_postfix_str``, ``close``, ``n`` and ``total``.

    Example:
        >>> with progress_bar(total=3, desc="demo", unit="step", enabled=False) as bar:
        ...     bar.update(3)
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not enabled:
        return tqdm(iterable, total=total, initial=initial, disable=True)
    file = sys.stderr if file is None else file
    if _is_terminal(file):
        return tqdm(
            iterable, total=total, initial=initial, desc=desc, unit=unit, leave=leave, file=file
        )
    return _Lines(iterable, total, initial, desc, unit, file)


def progress_note(message: str, *, enabled: bool, file: TextIO | None = None) -> None:
    """One line of progress (``demo: stage 3/8 surface``), above any terminal bars."""
    if not enabled:
        return
    file = sys.stderr if file is None else file
    if _is_terminal(file):
        tqdm.write(PREFIX + message, file=file)
    else:
        _write(file, PREFIX + message)


def _is_terminal(file: TextIO) -> bool:
    """A terminal, or a Jupyter kernel's stream (where tqdm draws a widget)."""
    try:
        if file.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return type(file).__module__.startswith("ipykernel")


def _write(file: TextIO, line: str) -> None:
    try:
        file.write(line + "\n")
        file.flush()
    except (OSError, ValueError):  # a closed or broken stream: progress is not worth an error
        pass


def duration(seconds: float) -> str:
    """``45s``, ``2m10s``, ``14m``, ``1h05m``.

    Example:
        >>> duration(7.2), duration(130), duration(840), duration(3900)
        ('7s', '2m10s', '14m', '1h05m')
    """
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 3600:
        return f"{s // 60}m"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _count(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class _Lines:
    """A bar for a stream that is not a terminal: plain lines, rate-limited (shared)."""

    def __init__(
        self,
        iterable: Iterable[Any] | None,
        total: float | None,
        initial: int,
        desc: str,
        unit: str,
        file: TextIO,
    ) -> None:
        self.iterable, self.total, self.n, self.initial = iterable, total, initial, initial
        self.desc, self.unit, self.file = desc, unit, file
        self.postfix = ""
        self.start = clock()
        self.closed = False
        _open.append(self)

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in () if self.iterable is None else self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = clock()
        first = _open[0].start if _open else self.start  # the outermost loop's start
        if now - max(_last[0], first) >= INTERVAL:
            _last[0] = now
            _write(self.file, PREFIX + "; ".join(bar.describe(now) for bar in _open))

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**dict(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        outermost = bool(_open) and _open[0] is self
        if self in _open:
            _open.remove(self)
        now = clock()
        if outermost and now - self.start >= INTERVAL:  # a long loop says when it ended
            _last[0] = now
            _write(self.file, PREFIX + self.describe(now, done=True))

    def describe(self, now: float, done: bool = False) -> str:
        """``desc n/total units (p%), 2m10s elapsed, ~7m left[, postfix]``."""
        units = self.unit if self.unit.endswith("s") else self.unit + "s"
        head = f"{self.desc} {_count(self.n)}"
        if self.total:
            head += f"/{_count(self.total)} {units} ({100 * self.n / self.total:.0f}%)"
        parts = [head if self.total else f"{head} {units}"]
        elapsed = now - self.start
        if done:
            parts.append(f"done in {duration(elapsed)}")
        else:
            parts.append(f"{duration(elapsed)} elapsed")
            if self.total and self.n > self.initial:
                left = (self.total - self.n) * elapsed / (self.n - self.initial)
                parts.append(f"~{duration(left)} left")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)
