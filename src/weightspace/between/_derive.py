"""Deriving a :class:`~weightspace.between._spec.PermutationSpec` from a model with ``torch.fx``.

The model is traced, shapes are propagated on an example input, and each hidden dimension's
units are followed through elementwise ops, pools, reshapes, residual sums and normalisations
to every tensor axis they index; a graph where that is ambiguous is refused on one line naming
the module.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from ..errors import WeightspaceError, first_line
from ._spec import PermutationSpec

__all__ = ["permutation_spec"]

_OPS = __import__("operator")
F = nn.functional
_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU)
_ELEMENTWISE_MODULES += (nn.SiLU, nn.Mish, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Tanh)
_ELEMENTWISE_MODULES += (nn.Hardsigmoid, nn.Sigmoid, nn.Identity, nn.Dropout, nn.Dropout1d)
_ELEMENTWISE_MODULES += (nn.Dropout2d, nn.AlphaDropout, nn.Softmax, nn.LogSoftmax, nn.Softmin)
_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d)
_POOL_MODULES += (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
_ELEMENTWISE = {F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish}
_ELEMENTWISE |= {F.softplus, F.hardtanh, F.hardswish, F.hardsigmoid, F.sigmoid, F.tanh}
_ELEMENTWISE |= {torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.abs, torch.neg}
_ELEMENTWISE |= {F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout, torch.clamp, _OPS.neg}
_ELEMENTWISE |= {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, abs}
_ELEMENTWISE |= {"relu", "sigmoid", "tanh", "exp", "abs", "neg", "clamp", "softmax"}
_ELEMENTWISE |= {"log_softmax", "contiguous", "clone", "detach", "float", "double", "to"}
_POOLS = {F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d}
_POOLS |= {F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d}
_BINARY = {_OPS.add, _OPS.sub, _OPS.mul, _OPS.truediv, _OPS.iadd, _OPS.imul, torch.add}
_BINARY |= {torch.sub, torch.mul, torch.div, "add", "sub", "mul", "div", "add_", "mul_"}
_RESHAPES = {torch.flatten, torch.reshape, "view", "reshape", "flatten", "unflatten"}
_REDUCTIONS = {torch.mean, torch.sum, torch.amax, "mean", "sum", "amax"}
_SCALARS = {"size", "dim", getattr}
_SCALAR, _FIXED = "scalar", 0  # group 0: input features and output logits, never permuted


@dataclass(frozen=True)
class _Perm:
    """A tensor whose axis ``dim`` holds the units of group ``gid`` (in blocks of ``block``);
    ``dim`` is non-negative once the tensor's rank is known, else as the layer gave it."""

    gid: int
    dim: int
    block: int


@dataclass(frozen=True)
class _Param:
    """A parameter read directly (``get_attr``), or computed from one elementwise."""

    name: str


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if hasattr(meta, "shape") else None


def _arg(n: fx.Node, i: int, key: str, default: Any = None) -> Any:
    if key in n.kwargs:
        return n.kwargs[key]
    return n.args[i] if len(n.args) > i else default


def _reshape_dim(ins: tuple, outs: tuple, d: int, block: int) -> tuple[int, int] | None:
    """Where the units of axis ``d`` land after a reshape ``ins -> outs``, and their new block;
    None when the reshape mixes them (the unit axis must stay outermost in a merged axis)."""
    for j in range(len(outs)):
        if math.prod(outs[:j]) == math.prod(ins[:d]):
            for k in range(d + 1, len(ins) + 1):
                if math.prod(ins[d:k]) == outs[j]:
                    return j, block * outs[j] // ins[d]
    return None


class _Tracer:
    """Walks an fx graph once, giving each produced hidden dim a group and uniting groups that
    must share a permutation (residual sums, reused layers, input and output features)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm, self.parent, self.names, self.entries = gm, [0], ["fixed"], [[]]
        self.owner: dict[tuple[str, str, int], int] = {}
        self.sites: list[tuple[str, int, int]] = []  # (node name, gid, dim) for activations
        self.state: dict[fx.Node, Any] = {}

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = g = self.parent[self.parent[g]]
        return g

    def union(self, a: int, b: int) -> None:
        a, b = sorted((self.find(a), self.find(b)))
        self.parent[b] = a

    def add(self, g: int, kind: str, name: str | None, axis: int, block: int = 1) -> None:
        if name is None:
            return
        key = (kind, name, axis)
        if key in self.owner:  # a layer used twice: both uses share one permutation
            self.union(g, self.owner[key])
            return
        self.owner[key] = g
        self.entries[g].append((kind, name, axis, block))

    def error(self, n: fx.Node, why: str, fix: str = "pass an explicit PermutationSpec") -> Any:
        what = type(self.gm.get_submodule(n.target)).__name__ if n.op == "call_module" else n.op
        target = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", n)
        return WeightspaceError(f"permutation_spec: {what} {target!r} (node {n.name}) {why}; {fix}")

    def same(self, n: fx.Node, x: _Perm, want: int, ndim: int | None) -> bool:
        d, w = (x.dim % ndim, want % ndim) if ndim else (x.dim, want)
        if (d < 0) != (w < 0):
            raise self.error(n, "needs tensor shapes", "pass example_input to permutation_spec")
        return d == w

    def rank(self, n: Any) -> int | None:
        shape = _shape(n)
        return None if shape is None else len(shape)

    # -------------------------------------------------------------------------- layers
    def consume(self, n: fx.Node, x: Any, weight: str, axis: int, want: int) -> None:
        """A layer reads units of ``x`` along ``want`` into ``weight``'s ``axis``."""
        if isinstance(x, _Param):
            raise self.error(n, "reads a computed parameter")
        if isinstance(x, _Perm):
            if not self.same(n, x, want, self.rank(n.args[0])):
                raise self.error(n, "acts on an axis other than the permuted one")
            self.add(x.gid, "param", weight, axis, x.block)

    def produce(self, n: fx.Node, name: str, params: list, dim: int) -> _Perm:
        g = len(self.parent)
        self.parent.append(g)
        self.names.append(f"P_{name}")
        self.entries.append([])
        for p in params:
            self.add(g, "param", p, 0)
        ndim = self.rank(n)
        return _Perm(g, dim % ndim if ndim else dim, 1)

    def channels(self, n: fx.Node, x: Any, params: list, buffers: list = ()) -> Any:
        """BatchNorm, GroupNorm, PReLU: per-channel tensors on axis 1 follow the units."""
        if isinstance(x, _Perm):
            if not self.same(n, x, 1, self.rank(n.args[0])):
                raise self.error(n, "normalises an axis other than the permuted one")
            for p in params:
                self.add(x.gid, "param", p, 0, x.block)
            for b in buffers:
                self.add(x.gid, "buffer", b, 0, x.block)
        return x

    def layer_norm(self, n: fx.Node, x: Any, normalized: Sequence[int], params: list) -> Any:
        if isinstance(x, _Perm):
            ndim = self.rank(n.args[0])
            right = x.dim - ndim if ndim and x.dim >= 0 else x.dim
            if right >= 0:
                raise self.error(n, "needs tensor shapes", "pass example_input")
            if -right <= len(normalized):  # the units are among the normalised axes
                for p in params:
                    self.add(x.gid, "param", p, len(normalized) + right, x.block)
        return x

    def conv(self, n: fx.Node, x: Any, name: str, groups: int, params: list) -> Any:
        weight = self.gm.get_parameter(params[0])
        if groups == 1:
            self.consume(n, x, params[0], 1, want=1)
            return self.produce(n, name, params, 1)
        if groups == weight.shape[0] and weight.shape[1] == 1:  # depthwise: units kept
            return self.channels(n, x, params)
        if isinstance(x, _Perm):
            raise self.error(n, "is a grouped convolution")
        return None

    def module(self, n: fx.Node, mod: nn.Module, x: Any) -> Any:
        t = n.target
        own = [f"{t}.{p}" for p, v in mod.named_parameters(recurse=False) if v is not None]
        if isinstance(mod, nn.Linear):
            self.consume(n, x, f"{t}.weight", 1, want=-1)
            return self.produce(n, t, own, -1)
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            return self.conv(n, x, t, mod.groups, [f"{t}.weight", *own[1:]])
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            stats = (
                [f"{t}.running_mean", f"{t}.running_var"] if mod.running_mean is not None else []
            )
            return self.channels(n, x, own, stats)
        if isinstance(mod, nn.LayerNorm):
            return self.layer_norm(n, x, mod.normalized_shape, own)
        if isinstance(mod, nn.GroupNorm) and mod.num_groups in (1, mod.num_channels):
            return self.channels(n, x, own)
        if isinstance(mod, _ELEMENTWISE_MODULES):
            return x
        if isinstance(mod, nn.PReLU):
            return self.channels(n, x, own if mod.num_parameters > 1 else [])
        if isinstance(mod, _POOL_MODULES):
            return self.channels(n, x, [])
        if isinstance(mod, (nn.Flatten, nn.Unflatten)):
            return self.reshape(n, x)
        return self.unknown(n)

    # -------------------------------------------------------------------------- functions
    def param(self, n: fx.Node, i: int, key: str) -> str | None:
        a = _arg(n, i, key)
        if a is None or (isinstance(a, fx.Node) and a.op == "get_attr"):
            return None if a is None else a.target
        raise self.error(n, f"takes a computed {key}, not a parameter")

    def function(self, n: fx.Node, x: Any) -> Any:
        t = n.target
        if t in _SCALARS:
            return _SCALAR
        if t in _ELEMENTWISE:
            return x
        if t in _BINARY:
            return self.binary(n)
        if t in _POOLS:
            return self.channels(n, x, [])
        if t in _RESHAPES:
            return self.reshape(n, x)
        if t in _REDUCTIONS:
            return self.reduce(n, x)
        if t is F.linear:
            w = self.param(n, 1, "weight")
            self.consume(n, x, w, 1, want=-1)
            return self.produce(n, w.removesuffix(".weight"), [w, self.param(n, 2, "bias")], -1)
        if t in (F.conv1d, F.conv2d):
            w, groups = self.param(n, 1, "weight"), _arg(n, 6, "groups", 1)
            return self.conv(n, x, w.removesuffix(".weight"), groups, [w, self.param(n, 2, "bias")])
        if t is F.batch_norm:
            stats = [self.param(n, 1, "running_mean"), self.param(n, 2, "running_var")]
            return self.channels(
                n, x, [self.param(n, 3, "weight"), self.param(n, 4, "bias")], stats
            )
        if t is F.layer_norm:
            params = [self.param(n, 2, "weight"), self.param(n, 3, "bias")]
            return self.layer_norm(n, x, _arg(n, 1, "normalized_shape"), params)
        return self.unknown(n)

    def unknown(self, n: fx.Node) -> Any:
        if any(isinstance(self.state[a], _Perm) for a in n.all_input_nodes):
            mod = self.gm.get_submodule(n.target) if n.op == "call_module" else None
            attention = "Attention" in type(mod).__name__
            raise self.error(
                n, f"is {'attention' if attention else 'not supported'} on a hidden dimension"
            )
        return None

    def binary(self, n: fx.Node) -> Any:
        ops = [(a, self.state[a]) for a in n.all_input_nodes if self.state[a] is not _SCALAR]
        perms = [(a, s) for a, s in ops if isinstance(s, _Perm)]
        if not perms:
            return None
        if any(isinstance(s, _Param) for _, s in ops):
            raise self.error(n, "combines a parameter with a permutable hidden dimension")

        def key(a: fx.Node, s: _Perm) -> tuple[int, int]:
            ndim = self.rank(a)
            return (s.dim - ndim if ndim and s.dim >= 0 else s.dim), s.block

        first = key(*perms[0])
        for a, s in perms[1:]:
            if key(a, s) != first:
                raise self.error(n, "combines tensors permuted along different axes")
            self.union(perms[0][1].gid, s.gid)
        for a, s in ops:  # an unpermuted operand that does not broadcast fixes the units
            shape = _shape(a)
            if s is None and not (shape and (len(shape) < -first[0] or shape[first[0]] == 1)):
                self.union(perms[0][1].gid, _FIXED)
        ndim = self.rank(n)
        dim = first[0] % ndim if ndim and first[0] < 0 else perms[0][1].dim
        return _Perm(perms[0][1].gid, dim, first[1])

    def reshape(self, n: fx.Node, x: Any) -> Any:
        if not isinstance(x, _Perm):
            return x
        ins, outs = _shape(n.args[0]), _shape(n)
        if ins is None or outs is None or x.dim < 0:
            raise self.error(n, "reshapes hidden units", "pass example_input to permutation_spec")
        landed = _reshape_dim(ins, outs, x.dim, x.block)
        if landed is None:
            raise self.error(n, "is a reshape that mixes the units of a hidden dimension")
        return _Perm(x.gid, *landed)

    def reduce(self, n: fx.Node, x: Any) -> Any:
        dims, keep = _arg(n, 1, "dim"), _arg(n, 2, "keepdim", False)
        if not isinstance(x, _Perm) or dims is None:  # a sum over all units is invariant
            return None if dims is None else x
        ndim = self.rank(n.args[0])
        dims = [dims] if isinstance(dims, int) else list(dims)
        if ndim is None and (x.dim < 0 or any(d < 0 for d in dims)):
            raise self.error(n, "needs tensor shapes", "pass example_input to permutation_spec")
        dims = [d % ndim if ndim else d for d in dims]
        if x.dim in dims:
            return None
        return _Perm(x.gid, x.dim - (0 if keep else sum(d < x.dim for d in dims)), x.block)

    # -------------------------------------------------------------------------- the walk
    def run(self) -> tuple[PermutationSpec, dict[str, list[tuple[str, int]]]]:
        for n in self.gm.graph.nodes:
            x = self.state.get(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else None
            if n.op == "get_attr":
                s = _Param(n.target)
            elif n.op == "call_module":
                s = self.module(n, self.gm.get_submodule(n.target), x)
            elif n.op in ("call_function", "call_method"):
                s = self.function(n, x)
            else:  # placeholder (input features) or output (logits): never permuted
                s = None
                for a in n.all_input_nodes if n.op == "output" else ():
                    if isinstance(self.state[a], _Perm):
                        self.union(self.state[a].gid, _FIXED)
            self.state[n] = s
            if isinstance(s, _Perm) and s.block == 1:
                self.sites.append((n.name, s.gid, s.dim))
        return self.assemble()

    def assemble(self) -> tuple[PermutationSpec, dict[str, list[tuple[str, int]]]]:
        roots = {g: self.find(g) for g in range(len(self.parent))}
        axes: dict[str, list] = {}
        buffers: dict[str, list] = {}
        for g, root in roots.items():
            if root != _FIXED:
                name = self.names[root]
                for kind, tensor, axis, block in self.entries[g]:
                    table = axes if kind == "param" else buffers
                    table.setdefault(name, []).append((tensor, axis, block))
        sites: dict[str, list[tuple[str, int]]] = {}
        for node, g, dim in self.sites:
            if roots[g] != _FIXED and self.names[roots[g]] in axes:
                sites.setdefault(self.names[roots[g]], []).append((node, dim))
        return PermutationSpec(axes, buffers), sites


def permutation_spec(model: nn.Module, example_input: Any = None) -> PermutationSpec:
    """Derive a model's :class:`PermutationSpec` by ``torch.fx`` symbolic tracing.

    Supported: ``nn.Linear``, ``nn.Conv1d/2d`` (plain and depthwise), ``nn.BatchNorm1d/2d``,
    ``nn.LayerNorm``, ``nn.GroupNorm`` (1 or C groups), elementwise activations, dropout and
    softmax, pooling, flatten/view/reshape that keep the units outermost, mean/sum over axes,
    their functional forms (``F.linear``, ``F.conv2d``, ``F.batch_norm``, ``F.layer_norm``,
    ``F.relu``, ...), and residual ``+`` or gating ``*`` (both operands share one permutation).
    The input features and the output logits are never permuted; a residual sum with the
    input fixes the units it touches.

    Args:
        model: the network (deep-copied, never changed).
        example_input: a batch (or a tuple of arguments) for shape propagation
            (``torch.fx.passes.shape_prop.ShapeProp``); needed when a conv's channels are
            flattened into a Linear (the Linear's inputs then move in blocks of the spatial
            size) or when a rule must know a tensor's rank. Optional for plain MLPs.

    Returns:
        The spec; each group is named ``P_<layer that produces its units>``.

    Raises:
        WeightspaceError: on one line naming the fx node (module) that is unsupported or
            ambiguous: attention, a reshape that mixes units, an unknown layer on a hidden
            dimension.
    """
    return _derive(model, example_input)[0]


def _derive(model: nn.Module, example_input: Any) -> tuple[PermutationSpec, dict, fx.GraphModule]:
    """The spec, each group's activation sites ``[(node name, unit axis)]`` and the traced
    copy of the model (in eval mode)."""
    if not isinstance(model, nn.Module):
        raise WeightspaceError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    try:
        gm = fx.symbolic_trace(copy.deepcopy(model)).eval()
    except Exception as e:
        raise WeightspaceError(
            f"permutation_spec: torch.fx cannot trace {type(model).__name__} ({first_line(e)}); "
            "pass an explicit PermutationSpec"
        ) from None
    if example_input is not None:
        from torch.fx.passes.shape_prop import ShapeProp

        args = example_input if isinstance(example_input, tuple) else (example_input,)
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(*args)
        except Exception as e:
            raise WeightspaceError(
                f"example_input: the model fails on it ({first_line(e)}); pass a batch that "
                "the model accepts"
            ) from None
    spec, sites = _Tracer(gm).run()
    return spec, sites, gm
