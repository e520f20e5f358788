"""Between two solutions: permutation alignment (Git Re-Basin), trained low-loss curves
(Garipov et al. 2018), and the result of comparing the paths (:class:`Connection`).

``connect`` is :func:`train_curve` under the name the top-level package gives it
(``ws.connect(problem, theta_a, theta_b, out, curve="bezier", steps=...)``).
"""

from ._derive import permutation_spec
from ._spec import PermutationSpec
from .align import Alignment, align
from .curve import (
    CurveRun,
    CurveSettings,
    bezier,
    curve_losses,
    curve_points,
    load_curve,
    polychain,
    train_curve,
)
from .results import Connection

connect = train_curve

__all__ = [
    "Alignment",
    "Connection",
    "CurveRun",
    "CurveSettings",
    "PermutationSpec",
    "align",
    "bezier",
    "connect",
    "curve_losses",
    "curve_points",
    "load_curve",
    "permutation_spec",
    "polychain",
    "train_curve",
]
