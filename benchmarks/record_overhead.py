"""Training speed on the digits CNN with and without recording.

Trains the same model, data and minibatch order for a fixed number of steps, without a
Recorder and with one at every=1 and every=10, interleaving the variants over several
repeats and reporting the median steps per second and the slowdown of each.

    python benchmarks/record_overhead.py            # full (about a minute)
    python benchmarks/record_overhead.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import weightspace as ws


def train_steps(steps: int, every: int | None, tmp: Path, batch: int = 64) -> float:
    """Seconds for ``steps`` SGD steps; records every ``every`` steps when given."""
    problem = ws.zoo.problem("digits-cnn", seed=0)
    model, (X, y) = problem.model, problem.data
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    order = torch.randint(0, len(y), (steps, batch), generator=gen)
    rec = (
        ws.Recorder(model, tmp / f"run-{every}-{time.monotonic_ns()}", every=every)
        if every
        else None
    )
    start = time.perf_counter()
    for step in range(steps):
        idx = order[step]
        opt.zero_grad(set_to_none=True)
        loss = problem.loss_fn(model(X[idx]), y[idx])
        loss.backward()
        opt.step()
        if rec is not None:
            rec.record(step, loss=loss.item())
        else:
            loss.item()  # the same host sync as the recorded variant
    if rec is not None:
        rec.close()  # every snapshot on disk counts
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    steps, repeats = (60, 2) if args.quick else (args.steps, args.repeats)
    torch.set_num_threads(args.threads)
    variants = {"no recording": None, "every=10": 10, "every=1": 1}
    times: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as d:
        train_steps(20, None, Path(d))  # warm-up
        for _ in range(repeats):
            for name, every in variants.items():
                times[name].append(train_steps(steps, every, Path(d)))
    base = statistics.median(times["no recording"])
    print(
        f"digits CNN (38,282 params), batch 64, {steps} steps, median of {repeats} "
        f"interleaved repeats; torch {torch.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'variant':<14} {'steps/s':>9} {'slowdown':>9}")
    for name in variants:
        med = statistics.median(times[name])
        print(f"{name:<14} {steps / med:9.1f} {100 * (med / base - 1):8.1f}%")


if __name__ == "__main__":
    main()
