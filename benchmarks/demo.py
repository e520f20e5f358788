"""Wall-clock time of the full ``weightspace demo`` (the main job), stage by stage.

python benchmarks/demo.py            # full mode (target: within 5 minutes on 2 cores)
python benchmarks/demo.py --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import torch

from weightspace import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", help="keep the demo output here (e.g. for scripts/gallery.py)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        summary = run_demo(args.out or d, quick=args.quick, overwrite=True)
        total = time.perf_counter() - start
    mode = "quick" if args.quick else "full"
    print(
        f"weightspace demo ({mode}); torch {torch.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} threads, load at start {load:.1f}"
    )
    for stage, seconds in summary.timings.items():
        print(f"  {stage:<18} {seconds:7.1f} s")
    print(f"  {'total':<18} {total:7.1f} s")


if __name__ == "__main__":
    main()
