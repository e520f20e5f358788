"""``weightspace demo --quick`` on an idle and on a busy machine, torch's threads against ours.

Each run is a fresh ``python -m weightspace demo --quick`` (the OpenMP settings are read
when torch starts, so one process cannot measure both); its wall time and its own CPU time
(``os.wait4``) are measured. Two variants:

* ``before``: ``--threads 0``, torch's defaults (one intra-op thread per core, OpenMP
  threads that spin while they wait), as weightspace ran before the thread choice;
* ``after``: no flag, the choice the command makes (``weightspace._threads``: CPUs from
  the affinity mask and cgroup quota, minus the load average; OpenMP told not to spin),
  read back from the ``recorder.threads`` entry of a recorded run.

Two conditions: alone, and with ``--busy`` competing processes (single-threaded NumPy
matrix products in a loop, allowed on the same cores as the demo), started ``--warmup``
seconds before the first busy run so that the load average has seen them. Runs of a
condition go in A-B-B-A order; medians are compared. Target: busy ``after`` at most 3× the
idle time.

    python benchmarks/busy.py                # 2 rounds, 2 busy processes (~10 min on 2 cores)
    python benchmarks/busy.py --quick        # one run of each, a 15 s warm-up
    python benchmarks/busy.py --save benchmarks/results/busy.txt
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, machine_line

BUSY = """
import numpy as np
a = np.random.default_rng(0).random((384, 384))
while True:
    a = a @ a
    a /= np.abs(a).max()
"""
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
OURS = ("WEIGHTSPACE_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME")
VARIANTS = {"before": ["--threads", "0"], "after": []}


def start_busy(n: int) -> list[subprocess.Popen]:
    """``n`` processes doing matrix products on the CPUs this process may use."""
    cpus = os.sched_getaffinity(0)
    return [
        subprocess.Popen(
            [sys.executable, "-c", BUSY],
            env={**os.environ, **ONE_THREAD},
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        )
        for _ in range(n)
    ]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def demo(variant: str, out: Path) -> dict:
    """One ``weightspace demo --quick``: wall and CPU seconds, load at start, threads used."""
    env = {k: v for k, v in os.environ.items() if k not in OURS}
    argv = [sys.executable, "-m", "weightspace", "demo", "--quick", "-o", str(out)]
    argv += ["--overwrite", "--no-progress", "--json", *VARIANTS[variant]]
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out_f, stderr=err_f)
        _, status, usage = os.wait4(proc.pid, 0)  # its own CPU time, not the busy processes'
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0), err_f.seek(0)
        stdout, stderr = out_f.read(), err_f.read()
    if proc.returncode:
        sys.exit(f"weightspace demo failed:\n{stderr.decode()[-3000:]}")
    summary = json.loads(stdout)
    run = Path(next(v for k, v in summary["artifacts"].items() if k.startswith("run:")))
    threads = json.loads((run / "run.json").read_text())["recorder"].get("threads", {})
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "cpu": cpu, "load": load, "threads": threads}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one run of each, a 15 s warm-up")
    p.add_argument("--rounds", type=int, default=2, help="A-B-B-A rounds per condition")
    p.add_argument("--busy", type=int, default=2, help="competing processes (default 2)")
    p.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="seconds the busy processes run before the first busy demo (default 60: the "
        "1-minute load average must see them)",
    )
    p.add_argument("--save", help="also write the report here")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.warmup = 0, 15.0
    order = ["before", "after", "after", "before"] * args.rounds or ["before", "after"]
    lines = [
        f"# python benchmarks/busy.py{' --quick' if args.quick else ''}: weightspace demo "
        f"--quick, alone and with {args.busy} busy processes",
        f"# {machine_line()}; affinity {len(os.sched_getaffinity(0))} CPUs",
    ]
    print("\n".join(lines), flush=True)
    runs: dict[tuple[str, str], list[dict]] = {}
    busy: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as d:
        try:
            for condition in ("idle", "busy"):
                if condition == "busy":
                    busy = start_busy(args.busy)
                    time.sleep(args.warmup)
                for variant in order:
                    r = demo(variant, Path(d) / "demo")
                    runs.setdefault((condition, variant), []).append(r)
                    line = (
                        f"  {condition:<4} {variant:<6} {r['wall']:7.1f} s wall "
                        f"{r['cpu']:7.1f} CPU-s  load {r['load']:5.1f}  threads "
                        f"{r['threads'].get('count', '?')} ({r['threads'].get('reason', '')})"
                    )
                    print(line, flush=True)
                    lines.append(line)
        finally:
            stop(busy)
    med = {
        key: {m: statistics.median(r[m] for r in rs) for m in ("wall", "cpu")}
        for key, rs in runs.items()
    }
    lines.append("medians (wall s / CPU-s of the demo itself):")
    for variant in VARIANTS:
        idle, loaded = med["idle", variant], med["busy", variant]
        lines.append(
            f"  {variant:<6} idle {idle['wall']:6.1f} / {idle['cpu']:6.1f}   busy "
            f"{loaded['wall']:6.1f} / {loaded['cpu']:6.1f}   busy/idle "
            f"x{loaded['wall'] / idle['wall']:.2f}"
        )
    ratio = med["busy", "after"]["wall"] / med["idle", "after"]["wall"]
    lines.append(f"busy/idle with the thread choice: x{ratio:.2f} (target <= 3)")
    lines.append(
        f"busy: torch's defaults / the choice: x"
        f"{med['busy', 'before']['wall'] / med['busy', 'after']['wall']:.2f} wall, x"
        f"{med['busy', 'before']['cpu'] / med['busy', 'after']['cpu']:.2f} CPU"
    )
    lines.append(f"load average at the end {os.getloadavg()[0]:.1f}")
    n_head = 2 + len(order) * 2  # the header and run lines, printed as they came
    emit(lines[n_head:], None)
    if args.save:
        from weightspace.store import atomic_path

        with atomic_path(args.save) as tmp:
            tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
