"""How many intra-op threads torch uses, chosen for the machine as it is now.

On a busy machine (a laptop running other work, a shared server) torch's default, one
intra-op thread per core, competes with the other processes, and its OpenMP threads
spin-wait for each other while the scheduler runs someone else: small models run up to 100×
slower. The command-line tool therefore chooses the count from the CPUs this process may
actually use (its affinity mask and its cgroup CPU quota) and the current load (the 1-minute
average, or the tasks runnable now where that is lower: :func:`effective_load`), asks
OpenMP to sleep rather than spin while it waits (``OMP_WAIT_POLICY=PASSIVE``,
``KMP_BLOCKTIME=0``: read once, when torch starts its thread pool), and records the choice
in the metadata of every run and result it writes.

Library users keep torch's threads as they set them, unless they call :func:`set_threads`::

    import weightspace as ws
    ws.set_threads()     # choose for this machine now; ws.set_threads(1): one thread
    # -> ThreadChoice(count=1, reason='1 of 2 CPUs free (affinity 2, no cgroup quota, ...)')

:func:`choose_threads` is the rule itself, a pure function of the measurements.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import WeightspaceError

__all__ = [
    "ENV",
    "ThreadChoice",
    "cgroup_cpu_limit",
    "choose_threads",
    "current_threads",
    "parse_threads",
    "quiet_openmp",
    "recorded_threads",
    "set_threads",
    "threads_for_command",
]

ENV = "WEIGHTSPACE_THREADS"  # the default of ``--threads`` when the flag is not given
# OpenMP runtimes read these once, when torch starts its thread pool: sleep, do not spin,
# while waiting for work (GNU OpenMP reads the first, Intel OpenMP the second)
QUIET_OPENMP = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


@dataclass(frozen=True)
class ThreadChoice:
    """A choice of torch's intra-op thread count and why it was made.

    Attributes:
        count: the number of intra-op threads; None: torch's own default, left unchanged.
        reason: one line saying where the count came from.
        cpus: the CPUs this process may use (affinity mask, capped by the cgroup quota).
        load: the load the choice saw (:func:`effective_load`; None: not measured or not used).
    """

    count: int | None
    reason: str
    cpus: int
    load: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The form recorded in metadata: ``{"count", "reason", "cpus", "load"}``, with the
        count torch actually uses when the choice left torch's default."""
        count = self.count
        if count is None and "torch" in sys.modules:
            count = sys.modules["torch"].get_num_threads()
        load = None if self.load is None else round(self.load, 2)
        return {"count": count, "reason": self.reason, "cpus": self.cpus, "load": load}


def choose_threads(
    affinity: int,
    quota: float | None,
    load: float | None,
    override: int | None = None,
    *,
    machine_cpus: int | None = None,
    source: str = "threads",
) -> ThreadChoice:
    """The intra-op thread count for a process, from what the machine offers now (pure).

    The usable CPUs are the affinity count capped by the cgroup quota (rounded down, at
    least 1). The load is spread over the machine's CPUs; the share that falls on
    ours is taken as busy, and the count is the number of CPUs left, rounded, at least 1:
    on 2 CPUs, load 0.3 gives 2 threads, load 1 gives 1, load 10 gives 1.

    Args:
        affinity: the number of CPUs in the process's affinity mask (>= 1).
        quota: the cgroup CPU quota in CPUs (``cpu.max`` 150000/100000 is 1.5), or None for
            no quota.
        load: the machine's load (:func:`effective_load`), or None to ignore it.
        override: a count asked for explicitly: a positive count is used as given; 0 keeps
            torch's default; None chooses from the measurements.
        machine_cpus: the machine's CPU count (``os.cpu_count()``), over which the load
            average spreads; None: the same as ``affinity``.
        source: how the override was given, for the reason (``"--threads"``, an
            environment variable).

    Returns:
        A :class:`ThreadChoice`.

    Raises:
        WeightspaceError: a negative ``override`` or an ``affinity`` below 1.

    Example:
        >>> choose_threads(2, None, 10.0).count
        1
        >>> choose_threads(8, 2.5, 0.0).count
        2
        >>> choose_threads(2, None, 0.0, override=4).reason
        'threads 4'
    """
    if affinity < 1:
        raise WeightspaceError(f"affinity: expected at least 1 CPU, got {affinity}")
    if override is not None and override < 0:
        raise WeightspaceError(
            f"{source}: expected a thread count >= 0 (0: torch's default), got {override}"
        )
    cpus = affinity if quota is None else min(affinity, max(1, math.floor(quota)))
    if override == 0:
        return ThreadChoice(None, f"{source} 0: torch's default", cpus, load)
    if override is not None:
        return ThreadChoice(override, f"{source} {override}", cpus, load)
    limits = f"affinity {affinity}, " + ("no cgroup quota" if quota is None else f"cgroup quota "
                                          f"{quota:g} CPUs")  # fmt: skip
    if load is None:
        return ThreadChoice(cpus, f"{cpus} of {cpus} CPUs ({limits})", cpus, None)
    busy = max(0.0, load) * cpus / max(machine_cpus or affinity, cpus)  # our share of the load
    count = min(cpus, max(1, math.floor(cpus - busy + 0.5)))
    reason = f"{count} of {cpus} CPUs free ({limits}, load {load:.1f})"
    return ThreadChoice(count, reason, cpus, load)


def cgroup_cpu_limit(
    root: str | os.PathLike = "/sys/fs/cgroup", self_cgroup: str | os.PathLike = "/proc/self/cgroup"
) -> float | None:
    """The CPU quota of this process's cgroup in CPUs, or None when there is none.

    Reads cgroup v2 ``cpu.max`` (``"150000 100000"``: 1.5 CPUs; ``"max 100000"``: none) and
    cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (a quota of -1: none), in the
    process's own cgroup and every cgroup above it; the smallest quota binds. Unreadable
    files count as no quota.

    Args:
        root: where the cgroup filesystem is mounted.
        self_cgroup: the process's cgroup membership (``/proc/self/cgroup``:
            ``"0::/user.slice/job"`` for v2, ``"4:cpu,cpuacct:/job"`` for v1).
    """
    root = Path(root)
    try:
        lines = Path(self_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    bases = {root: "/", root / "cpu": "/", root / "cpu,cpuacct": "/"}  # v2; v1's usual mounts
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # v2: one hierarchy
            bases[root] = rel
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own hierarchy
            for name in {controllers, "cpu", "cpu,cpuacct"}:
                bases[root / name] = rel
    quotas = [q for base, rel in bases.items() for d in _up(base, rel) if (q := _quota(d))]
    return min(quotas) if quotas else None


def _up(base: Path, rel: str) -> Iterator[Path]:
    """``base/rel`` and each directory above it, up to ``base``."""
    parts = [p for p in rel.split("/") if p and p not in (".", "..")]
    for i in range(len(parts), -1, -1):
        yield base.joinpath(*parts[:i])


def _quota(directory: Path) -> float | None:
    try:
        if (directory / "cpu.max").is_file():
            fields = (directory / "cpu.max").read_text().split()
            if not fields or fields[0] == "max":
                return None
            period = float(fields[1]) if len(fields) > 1 else 100_000.0
            return float(fields[0]) / period if period > 0 else None
        quota_file, period_file = directory / "cpu.cfs_quota_us", directory / "cpu.cfs_period_us"
        if quota_file.is_file() and period_file.is_file():
            quota, period = float(quota_file.read_text()), float(period_file.read_text())
            return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        pass
    return None


def effective_load(average: float | None, others_now: float | None) -> float | None:
    """The load a choice should see: the smaller of the 1-minute load average and the
    number of other tasks runnable now (pure). The average remembers work that has ended
    (a command run twice in a row sees its own first run for a minute); the count now
    misses work that is about to come back; where either says the machine is free, it is.

    Example:
        >>> effective_load(1.3, 0.0), effective_load(2.1, 2.0), effective_load(None, 1.0)
        (0.0, 2.0, 1.0)
    """
    known = [x for x in (average, others_now) if x is not None]
    return min(known) if known else None


def runnable_others(path: str = "/proc/loadavg", reads: int = 3) -> float | None:
    """Tasks runnable now besides this one: the median over ``reads`` reads of the
    ``running/total`` field of ``/proc/loadavg``, minus 1 (this process); None where the
    file does not exist (macOS, Windows) or cannot be parsed."""
    counts = []
    for _ in range(reads):
        try:
            with open(path, encoding="ascii") as f:
                counts.append(int(f.read().split()[3].split("/")[0]))
        except (OSError, ValueError, IndexError):
            return None
        time.sleep(0.005)
    return max(0.0, float(sorted(counts)[len(counts) // 2]) - 1.0)


def _measure() -> tuple[int, float | None, float | None, int | None]:
    """(affinity, cgroup quota, load (:func:`effective_load`), machine CPUs) of this
    process now."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        affinity = os.cpu_count() or 1
    try:
        average: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):
        average = None
    load = effective_load(average, runnable_others())
    return affinity, cgroup_cpu_limit(), load, os.cpu_count()


def parse_threads(value: str | int | None, source: str = "threads") -> int | None:
    """A thread count given as text (a flag, an environment variable): None, or an int >= 0.

    ``"auto"`` and ``""`` mean None (choose). Raises WeightspaceError naming ``source``.
    """
    if value is None or isinstance(value, int):
        return value
    text = value.strip().lower()
    if text in ("", "auto"):
        return None
    try:
        return int(text)
    except ValueError:
        raise WeightspaceError(
            f"{source}: expected a thread count (0: torch's default, or 'auto'), got {value!r}"
        ) from None


_active: list[ThreadChoice] = []  # the choice in force (set_threads, the CLI), if any


def current_threads() -> dict[str, Any] | None:
    """The thread choice in force as recorded in metadata, or None when weightspace has not
    chosen (a library user's own setting is theirs and is not recorded)."""
    return _active[-1].to_dict() if _active else None


def recorded_threads() -> dict[str, Any]:
    """``{"threads": current_threads()}`` for a run's or a result's metadata, or ``{}``."""
    threads = current_threads()
    return {} if threads is None else {"threads": threads}


def quiet_openmp(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Ask OpenMP to sleep rather than spin while it waits, if torch has not started yet.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` and ``KMP_BLOCKTIME=0`` unless the user set them.
    Once torch is imported its OpenMP runtime has read them, so nothing is changed then.

    Returns:
        The variables set (``["OMP_WAIT_POLICY", "KMP_BLOCKTIME"]``, or fewer).
    """
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules:
        return []
    names = [k for k in QUIET_OPENMP if k not in environ]
    for k in names:
        environ[k] = QUIET_OPENMP[k]
    return names


def _decide(override: int | None, source: str, environ: Mapping[str, str]) -> ThreadChoice:
    affinity, quota, load, machine = _measure()
    if override is None and environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        override, source = int(environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"  # the user's
    return choose_threads(affinity, quota, load, override, machine_cpus=machine, source=source)


def set_threads(n: int | None = None) -> ThreadChoice:
    """Set torch's intra-op thread count for this machine now, and record it in metadata.

    Every run and result weightspace writes afterwards records the choice (``"threads"``
    in its metadata). The load (:func:`effective_load`) counts this process's own running
    threads too: call it before heavy work, not while other threads of this process run.
    Before torch is imported this also asks OpenMP not to spin-wait (:func:`quiet_openmp`),
    the best cure for a busy machine.

    Args:
        n: the count; None chooses one from the CPUs available and the load
            (:func:`choose_threads`), unless ``$OMP_NUM_THREADS`` gives one; 0 keeps
            torch's defaults (and records the count).

    Returns:
        The :class:`ThreadChoice` applied.

    Raises:
        WeightspaceError: a negative ``n``.

    Example::

        ws.set_threads(1).count
        # -> 1
    """
    choice = _decide(n, "threads", os.environ)
    if choice.count is not None:
        quiet_openmp()
    import torch

    if choice.count is not None:
        torch.set_num_threads(choice.count)
    _active[:] = [choice]
    return choice


@contextlib.contextmanager
def threads_for_command(
    value: str | int | None, environ: MutableMapping[str, str] | None = None
) -> Iterator[ThreadChoice]:
    """The command-line tool's thread choice for the duration of one command.

    ``value`` (``--threads``), else ``$WEIGHTSPACE_THREADS``, else ``$OMP_NUM_THREADS``,
    else the choice for the machine now. Before torch is imported the count goes to
    ``OMP_NUM_THREADS`` and OpenMP is told not to spin (the command then imports torch with
    them; 0 leaves torch's defaults, spinning included); when torch is already running (the
    tool called from Python) its count is set and restored afterwards. The choice is recorded
    in metadata while the command runs.
    """
    environ = os.environ if environ is None else environ
    source = "--threads"
    if value is None and environ.get(ENV, "").strip():
        value, source = environ[ENV], ENV
    choice = _decide(parse_threads(value, source), source, environ)
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is None and choice.count is not None:  # (0: torch's defaults, spinning too)
        quiet_openmp(environ)
        environ["OMP_NUM_THREADS"] = str(choice.count)
    elif choice.count is not None:
        torch.set_num_threads(choice.count)
    saved = list(_active)
    _active[:] = [choice]
    try:
        yield choice
    finally:
        _active[:] = saved
        if torch is not None and before is not None:
            torch.set_num_threads(before)
