"""Connecting networks: permutation alignment (Git Re-Basin) and trained curves (Garipov et al.).

1. Weight matching (:func:`bench_alignment`): ``align(method="weights")`` on an MLP
   784-512-512-512-512-10 (1,195,018 parameters, two independent initialisations, float32)
   against a plain Python/NumPy reference implementation of the same algorithm written here
   (loops over groups and tensors, ``np.take`` for the other groups' permutations,
   ``linear_sum_assignment``, nothing cached), both in this process, in A-B-B-A rounds;
   medians, and whether both found the same permutations.
2. ``permutation_spec`` (torch.fx + shape propagation) and ``align`` on a ~9.8M-parameter
   VGG-like CNN (3x3 convs with BatchNorm, 32x32 inputs). Target: under 60 s on 2 cores.
3. Curve training (:func:`bench_curve`): one epoch of ``train_curve`` (a quadratic Bezier
   curve, one trainable bend, endpoints fixed) against one plain PyTorch training epoch of the
   same network on the same data and batch size, in A-B-B-A rounds. Garipov et al. (2018)
   train a curve as they train a network: per minibatch one forward and one backward pass
   at the curve's point φ(t) (their VGG16 on CIFAR-10: 50,000 images, batch 128, 600
   epochs). The scaling assumption: their cost per epoch on this machine is that of an
   ordinary training epoch of the same network here, so the ratio measures weightspace's
   overhead (assembling φ(t), the gradient into the bend, the run's records), and their
   budget in steps times our time per step projects their run onto this machine.

    python benchmarks/connect.py --threads 2                 # full size (~10 minutes idle)
    python benchmarks/connect.py --quick                     # smoke run (small models, one round)
    python benchmarks/connect.py --threads 2 --save benchmarks/results/connect.txt
"""

from __future__ import annotations

import argparse
import copy
import datetime
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy
import torch
from _common import emit, machine_line
from scipy.optimize import linear_sum_assignment
from torch import nn

import weightspace as ws
from weightspace.between import align, permutation_spec
from weightspace.between.curve import train_curve

# Garipov et al. (2018), VGG16 on CIFAR-10 (their README's command): curve training settings
GARIPOV = {"images": 50_000, "batch_size": 128, "epochs": 600, "lr": 0.015, "wd": 5e-4}


# ----------------------------------------------------------------------------- reference
def reference_weight_matching(spec, params_a, params_b, max_iter=100, seed=0):
    """Weight matching as the paper states it, in plain NumPy: for each group (random order
    per sweep), sum A·Bᵀ over the tensors it indexes (B's other axes permuted by the current
    permutations), solve the assignment, keep it if the objective grows; stop when a sweep
    changes nothing. Returns group -> gather index (aligned unit j = B's unit index[j])."""
    rng = np.random.default_rng(seed)
    touches = {}
    for group, entries in spec.axes.items():
        for name, axis, block in entries:
            touches.setdefault(name, []).append((axis, group, block))
    sizes = {g: params_a[es[0][0]].shape[es[0][1]] // es[0][2] for g, es in spec.axes.items()}
    perm = {g: np.arange(d) for g, d in sizes.items()}
    eps = np.finfo(next(iter(params_a.values())).dtype).eps
    groups = list(spec.axes)
    for _ in range(max_iter):
        changed = False
        for k in rng.permutation(len(groups)):
            group, d = groups[k], sizes[groups[k]]
            score = np.zeros((d, d))
            scale = 0.0
            for name, axis, block in spec.axes[group]:
                a, b = params_a[name], params_b[name]
                for other_axis, other, other_block in touches[name]:
                    if other_axis != axis:
                        b = take_units(b, other_axis, perm[other], other_block)
                score += unit_rows(a, axis, block, d) @ unit_rows(b, axis, block, d).T
                scale += float(np.linalg.norm(a)) * float(np.linalg.norm(b))
            cols = linear_sum_assignment(score, maximize=True)[1]
            rows = np.arange(d)
            gain = score[rows, cols].sum() - score[rows, perm[group]].sum()
            if not np.array_equal(cols, perm[group]) and gain > 16 * eps * scale:
                perm[group], changed = cols, True
        if not changed:
            break
    return perm


def take_units(t, axis, index, block):
    split = (*t.shape[:axis], t.shape[axis] // block, block, *t.shape[axis + 1 :])
    return np.take(t.reshape(split), index, axis=axis).reshape(t.shape)


def unit_rows(t, axis, block, d):
    split = (*t.shape[:axis], d, block, *t.shape[axis + 1 :])
    return np.moveaxis(t.reshape(split), axis, 0).reshape(d, -1)


# ----------------------------------------------------------------------------- models
def mlp(width: int, depth: int) -> nn.Module:
    layers, fan_in = [], 784
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    return nn.Sequential(*layers, nn.Linear(fan_in, 10))


def vgg(widths: list, hidden: int, batchnorm: bool = True) -> nn.Module:
    layers, c = [], 3
    for w in widths:
        if w == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            norm = [nn.BatchNorm2d(w)] if batchnorm else []
            layers += [nn.Conv2d(c, w, 3, padding=1), *norm, nn.ReLU()]
            c = w
    spatial = 32 // 2 ** widths.count("M")
    head = [nn.Flatten(), nn.Linear(c * spatial * spatial, hidden), nn.ReLU()]
    return nn.Sequential(*layers, *head, nn.Linear(hidden, 10))


def two_inits(make, seed):
    torch.manual_seed(seed)  # benchmark only: the models' default initialisers
    a, b = make(), make()
    layout = ws.ParamLayout.from_module(a)
    return a, layout, layout.flatten(a), layout.flatten(b)


def bench_alignment(quick: bool = False) -> list[str]:
    """Weight matching: weightspace against the NumPy reference (MLP), then a ~10M CNN."""
    rounds = 1 if quick else 3
    model, layout, theta_a, theta_b = two_inits(lambda: mlp(128 if quick else 512, 4), 0)
    spec = permutation_spec(model)
    a_np = {k: v.numpy() for k, v in layout.unflatten(theta_a).items()}
    b_np = {k: v.numpy() for k, v in layout.unflatten(theta_b).items()}
    ours, ref, result, perm = [], [], None, None
    align(spec, theta_a, theta_b, layout=layout, seed=0, max_iter=1)  # warm-up, untimed
    for _ in range(rounds):  # A-B-B-A
        for which in ("ws", "ref", "ref", "ws"):
            start = time.perf_counter()
            if which == "ws":
                result = align(spec, theta_a, theta_b, layout=layout, seed=0)
            else:
                perm = reference_weight_matching(spec, a_np, b_np, seed=0)
            (ours if which == "ws" else ref).append(time.perf_counter() - start)
    same = all(np.array_equal(np.argsort(perm[g]), result.perms[g]) for g in spec.groups)
    t_ours, t_ref = statistics.median(ours), statistics.median(ref)
    lines = [
        f"weight matching, MLP 784-{'-'.join(['512' if not quick else '128'] * 4)}-10 "
        f"({layout.numel:,} parameters, float32, two independent inits), "
        f"{rounds} A-B-B-A rounds after an untimed warm-up, median",
        f"  weightspace align       {t_ours:8.3f} s  ({result.metadata['sweeps']} sweeps, "
        f"distance {result.distance_before:.2f} -> {result.distance_after:.2f})",
        f"  NumPy reference         {t_ref:8.3f} s  (same permutations: {'yes' if same else 'no'})",
        f"  speed-up                {t_ref / t_ours:8.2f} x",
    ]
    widths = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M"]
    if quick:
        widths = [16, "M", 32, "M", 64, "M", 64, "M"]
    model, layout, theta_a, theta_b = two_inits(lambda: vgg(widths, 64 if quick else 1024), 1)
    start = time.perf_counter()
    spec = permutation_spec(model, torch.zeros(2, 3, 32, 32))
    t_spec = time.perf_counter() - start
    times = []
    for _ in range(1 if quick else 2):
        start = time.perf_counter()
        result = align(spec, theta_a, theta_b, layout=layout, seed=0)
        times.append(time.perf_counter() - start)
    total = t_spec + statistics.median(times)
    verdict = "" if quick else (": met" if total < 60 else ": NOT met")
    lines += [
        f"weight matching, VGG-like CNN ({sum(isinstance(w, int) for w in widths)} 3x3 convs "
        f"with BatchNorm, {layout.numel:,} parameters, float32, {len(spec.groups)} groups)",
        f"  permutation_spec (fx)   {t_spec:8.3f} s",
        f"  align                   {statistics.median(times):8.3f} s  (median of {len(times)}; "
        f"{result.metadata['sweeps']} sweeps, {len(result.objective_history) - 1} steps, "
        f"distance {result.distance_before:.2f} -> {result.distance_after:.2f})",
        f"  spec + align            {total:8.3f} s  (target under 60 s on 2 cores{verdict})",
    ]
    return lines


# ----------------------------------------------------------------------------- curves
def plain_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
    """One ordinary training epoch (forward, backward, SGD step per minibatch): the cost of
    one of Garipov et al.'s curve epochs under the scaling assumption."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    model.train()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


def curve_problem(quick: bool) -> tuple[ws.Problem, torch.Tensor, torch.Tensor, str, int]:
    """The problem, two endpoints, its description and the batch size."""
    if quick:
        problem = ws.zoo.problem("digits-mlp", seed=0)
        other = ws.zoo.problem("digits-mlp", seed=1).model
        what, batch = "digits MLP 64-40-10 on the embedded digits (1,437 images)", 64
    else:  # Garipov et al.'s VGG16 (no BatchNorm) at a quarter of its width, CIFAR-shaped data
        widths = [16, 16, "M", 32, 32, "M", 64, 64, 64, "M", 128, 128, 128, "M"]
        widths += [128, 128, 128, "M"]
        torch.manual_seed(2)  # benchmark only: the models' default initialisers and the data
        model, other = vgg(widths, 128, batchnorm=False), vgg(widths, 128, batchnorm=False)
        g = torch.Generator().manual_seed(3)
        x, y = torch.randn(1024, 3, 32, 32, generator=g), torch.randint(0, 10, (1024,), generator=g)
        problem = ws.Problem(model, nn.CrossEntropyLoss(), (x, y), name="vgg16/4")
        what = "VGG16 at 1/4 width (13 convs, no BatchNorm) on 1,024 random 32x32x3 images"
        batch = GARIPOV["batch_size"]
    layout = ws.ParamLayout.from_module(problem.model)
    what = f"{what}, {layout.numel:,} parameters, float32"
    return problem, layout.flatten(problem.model), layout.flatten(other), what, batch


def bench_curve(quick: bool = False) -> list[str]:
    """One epoch of ``train_curve`` against one plain training epoch of the same network."""
    problem, theta_a, theta_b, what, batch = curve_problem(quick)
    x, y = problem.data
    steps = math.ceil(len(x) / batch)
    rounds = 1 if quick else 3
    ours, plain = [], []
    settings = {"lr": GARIPOV["lr"], "momentum": 0.9, "weight_decay": GARIPOV["wd"]}
    with tempfile.TemporaryDirectory() as tmp:

        def curve_epoch(name: str, n: int = steps) -> None:
            train_curve(
                problem, theta_a, theta_b, Path(tmp) / name, steps=n, batch_size=batch,
                every=n, checkpoint_every=n, **settings,
            )  # fmt: skip

        curve_epoch("warm-up", 1)  # first calls in the process: imports, allocator, probes
        plain_epoch(copy.deepcopy(problem.model), x[: 2 * batch], y[: 2 * batch], batch)
        for r in range(rounds):  # A-B-B-A
            for k, which in enumerate(("ws", "plain", "plain", "ws")):
                start = time.perf_counter()
                if which == "ws":
                    curve_epoch(f"curve{r}-{k}")
                else:
                    plain_epoch(copy.deepcopy(problem.model), x, y, batch)
                (ours if which == "ws" else plain).append(time.perf_counter() - start)
    t_ours, t_plain = statistics.median(ours), statistics.median(plain)
    per_epoch = math.ceil(GARIPOV["images"] / GARIPOV["batch_size"])
    budget = GARIPOV["epochs"] * per_epoch
    lines = [
        f"curve training, one epoch ({steps} steps of batch {batch}): {what}; "
        f"{rounds} A-B-B-A rounds after one untimed warm-up call of each, median",
        f"  weightspace train_curve {t_ours:8.3f} s  (Bezier, 1 bend, SGD lr {GARIPOV['lr']} "
        "momentum 0.9; includes setup: objective, run directory, one saved state)",
        f"  plain training epoch    {t_plain:8.3f} s  (same network, data and batch size)",
        f"  overhead                {t_ours / t_plain:8.2f} x",
        "  scaling assumption: a curve epoch of Garipov et al. costs an ordinary training epoch "
        "of the same network (one forward and backward per minibatch, at φ(t)); their setup on "
        "this machine is the plain epoch above, and the overhead is weightspace's.",
    ]
    if not quick:
        lines.append(
            f"  their VGG16/CIFAR-10 budget ({GARIPOV['epochs']} epochs x {per_epoch} steps = "
            f"{budget:,} steps) at this network's time per step: weightspace "
            f"{budget * t_ours / steps / 3600:.1f} h, plain {budget * t_plain / steps / 3600:.1f} "
            "h (full-width VGG16 has ~16x these convolutions' work per image: scale by it)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, one round")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--save", help="write the report here (default: print only)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    flags = " --quick" * args.quick + (f" --threads {args.threads}" if args.threads else "")
    lines = [
        f"# python benchmarks/connect.py{flags}   ({datetime.date.today()})",
        f"python {platform.python_version()}, torch {torch.__version__}, numpy "
        f"{np.__version__}, scipy {scipy.__version__}, weightspace {ws.__version__}, "
        f"{torch.get_num_threads()} torch threads",
        machine_line(),
    ]
    lines += bench_alignment(args.quick)  # weight matching: reference, then a ~10M CNN
    lines += bench_curve(args.quick)  # curve training against a plain training epoch
    lines.append(f"load average at the end {os.getloadavg()[0]:.1f}")
    emit(lines, args.save)


if __name__ == "__main__":
    main()
