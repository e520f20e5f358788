"""Permutation alignment of two networks (Git Re-Basin, Ainsworth, Hayase & Srinivasa 2023).

Two independently trained networks differ partly by a permutation of their hidden units;
aligning B's units to A's before interpolating removes most of the loss barrier between them
(Entezari et al. 2022). :func:`align` finds one permutation per group of a
:class:`~weightspace.between.PermutationSpec`, by weight matching (coordinate descent, each step
a linear assignment maximising ``Σ ⟨W_a, P W_b⟩``) or by activation matching (the correlation
of unit activations on data), and returns an :class:`Alignment` that permutes B's flat
parameters and buffers so that B computes the same function, closer to A.

Convention: ``perms[g][i]`` is the position that B's unit ``i`` of group ``g`` takes, so the
aligned B's unit ``perm[i]`` is B's unit ``i`` (and aligned unit ``j`` is B's unit
``argsort(perm)[j]``).

Example: B is A with its 8 hidden units shuffled; alignment undoes the shuffle.
    >>> import torch, weightspace as ws
    >>> from weightspace.between import align, permutation_spec
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> spec = permutation_spec(model)
    >>> spec.axes["P_0"]
    (('0.weight', 0, 1), ('0.bias', 0, 1), ('2.weight', 1, 1))
    >>> g = torch.Generator().manual_seed(0)
    >>> layout = ws.ParamLayout.from_module(model)
    >>> theta_a = torch.randn(layout.numel, generator=g, dtype=torch.float64)
    >>> a, shuffle = layout.unflatten(theta_a), torch.randperm(8, generator=g)
    >>> theta_b = layout.flatten({"0.weight": a["0.weight"][shuffle], "2.bias": a["2.bias"],
    ...     "0.bias": a["0.bias"][shuffle], "2.weight": a["2.weight"][:, shuffle]})
    >>> result = align(spec, theta_a, theta_b, layout=layout)
    >>> result.distance_before > 1, result.distance_after
    (True, 0.0)
    >>> bool((result.perms["P_0"] == shuffle.numpy()).all())
    True
    >>> torch.equal(result.apply(theta_b), theta_a)
    True
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import fx, nn

from ..buffer_layout import BufferLayout
from ..checks import Seed, as_vector, numpy_rng, one_of, positive_int
from ..errors import WeightspaceError
from ..layout import ParamLayout
from ._derive import _derive
from ._spec import PermutationSpec, permute_units

__all__ = ["Alignment", "align"]

log = logging.getLogger(__name__)

Flat = torch.Tensor | np.ndarray


@dataclass(frozen=True)
class Alignment:
    """The permutations that align network B to network A, and how far apart they were.

    Attributes:
        perms: group -> ``(units,)`` int64; B's unit ``i`` goes to position ``perm[i]``.
        objective_history: ``(steps + 1,)`` ``⟨θ_a, P θ_b⟩`` at the start and after every
            coordinate step (weight matching; never decreasing), or before and after
            (activation matching).
        method: ``"weights"`` or ``"activations"``.
        distance_before: ``‖θ_a − θ_b‖``.
        distance_after: ``‖θ_a − apply(θ_b)‖``.
        spec: the permutation spec used.
        layout: the parameters' layout.
        buffer_layout: the buffers' layout (None when no buffers were described).
        metadata: seed, sweeps, convergence, group sizes, units moved.
    """

    perms: dict[str, np.ndarray]
    objective_history: np.ndarray
    method: str
    distance_before: float
    distance_after: float
    spec: PermutationSpec
    layout: ParamLayout
    buffer_layout: BufferLayout | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def apply(self, theta_b: Flat) -> Flat:
        """B's parameters ``theta_b: (n,)`` permuted into A's unit order (same type out)."""
        return self._gather(theta_b, "params", self.layout)

    def apply_buffers(self, buffers_b: Flat) -> Flat:
        """B's flat buffers ``(numel,)`` (a :class:`~weightspace.BufferLayout` vector),
        permuted like :meth:`apply` so that BatchNorm statistics follow their units."""
        if self.buffer_layout is None:
            raise WeightspaceError(
                "apply_buffers: this alignment has no buffer layout; pass buffer_layout= (or a "
                "model) to align"
            )
        return self._gather(buffers_b, "buffers", self.buffer_layout)

    def _gather(self, flat: Flat, kind: str, layout: Any) -> Flat:
        if kind not in self._cache:
            inverse = {g: torch.from_numpy(np.argsort(p)) for g, p in self.perms.items()}
            self._cache[kind] = _gather_index(self.spec, layout, inverse, kind == "buffers")
        index = self._cache[kind]
        if tuple(flat.shape) != (layout.numel,):
            raise WeightspaceError(
                f"{'theta_b' if kind == 'params' else 'buffers_b'}: expected a flat vector of "
                f"shape ({layout.numel},), got {tuple(flat.shape)}"
            )
        if isinstance(flat, np.ndarray):
            return flat[index.numpy()]
        return flat[index.to(flat.device)]


def _gather_index(spec: PermutationSpec, layout: Any, inverse: dict, buffers: bool):
    """``(numel,)`` int64: aligned vector = vector[index]."""
    index = torch.arange(layout.numel)
    for name, touches in spec.touches(buffers).items():
        i = layout.names.index(name)
        part = index[layout.offsets[i] : layout.offsets[i + 1]]
        view = part.view(layout.shapes[i])
        for axis, group, block in touches:
            view = permute_units(view, axis, inverse[group], block)
        part.copy_(view.reshape(-1))
    return index


def _units(t: torch.Tensor, axis: int, block: int, d: int) -> torch.Tensor:
    """``t`` as a ``(d, rest)`` matrix with the units of ``axis`` as rows."""
    if axis == 0:
        return t.reshape(d, -1)
    split = (*t.shape[:axis], d, block, *t.shape[axis + 1 :])
    return t.reshape(split).movedim(axis, 0).reshape(d, -1)


def _permuted(b: torch.Tensor, touches: list, inverse: dict, skip: int | None = None):
    for axis, group, block in touches:
        if axis != skip:
            b = permute_units(b, axis, inverse[group], block)
    return b


def _step(group: str, ctx: dict, inverse: dict) -> tuple[torch.Tensor | None, float]:
    """One coordinate step: the best permutation of ``group`` with the others held fixed, and
    the objective's gain; ``(None, 0)`` when it does not improve beyond rounding."""
    d, A, B, touches = ctx["sizes"][group], ctx["A"], ctx["B"], ctx["touches"]
    linear = torch.zeros(d, d, dtype=torch.float64)  # [j, i] = <A's unit j, B's unit i>
    coupled = torch.zeros(d, d, dtype=torch.float64)
    names = {}  # tensors with two axes in this group: their gain is computed exactly
    for name, axis, block in ctx["spec"].axes[group]:
        b = _permuted(B[name], touches[name], inverse, skip=axis)
        score = (ctx["a_units"][name, axis] @ _units(b, axis, block, d).T).double()
        if sum(g == group for _, g, _ in touches[name]) > 1:
            coupled += score
            names[name] = None
        else:
            linear += score
    cols = linear_sum_assignment((linear + coupled).numpy(), maximize=True)[1]
    new, old = torch.from_numpy(cols), inverse[group]
    if torch.equal(new, old):
        return None, 0.0
    rows, lin = np.arange(d), linear.numpy()
    values = [float(lin[rows, cols].sum()), float(lin[rows, old.numpy()].sum())]
    for name in names:
        a = A[name].reshape(-1).double()
        for k, perm in enumerate((new, old)):
            b = _permuted(B[name], touches[name], {**inverse, group: perm})
            values[k] += float(a @ b.reshape(-1).double())
    gain = values[0] - values[1]
    return (new, gain) if gain > 16 * ctx["eps"] * ctx["scale"][group] else (None, 0.0)


def _weight_matching(spec, layout, theta_a, theta_b, sizes, max_iter, rng) -> tuple:
    """Coordinate descent over the groups in random order until a sweep changes nothing."""
    A, B, touches = layout.unflatten(theta_a), layout.unflatten(theta_b), spec.touches()
    ctx = {"spec": spec, "sizes": sizes, "A": A, "B": B, "touches": touches}
    ctx["a_units"] = {
        (name, axis): _units(A[name], axis, block, sizes[g])
        for g, entries in spec.axes.items()
        for name, axis, block in entries
    }
    norms = {n: float(A[n].double().norm() * B[n].double().norm()) for n in touches}
    ctx["scale"] = {g: sum(norms[n] for n, _, _ in es) for g, es in spec.axes.items()}
    ctx["eps"] = torch.finfo(theta_a.dtype).eps
    inverse = {g: torch.arange(d) for g, d in sizes.items()}
    history = [float(theta_a.double() @ theta_b.double())]
    groups, sweeps, converged = list(spec.axes), 0, False
    while sweeps < max_iter and not converged:
        sweeps, converged = sweeps + 1, True
        for k in rng.permutation(len(groups)):
            new, gain = _step(groups[k], ctx, inverse)
            if new is not None:
                inverse[groups[k]], converged = new, False
            history.append(history[-1] + gain)
        log.debug("weight matching: sweep %d, objective %.6g", sweeps, history[-1])
    return inverse, np.asarray(history), {"sweeps": sweeps, "converged": converged}


class _Capture(fx.Interpreter):
    """Runs a traced model, keeping the outputs of the named nodes."""

    def __init__(self, gm: fx.GraphModule, wanted: set[str]) -> None:
        super().__init__(gm)
        self.wanted, self.seen = wanted, {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.wanted:
            self.seen[n.name] = out
        return out


class _Probe(nn.Module):
    def __init__(self, gm: fx.GraphModule, wanted: set[str]) -> None:
        super().__init__()
        self.gm, self.wanted = gm, wanted

    def forward(self, *args: Any) -> dict[str, torch.Tensor]:
        capture = _Capture(self.gm, self.wanted)
        capture.run(*args)
        return capture.seen


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(d, d)`` Pearson correlation of A's unit j with B's unit i over ``(m, d)`` samples."""
    a, b = a - a.mean(0), b - b.mean(0)
    sa, sb = a.norm(dim=0), b.norm(dim=0)
    return (a.T @ b) / (sa[:, None] * sb[None, :] + 1e-12)


def _activation_matching(gm, sites, sizes, params, x) -> dict[str, torch.Tensor]:
    """Each group's permutation by linear assignment on the correlation of its units'
    activations (averaged over the nodes that carry them: pre- and post-activation, ...)."""
    probe = _Probe(gm, {node for where in sites.values() for node, _ in where})
    own = {f"gm.{k}" for k in (*dict(gm.named_parameters()), *dict(gm.named_buffers()))}
    seen = []
    with torch.no_grad():
        for p in params:
            args = {f"gm.{k}": v for k, v in p.items() if f"gm.{k}" in own}
            seen.append(torch.func.functional_call(probe, args, (x,)))
    inverse = {}
    for group, d in sizes.items():
        corr = torch.zeros(d, d, dtype=torch.float64)
        for node, dim in sites[group]:
            a, b = (s[node].movedim(dim, -1).reshape(-1, d).double() for s in seen)
            corr += _correlation(a, b)
        inverse[group] = torch.from_numpy(linear_sum_assignment(corr.numpy(), maximize=True)[1])
    return inverse


def align(
    spec_or_model: PermutationSpec | nn.Module,
    theta_a: Flat,
    theta_b: Flat,
    *,
    layout: ParamLayout,
    method: Literal["weights", "activations"] = "weights",
    data: Any = None,
    buffers_a: Flat | Mapping[str, torch.Tensor] | None = None,
    buffers_b: Flat | Mapping[str, torch.Tensor] | None = None,
    buffer_layout: BufferLayout | None = None,
    max_iter: int = 100,
    seed: Seed = 0,
) -> Alignment:
    """Find the permutations of B's hidden units that bring it closest to A.

    Args:
        spec_or_model: a :class:`PermutationSpec`, or the model (its spec is derived by
            :func:`~weightspace.between.permutation_spec`, with ``data`` as example input).
        theta_a: A's flat parameters ``(n,)`` (tensor or array).
        theta_b: B's flat parameters ``(n,)``, same layout.
        layout: the parameters' :class:`~weightspace.ParamLayout`.
        method: ``"weights"``: weight matching (Ainsworth et al. 2023, Alg. 1): coordinate
            descent over the groups in a seeded random order, each step a linear assignment
            maximising ``Σ ⟨W_a, P W_b⟩`` over the tensors touching the group, until a sweep
            changes nothing or ``max_iter`` sweeps. ``"activations"``: the correlation of unit
            activations of both networks on ``data`` (eval mode; needs the model).
        data: a batch ``X`` or ``(X, y)``; required by ``"activations"``.
        buffers_a: A's buffers (a flat :class:`~weightspace.BufferLayout` vector or a
            mapping); required by ``"activations"`` when the model has buffers.
        buffers_b: B's buffers, likewise.
        buffer_layout: the buffers' layout (default: the model's), for
            :meth:`Alignment.apply_buffers`.
        max_iter: most sweeps of weight matching.
        seed: the order of the groups: an int, a ``torch.Generator`` or None.

    Returns:
        An :class:`Alignment`; ``apply(theta_b)`` computes the same function as B.

    Raises:
        WeightspaceError: on a bad argument, a spec that does not fit the layout, or a model
            that cannot be traced (one line naming the argument, tensor or module).
    """
    one_of(method, ("weights", "activations"), "method")
    max_iter = positive_int(max_iter, "max_iter")
    a = as_vector(theta_a, layout.numel, "theta_a")
    b = as_vector(theta_b, layout.numel, "theta_b", dtype=a.dtype, device=a.device)
    x = data[0] if isinstance(data, (tuple, list)) else data
    if x is not None and not isinstance(x, torch.Tensor):
        raise WeightspaceError(f"data: expected a tensor X or (X, y), got {type(x).__name__}")
    if isinstance(spec_or_model, nn.Module):
        spec, sites, gm = _derive(spec_or_model, None if x is None else x[:2])
        buffer_layout = buffer_layout or BufferLayout.from_module(spec_or_model)
    elif isinstance(spec_or_model, PermutationSpec):
        spec, sites, gm = spec_or_model, None, None
    else:
        raise WeightspaceError(
            "spec_or_model: expected a PermutationSpec or a torch.nn.Module, got "
            f"{type(spec_or_model).__name__}"
        )
    sizes = spec.validate(layout, buffer_layout)
    rng = numpy_rng(seed)
    meta: dict[str, Any] = {"seed": seed if isinstance(seed, int) else None, "groups": sizes}
    if method == "weights":
        inverse, history, info = _weight_matching(spec, layout, a, b, sizes, max_iter, rng)
        meta.update(info, max_iter=max_iter)
    else:
        params = _activation_inputs(gm, x, layout, (a, b), (buffers_a, buffers_b), buffer_layout)
        inverse = _activation_matching(gm, sites, sizes, params, x.to(a.dtype))
        meta["n_samples"] = int(x.shape[0])
    perms = {g: np.argsort(inverse[g].numpy()) for g in spec.groups}
    result = Alignment(perms, np.zeros(0), method, 0.0, 0.0, spec, layout, buffer_layout, meta)
    aligned = result.apply(b)
    if method == "activations":
        history = np.array([float(a.double() @ b.double()), float(a.double() @ aligned.double())])
    meta["units_moved"] = {g: int((p != np.arange(len(p))).sum()) for g, p in perms.items()}
    before = float(torch.linalg.vector_norm((a - b).double()))
    after = float(torch.linalg.vector_norm((a - aligned).double()))
    log.info("aligned %d groups by %s: distance %.6g -> %.6g", len(perms), method, before, after)
    object.__setattr__(result, "objective_history", history)
    object.__setattr__(result, "distance_before", before)
    object.__setattr__(result, "distance_after", after)
    return result


def _activation_inputs(gm, x, layout, thetas, buffers, buffer_layout) -> list[dict]:
    """Each network's parameters and buffers, keyed for ``functional_call``."""
    if gm is None or x is None:
        raise WeightspaceError(
            "method='activations' needs the model (not only a PermutationSpec) and data=X or "
            "(X, y); pass both, or use method='weights'"
        )
    out = []
    for theta, bufs, what in zip(thetas, buffers, ("buffers_a", "buffers_b")):
        params = dict(layout.unflatten(theta))
        if buffer_layout is not None and buffer_layout.numel:
            if bufs is None:
                raise WeightspaceError(
                    f"{what}: the model has buffers (e.g. BatchNorm statistics) that eval mode "
                    "reads; pass each network's, e.g. BufferLayout.from_module(net).flatten(net)"
                )
            if isinstance(bufs, Mapping):
                bufs = buffer_layout.flatten(bufs)
            flat = as_vector(bufs, buffer_layout.numel, what, dtype=torch.float64)
            params.update(buffer_layout.unflatten(flat, dtype=theta.dtype, device=theta.device))
        out.append(params)
    return out
