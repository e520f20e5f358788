"""The Hessian of an Objective as a linear operator: ``op @ v`` without forming the matrix.

``H v = Σ_b (N_b/N) H_b v`` over the evaluation batches, exactly the weighting of the mean
loss (GradVis and Li et al. sum over batches; hessian-eigenthings averages unweighted).
Products take one route, fixed at construction: forward-over-reverse (``torch.func.jvp`` of
``torch.func.grad``, Pearlmutter 1994; with ``cache``, each batch linearised once by
``torch.func.linearize``) or double backward (with ``cache``, each batch's gradient graph
kept). The operator is pure: the same vector gives the same product (bitwise) on every call
and in any order of calls. Choosing the route, or splitting a first layer off
(:class:`~weightspace.curvature.split.SplitHessianOperator`), is a policy that times things:
it lives in :func:`~weightspace.curvature.plan.plan_hessian`. Products run with
``scaled_dot_product_attention`` on its math backend (:mod:`weightspace._attention`), so they
pass through the attention of transformers; a batch whose linearisation cannot be traced
(data-dependent control flow, e.g. attention-mask code that reads a tensor's value) takes
uncached forward products, and the operator's metadata say so in one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch.func import grad, jvp, vmap

from .._attention import ATTENTION, differentiable_attention
from ..checks import one_of
from ..errors import WeightspaceError
from ..layout import NameFilter
from ..objective import Objective
from ._autodiff import checked_linearize, named_loss, sub_layout, values_of
from .protocol import Operator, check_vectors

__all__ = ["ForwardModeError", "HessianOperator"]

Method = Literal["forward", "double-backward"]
METHODS = ("forward", "double-backward")


class ForwardModeError(WeightspaceError):
    """``method="forward"`` on a model that has no forward-mode AD rule somewhere."""


class HessianOperator(Operator):
    """The Hessian of ``objective`` at ``theta`` as a symmetric ``(m, m)`` linear operator.

    Anything with ``@``, ``.shape``, ``.dtype`` and ``.device`` (a dense ``torch`` matrix
    too) works with :func:`~weightspace.top_eigenpairs`, :func:`~weightspace.spectral_density`
    and :func:`~weightspace.hutchinson_trace`; this is the one that never forms the matrix.
    To let the number of products choose the route (and split a first layer off), use
    :func:`~weightspace.curvature.plan_hessian`.

    Args:
        objective: the mean loss ``θ -> Σ_b (N_b/N)·L_b(θ)``.
        theta: ``(n,)`` point in the objective's layout; default the model's parameters.
        include: restrict to the tensors whose names match this glob pattern, list of
            patterns or predicate (per-layer spectra); the others stay at ``theta``'s
            values. The operator then has ``m < n`` rows, ordered as in the layout.
        dtype: compute dtype (``torch.float64`` for accuracy); default ``theta``'s.
        method: ``"double-backward"`` (default; with ``cache`` each batch's gradient graph
            is kept: cheap to build, works on every model) or ``"forward"``
            (forward-over-reverse; with ``cache`` each batch is linearised once, which costs
            about 15 products on the digits CNN and makes later products 10-35% cheaper;
            see ``benchmarks/results/hessian.txt``). A model without forward-mode AD makes
            ``"forward"`` products raise :class:`ForwardModeError`; a batch whose
            linearisation cannot be traced (or is inconsistent) takes uncached forward
            products instead (:attr:`linearize_note`).
        cache: keep each batch's first pass (graph or linearisation) in memory and reuse it
            for every product; ``False`` recomputes it each time (half the speed).
        vectorize: push the columns of :meth:`matmat` through one ``torch.func.vmap`` of
            forward-over-reverse per batch instead of a loop (forward route only); default
            on CUDA (on CPU the loop is faster). Its products are then those of that batched
            kernel: the same for the same matrix on every call, but a column may differ in
            the last bits from :meth:`matvec` of it. Without it, :meth:`matmat` is
            :meth:`matvec` column by column, bitwise.
        progress: show a progress bar in :meth:`to_dense` (and while a split's columns are
            computed).
        check: evaluate the objective at ``theta`` twice first and raise on a non-finite
            or non-deterministic loss (see :meth:`~weightspace.Objective.check`).

    Attributes:
        shape: ``(m, m)``. dtype, device: of the products. method: the route.
        layout: the :class:`~weightspace.ParamLayout` of the ``m`` coordinates.
        theta: ``(n,)`` the point, in ``dtype``. loss: the objective there (NaN when
            ``check=False``).
        n_matvecs: Hessian-vector products computed so far (a matmat of k columns counts k).
        n_checks: products spent checking each linearisation against a fresh product (3 per
            batch): ``torch.func.linearize`` of some losses is stateful (BCEWithLogitsLoss
            in torch 2.13); such a batch then takes uncached forward products.
        linearize_failed: whether some batch's linearisation failed that check or could
            not be traced (data-dependent control flow, e.g. in attention-mask code).
        linearize_note: one line saying why, for the first such batch (else ``None``;
            ``metadata["hvp_note"]`` records it).
        plan: the decision of :func:`~weightspace.curvature.plan_hessian` when it built
            this operator (recorded in :attr:`metadata`), else ``None``.

    Raises:
        WeightspaceError: bad ``theta``, ``method`` or ``dtype``, an ``include`` that
            matches nothing, a non-finite or non-deterministic loss at ``theta``.

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
        method: Method = "double-backward",
        cache: bool = True,
        vectorize: bool | None = None,
        progress: bool = False,
        check: bool = True,
    ) -> None:
        if not isinstance(objective, Objective):
            raise WeightspaceError(
                f"objective: expected a weightspace Objective, got {type(objective).__name__}; "
                "build one with ws.Objective(problem)"
            )
        self.method: str = one_of(method, METHODS, "method")
        theta = _check_theta(objective, theta)
        dtype = theta.dtype if dtype is None else dtype
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise WeightspaceError(f"dtype: expected a floating torch dtype, got {dtype}")
        self.objective, self.dtype, self.device = objective, dtype, objective.device
        self.theta = theta.detach().to(device=self.device, dtype=dtype).clone()
        self.include = include
        self.layout = sub_layout(objective.layout, include)
        self.shape = (self.layout.numel, self.layout.numel)
        self.cache, self.progress = bool(cache), bool(progress)
        self.vectorize = self.device.type == "cuda" if vectorize is None else bool(vectorize)
        self.n_matvecs = self.n_checks = 0
        self.linearize_failed = False
        self.linearize_note: str | None = None
        self.plan: dict[str, Any] | None = None
        self._u0 = values_of(objective.layout, self.theta, self.layout.names)
        self._products: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}
        at_model = theta is objective.theta0 and dtype == theta.dtype
        if check:  # at the model's own parameters this also compares with the model's loss
            self.loss = float(objective.check(None if at_model else self.theta))
        else:
            self.loss = float("nan")

    # ------------------------------------------------------------------ one batch
    def _loss(self, b: int) -> Callable[[torch.Tensor], torch.Tensor]:
        return named_loss(self.objective, self.theta, b, self.layout.names)

    def _product(self, b: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x -> w_b H_b x`` for batch ``b`` (built once when ``cache``)."""
        if b in self._products:
            return self._products[b]
        product = self._forward(b) if self.method == "forward" else self._double_backward(b)
        if self.cache:
            self._products[b] = product
        return product

    def _forward(self, b: int) -> Callable[[torch.Tensor], torch.Tensor]:
        g = grad(self._loss(b))

        def uncached(x: torch.Tensor) -> torch.Tensor:
            return _forward_mode(lambda: jvp(g, (self._u0,), (x,))[1])

        if not self.cache:
            return uncached
        try:
            product = checked_linearize(g, self._u0, seed=b)
        except Exception as e:  # tracing failed: forward mode itself, or only the trace?
            uncached(torch.zeros_like(self._u0))  # ForwardModeError when forward mode fails
            self.n_checks += 1
            self._linearize_failed(b, f"linearisation failed to trace ({_first_line(e, 160)})")
            return uncached
        self.n_checks += 3
        if product is not None:
            return product
        self._linearize_failed(b, "linearisation inconsistent (stateful loss)")
        return uncached

    def _linearize_failed(self, b: int, why: str) -> None:
        """Batch ``b`` takes uncached forward products; the first reason is kept."""
        if self.linearize_note is None:
            self.linearize_note = f"{why} at batch {b}"
        self.linearize_failed = True

    def _double_backward(self, b: int) -> Callable[[torch.Tensor], torch.Tensor]:
        u = self._u0.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self._loss(b)(u), u, create_graph=True)
        keep = self.cache

        def product(x: torch.Tensor) -> torch.Tensor:
            if not g.requires_grad:  # the loss is linear in u: zero Hessian
                return torch.zeros_like(x)
            (hv,) = torch.autograd.grad(g, u, x, retain_graph=keep, allow_unused=True)
            return torch.zeros_like(x) if hv is None else hv

        return product

    def batch_matvec(self, b: int, v: torch.Tensor) -> torch.Tensor:
        """``(N_b/N)·H_b v``: the term of batch ``b`` in ``H v`` (``v: (m,)``), by the
        operator's route; not counted in :attr:`n_matvecs`."""
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < self.objective.n_batches:
            raise WeightspaceError(
                f"b: expected a batch index in 0..{self.objective.n_batches - 1}, got {b!r}"
            )
        v = check_vectors(v, self.shape[0], 1, "v", dtype=self.dtype, device=self.device)
        with torch.enable_grad(), differentiable_attention():
            return self._product(b)(v).detach()

    # ------------------------------------------------------------------ products
    def _vmapped(self, V: torch.Tensor) -> torch.Tensor:
        """``H V`` through one ``vmap`` of forward-over-reverse per batch (uncached:
        ``torch.func.linearize``'s graph does not always batch)."""
        with torch.enable_grad(), differentiable_attention():
            out = None
            for b in range(self.objective.n_batches):
                g = grad(self._loss(b))
                batched = vmap(lambda x, g=g: jvp(g, (self._u0,), (x,))[1], in_dims=1, out_dims=1)
                hv = _forward_mode(lambda batched=batched: batched(V))
                out = hv if out is None else out + hv
        self.n_matvecs += V.shape[1]
        return out.detach()

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v: (m,)``; returns ``(m,)`` in the operator's dtype and device."""
        v = check_vectors(v, self.shape[0], 1, "v", dtype=self.dtype, device=self.device)
        with torch.enable_grad(), differentiable_attention():
            out = None
            for b in range(self.objective.n_batches):
                hv = self._product(b)(v)
                out = hv if out is None else out + hv
        self.n_matvecs += 1
        return out.detach()

    @property
    def batches_columns(self) -> bool:
        """Whether :meth:`matmat` pushes its columns through one ``vmap`` (``vectorize`` on
        the forward route); otherwise it is :meth:`matvec` column by column."""
        return self.vectorize and self.method == "forward"

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H V`` for ``V: (m, k)``; returns ``(m, k)``: k products per pass over the data."""
        V = check_vectors(V, self.shape[0], 2, "V", dtype=self.dtype, device=self.device)
        if self.batches_columns and V.shape[1] > 1:
            return self._vmapped(V)
        return torch.stack([self.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)

    # ------------------------------------------------------------------ derived operators
    def restrict(self, names: Sequence[str]) -> HessianOperator:
        """The diagonal block ``H_SS`` over the tensors ``names`` (a subset of
        ``layout.names``), same point and settings; the other tensors held at ``theta``."""
        chosen = frozenset(names)
        unknown = sorted(chosen - set(self.layout.names))
        if unknown or not chosen:
            raise WeightspaceError(
                f"names: expected some of the operator's tensors {list(self.layout.names)}, "
                f"got {sorted(chosen) if not unknown else unknown}"
            )
        return self._like(chosen.__contains__, self.method)  # exact names, not globs

    def with_method(self, method: Method) -> HessianOperator:
        """The same operator (point, tensors, settings, :attr:`loss`) by another route."""
        return self._like(self.include, method)

    def _like(self, include: NameFilter, method: Method) -> HessianOperator:
        kw = {"dtype": self.dtype, "cache": self.cache, "vectorize": self.vectorize}
        out = HessianOperator(
            self.objective, self.theta, include=include, method=method, check=False, **kw
        )
        out.progress, out.loss = self.progress, self.loss
        return out

    def release(self) -> None:
        """Drop the cached graphs and linearisations (frees memory; products still work
        and stay the same)."""
        self._products.clear()

    @property
    def metadata(self) -> dict[str, Any]:
        """What a result computed with this operator records about it: the objective's
        metadata, the route and its settings, ``attention`` (how scaled-dot-product
        attention ran in the products) and, when some batch left the linearised route,
        ``hvp_note`` (one line: why)."""
        meta = {
            **self.objective.metadata,
            "operator": "hessian",
            "n": self.shape[0],
            "dtype": str(self.dtype).removeprefix("torch."),
            "hvp_method": self.method,
            "hvp_cache": self.cache,
            "include": None if self.include is None else str(self.include),
            "hvp_split": None,
            "attention": ATTENTION,
            "parameters": list(self.layout.names),
            "loss_at_theta": self.loss,
        }
        if self.linearize_note:
            meta["hvp_note"] = f"{self.linearize_note}: uncached forward products"
        if self.plan is not None:
            meta["hvp_plan"] = self.plan
        return meta

    def __repr__(self) -> str:
        return (
            f"HessianOperator(shape={self.shape}, dtype={self.dtype}, device={self.device}, "
            f"method={self.method!r}, n_matvecs={self.n_matvecs})"
        )


def _check_theta(objective: Objective, theta: torch.Tensor | None) -> torch.Tensor:
    n = objective.layout.numel
    theta = objective.theta0 if theta is None else theta
    if not isinstance(theta, torch.Tensor) or theta.shape != (n,):
        got = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__
        raise WeightspaceError(
            f"theta: expected a flat tensor of shape ({n},) in the objective's layout, got "
            f"{got}; flatten it with objective.layout.flatten(...)"
        )
    return theta


def _forward_mode(fn: Callable[[], Any]) -> Any:
    """``fn()``, with forward-mode AD failures turned into one-line :class:`ForwardModeError`."""
    try:
        return fn()
    except (RuntimeError, NotImplementedError) as e:
        reason = _first_line(e)
        raise ForwardModeError(
            f"method='forward': forward-mode AD failed on this model ({reason}); use "
            "method='double-backward', or plan_hessian, which falls back to it by itself"
        ) from e


def _first_line(e: BaseException, limit: int | None = None) -> str:
    """The first line of an error's message (its type's name when empty); with ``limit``,
    its first sentence, at most ``limit`` characters."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if limit is None:
        return line
    line = re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0]
    return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."
