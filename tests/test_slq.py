"""Stochastic Lanczos quadrature: Gauss quadrature identities and exact diagonal cases.

The digits-MLP density against its exact spectrum is in test_lanczos.py (it shares the
dense Hessian with the top-5 check there).
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from weightspace.curvature import lanczos_tridiagonal, spectral_density
from weightspace.errors import WeightspaceError

F64 = torch.float64


def random_symmetric(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(n, n, generator=g, dtype=F64) / n**0.5
    return 0.5 * (B + B.T)


@pytest.mark.parametrize("m", [1, 3, 6])
def test_gauss_quadrature_moments_are_exact_up_to_2m_minus_1(m):
    A = random_symmetric(40)
    v = torch.randn(40, generator=torch.Generator().manual_seed(1), dtype=F64)
    v = v / v.norm()
    nodes, weights = lanczos_tridiagonal(A, v, m).nodes_weights()
    Ajv = v.clone()
    for j in range(2 * m):  # j = 0 .. 2m-1
        quad = float((weights[0] * nodes[0] ** j).sum())
        assert quad == pytest.approx(float(v @ Ajv), rel=1e-10, abs=1e-12), j
        Ajv = A @ Ajv
    # and not beyond: the 2m-th moment differs in general
    assert abs(float((weights[0] * nodes[0] ** (2 * m)).sum()) - float(v @ Ajv)) > 1e-8


def test_probes_advanced_together_equal_probes_one_by_one():
    A = random_symmetric(30, seed=2)
    V = torch.randn(30, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    together = lanczos_tridiagonal(A, V, 8)
    for p in range(4):
        alone = lanczos_tridiagonal(A, V[:, p], 8)
        torch.testing.assert_close(together.alpha[p], alone.alpha[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(together.beta[p], alone.beta[0], rtol=0, atol=1e-12)
    assert together.n_matvecs == 32


# a diagonal spectrum with negative, zero and repeated eigenvalues: 5 distinct values
DIAG = torch.tensor([-2.0, -2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 3.0, 3.0, 3.0, 3.0, 7.0], dtype=F64)


def test_density_integrates_to_one_and_its_mean_is_trace_over_n():
    dens = spectral_density(torch.diag(DIAG), n_probes=4, n_steps=5, sigma=0.2, seed=0)
    assert np.trapezoid(dens.density, dens.grid) == pytest.approx(1.0, abs=1e-8)
    # Rademacher probes on a diagonal: vᵀAv = tr(A)/n exactly, for every probe
    assert dens.mean == pytest.approx(float(DIAG.mean()), abs=1e-12)
    assert np.trapezoid(dens.grid * dens.density, dens.grid) == pytest.approx(
        float(DIAG.mean()), abs=1e-8
    )
    np.testing.assert_allclose(dens.weights.sum(axis=1), 1.0, atol=1e-12)
    for p in range(4):
        assert np.trapezoid(dens.per_probe[p], dens.grid) == pytest.approx(1.0, abs=1e-8)


def test_quadrature_recovers_the_exact_spectral_measure_of_a_diagonal():
    # enough steps for the 5 distinct eigenvalues: nodes are those values, weights the
    # multiplicities / n (|v_i|² = 1/n for normalised Rademacher probes)
    dens = spectral_density(torch.diag(DIAG), n_probes=3, n_steps=8, sigma=0.1, seed=1)
    values, counts = torch.unique(DIAG, return_counts=True)
    for p in range(3):
        live = dens.weights[p] > 0
        assert live.sum() == 5  # stopped at the invariant subspace
        order = np.argsort(dens.nodes[p][live])
        np.testing.assert_allclose(dens.nodes[p][live][order], values.numpy(), atol=1e-10)
        np.testing.assert_allclose(dens.weights[p][live][order], counts.numpy() / 12, atol=1e-12)


def test_sigma_is_explicit_and_stored():
    A = torch.diag(DIAG)
    given = spectral_density(A, 2, 4, sigma=0.3, seed=0)
    assert given.sigma == 0.3 and given.metadata["sigma"] == 0.3
    assert given.metadata["sigma_rule"] == "given"
    default = spectral_density(A, 2, 5, seed=0)
    lo, hi = default.range
    assert default.sigma == pytest.approx(0.01 * (hi - lo))
    assert default.metadata["sigma_rule"].startswith("0.01")
    wide = given.regrid(np.linspace(-10, 12, 500), sigma=1.0)
    assert wide.sigma == 1.0 and wide.density.shape == (500,)
    assert np.trapezoid(wide.density, wide.grid) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(wide.nodes, given.nodes)


def test_same_seed_same_probes_and_chunking_changes_nothing():
    A = random_symmetric(50, seed=4)
    a = spectral_density(A, 6, 10, sigma=0.05, seed=7)
    b = spectral_density(A, 6, 10, sigma=0.05, seed=7, probes_per_pass=4)
    c = spectral_density(A, 6, 10, sigma=0.05, seed=8)
    np.testing.assert_allclose(a.nodes, b.nodes, atol=1e-12)
    np.testing.assert_allclose(a.density, b.density, atol=1e-12)
    assert not np.allclose(a.nodes, c.nodes)
    assert a.per_probe.shape == (6, 1000) and a.stderr.shape == (1000,)
    assert np.all(a.stderr >= 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_steps": 13}, r"n_steps: expected at most n=12"),
        ({"n_probes": 0}, r"n_probes: expected a positive integer"),
        ({"sigma": 0.0}, r"sigma: expected a positive width"),
        ({"sigma": -1.0}, r"sigma: expected a positive width"),
        ({"grid": np.array([1.0, 0.0])}, r"grid: expected an increasing"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, match):
    args = {"n_probes": 2, "n_steps": 4, **kwargs}
    with pytest.raises(WeightspaceError, match=match) as e:
        spectral_density(torch.diag(DIAG), **args)
    assert "\n" not in str(e.value)


def _rank(rank: int, port: int, out: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    try:
        dens = spectral_density(random_symmetric(40, seed=5), 5, 6, sigma=0.1, seed=3)
        np.savez(f"{out}/rank{rank}.npz", nodes=dens.nodes, weights=dens.weights)
    finally:
        torch.distributed.destroy_process_group()


def test_probes_split_across_two_ranks_give_the_single_process_result(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    single = spectral_density(random_symmetric(40, seed=5), 5, 6, sigma=0.1, seed=3)
    for r in range(2):
        got = np.load(os.path.join(tmp_path, f"rank{r}.npz"))
        np.testing.assert_allclose(got["nodes"], single.nodes, atol=1e-12)
        np.testing.assert_allclose(got["weights"], single.weights, atol=1e-12)
