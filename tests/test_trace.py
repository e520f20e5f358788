"""Hutchinson and Hutch++ trace estimates against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import weightspace as ws
from weightspace.curvature import HessianOperator, hutchinson_trace, hutchpp_trace
from weightspace.errors import WeightspaceError

F64 = torch.float64
DIAG = torch.tensor([-3.0, 0.0, 0.0, 0.5, 1.0, 2.0, 4.0, 10.0], dtype=F64)


def test_hutchinson_is_exact_on_a_diagonal_with_rademacher_probes():
    tr = hutchinson_trace(torch.diag(DIAG), n_probes=7, seed=0)
    assert tr.estimate == pytest.approx(float(DIAG.sum()), abs=1e-12)
    assert tr.stderr == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(tr.samples, float(DIAG.sum()), atol=1e-12)
    assert tr.n_matvecs == 7 and tr.method == "hutchinson"


def test_hutchpp_is_exact_when_the_rank_is_within_the_sketch():
    # a diagonal of rank 3 (two negative, one positive) with a sketch of 4 columns
    d = torch.zeros(30, dtype=F64)
    d[[2, 11, 20]] = torch.tensor([-5.0, 3.0, -0.5], dtype=F64)
    tr = hutchpp_trace(torch.diag(d), n_matvecs=12, seed=0)
    assert tr.estimate == pytest.approx(-2.5, abs=1e-12)
    assert tr.exact_part == pytest.approx(-2.5, abs=1e-12)
    np.testing.assert_allclose(tr.samples, 0.0, atol=1e-12)
    assert tr.n_matvecs == 12


def test_hutchpp_is_exact_on_a_full_diagonal_once_the_sketch_spans_it():
    tr = hutchpp_trace(torch.diag(DIAG), n_matvecs=24, seed=1)  # sketch 8 = n
    assert tr.estimate == pytest.approx(float(DIAG.sum()), abs=1e-10)


def test_hutchinson_variance_matches_its_closed_form():
    # Var(zᵀAz) = 2(‖A‖_F² − Σ A_ii²) for Rademacher z
    g = torch.Generator().manual_seed(0)
    B = torch.randn(20, 20, generator=g, dtype=F64)
    A = 0.5 * (B + B.T)
    tr = hutchinson_trace(A, n_probes=4000, seed=3, probes_per_pass=500)
    var = 2 * (float((A**2).sum()) - float((torch.diagonal(A) ** 2).sum()))
    assert tr.stderr == pytest.approx(math.sqrt(var / 4000), rel=0.1)
    assert abs(tr.estimate - float(torch.trace(A))) <= 4 * tr.stderr


def test_hutchpp_beats_hutchinson_on_a_decaying_spectrum():
    lam = 1.0 / torch.arange(1, 201, dtype=F64) ** 2
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(200, 200, generator=g, dtype=F64))
    A = Q @ torch.diag(lam) @ Q.T
    exact = float(lam.sum())
    plain = [abs(hutchinson_trace(A, 60, seed=s).estimate - exact) for s in range(5)]
    plus = [abs(hutchpp_trace(A, 60, seed=s).estimate - exact) for s in range(5)]
    assert np.mean(plus) < 0.2 * np.mean(plain)


def test_trace_of_a_linear_regression_hessian():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 5, generator=g, dtype=F64), torch.randn(40, generator=g, dtype=F64)
    torch.manual_seed(0)
    model = nn.Linear(5, 1).double()
    obj = ws.Objective(ws.Problem(model, lambda o, t: ((o[:, 0] - t) ** 2).mean(), (X, y)))
    op = HessianOperator(obj)
    exact = 2 / 40 * (float((X**2).sum()) + 40)  # tr((2/N) X̃ᵀX̃), X̃ = [X, 1]
    tr = hutchinson_trace(op, n_probes=200, seed=0)
    assert abs(tr.estimate - exact) <= 4 * tr.stderr
    assert tr.metadata["problem"] == "problem" and tr.metadata["n_probes"] == 200
    pp = hutchpp_trace(op, n_matvecs=18, seed=0)  # rank 6 = sketch 6
    assert pp.estimate == pytest.approx(exact, rel=1e-10)


@pytest.mark.parametrize(
    ("fn", "kwargs", "match"),
    [
        (hutchinson_trace, {"n_probes": 0}, r"n_probes: expected a positive integer"),
        (hutchinson_trace, {"probes": "uniform"}, r"probes: expected 'rademacher' or 'gaussian'"),
        (hutchpp_trace, {"n_matvecs": 2}, r"n_matvecs: Hutch\+\+ needs at least 3 products"),
        (hutchinson_trace, {"seed": "zero"}, r"seed: expected an int, a torch.Generator or None"),
    ],
)
def test_bad_arguments_are_one_line_errors(fn, kwargs, match):
    with pytest.raises(WeightspaceError, match=match) as e:
        fn(torch.diag(DIAG), **kwargs)
    assert "\n" not in str(e.value)
