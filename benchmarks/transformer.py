"""The embedded transformer: a surface and top-5 eigenvalues, weightspace against the peers.

One process, one model and data for all: ``ws.zoo.problem("text-gpt")`` (a byte-level
transformer LM) after a short Adam run (``--steps``; at the initialisation the LayerNorm
biases are zero and loss-landscapes' filter normalisation divides by their zero norm), eval
mode, float32 on the CPU, its training windows as one batch; the loss is the mean next-byte
cross-entropy.

1. a 15×15 loss surface: ``loss-landscapes`` ``random_plane`` (under ``no_grad``, its
   fastest use; it draws its own filter-normalised directions, so only times compare)
   against ``ws.evaluate_plane`` on filter-normalised random directions. The first call of
   each is reported, then A-B-B-A rounds with weightspace's defaults (eager: a 15×15 grid
   does not repay a cold ``torch.compile``; single-threaded workers raced against one point
   at a time), the defaults against ``workers=1``, and A-B-B-A rounds once a compiled engine
   for the objective exists (compiled on a 2×2 grid first; ``compile="auto"`` reuses it),
   as ``benchmarks/surface.py`` measures its warm engine. Targets: ≥ 1× eager, ≥ 2× warm.
2. top-5 eigenvalues: reference = weightspace in float64 at ``tol=1e-10``; PyHessian
   ``hessian(...).eigenvalues(top_n=5)`` (power iteration with deflation, defaults) against
   ``ws.top_eigenpairs`` (thick-restart Lanczos, defaults), each timed from building its
   operator (PyHessian's constructor keeps the gradient graph; weightspace's operator is
   built lazily) in A-B-B-A rounds; errors are relative to the reference, in order.
   Target: weightspace's converged eigenvalues faster than PyHessian's.

    python benchmarks/transformer.py            # 15x15, 2 rounds (~30 min on 2 busy cores)
    python benchmarks/transformer.py --quick    # 5x5 grid, 32 windows, one round
    python benchmarks/transformer.py --save benchmarks/results/transformer.txt
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import statistics
import time
import warnings

from _common import machine_line

import weightspace as ws


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5x5 grid, 32 windows, one round")
    p.add_argument("--grid", type=int, default=15, help="points per axis (default 15)")
    p.add_argument("--windows", type=int, help="training windows to use (default: all)")
    p.add_argument("--rounds", type=int, default=2, help="A-B-B-A rounds (default 2)")
    p.add_argument("--steps", type=int, default=100, help="Adam steps first (default 100)")
    p.add_argument(
        "--threads", type=int, help="torch threads for both (default: ws.set_threads' choice)"
    )
    p.add_argument("--save", help="also write the report here")
    return p.parse_args()


def train_point(problem: ws.Problem, steps: int) -> None:
    """Adam (lr 3e-3, batches of 32 windows, seed 0), so the point is not the init."""
    import torch

    X, y = problem.data
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(problem.model.parameters(), lr=3e-3)
    problem.model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (32,), generator=gen)
        opt.zero_grad()
        problem.loss_fn(problem.model(X[idx]), y[idx]).backward()
        opt.step()
    problem.model.eval()


def abba(a, b, rounds: int) -> tuple[list[float], list[float], object, object]:
    """Times of ``a()`` and ``b()`` in A-B-B-A order, and the last result of each."""
    times: dict[str, list[float]] = {"a": [], "b": []}
    out = {}
    for turn in "abba" * rounds:
        t = time.perf_counter()
        out[turn] = (a if turn == "a" else b)()
        times[turn].append(time.perf_counter() - t)
    return times["a"], times["b"], out["a"], out["b"]


def main() -> None:
    args = parse()
    if args.quick:
        args.grid, args.rounds, args.steps = 5, 1, 20
        args.windows = args.windows or 32
    choice = ws.set_threads(args.threads)  # before torch starts: OpenMP told not to spin

    import loss_landscapes
    import loss_landscapes.metrics
    import numpy as np
    import torch

    warnings.filterwarnings("ignore", category=UserWarning)  # PyHessian's backward(create_graph)
    ph = importlib.import_module("pyhessian.hessian")  # the module (the package exports a class)

    t_start = time.perf_counter()
    problem = ws.zoo.problem("text-gpt", seed=0)
    train_point(problem, args.steps)
    model = problem.model.eval()
    X, y = problem.data
    if args.windows:
        X, y = X[: args.windows], y[: args.windows]
    crit = problem.loss_fn
    problem = ws.Problem(model, crit, (X, y), name="text-gpt")
    obj = ws.Objective(problem)
    layout, center = obj.layout, obj.theta0
    g = args.grid
    xs = ys = np.linspace(-1.0, 1.0, g)
    d = ws.random_directions(center, layout, seed=0)
    lines = [
        f"# transformer benchmark: text-gpt ({layout.numel:,} params), {tuple(X.shape)} "
        f"byte windows, {args.steps} Adam steps, {g}x{g} grid, top-5 eigenvalues, fp32, "
        f"{args.rounds} A-B-B-A round(s)" + ("  [--quick]" if args.quick else ""),
        f"# {machine_line()}",
        f"# python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads ({choice.reason}), weightspace {ws.__version__}, "
        f"loss-landscapes {importlib.metadata.version('loss-landscapes')}, PyHessian "
        f"{importlib.metadata.version('PyHessian')}",
    ]
    print("\n".join(lines), flush=True)

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    with torch.no_grad():
        own = crit(model(X), y).item()
    say(f"loss at the point {own:.6f} (the objective: {obj(center).item():.6f})")

    # ------------------------------------------------------------------ 1. surface
    def peer_surface():
        torch.manual_seed(0)  # it draws its directions from the global RNG
        metric = loss_landscapes.metrics.Loss(crit, X, y)
        with torch.no_grad():
            return loss_landscapes.random_plane(
                model, metric, distance=1, steps=g, normalization="filter", deepcopy_model=True
            )

    def ours_surface():
        return ws.evaluate_plane(obj, center, d[0], d[1], xs, ys)

    def engine_line(surf) -> str:
        eng = surf.metadata.get("engine", {})
        compiled, workers = eng.get("compile_reason", "?"), eng.get("workers_reason", "?")
        return f"compile: {compiled}; workers: {workers}"

    t = time.perf_counter()
    ours = ours_surface()
    t_ours_cold = time.perf_counter() - t
    t = time.perf_counter()
    peer_surface()
    t_peer_cold = time.perf_counter() - t
    mid = g // 2
    say("1. surface (loss-landscapes random_plane vs ws.evaluate_plane)")
    say(
        f"  first calls: loss-landscapes {t_peer_cold:.2f} s, weightspace {t_ours_cold:.2f} s "
        f"(x{t_peer_cold / t_ours_cold:.2f}); weightspace at the centre "
        f"{ours.values[mid, mid]:.6f} vs the model's own {own:.6f}"
    )
    say(f"    engine: {engine_line(ours)}")
    t_peer, t_ours, _, last = abba(peer_surface, ours_surface, args.rounds)
    say(f"  defaults, runs in turn: loss-landscapes {', '.join(f'{x:.2f}' for x in t_peer)} s; "
        f"weightspace {', '.join(f'{x:.2f}' for x in t_ours)} s")  # fmt: skip
    mp, mo = statistics.median(t_peer), statistics.median(t_ours)
    say(
        f"  medians: loss-landscapes {mp:.2f} s ({mp / g**2 * 1e3:.1f} ms/point), weightspace "
        f"{mo:.2f} s ({mo / g**2 * 1e3:.1f} ms/point): x{mp / mo:.2f} (eager; target >= 1)"
    )
    say(f"    engine (last run): {engine_line(last)}")

    def serial_surface():  # the same, one point at a time on all threads (workers=1)
        return ws.evaluate_plane(obj, center, d[0], d[1], xs, ys, engine={"workers": 1})

    t_ser, t_wk, _, _ = abba(serial_surface, ours_surface, args.rounds)
    ms, mw = statistics.median(t_ser), statistics.median(t_wk)
    say(
        f"  one point at a time (workers=1) {ms:.2f} s vs defaults {mw:.2f} s (medians, "
        f"A-B-B-A): x{ms / mw:.2f}"
    )

    t = time.perf_counter()
    ws.evaluate_plane(obj, center, d[0], d[1], xs[:2], ys[:2], engine={"compile": "on"})
    t_compile = time.perf_counter() - t
    t_peer, t_comp, _, comp = abba(peer_surface, ours_surface, args.rounds)
    mp, mc = statistics.median(t_peer), statistics.median(t_comp)
    dev = np.abs(comp.values - ours.values).max()
    say(
        f"  compiled engine (compiled once on a 2x2 grid: {t_compile:.1f} s; then defaults, "
        f"which reuse it): loss-landscapes {', '.join(f'{x:.2f}' for x in t_peer)} s; "
        f"weightspace {', '.join(f'{x:.2f}' for x in t_comp)} s"
    )
    say(
        f"  medians: loss-landscapes {mp:.2f} s, weightspace {mc:.2f} s "
        f"({mc / g**2 * 1e3:.1f} ms/point): x{mp / mc:.2f} (warm; target >= 2); "
        f"max |dev| from eager {dev:.1e}"
    )
    say(f"    engine: {engine_line(comp)}")

    # the floor: this model's own forward and loss, compiled, with nothing of either tool
    fwd = torch.compile(lambda inputs, targets: crit(model(inputs), targets), dynamic=False)
    best = []
    with torch.inference_mode():
        fwd(X, y)
        for _ in range(30):
            t = time.perf_counter()
            fwd(X, y)
            best.append(time.perf_counter() - t)
    floor, peer_pp = min(best), mp / g**2
    say(
        f"  floor: the model's own forward + loss under torch.compile (no tool), best of 30: "
        f"{floor * 1e3:.1f} ms/point; no evaluation of this forward beats loss-landscapes' "
        f"{peer_pp * 1e3:.1f} ms/point by more than x{peer_pp / floor:.2f}"
    )

    # ------------------------------------------------------------------ 2. top-5
    say("2. top-5 eigenvalues (error: max relative error against the reference, in order)")
    t = time.perf_counter()
    ref = ws.top_eigenpairs(ws.HessianOperator(obj, dtype=torch.float64), 5, tol=1e-10)
    lam = ref.eigenvalues.numpy()
    say(
        f"  reference (weightspace float64, tol 1e-10): {np.array2string(lam, precision=6)} "
        f"({time.perf_counter() - t:.1f} s, {ref.n_matvecs} HVPs)"
    )

    def err(vals) -> str:
        vals = np.sort(np.asarray(vals, dtype=np.float64))[::-1]
        return f"{np.max(np.abs(vals - lam) / np.abs(lam)):.1e}  [" + " ".join(
            f"{x:.4f}" for x in vals
        ) + "]"  # fmt: skip

    def peer_eigen():
        torch.manual_seed(0)  # it draws its start vectors from the global RNG
        h = ph.hessian(model, crit, data=(X, y), cuda=False)
        return h.eigenvalues(top_n=5)[0]

    def ours_eigen():
        op = ws.HessianOperator(obj)
        return ws.top_eigenpairs(op, 5), op.n_matvecs

    t_ph, t_ws, ph_vals, (ws_res, ws_hvps) = abba(peer_eigen, ours_eigen, args.rounds)
    say(f"  runs in turn: PyHessian {', '.join(f'{x:.1f}' for x in t_ph)} s; "
        f"weightspace {', '.join(f'{x:.1f}' for x in t_ws)} s")  # fmt: skip
    a, b = statistics.median(t_ph), statistics.median(t_ws)
    say(f"  PyHessian eigenvalues(top_n=5)  {a:7.1f} s  error {err(ph_vals)}")
    say(f"  weightspace top_eigenpairs      {b:7.1f} s  error {err(ws_res.eigenvalues.numpy())}"
        f"  ({ws_hvps} HVPs, residuals <= {ws_res.residuals.max():.1e})")  # fmt: skip
    say(f"  speed-up of weightspace over PyHessian (medians): x{a / b:.2f} (target > 1)")
    total = time.perf_counter() - t_start
    say(f"# load average at the end {os.getloadavg()[0]:.1f}; total {total:.0f} s")
    if args.save:  # (printed as it came)
        from weightspace.store import atomic_path

        with atomic_path(args.save) as tmp:
            tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
