"""The Hessian of an Objective as a linear operator: ``op @ v`` without forming the matrix.

``H v = Σ_b (N_b/N) H_b v`` over the evaluation batches, exactly the weighting of the mean
loss (GradVis and Li et al. sum over batches; hessian-eigenthings averages unweighted).
Products are forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``, Pearlmutter
1994) or double backward. Both reuse each batch's first pass: the gradient graph is kept
(cheap to build) and, once enough products were asked for to pay for tracing it, each
batch is linearised with ``torch.func.linearize`` (cheaper products; see
``benchmarks/results/hessian.txt``). Modules without forward-mode support stay on double
backward. When many products are announced, a small first layer can be split off
(:mod:`weightspace.curvature.split`): its columns are computed once and each product then
differentiates only the other tensors.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch.func import grad, jvp, linearize, vmap

from ..errors import WeightspaceError
from ..layout import NameFilter, ParamLayout, _name_predicate
from ..objective import Objective
from . import split as _split
from .split import BlockSplit

log = logging.getLogger(__name__)

Method = Literal["auto", "forward", "double-backward"]
METHODS = ("auto", "forward", "double-backward")


class HessianOperator:
    """The Hessian of ``objective`` at ``theta`` as a symmetric ``(m, m)`` linear operator.

    Anything with ``@``, ``.shape``, ``.dtype`` and ``.device`` (a dense ``torch`` matrix
    too) works with :func:`~weightspace.top_eigenpairs`, :func:`~weightspace.spectral_density`
    and :func:`~weightspace.hutchinson_trace`; this is the one that never forms the matrix.

    Args:
        objective: the mean loss ``θ -> Σ_b (N_b/N)·L_b(θ)``.
        theta: ``(n,)`` point in the objective's layout; default the model's parameters.
        include: restrict to the tensors whose names match this glob pattern, list of
            patterns or predicate (per-layer spectra); the others stay at ``theta``'s
            values. The operator then has ``m < n`` rows, ordered as in the layout.
        dtype: compute dtype (``torch.float64`` for accuracy); default ``theta``'s.
        method: ``"forward"`` (forward-over-reverse; with ``cache``, each batch linearised
            once by ``torch.func.linearize``), ``"double-backward"`` (with ``cache``, each
            batch's gradient graph kept), or ``"auto"``: the kept gradient graph for the first
            ``linearize_after`` products (or until :meth:`expect` announces at least as many),
            then linearised forward-over-reverse (on the digits CNN tracing
            costs about 15 products and later products are 10-35% cheaper; see
            ``benchmarks/results/hessian.txt``), falling back to double backward for modules
            without forward-mode AD. Without ``cache``, ``"auto"`` is forward-over-reverse.
        cache: keep each batch's first pass (graph or linearisation) in memory and reuse it
            for every product; ``False`` recomputes it each time (half the speed).
        linearize_after: products before ``"auto"`` linearises (see ``method``).
        vectorize: in :meth:`matmat`, push all columns through one ``torch.func.vmap``
            pass instead of a loop; default on CUDA only (on CPU the loop is faster).
        split: split a block of tensors ``B`` off the products
            (:mod:`weightspace.curvature.split`): compute the columns ``H[:, B]`` once (one
            product per coordinate), then differentiate only the other tensors in every
            product; exact, and cheaper when ``B`` is small but costly to differentiate (a
            first layer: it skips the input gradient of the layer above). ``"auto"``: the
            tensors of the first module of the forward pass, when the products announced by
            :meth:`expect` pay for the columns at the measured cost of one product each way
            (SLQ on the digits CNN: yes; a few dozen products: never) and the ``(m, b)``
            columns fit in 1 GiB; a name pattern, list or predicate: that block, always;
            ``None``: never.
        progress: show a progress bar while the split's columns are computed.
        check: evaluate the objective at ``theta`` twice first and raise on a non-finite
            or non-deterministic loss (see :meth:`~weightspace.Objective.check`).

    Attributes:
        shape: ``(m, m)``. dtype, device: of the products.
        layout: the :class:`~weightspace.ParamLayout` of the ``m`` coordinates.
        loss: the objective at ``theta`` (NaN when ``check=False``).
        n_matvecs: Hessian-vector products computed so far (a matmat of k columns counts k).
        n_checks: products spent checking each linearisation against a fresh product (3 per
            batch): ``torch.func.linearize`` of some losses is stateful (BCEWithLogitsLoss
            in torch 2.13); a failed check falls back to an uncached route. Also the products
            spent timing an automatic ``split``.
        split: the names of the tensors split off (see ``split`` above), or ``None``.

    Raises:
        WeightspaceError: bad ``theta``, an ``include`` that matches nothing, a ``split``
            that matches none or all of its tensors, a non-finite or non-deterministic loss at
            ``theta``.

    Example:
        >>> import weightspace as ws
        >>> X = torch.randn(10, 3, dtype=torch.float64)
        >>> y = torch.randn(10, dtype=torch.float64)
        >>> model = torch.nn.Linear(3, 1, bias=False).double()
        >>> loss = lambda out, t: ((out[:, 0] - t) ** 2).mean()
        >>> op = HessianOperator(ws.Objective(ws.Problem(model, loss, (X, y))))
        >>> bool(torch.allclose(op.to_dense(), 2 * X.T @ X / 10))
        True
    """

    def __init__(
        self,
        objective: Objective,
        theta: torch.Tensor | None = None,
        *,
        include: NameFilter = None,
        dtype: torch.dtype | None = None,
        method: Method = "auto",
        cache: bool = True,
        linearize_after: int = 128,
        vectorize: bool | None = None,
        split: NameFilter | Literal["auto"] = "auto",
        progress: bool = False,
        check: bool = True,
    ) -> None:
        if not isinstance(objective, Objective):
            raise WeightspaceError(
                f"objective: expected a weightspace Objective, got {type(objective).__name__}; "
                "build one with ws.Objective(problem)"
            )
        if method not in METHODS:
            raise WeightspaceError(f"method: expected one of {METHODS}, got {method!r}")
        if isinstance(linearize_after, bool) or not isinstance(linearize_after, int):
            raise WeightspaceError(f"linearize_after: expected an integer, got {linearize_after!r}")
        n = objective.layout.numel
        theta = objective.theta0 if theta is None else theta
        if not isinstance(theta, torch.Tensor) or theta.shape != (n,):
            got = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__
            raise WeightspaceError(
                f"theta: expected a flat tensor of shape ({n},) in the objective's layout, got "
                f"{got}; flatten it with objective.layout.flatten(...)"
            )
        dtype = theta.dtype if dtype is None else dtype
        if not dtype.is_floating_point:
            raise WeightspaceError(f"dtype: expected a floating dtype, got {dtype}")
        self.objective = objective
        self.dtype = dtype
        self.device = objective.device
        self.theta = theta.detach().to(device=self.device, dtype=dtype).clone()
        self.layout = _subset(objective.layout, include)
        self.include = include
        m = self.layout.numel
        self.shape = (m, m)
        self.cache = bool(cache)
        self.vectorize = self.device.type == "cuda" if vectorize is None else bool(vectorize)
        self.n_matvecs = 0
        self.n_checks = 0
        self.progress = bool(progress)
        self._split: BlockSplit | None = None
        self._split_spec = split
        self._auto_block: tuple[str, ...] | None = None
        self._split_block = None if split in ("auto", None) else _split.named_block(self, split)
        self._split_decided = split is None
        self.linearize_after = int(linearize_after)
        self._linearize_failed = self._forward_failed = False
        self._method, self._route = method, "auto"
        self._expected = 0
        self._u0 = self._values(self.layout.names)
        self._weights = [float(w) for w in objective.batch_weights]
        self._graphs: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}
        self._linear: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}
        at_model = theta is objective.theta0 and dtype == theta.dtype
        if check:  # at the model's own parameters this also compares with the model's loss
            self.loss = float(objective.check(None if at_model else self.theta))
        else:
            self.loss = float("nan")

    # ------------------------------------------------------------------ coordinates
    def _values(self, names: Sequence[str]) -> torch.Tensor:
        """The flat values at ``theta`` of the tensors ``names``, in that order."""
        if list(names) == list(self.objective.layout.names):
            return self.theta
        full = self.objective.layout.unflatten(self.theta)
        return torch.cat([full[n].reshape(-1) for n in names])

    def _named_loss(self, b: int, *groups: Sequence[str]) -> Callable[..., torch.Tensor]:
        """``(u_1, ..., u_k) -> w_b·L_b``, each ``u_i`` the flat values of the tensors named in
        ``groups[i]``; every other parameter is held at ``theta`` as a constant, so autograd
        skips the work only its derivative would need (e.g. the input gradient of the layer
        above a held layer)."""
        layout = self.objective.layout
        fixed = layout.unflatten(self.theta)
        shapes = dict(zip(layout.names, layout.shapes))
        sizes = [[math.prod(shapes[n]) for n in names] for names in groups]
        w = self._weights[b]

        def loss(*us: torch.Tensor) -> torch.Tensor:
            named = dict(fixed)
            for names, size, u in zip(groups, sizes, us):
                named.update({n: x.view(shapes[n]) for n, x in zip(names, u.split(size))})
            return self.objective.batch_loss(named, b) * w

        return loss

    def _loss(self, b: int) -> Callable[[torch.Tensor], torch.Tensor]:
        return self._named_loss(b, self.layout.names)

    # ------------------------------------------------------------------ products
    @property
    def method(self) -> str:
        """The route of the latest product: ``"forward"`` or ``"double-backward"``
        (``"auto"`` before the first product)."""
        return self._route

    def _batch_hvp(self, b: int, v: torch.Tensor) -> torch.Tensor:
        if self._method == "double-backward":
            return self._double_backward(b, v)
        if self._method == "forward":
            return self._forward(b, v)
        # auto: with a cache, keep the gradient graph (cheap to build) until enough products
        # were asked for to pay for tracing a linearisation; without one, forward-over-reverse
        planned = max(self.n_matvecs, self._expected)
        wants_forward = not self.cache or planned >= self.linearize_after
        if wants_forward and not self._forward_failed:
            try:
                return self._forward(b, v)
            except (RuntimeError, NotImplementedError) as e:
                log.warning("forward-mode AD failed (%s); using double backward", e)
                self._forward_failed = True
        return self._double_backward(b, v)

    def _forward(self, b: int, v: torch.Tensor) -> torch.Tensor:
        self._route = "forward"
        if not self.cache or self._linearize_failed:
            return jvp(grad(self._loss(b)), (self._u0,), (v,))[1]
        if b not in self._linear:
            product = checked_linearize(grad(self._loss(b)), self._u0, seed=b)
            self.n_checks += 3
            if product is None:
                self._linearize_failed = True
                if self._method == "auto":  # the kept gradient graph is the faster fallback
                    self._forward_failed = True
                    return self._double_backward(b, v)
                return jvp(grad(self._loss(b)), (self._u0,), (v,))[1]
            self._linear[b] = product
            self._graphs.pop(b, None)  # free the gradient graph this replaces
        return self._linear[b](v)

    def _double_backward(self, b: int, v: torch.Tensor) -> torch.Tensor:
        self._route = "double-backward"
        if b in self._graphs:
            return self._graphs[b](v)
        u = self._u0.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self._loss(b)(u), u, create_graph=True)

        def product(x: torch.Tensor) -> torch.Tensor:
            if not g.requires_grad:  # the loss is linear in u: zero Hessian
                return torch.zeros_like(x)
            (hv,) = torch.autograd.grad(g, u, x, retain_graph=self.cache, allow_unused=True)
            return torch.zeros_like(x) if hv is None else hv

        if self.cache:
            self._graphs[b] = product
        return product(v)

    def _check_input(self, x: Any, ndim: int, what: str) -> torch.Tensor:
        m = self.shape[0]
        if not isinstance(x, torch.Tensor) or x.ndim != ndim or x.shape[0] != m:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            want = f"({m},)" if ndim == 1 else f"({m}, k)"
            raise WeightspaceError(f"{what}: expected a tensor of shape {want}, got {got}")
        return x.detach().to(device=self.device, dtype=self.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v: (m,)``; returns ``(m,)`` in the operator's dtype and device."""
        v = self._check_input(v, 1, "v")
        if self._prepare_split():
            return self._split_product(v[:, None])[:, 0]
        with torch.enable_grad():
            out = None
            for b in range(len(self._weights)):
                hv = self._batch_hvp(b, v)
                out = hv if out is None else out + hv
        self.n_matvecs += 1
        return out.detach()

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H V`` for ``V: (m, k)``; returns ``(m, k)``: k products per pass over the data."""
        V = self._check_input(V, 2, "V")
        if self._prepare_split():
            return self._split_product(V)
        k = V.shape[1]
        if not self.vectorize or k == 1 or self._method == "double-backward":
            return torch.stack([self.matvec(V[:, j]) for j in range(k)], dim=1)
        self._route = "forward"
        with torch.enable_grad():
            out = None
            for b in range(len(self._weights)):
                fn = grad(self._loss(b))
                hv = vmap(lambda x, fn=fn: jvp(fn, (self._u0,), (x,))[1], in_dims=1, out_dims=1)(V)
                out = hv if out is None else out + hv
        self.n_matvecs += k
        return out.detach()

    # ------------------------------------------------------------------ split
    def _prepare_split(self) -> bool:
        """Decide (once) whether to split a block off, build it if so; True when split."""
        if not self._split_decided:
            self._split_decided, self._split = _split.plan(self)
        return self._split is not None

    def _split_product(self, V: torch.Tensor) -> torch.Tensor:
        out = self._split.matmat(V)
        self._route = self._split.rest.method
        self.n_matvecs += V.shape[1]
        return out

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.ndim == 2:
            return self.matmat(x)
        return self.matvec(x)

    def to_dense(self, chunk: int = 64) -> torch.Tensor:
        """The full ``(m, m)`` matrix, ``chunk`` columns at a time (small ``m`` only)."""
        m = self.shape[0]
        eye = torch.eye(m, dtype=self.dtype, device=self.device)
        cols = [self.matmat(eye[:, a : a + chunk]) for a in range(0, m, chunk)]
        return torch.cat(cols, dim=1)

    def expect(self, n_products: int) -> None:
        """Announce ``n_products`` coming products (SLQ, trace): ``"auto"`` then linearises
        from the first one when they are enough to pay for it (``>= linearize_after``)."""
        self._expected = self.n_matvecs + int(n_products)

    def release(self) -> None:
        """Drop the cached graphs and linearisations (frees memory; products still work;
        a split keeps its columns)."""
        self._graphs.clear()
        self._linear.clear()
        if self._split is not None:
            self._split.rest.release()

    @property
    def split(self) -> tuple[str, ...] | None:
        """The names of the tensors split off the products, or ``None``."""
        return None if self._split is None else self._split.block

    @property
    def metadata(self) -> dict[str, Any]:
        """What a result computed with this operator records about it."""
        return {
            **self.objective.metadata,
            "operator": "hessian",
            "n": self.shape[0],
            "dtype": str(self.dtype).removeprefix("torch."),
            "hvp_method": self._method,
            "hvp_route": self._route,
            "include": None if self.include is None else str(self.include),
            "hvp_split": None if self._split is None else list(self._split.block),
            "parameters": list(self.layout.names),
            "loss_at_theta": self.loss,
        }

    def __repr__(self) -> str:
        return (
            f"HessianOperator(shape={self.shape}, dtype={self.dtype}, device={self.device}, "
            f"method={self._method!r}, n_matvecs={self.n_matvecs})"
        )


def checked_linearize(
    fn: Callable[[torch.Tensor], torch.Tensor], primal: torch.Tensor, *, seed: int = 0
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``torch.func.linearize(fn, primal)``'s product, checked twice against a fresh
    ``jvp`` at a random tangent (3 products), or ``None`` when they disagree: the linearised
    graph of some losses is stateful (``BCEWithLogitsLoss`` in torch 2.13 changes its answer
    call by call)."""
    with warnings.catch_warnings():  # torch's tracing notes, not the user's business
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        _, product = linearize(fn, primal)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(primal.shape, generator=g, dtype=torch.float64).to(primal)
    ref = jvp(fn, (primal,), (x,))[1]
    tol = 1e4 * torch.finfo(primal.dtype).eps * float(ref.abs().max()) + 1e-30
    if all(float((product(x) - ref).abs().max()) <= tol for _ in range(2)):
        return product
    log.warning(
        "torch.func.linearize gave inconsistent products for this model and loss; not caching it"
    )
    return None


def _subset(layout: ParamLayout, include: NameFilter) -> ParamLayout:
    """The sub-layout of the tensors selected by ``include``, in layout order."""
    if include is None:
        return layout
    keep = _name_predicate(include)
    chosen = [keep(name) for name in layout.names]
    if not any(chosen):
        shown = ", ".join(layout.names[:4]) + (", ..." if len(layout.names) > 4 else "")
        raise WeightspaceError(
            f"include={include!r} matched no parameter of the layout ({shown}); check the "
            "pattern against model.named_parameters()"
        )
    return ParamLayout(
        tuple(n for n, c in zip(layout.names, chosen) if c),
        tuple(s for s, c in zip(layout.shapes, chosen) if c),
        layout.dtype,
    )
