"""The smallest end of a Hessian with a cluster of exact zeros: logistic regression on digits.

A ``Linear(64, 10)`` with cross-entropy on 300 digits (650 parameters, float64): every input
direction outside the data's span (dead pixels, and the softmax's shift invariance in each
input direction) gives an exact zero eigenvalue, and 137 eigenvalues lie below
``1e-6·λ_max``. Reference: ``eigh`` of the dense ``torch.func.hessian``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import weightspace as ws
from weightspace.curvature import HessianOperator, default_basis, lanczos, top_eigenpairs
from weightspace.curvature.lanczos import DENSE_MAX

F64 = torch.float64
TOL = 1e-6


@pytest.fixture(scope="module")
def logistic():
    X, y = ws.zoo.digits("train")
    X, y = X[:300].double(), y[:300]
    torch.manual_seed(0)
    model = nn.Linear(64, 10).double()
    obj = ws.Objective(ws.Problem(model, nn.functional.cross_entropy, (X, y)))
    op = HessianOperator(obj, dtype=F64)
    dense = torch.func.hessian(obj)(op.theta)
    assert dense.shape == (650, 650)
    dense = 0.5 * (dense + dense.T)
    exact = torch.linalg.eigvalsh(dense)
    # the case: a crowd of (near-)zeros at the bottom, as stated in the module docstring
    lam_max = float(exact[-1])
    assert int((exact.abs() <= 1e-12 * lam_max).sum()) >= 100
    assert int((exact <= TOL * lam_max).sum()) >= 130
    return op, dense, exact


def test_smallest_end_with_a_zero_cluster_converges_within_the_stated_budget(logistic):
    op, _, exact = logistic
    n, k = 650, 5
    eig = top_eigenpairs(op, k, "smallest", tol=TOL)
    lam_max = float(exact[-1])
    assert bool(eig.converged.all())
    assert float(eig.residuals.max()) <= TOL * lam_max * 1.01
    torch.testing.assert_close(eig.eigenvalues, exact[:k], rtol=0, atol=TOL * lam_max)
    assert eig.scale == pytest.approx(lam_max, rel=1e-9)
    # the stated budget: n Lanczos products (rounded up to a restart), n for the dense route,
    # one residual product per pair
    assert n <= DENSE_MAX
    assert eig.n_matvecs <= 2 * n + default_basis(k, "smallest") + k
    assert eig.metadata["eigen_route"].startswith("lanczos, then dense after")
    assert "not_converged" not in eig.metadata
    # the vectors are orthonormal and lie in the (numerically) zero eigenspace
    Y = eig.eigenvectors
    torch.testing.assert_close(Y @ Y.T, torch.eye(k, dtype=F64), rtol=0, atol=1e-10)


def test_restarted_lanczos_alone_does_not_converge_there_and_says_so(logistic):
    # the limit the module states: with the default basis and a budget below n (no room for
    # the dense route), the crowd of eigenvalues under tol·λ_max is not resolved
    _, dense, exact = logistic
    eig = top_eigenpairs(dense, 5, "smallest", tol=TOL, max_matvecs=600)
    assert not bool(eig.converged.all())
    assert eig.metadata["eigen_route"] == "lanczos"
    note = eig.metadata["not_converged"]
    assert "after 605 products" in note and "max_basis" in note and "\n" not in note
    # the returned values are still Ritz values: inside the spectrum
    assert float(eig.eigenvalues.min()) >= float(exact[0]) - 1e-12


def test_above_the_dense_limit_a_larger_basis_converges(logistic, monkeypatch):
    # what an operator too large for the dense switch needs: a basis large enough to build
    # the high-degree polynomial that separates the crowd (here 200 vectors), and a block of
    # k vectors, since a single-vector Krylov space holds one copy of the repeated zero
    _, dense, exact = logistic
    monkeypatch.setattr(lanczos, "DENSE_MAX", 0)
    eig = top_eigenpairs(
        dense, 5, "smallest", tol=TOL, max_basis=200, block_size=5, max_matvecs=3000
    )
    assert eig.metadata["eigen_route"] == "lanczos" and bool(eig.converged.all())
    lam_max = float(exact[-1])
    torch.testing.assert_close(eig.eigenvalues, exact[:5], rtol=0, atol=TOL * lam_max)


def test_arpack_there_gives_a_one_line_error(logistic):
    _, dense, _ = logistic
    with pytest.raises(ws.WeightspaceError, match=r"method='arpack'.*relative to \|λ\|") as err:
        top_eigenpairs(dense, 5, "smallest", tol=TOL, method="arpack", max_matvecs=50)
    assert "\n" not in str(err.value)


def test_largest_end_there_needs_no_dense_route(logistic):
    op, _, exact = logistic
    eig = top_eigenpairs(op, 3, "largest", tol=TOL)
    assert bool(eig.converged.all()) and eig.metadata["eigen_route"] == "lanczos"
    torch.testing.assert_close(eig.eigenvalues, exact.flip(0)[:3], rtol=0, atol=1e-9)
    assert eig.n_matvecs < 650
