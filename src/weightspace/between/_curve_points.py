"""The points of the curves of :mod:`weightspace.between.curve`, on ``(m,)`` values of ``t``
(no checks: the public functions there check their inputs)."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["POINTS", "SNAP", "bezier_points", "line_points", "polychain_points"]

SNAP = 1e-12  # polychain: t·(b+1) this close to an integer is that knot, exactly


def line_points(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """``(k, n)``: the straight line's points at ``j/(k+1)``, ``j = 1..k`` (the midpoint for
    one bend): the bends a curve starts from, and the Bézier curve's reference points."""
    f = (torch.arange(1, k + 1, dtype=torch.float64) / (k + 1)).to(a)[:, None]
    return (1 - f) * a + f * b


def bezier_points(
    a: torch.Tensor, bends: torch.Tensor, b: torch.Tensor, ts: torch.Tensor, base: Any = None
) -> torch.Tensor:
    w = ts.to(a)[:, None]
    out = (1 - w) * a + w * b  # exact at t = 0 and t = 1
    k, deg = bends.shape[0], bends.shape[0] + 1
    if k:
        base = line_points(a, b, k) if base is None else base
        coef = torch.stack(
            [math.comb(deg, j) * ts**j * (1 - ts) ** (deg - j) for j in range(1, deg)], dim=1
        )
        out = out + coef.to(a) @ (bends - base)  # zero, exactly, for bends on the line
    return out


def polychain_points(
    a: torch.Tensor, bends: torch.Tensor, b: torch.Tensor, ts: torch.Tensor
) -> torch.Tensor:
    pts = torch.cat([a[None], bends, b[None]])
    segments = bends.shape[0] + 1
    u = ts * segments
    u = torch.where((u - u.round()).abs() <= SNAP, u.round(), u)
    seg = torch.clamp(torch.floor(u), 0, segments - 1)
    s = (u - seg).to(a)[:, None]
    idx = seg.long().to(a.device)
    return (1 - s) * pts[idx] + s * pts[idx + 1]


POINTS = {"bezier": bezier_points, "polychain": polychain_points}
