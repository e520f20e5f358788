"""Every curvature estimator against the dense answer, the operators' purity, and the shape of
the curvature package.

1. Estimators (top_eigenpairs for each ``which``, spectral_density, hutchinson_trace,
   hutchpp_trace) given ``A = Q diag(λ) Qᵀ`` in float64 with a chosen spectrum give what
   ``eigh`` and ``trace`` of ``A`` give: eigenvalues to 1e-10, Gauss quadrature moments
   ``Σ w θʲ = vᵀAʲv`` (``j ≤ 2m − 1``) for every probe, the trace within 4 standard errors
   (Hutchinson) or exactly (Hutch++ once its sketch spans ``A``). They announce their
   products through the optional ``expect(n)`` hook, and the hook changes nothing.
2. Operators: ``HessianOperator`` by each route, and the split operator, give bitwise the
   same products on repeated calls and in any order of calls, and equal the dense
   ``torch.func.hessian`` of a float64 model.
3. The package: the clock is read only by the planner; no private attributes are reached
   across objects; the operators import in one direction; results are frozen dataclasses
   (sizes and import cycles: tests/test_code_shape.py, for the whole package).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import weightspace as ws
import weightspace.curvature as curvature
from weightspace.curvature import (
    HessianOperator,
    SplitHessianOperator,
    hutchinson_trace,
    hutchpp_trace,
    spectral_density,
    top_eigenpairs,
)
from weightspace.testing import generator as gen
from weightspace.testing import with_spectrum

F64 = torch.float64
PACKAGE = Path(curvature.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))

# negative, zero (repeated) and positive eigenvalues; 12 distinct values among 60
SPECTRUM = np.concatenate(
    [[-5.0, -2.0, -0.5], np.zeros(20), np.repeat([0.25, 0.5, 1.0], 10), [2.0, 3.0, 4.0, 6.0, 9.0]]
)
N = len(SPECTRUM)


@pytest.fixture(scope="module")
def A() -> torch.Tensor:
    return with_spectrum(SPECTRUM)


class Announced:
    """``A`` as an operator with the optional ``expect(n)`` hook, recording each call."""

    def __init__(self, A: torch.Tensor) -> None:
        self.A, self.shape, self.dtype, self.device = A, A.shape, A.dtype, A.device
        self.expected: list[int] = []
        self.products = 0

    def expect(self, n: int) -> None:
        self.expected.append(n)

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        self.products += 1 if x.ndim == 1 else x.shape[1]
        return self.A @ x


# ---------------------------------------------------------------------------- 1. estimators
@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("largest", [9.0, 6.0, 4.0]),
        ("smallest", [-5.0, -2.0, -0.5]),
        ("both", [9.0, 6.0, 4.0, -5.0, -2.0, -0.5]),
    ],
)
def test_top_eigenpairs_give_the_dense_eigenpairs(A, which, expected):
    eig = top_eigenpairs(A, 3, which)
    torch.testing.assert_close(
        eig.eigenvalues, torch.tensor(expected, dtype=F64), rtol=0, atol=1e-10
    )
    exact = torch.linalg.eigh(A)
    for lam, y in zip(eig.eigenvalues, eig.eigenvectors):
        u = exact.eigenvectors[:, int((exact.eigenvalues - lam).abs().argmin())]
        assert float((y @ u).abs()) == pytest.approx(1.0, abs=1e-9)  # simple eigenvalues
    assert bool(eig.converged.all())


def test_spectral_density_quadrature_has_the_dense_moments(A):
    m = 6  # moments up to 2m - 1 = 11 are exact
    op = Announced(A)
    dens = spectral_density(op, n_probes=4, n_steps=m, sigma=0.05, seed=3)
    assert op.expected == [4 * m] and op.products == dens.n_matvecs == 4 * m
    probes = torch.randint(0, 2, (4, N), generator=gen(3), dtype=torch.int8).to(F64) * 2 - 1
    for p in range(4):
        v = probes[p] / probes[p].norm()  # the normalised Rademacher probe of seed 3
        Ajv = v.clone()
        for j in range(2 * m):
            quad = float((dens.weights[p] * dens.nodes[p] ** j).sum())
            assert quad == pytest.approx(float(v @ Ajv), rel=1e-10, abs=1e-10), (p, j)
            Ajv = A @ Ajv
    assert np.trapezoid(dens.density, dens.grid) == pytest.approx(1.0, abs=1e-8)
    # enough steps for the 12 distinct eigenvalues: the nodes are the spectrum's values
    full = spectral_density(A, n_probes=2, n_steps=13, sigma=0.05, seed=3)
    live = full.nodes[full.weights > 1e-12]
    assert np.abs(live[:, None] - np.unique(SPECTRUM)[None]).min(axis=1).max() <= 1e-8
    np.testing.assert_array_equal(dens.nodes, spectral_density(A, 4, m, 0.05, seed=3).nodes)


def test_hutchinson_trace_is_within_its_error_bars(A):
    op = Announced(A)
    tr = hutchinson_trace(op, n_probes=400, seed=0, probes_per_pass=50)
    assert op.expected == [400] and op.products == 400
    assert abs(tr.estimate - float(torch.trace(A))) <= 4 * tr.stderr
    var = 2 * (float((A**2).sum()) - float((torch.diagonal(A) ** 2).sum()))
    assert tr.stderr == pytest.approx(np.sqrt(var / 400), rel=0.25)
    assert tr.estimate == hutchinson_trace(A, 400, seed=0, probes_per_pass=50).estimate


def test_hutchpp_trace_is_exact_once_the_sketch_spans_the_matrix(A):
    op = Announced(A)
    tr = hutchpp_trace(op, n_matvecs=3 * N, seed=0)  # sketch N: Q spans everything
    assert op.expected == [3 * N] and op.products == tr.n_matvecs == 3 * N
    assert tr.estimate == pytest.approx(float(SPECTRUM.sum()), abs=1e-9)
    np.testing.assert_allclose(tr.samples, 0.0, atol=1e-9)
    small = hutchpp_trace(A, n_matvecs=30, seed=1)  # a partial sketch: within its error bars
    assert abs(small.estimate - SPECTRUM.sum()) <= 4 * small.stderr


# ---------------------------------------------------------------------------- 2. operators
def mlp_objective() -> ws.Objective:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    X = torch.randn(9, 3, generator=gen(1), dtype=F64)
    y = torch.randint(0, 2, (9,), generator=gen(2))
    return ws.Objective(ws.Problem(model, nn.CrossEntropyLoss(), (X, y)), batch_size=4)


@pytest.fixture(scope="module")
def dense() -> torch.Tensor:
    obj = mlp_objective()
    return torch.func.hessian(obj)(obj.theta0)


def operators(kind: str):
    obj = mlp_objective()
    if kind == "split":
        return SplitHessianOperator(HessianOperator(obj, method="forward"), "0.*")
    return HessianOperator(obj, method=kind)


@pytest.mark.parametrize("kind", ["forward", "double-backward", "split"])
def test_operators_are_pure_and_equal_the_dense_hessian(kind, dense):
    V = torch.randn(dense.shape[0], 3, generator=gen(4), dtype=F64)
    op = operators(kind)
    first = [op @ V[:, j] for j in range(3)]
    again = [op @ V[:, j] for j in (2, 0, 1, 2)]  # another order, and one repeated
    for got, j in zip(again, (2, 0, 1, 2)):
        assert torch.equal(got, first[j]), j
    fresh = operators(kind)  # a new operator, the calls in reverse order
    for j in (2, 1, 0):
        assert torch.equal(fresh @ V[:, j], first[j]), j
    assert torch.equal(op.matmat(V), torch.stack(first, dim=1))
    torch.testing.assert_close(op.to_dense(), dense, rtol=0, atol=1e-12)
    if kind != "split":
        for b in range(op.objective.n_batches):  # one batch's term: the same every time
            assert torch.equal(op.batch_matvec(b, V[:, 0]), op.batch_matvec(b, V[:, 0]))


def test_vectorized_products_are_the_same_on_every_call_and_equal_the_dense_hessian(dense):
    V = torch.randn(dense.shape[0], 4, generator=gen(6), dtype=F64)
    op = HessianOperator(mlp_objective(), method="forward", vectorize=True)
    assert op.batches_columns
    first = op.matmat(V)
    op @ V[:, 0]  # another product in between changes nothing
    assert torch.equal(op.matmat(V), first)
    assert torch.equal(
        HessianOperator(mlp_objective(), method="forward", vectorize=True) @ V, first
    )
    torch.testing.assert_close(first, dense @ V, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.to_dense(), dense, rtol=0, atol=1e-12)


def test_both_routes_agree_and_release_changes_nothing(dense):
    v = torch.randn(dense.shape[0], generator=gen(5), dtype=F64)
    fwd, dbl = operators("forward"), operators("double-backward")
    torch.testing.assert_close(fwd @ v, dbl @ v, rtol=0, atol=1e-13)
    for op in (fwd, dbl):
        before = op @ v
        op.release()
        assert torch.equal(op @ v, before)


# ---------------------------------------------------------------------------- 3. the package
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _functions(tree: ast.AST) -> list[ast.FunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


CLOCKS = {"perf_counter", "perf_counter_ns", "time", "time_ns", "monotonic", "monotonic_ns"}


def test_only_the_planner_reads_a_clock():
    readers = set()
    for path in MODULES:
        tree = _tree(path)
        for fn in _functions(tree):
            for node in ast.walk(fn):
                if isinstance(node, ast.Attribute) and node.attr in CLOCKS:
                    readers.add((path.name, fn.name))
        for node in ast.walk(tree):  # nor an import of a clock function by name
            if isinstance(node, ast.ImportFrom) and node.module == "time":
                readers.add((path.name, "from time import"))
    assert readers == {("plan.py", "_time_products")}
    called_by = {
        fn.name
        for fn in _functions(_tree(PACKAGE / "plan.py"))
        for node in ast.walk(fn)
        if isinstance(node, ast.Name) and node.id == "_time_products"
    }
    assert called_by == {"_auto_split"}  # a step of plan_hessian


def test_no_private_attribute_is_reached_across_objects():
    reached = []
    for path in MODULES:
        for node in ast.walk(_tree(path)):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                reached.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert reached == []


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out.add(node.module or "")
    return out


def test_the_operators_import_in_one_direction():
    assert not _imports(PACKAGE / "hvp.py") & {"split", "plan", "along", "settings"}
    assert "hvp" in _imports(PACKAGE / "split.py")
    assert not _imports(PACKAGE / "split.py") & {"plan", "along", "settings"}
    for estimator in ("lanczos.py", "slq.py", "trace.py"):
        assert not _imports(PACKAGE / estimator) & {"hvp", "split", "plan"}, estimator


@pytest.mark.parametrize(
    "cls",
    [
        curvature.Eigenpairs,
        curvature.SpectralDensity,
        curvature.Tridiagonal,
        curvature.TraceEstimate,
        curvature.CurvatureAlong,
        curvature.CurvatureSettings,
    ],
)
def test_results_are_frozen_dataclasses(cls):
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert inspect.getmodule(cls).__name__.startswith("weightspace.curvature")
