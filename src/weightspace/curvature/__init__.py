"""Curvature of the loss: Hessian-vector products, eigenpairs, spectral density, trace.

At a point, along a recorded run, and on the line between two minima. Every algorithm takes
any symmetric operator with ``@``, ``.shape``, ``.dtype`` and ``.device``: a
:class:`HessianOperator`, or a dense ``torch`` matrix (which is how the tests check them
against closed forms).
"""

from .along import (
    CurvatureAlong,
    curvature_along,
    curvature_at,
    curvature_between,
    subspace_overlap,
)
from .hvp import HessianOperator
from .lanczos import Eigenpairs, top_eigenpairs
from .slq import SpectralDensity, Tridiagonal, lanczos_tridiagonal, spectral_density
from .trace import TraceEstimate, hutchinson_trace, hutchpp_trace

__all__ = [
    "CurvatureAlong",
    "Eigenpairs",
    "HessianOperator",
    "SpectralDensity",
    "TraceEstimate",
    "Tridiagonal",
    "curvature_along",
    "curvature_at",
    "curvature_between",
    "hutchinson_trace",
    "hutchpp_trace",
    "lanczos_tridiagonal",
    "spectral_density",
    "subspace_overlap",
    "top_eigenpairs",
]
