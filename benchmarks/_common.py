"""What the benchmarks share: the machine line of a report, and printing/saving the report."""

from __future__ import annotations

import os
from pathlib import Path

from weightspace.store import atomic_path


def machine_line() -> str:
    """CPUs and load at the start: the context every timing needs."""
    return (
        f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f} "
        "(other jobs share the machine: times are noisy)"
    )


def emit(lines: list[str], save: str | None) -> None:
    """Print the report and, with ``--save PATH``, write it there atomically."""
    report = "\n".join(lines)
    print(report)
    if save:
        with atomic_path(save) as tmp:
            Path(tmp).write_text(report + "\n")
