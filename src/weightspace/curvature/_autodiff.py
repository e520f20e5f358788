"""The differentiable pieces of the Hessian operators: losses of named tensor groups, a
checked ``torch.func.linearize``, and the sub-layout of an ``include`` filter."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence

import torch
from torch.func import jvp, linearize

from ..errors import WeightspaceError
from ..layout import NameFilter, ParamLayout, name_predicate
from ..objective import Objective

log = logging.getLogger(__name__)


def name_matcher(spec: NameFilter) -> Callable[[str], bool]:
    """``name -> bool`` for a glob pattern, a list of patterns, a predicate or None (all);
    the rule of :meth:`ParamLayout.from_module`'s ``include``."""
    return name_predicate(spec)


def sub_layout(layout: ParamLayout, include: NameFilter) -> ParamLayout:
    """The sub-layout of the tensors selected by ``include``, in layout order."""
    if include is None:
        return layout
    keep = name_matcher(include)
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


def values_of(layout: ParamLayout, theta: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """The flat values in ``theta`` (laid out by ``layout``) of the tensors ``names``."""
    if list(names) == list(layout.names):
        return theta
    full = layout.unflatten(theta)
    return torch.cat([full[n].reshape(-1) for n in names])


def named_loss(
    objective: Objective, theta: torch.Tensor, b: int, *groups: Sequence[str]
) -> Callable[..., torch.Tensor]:
    """``(u_1, ..., u_k) -> w_b·L_b``, each ``u_i`` the flat values of the tensors named in
    ``groups[i]``; every other parameter is held at ``theta`` as a constant, so autograd
    skips the work only its derivative would need (e.g. the input gradient of the layer
    above a held layer). ``w_b = N_b/N``: the batch's weight in the mean loss."""
    layout = objective.layout
    fixed = layout.unflatten(theta)
    shapes = dict(zip(layout.names, layout.shapes))
    sizes = [[math.prod(shapes[n]) for n in names] for names in groups]
    w = float(objective.batch_weights[b])

    def loss(*us: torch.Tensor) -> torch.Tensor:
        named = dict(fixed)
        for names, size, u in zip(groups, sizes, us):
            named.update({n: x.view(shapes[n]) for n, x in zip(names, u.split(size))})
        return objective.batch_loss(named, b) * w

    return loss


def checked_linearize(
    fn: Callable[[torch.Tensor], torch.Tensor], primal: torch.Tensor, *, seed: int = 0
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``torch.func.linearize(fn, primal)``'s product, checked twice against a fresh
    ``jvp`` at a random tangent (3 products), or ``None`` when they disagree: the linearised
    graph of some losses is stateful (``BCEWithLogitsLoss`` in torch 2.13 changes its answer
    call by call). Errors of forward-mode AD (a function without a forward rule) propagate.
    """
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
