"""How long each command example of the README takes, at full size, one process each.

    python benchmarks/readme_examples.py --out /tmp/readme-flow

Runs the README's ``weightspace ...`` examples in order (the demo is timed by
``benchmarks/demo.py``), each as the user would, in a fresh process (import time included),
in an empty directory; ``import`` reads checkpoints written here from ``runs/sgd``. Prints
one line per command: seconds, exit code, the command. The README quotes these times.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_readme import example_lines, shell_blocks  # noqa: E402  (the README's parser)


def write_checkpoints(out: Path) -> None:
    """What the import example reads: every 10th snapshot of runs/sgd, and the module."""
    import torch

    import weightspace as ws

    traj = ws.Trajectory.load(out / "runs" / "sgd")
    (out / "ckpt").mkdir(exist_ok=True)
    for k in range(0, len(traj), 10):
        state = traj.layout.unflatten(traj.theta(k))
        torch.save({n: v.clone() for n, v in state.items()}, out / "ckpt" / f"epoch_{k}.pt")
    (out / "mymodule.py").write_text(
        "import weightspace as ws\n\ndef make_problem():\n    return ws.zoo.problem('digits-cnn')\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="an empty or new directory to work in")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SystemExit(f"--out: {out} is not empty")
    lines = example_lines(shell_blocks((REPO / "README.md").read_text(encoding="utf-8")))
    exe = Path(sys.executable).with_name("weightspace")
    import torch

    print(f"README examples, full size; torch {torch.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(out)}
    for line in lines:
        if line.startswith("demo"):
            continue
        if line.startswith("import"):
            write_checkpoints(out)
        t = time.perf_counter()
        done = subprocess.run([str(exe), *shlex.split(line), "--no-progress"], cwd=out, env=env,
                              capture_output=True, text=True)  # fmt: skip
        print(f"{time.perf_counter() - t:8.1f} s  rc {done.returncode}  weightspace {line}")
        if done.returncode:
            print(done.stderr[-500:])
        sys.stdout.flush()


if __name__ == "__main__":
    main()
