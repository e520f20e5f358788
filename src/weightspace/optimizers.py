"""Optimizer settings in one canonical form, and the stability threshold they imply.

Runs reach weightspace from its own loop (``"sgd"``), from callbacks that see optimizer
objects (``torch.optim.SGD``, wrapped by Lightning or Accelerate) and from users' metadata
(``"SGD"``, ``"AdamW"``). :func:`optimizer_settings` reads an optimizer object and
:func:`normalize_metadata` a run's metadata into one form: a lower-case ``optimizer`` name and
the hyper-parameters of its first parameter group (``lr``, ``momentum``, ``dampening``,
``nesterov``, ``betas``, ``weight_decay``, ``eps``), with ``param_groups`` listing every group
when there are several.

:func:`stability` turns them into the edge of stability of the update on a quadratic with
curvature λ (Cohen et al. 2021): the iteration diverges once ``λ·lr`` exceeds

* ``2`` for plain gradient descent,
* ``(2 + 2β) / (1 − τ)`` for heavy-ball momentum ``β`` with dampening ``τ`` (PyTorch's SGD),
* ``(2 + 2β) / (1 + 2β)`` for Nesterov momentum,

minus ``weight_decay·lr`` for SGD's coupled L2 weight decay (it adds ``weight_decay`` to every
curvature). Adaptive methods (Adam, AdamW, RMSprop, ...) precondition the gradient, so ``λ·lr``
of the raw Hessian has no classical threshold; they get none, with the reason.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Stability", "canonical_name", "normalize_metadata", "optimizer_settings", "stability"]

HYPER = ("lr", "momentum", "dampening", "weight_decay", "eps")
STABILITY_KEYS = ("lr", "momentum", "dampening", "nesterov", "weight_decay")
OPTIMIZER_KEYS = ("optimizer", *HYPER, "nesterov", "betas", "param_groups")
ADAPTIVE = (
    "adam",
    "adamw",
    "adamax",
    "nadam",
    "radam",
    "rmsprop",
    "adagrad",
    "adadelta",
    "adafactor",
    "sparseadam",
)


def canonical_name(name: Any) -> str | None:
    """``"SGD"``, ``"torch.optim.AdamW"``, ``"Adam_W"`` -> ``"sgd"``, ``"adamw"``, ``"adamw"``."""
    if not isinstance(name, str) or not name.strip():
        return None
    last = name.strip().rsplit(".", 1)[-1]
    return re.sub(r"[^a-z0-9]", "", last.lower()) or None


def _number(value: Any) -> float | int | None:
    if hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1:
        value = value.item()  # a one-element tensor (a tensor lr)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value) if math.isfinite(value) else None


def _group_settings(group: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in HYPER:
        number = _number(group.get(key))
        if number is not None:
            out[key] = number
    betas = group.get("betas")
    if isinstance(betas, (tuple, list)):
        values = [_number(b) for b in betas]
        if all(v is not None for v in values):
            out["betas"] = values
    if group.get("nesterov") is not None:
        out["nesterov"] = bool(group["nesterov"])
    return out


def optimizer_settings(optimizer: Any) -> dict[str, Any]:
    """The canonical settings of an optimizer object.

    Wrappers that hold the real optimizer in ``.optimizer`` (Accelerate, Lightning) are
    unwrapped. Settings that cannot be read are left out.

    Returns:
        ``{"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, ...}``; with several parameter
        groups also ``param_groups``, one settings dict per group.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9)
        >>> s = optimizer_settings(opt)
        >>> s["optimizer"], s["lr"], s["momentum"], s["nesterov"]
        ('sgd', 0.1, 0.9, False)
    """
    inner = optimizer
    while hasattr(inner, "optimizer") and hasattr(inner.optimizer, "param_groups"):
        inner = inner.optimizer
    groups = [_group_settings(g) for g in (getattr(inner, "param_groups", None) or [{}])]
    out = {"optimizer": canonical_name(type(inner).__name__), **groups[0]}
    if len(groups) > 1:
        out["param_groups"] = groups
    return out


def normalize_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A run's metadata with its ``optimizer`` name canonical (``"SGD"`` -> ``"sgd"``).

    Everything else is kept as it is; a missing or non-string ``optimizer`` is left alone.
    """
    out = dict(metadata)
    name = canonical_name(out.get("optimizer"))
    if name is not None:
        out["optimizer"] = name
    return out


@dataclass(frozen=True)
class Stability:
    """The edge of stability of a run's update rule.

    Attributes:
        lr: the learning rate ``λ_max·lr`` is computed with (None: unknown).
        threshold: the value of ``λ_max·lr`` where the update diverges on a quadratic, or
            None when the optimizer has no classical threshold.
        rule: how the threshold was derived, or why there is none (one line).
    """

    lr: float | None
    threshold: float | None
    rule: str


def stability(metadata: Mapping[str, Any] | None) -> Stability:
    """The stability threshold for ``λ_max·lr`` implied by a run's optimizer settings.

    Args:
        metadata: a run's metadata or :func:`optimizer_settings` output (``optimizer``,
            ``lr``, ``momentum``, ``dampening``, ``nesterov``, ``weight_decay``,
            ``param_groups``). A missing ``optimizer`` with a known ``lr`` is taken as SGD
            (weightspace's own loop records it; the rule says so).

    Example:
        >>> stability({"optimizer": "SGD", "lr": 0.05, "momentum": 0.9}).threshold
        3.8
        >>> stability({"optimizer": "AdamW", "lr": 1e-3}).threshold is None
        True
    """
    meta = normalize_metadata(metadata or {})
    lr = _number(meta.get("lr"))
    if lr is None or lr <= 0:
        return Stability(None, None, "no learning rate recorded")
    lr = float(lr)
    name = meta.get("optimizer")
    if name in ADAPTIVE:
        return Stability(
            lr,
            None,
            f"no classical threshold for {name}: it preconditions the gradient, so the "
            "threshold applies to the preconditioned Hessian (Cohen et al. 2022), not to λ_max",
        )
    if name not in (None, "sgd"):
        return Stability(lr, None, f"no classical threshold known for optimizer {name!r}")
    groups = meta.get("param_groups")
    if isinstance(groups, list) and len(groups) > 1:
        keys = [tuple(g.get(k) for k in STABILITY_KEYS) for g in groups if isinstance(g, Mapping)]
        if len(set(keys)) > 1:
            return Stability(
                lr, None, "parameter groups with different settings: no single threshold"
            )
    beta = float(_number(meta.get("momentum")) or 0.0)
    tau = float(_number(meta.get("dampening")) or 0.0)
    wd = float(_number(meta.get("weight_decay")) or 0.0)
    assumed = "" if name == "sgd" else " (optimizer not recorded: taken as SGD)"
    if beta == 0.0:
        threshold, rule = 2.0, "2: gradient descent"
    elif meta.get("nesterov"):
        threshold = (2 + 2 * beta) / (1 + 2 * beta)
        rule = f"(2+2β)/(1+2β) = {threshold:.4g}: Nesterov momentum β={beta:g}"
    else:
        threshold = (2 + 2 * beta) / (1 - tau) if tau < 1 else math.inf
        rule = f"(2+2β) = {threshold:.4g}: heavy-ball momentum β={beta:g}"
        if tau:
            rule = f"(2+2β)/(1-τ) = {threshold:.4g}: momentum β={beta:g}, dampening τ={tau:g}"
    if wd:
        threshold -= wd * lr
        rule += f", minus weight_decay·lr = {wd * lr:.3g} (coupled L2)"
    return Stability(lr, float(threshold), rule + assumed)
