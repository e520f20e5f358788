"""Run every paper-reproduction example, one after the other, into OUT/NAME.

python examples/run_all.py --out examples/results            # full mode (minutes each)
python examples/run_all.py --out /tmp/quick --quick          # the quick versions
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_table import EXAMPLES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", default=EXAMPLES, choices=EXAMPLES)
    args = parser.parse_args()
    for name in args.only:
        start = time.perf_counter()
        argv = sys.argv
        sys.argv = [name, "--out", str(args.out / name), *(["--quick"] if args.quick else [])]
        try:
            runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")
        finally:
            sys.argv = argv
        print(f"== {name}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
