"""Curvature of the loss: Hessian-vector products, eigenpairs, spectral density, trace.

At a point, along a recorded run, and on the line between two minima. Every algorithm takes
any symmetric operator with ``@``, ``.shape``, ``.dtype`` and ``.device``: a
:class:`HessianOperator` (one route, pure), a :class:`SplitHessianOperator`, the operator
:func:`plan_hessian` chooses for a number of products, or a dense ``torch`` matrix (which
is how the tests check them against closed forms).
"""

from .along import curvature_along, curvature_at, curvature_between
from .along_result import CurvatureAlong, subspace_overlap
from .hvp import ForwardModeError, HessianOperator
from .lanczos import Eigenpairs, default_basis, top_eigenpairs
from .plan import plan_hessian
from .settings import CurvatureSettings
from .slq import SpectralDensity, Tridiagonal, lanczos_tridiagonal, spectral_density
from .split import SplitHessianOperator
from .trace import TraceEstimate, hutchinson_trace, hutchpp_trace

__all__ = [
    "CurvatureAlong",
    "CurvatureSettings",
    "Eigenpairs",
    "ForwardModeError",
    "HessianOperator",
    "SpectralDensity",
    "SplitHessianOperator",
    "TraceEstimate",
    "Tridiagonal",
    "curvature_along",
    "curvature_at",
    "curvature_between",
    "default_basis",
    "hutchinson_trace",
    "hutchpp_trace",
    "lanczos_tridiagonal",
    "plan_hessian",
    "spectral_density",
    "subspace_overlap",
    "top_eigenpairs",
]
