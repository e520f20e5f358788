"""Hessian eigenpairs, trace and SLQ density: weightspace against PyHessian and hessian-eigenthings.

One process, one model and data for all: the digits CNN (38,282 parameters) after a short
SGD run, evaluated in eval mode on the 1,437 training digits as one batch, float32 on the
CPU. Prints, for each method, wall time, the number of Hessian-vector products (HVPs,
counted by wrapping each library's product function; behaviour unchanged) and the error
against a tight reference:

1. one HVP: weightspace's routes (cached ``torch.func.linearize``, kept double-backward
   graph, plain forward-over-reverse, the first convolution split off with its columns
   computed once, ``vmap`` over 10 vectors) against the peers' products;
2. top-5 eigenvalues: reference = weightspace in float64 at ``tol=1e-10``; PyHessian
   ``eigenvalues(top_n=5)`` (power iteration with deflation, defaults), eigenthings
   ``lanczos(k=5)`` (defaults, 50 and 80 steps), weightspace thick-restart Lanczos and
   ARPACK through SciPy;
3. trace: reference = Hutch++ with a large budget; PyHessian ``trace()`` (defaults), and
   weightspace Hutchinson and Hutch++ with the same number of HVPs;
4. SLQ density, 10 probes x 80 steps: eigenthings ``spectral_density`` and weightspace
   (the operator ``plan_hessian`` chooses for 800 products: it splits the first convolution
   off and counts its 160 columns among its HVPs; the planning is timed too), timed in
   A-B-B-A rounds (``--slq-rounds``), medians compared (PyHessian ``density`` is tried: it
   calls ``torch.eig``, removed from PyTorch);
   errors: the largest node against the reference λ₁, the mean against tr/n, and the L1
   distance to a 20-probe weightspace density, all smoothed with one σ on one grid.

    python benchmarks/hessian.py            # full run (~15 min on 2 CPU cores)
    python benchmarks/hessian.py --quick    # smoke run (short training, small budgets)
    python benchmarks/hessian.py --threads 1   # on a machine shared with other jobs
"""

from __future__ import annotations

import argparse
import copy
import importlib
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

import weightspace as ws
from weightspace.curvature import (
    HessianOperator,
    SplitHessianOperator,
    hutchinson_trace,
    hutchpp_trace,
    plan_hessian,
)
from weightspace.curvature.slq import gaussian_density


def train_point(problem: ws.Problem, steps: int) -> None:
    """A short SGD run (momentum 0.9, lr 0.05, batch 64) so the point is not the init."""
    X, y = problem.data
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(problem.model.parameters(), lr=0.05, momentum=0.9)
    problem.model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=gen)
        opt.zero_grad()
        problem.loss_fn(problem.model(X[idx]), y[idx]).backward()
        opt.step()
    problem.model.eval()


class Counter:
    """Counts calls of a function it wraps."""

    def __init__(self, fn: Callable) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def timed(fn: Callable):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def interleaved(calls: dict[str, Callable], repeats: int) -> dict[str, float]:
    """Median time of each call, measured in turns (fair under a varying machine load)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(t) for name, t in times.items()}


def row(name: str, seconds: float, hvps: int | str, error: str, ref: float | None = None) -> None:
    ratio = f"{seconds / ref:6.2f}x" if ref else "      "
    print(f"  {name:<44} {seconds:8.2f} s {ratio} {hvps!s:>6} HVPs  {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with small budgets")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--slq-rounds", type=int, default=2, help="A-B-B-A rounds of the SLQ timing (default 2)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    warnings.filterwarnings("ignore", category=UserWarning)  # PyHessian's backward(create_graph)
    import hessian_eigenthings as he
    import pyhessian

    ph = importlib.import_module("pyhessian.hessian")  # the module (the package exports a class)

    print("Hessian benchmark: digits CNN, 1,437 samples, one batch, eval mode, float32, CPU")
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, weightspace {ws.__version__}, PyHessian 0.1 "
        f"({pyhessian.__name__}), hessian-eigenthings {he.__version__}"
        + ("  [--quick]" if quick else "")
    )
    problem = ws.zoo.problem("digits-cnn", seed=0)
    train_point(problem, 30 if quick else 300)
    X, y = problem.data
    crit = problem.loss_fn
    obj = ws.Objective(problem)
    n = obj.layout.numel
    print(f"parameters {n:,}, loss at the point {obj(obj.theta0).item():.4f}")

    # ------------------------------------------------------------------ 1. one product
    print("\n1. one Hessian-vector product (medians, routes timed in turns; setup = first product)")
    reps = 3 if quick else 9
    v = torch.randn(n, generator=torch.Generator().manual_seed(1))
    routes = {}
    for name, make in [
        ("weightspace forward, linearize cached", lambda: HessianOperator(obj, method="forward")),
        (
            "weightspace double backward, graph kept",
            lambda: HessianOperator(obj, method="double-backward"),
        ),
        (
            "weightspace forward, not cached",
            lambda: HessianOperator(obj, method="forward", cache=False),
        ),
        (
            "weightspace forward, 1st conv. split off",
            lambda: SplitHessianOperator(HessianOperator(obj, method="forward"), "features.0.*"),
        ),
    ]:
        op = make()
        _, setup = timed(lambda op=op: op @ v)
        routes[name] = (op, setup)
    ph_model = copy.deepcopy(problem.model)
    ph_h = ph.hessian(ph_model, crit, data=(X, y), cuda=False)
    v_split = [t.clone() for t in obj.layout.unflatten(v).values()]
    he_model = copy.deepcopy(problem.model)
    he_op = he.HessianOperator(he_model, [(X, y)], he.supervised_loss(crit))
    calls = {name: (lambda op=op: op @ v) for name, (op, _) in routes.items()}
    calls["PyHessian hessian_vector_product (graph kept)"] = lambda: ph.hessian_vector_product(
        ph_h.gradsH, ph_h.params, v_split
    )
    calls["hessian-eigenthings HessianOperator.matvec"] = lambda: he_op.matvec(v)
    times = interleaved(calls, reps)
    ref_route = "weightspace forward, linearize cached"
    for name, t in times.items():
        setup = f"setup {routes[name][1]:.2f} s" if name in routes else ""
        print(f"  {name:<46} {1e3 * t:7.1f} ms  {t / times[ref_route]:5.2f}x  {setup}")
    V = torch.randn(n, 10, generator=torch.Generator().manual_seed(2))
    mm_ops = {  # linearised, as in SLQ
        "one column at a time": HessianOperator(obj, method="forward", vectorize=False),
        "vmap over the columns": HessianOperator(obj, method="forward", vectorize=True),
    }
    for op in mm_ops.values():
        op.matmat(V)
    mm = interleaved({name: (lambda op=op: op.matmat(V)) for name, op in mm_ops.items()}, 3)
    first = next(iter(mm.values()))
    print("  matmat of 10 vectors (cached products):")
    for name, t in mm.items():
        print(f"    {name:<44} {1e3 * t / 10:7.1f} ms/vector  {t / first:5.2f}x")

    # ------------------------------------------------------------------ 2. top-5
    print("\n2. top-5 eigenvalues (error: max relative error against the reference, in order)")
    op64 = HessianOperator(obj, dtype=torch.float64)
    ref, t_ref = timed(lambda: ws.top_eigenpairs(op64, 5, tol=1e-10))
    lam = ref.eigenvalues.numpy()
    print(f"  reference (weightspace float64, tol 1e-10): {np.array2string(lam, precision=6)}")
    print(f"    {t_ref:.1f} s, {ref.n_matvecs} HVPs, residuals <= {ref.residuals.max():.1e}")

    def err(vals) -> str:
        vals = np.asarray(vals, dtype=np.float64)
        in_order = np.max(np.abs(vals - lam) / np.abs(lam))
        notes = [] if np.all(np.diff(vals) <= 0) else ["out of order"]
        if np.any(np.abs(np.diff(np.sort(vals))) <= 1e-4 * abs(vals).max()):
            notes.append("repeated values")
        shown = " ".join(f"{x:.4f}" for x in vals)
        return f"{in_order:.1e}  [{shown}]" + (f" ({', '.join(notes)})" if notes else "")

    torch.manual_seed(0)  # PyHessian draws from the global RNG
    counter = Counter(ph.hessian_vector_product)
    ph.hessian_vector_product = counter
    try:
        (vals, _), t_ph = timed(lambda: ph_h.eigenvalues(top_n=5))
    finally:
        ph.hessian_vector_product = counter.fn
    row("PyHessian eigenvalues(top_n=5) defaults", t_ph, counter.calls, err(vals), t_ph)
    results = {}
    for name, kw in [
        ("defaults (10 steps)", {}),
        ("max_iter=50 (reorth.)", {"max_iter": 50}),
        ("max_iter=80 (no reorth.)", {"max_iter": 80}),
    ]:
        he_op.matvec = Counter(type(he_op).matvec.__get__(he_op))
        res, t = timed(lambda kw=kw: he.lanczos(he_op, k=5, which="LA", seed=0, **kw))
        vals = np.sort(res.eigenvalues.double().numpy())[::-1][:5]
        row(f"eigenthings lanczos(k=5) {name}", t, he_op.matvec.calls, err(vals), t_ph)
    for name, kw in [
        ("weightspace top_eigenpairs (tol 1e-4)", {}),
        ("weightspace top_eigenpairs (tol 1e-6)", {"tol": 1e-6}),
        ("weightspace ARPACK eigsh (tol 1e-4)", {"method": "arpack"}),
    ]:
        op = HessianOperator(obj)
        res, t = timed(lambda op=op, kw=kw: ws.top_eigenpairs(op, 5, **kw))
        results[name] = (res, t)
        row(name, t, op.n_matvecs + op.n_checks, err(res.eigenvalues.numpy()), t_ph)
    best = results["weightspace top_eigenpairs (tol 1e-4)"][1]
    print(f"  speed-up of weightspace (tol 1e-4) over PyHessian: {t_ph / best:.1f}x")

    # ------------------------------------------------------------------ 3. trace
    print("\n3. trace (error: relative to the reference; ± one standard error)")
    budget = 150 if quick else 1500
    op = plan_hessian(obj, n_products=budget)
    tref, t = timed(lambda: hutchpp_trace(op, budget, seed=0))
    print(f"  reference Hutch++ {budget} HVPs: {tref.estimate:.4f} ± {tref.stderr:.4f} ({t:.0f} s)")
    torch.manual_seed(0)
    counter = Counter(ph.hessian_vector_product)
    ph.hessian_vector_product = counter
    try:
        samples, t_ph = timed(lambda: ph_h.trace())
    finally:
        ph.hessian_vector_product = counter.fn
    k = counter.calls

    def terr(est: float, se: float) -> str:
        return f"{est:.4f} ± {se:.4f}  rel. err {abs(est - tref.estimate) / tref.estimate:.1e}"

    se_ph = np.std(samples, ddof=1) / np.sqrt(len(samples)) if len(samples) > 1 else np.nan
    row("PyHessian trace() defaults", t_ph, k, terr(np.mean(samples), se_ph), t_ph)
    for name, fn in [
        (f"weightspace hutchinson_trace ({k} probes)", lambda: hutchinson_trace(op, k, seed=1)),
        (
            f"weightspace hutchpp_trace ({max(k, 3)} HVPs)",
            lambda: hutchpp_trace(op, max(k, 3), seed=1),
        ),
    ]:
        tr, t = timed(fn)
        row(name, t, tr.n_matvecs, terr(tr.estimate, tr.stderr), t_ph)

    # ------------------------------------------------------------------ 4. SLQ
    probes, steps = (3, 20) if quick else (10, 80)
    print(f"\n4. SLQ density, {probes} probes x {steps} steps")
    op = plan_hessian(obj, n_products=2 * probes * steps)
    ref_d, t = timed(lambda: ws.spectral_density(op, 2 * probes, steps, seed=100))
    print(
        f"  reference: weightspace {2 * probes} probes ({t:.0f} s); trace/n {tref.estimate / n:.3e}"
    )
    # A-B-B-A order: a load that drifts during the runs weighs on both methods alike
    t_he, t_ws, order = [], [], []
    for turn in ("he", "ws", "ws", "he") * args.slq_rounds:
        if turn == "he":
            he_op.matvec = Counter(type(he_op).matvec.__get__(he_op))
            he_d, t = timed(
                lambda: he.spectral_density(he_op, num_runs=probes, lanczos_steps=steps, seed=0)
            )
            he_calls = he_op.matvec.calls
            t_he.append(t)
        else:
            op, t_plan = timed(lambda: plan_hessian(obj, n_products=probes * steps))
            ws_d, t = timed(lambda op=op: ws.spectral_density(op, probes, steps, seed=0))
            t += t_plan  # the planning (timing, tracing) is part of the cost
            t_ws.append(t)
        order.append(f"{'eigenthings' if turn == 'he' else 'weightspace'} {t:.1f} s")
    print("  runs in turn (A-B-B-A rounds):", ", ".join(order))
    pairs = [h / w for h, w in zip(t_he, t_ws)]  # each run against its neighbour in the round
    print(f"  ratios run by run: {', '.join(f'{r:.2f}' for r in pairs)}")
    t_he, t_ws = statistics.median(t_he), statistics.median(t_ws)
    sigma = ref_d.sigma
    grid = ref_d.grid
    ref_curve = ref_d.regrid(grid, sigma).density

    def derr(nodes: np.ndarray, weights: np.ndarray) -> str:
        curve = gaussian_density(nodes, weights, sigma, grid).mean(0)
        l1 = np.trapezoid(np.abs(curve - ref_curve), grid)
        top = nodes[weights > 0].max()
        mean = float((nodes * weights).sum() / len(nodes))
        return (
            f"λmax rel. err {abs(top - lam[0]) / lam[0]:.1e}, mean {mean:.3e}, L1 to ref {l1:.3f}"
        )

    he_nodes = he_d.raw_eigenvalues.double().numpy()
    he_w = he_d.raw_weights.double().numpy()
    he_w = np.where(np.isfinite(he_nodes), he_w, 0.0)
    he_nodes = np.nan_to_num(he_nodes)
    row("hessian-eigenthings spectral_density", t_he, he_calls, derr(he_nodes, he_w), t_he)
    row(
        "weightspace spectral_density",
        t_ws,
        op.n_matvecs + op.n_checks + op.plan["planning_products"],
        derr(ws_d.nodes, ws_d.weights),
        t_he,
    )
    print(
        f"  speed-up of weightspace over hessian-eigenthings (medians): {t_he / t_ws:.2f}x "
        f"(σ = {sigma:.3g})"
    )
    block = op.plan["block"]
    cols = op.shape[0] - op.rest.shape[0] if block else 0
    print(
        f"  weightspace route {op.method}, split off {', '.join(block) if block else 'nothing'}"
        f"{f' ({cols} columns, counted among its HVPs)' if cols else ''}: {op.plan['split_why']}"
    )
    torch.manual_seed(0)
    try:
        ph_h.density(iter=min(steps, 10), n_v=1)
        print("  PyHessian density(): ran")
    except Exception as e:  # the finding: torch.eig no longer exists
        print(f"  PyHessian density(): fails with {type(e).__name__}: {str(e).splitlines()[0]}")
    print("\nno GPU on this machine: probe batching through vmap on CUDA is not measured here")


if __name__ == "__main__":
    main()
