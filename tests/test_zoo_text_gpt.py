"""The embedded transformer ``text-gpt``: fixed data from the standard library's own text, a
deterministic model, an exact mean token loss, exact Hessian products, and the commands."""

from __future__ import annotations

import json
import math
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import weightspace as ws
from weightspace._textgpt import TEXT_FILES, TextGPT
from weightspace.cli import main
from weightspace.errors import WeightspaceError


def raw_text() -> bytes:
    """The training text, read here independently of the library."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [(stdlib / name).read_bytes().replace(b"\r\n", b"\n") for name in TEXT_FILES]
    return b"\n\n".join(files)


def n_params(vocab, context, width, layers, mlp):
    """Parameters of the model, counted by hand from its architecture."""
    block = 2 * 2 * width  # two LayerNorms
    block += width * 3 * width + 3 * width + width * width + width  # qkv and output projection
    block += width * mlp + mlp + mlp * width + width  # MLP
    return vocab * width + context * width + layers * block + 2 * width + width * vocab


def test_windows_are_fixed_slices_of_the_text_and_the_splits_disjoint():
    text = raw_text()
    X, y = ws.zoo.text("train")
    Xt, yt = ws.zoo.text("test")
    assert X.shape == y.shape == (256, 32) and Xt.shape == yt.shape == (64, 32)
    assert X.dtype == y.dtype == torch.int64
    assert torch.equal(X, ws.zoo.text("train")[0]) and torch.equal(yt, ws.zoo.text("test")[1])
    assert torch.equal(y[:, :-1], X[:, 1:])  # each target is the next byte

    def window(start):
        return list(text[start : start + 33])

    starts_train = [32 * i for i in range(256)]
    starts_test = [32 * (257 + j) for j in range(64)]  # one window skipped between the splits
    assert [[*X[i].tolist(), int(y[i, -1])] for i in range(256)] == [
        window(s) for s in starts_train
    ]
    assert [[*Xt[j].tolist(), int(yt[j, -1])] for j in range(64)] == [
        window(s) for s in starts_test
    ]
    train_bytes = {s + k for s in starts_train for k in range(33)}
    test_bytes = {s + k for s in starts_test for k in range(33)}
    assert not train_bytes & test_bytes
    Xa, _ = ws.zoo.text("all")
    assert torch.equal(Xa, torch.cat([X, Xt]))
    with pytest.raises(WeightspaceError, match="split: expected"):
        ws.zoo.text("val")


def test_missing_standard_library_text_is_one_line(monkeypatch, tmp_path):
    from weightspace import _textgpt

    _textgpt.text_bytes.cache_clear()
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    try:
        with pytest.raises(WeightspaceError, match="reads textwrap.py from the standard") as e:
            ws.zoo.problem("text-gpt")
        assert "\n" not in str(e.value)
    finally:
        _textgpt.text_bytes.cache_clear()


def test_model_is_deterministic_for_a_seed_and_leaves_the_global_rng():
    state = torch.random.get_rng_state()
    a, b = ws.zoo.problem("text-gpt", seed=0), ws.zoo.problem("text-gpt", seed=0)
    c = ws.zoo.problem("text-gpt", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    layout = ws.ParamLayout.from_module(a.model)
    assert torch.equal(layout.flatten(a.model), layout.flatten(b.model))
    assert not torch.equal(layout.flatten(a.model), layout.flatten(c.model))
    assert layout.numel == n_params(256, 32, 32, 2, 128) == 42880
    assert "42,880 params" in ws.zoo.PROBLEMS["text-gpt"][1]
    assert a.name == "text-gpt" and "text-gpt" in ws.zoo.names()


def test_initial_loss_is_near_log_256_and_the_objective_is_the_mean_token_loss():
    p = ws.zoo.problem("text-gpt", seed=3)
    p.model.double()
    obj = ws.Objective(p, batch_size=100)  # batches of 100, 100 and 56 windows
    value = float(obj(obj.theta0))
    X, y = p.data
    with torch.no_grad():
        logp = torch.log_softmax(p.model(X), dim=-1)
    by_hand = -logp.gather(-1, y[..., None]).sum() / y.numel()  # every token counted once
    assert value == pytest.approx(float(by_hand), abs=1e-12)
    # weights N(0, 0.02²): logits ~ 0.02·√32·N(0, 1), so the loss is ln 256 + O(0.01)
    assert abs(value - math.log(256)) < 0.05


def tiny_problem():
    """A one-block model on a 7-byte alphabet: small enough for a dense Hessian."""
    torch.manual_seed(0)
    model = TextGPT(vocab=7, context=5, width=4, heads=2, layers=1, mlp=6).double()
    for p in model.parameters():  # away from the near-zero initial point: curvature everywhere
        p.data.add_(0.3 * torch.randn_like(p))
    X, y = ws.zoo.text("test")
    data = (X[:12, :5] % 7, y[:12, :5] % 7)
    return ws.Problem(model, ws.zoo.next_byte_loss, data, name="tiny")


def test_hvp_equals_the_dense_hessian_on_a_tiny_model():
    problem = tiny_problem()
    model, (X, y) = problem.model, problem.data
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert theta.numel() == n_params(7, 5, 4, 1, 6) == 238

    def loss(flat):
        params, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            params[name] = flat[i : i + shape.numel()].reshape(shape)
            i += shape.numel()
        logits = functional_call(model, params, (X,))
        return F.cross_entropy(logits.reshape(-1, 7), y.reshape(-1))

    dense = torch.autograd.functional.hessian(loss, theta)
    assert torch.allclose(dense, dense.T, atol=1e-12)
    op = ws.HessianOperator(ws.Objective(problem, batch_size=5), theta)  # batches 5, 5, 2
    gen = torch.Generator().manual_seed(1)
    V = torch.randn(theta.numel(), 3, dtype=torch.float64, generator=gen)
    assert torch.allclose(op.matmat(V), dense @ V, rtol=1e-9, atol=1e-11)
    eig = ws.top_eigenpairs(op, k=2)
    top = torch.linalg.eigvalsh(dense).flip(0)[:2]
    assert np.allclose(np.asarray(eig.eigenvalues, dtype=np.float64), top.numpy(), rtol=1e-7)


def objective_at(run: Path, index: int) -> float:
    traj = ws.Trajectory.load(run)
    return float(ws.Objective(ws.zoo.problem("text-gpt"))(traj.theta(index)))


def test_record_surface_spectrum_and_project_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "adam"
    args = ["--problem", "text-gpt", "--threads", "1", "--no-progress"]
    train = ["--optimizer", "adam", "--lr", "0.003", "--steps", "30", "--every", "10"]
    assert main(["record", *args, "-o", str(run), *train, "--batch-size", "32"]) == 0
    traj = ws.Trajectory.load(run)
    assert list(traj.steps) == [0, 10, 20, 30] and traj.metadata["problem"] == "text-gpt"
    first, last = objective_at(run, 0), objective_at(run, -1)
    assert last < first - 0.5  # 30 Adam steps learn the byte frequencies at least

    surf_out = tmp_path / "surface"
    grid = ["--grid", "5", "--directions", "pca"]
    assert main(["surface", str(run), *args, "-o", str(surf_out), *grid]) == 0
    surf = ws.load(surf_out)
    assert surf.values.shape == (5, 5) and np.isfinite(surf.values).all()
    assert surf.values[2, 2] == pytest.approx(last, rel=1e-5)  # the centre is the last point

    spec_out = tmp_path / "spectrum"
    spec = ["--at", "20,30", "--top-k", "1", "--data", "test", "--json"]
    capsys.readouterr()
    assert main(["spectrum", str(run), *args, "-o", str(spec_out), *spec]) == 0
    assert json.loads(capsys.readouterr().out)["command"] == "spectrum"
    along = ws.load(spec_out)
    assert along.eigenvalues.shape == (2, 1) and (along.eigenvalues > 0).all()
    # the top eigenvalue is the Rayleigh quotient of its vector, with H v by central
    # differences of gradients in float64 (no second derivatives involved)
    problem = ws.zoo.problem("text-gpt")
    problem.model.double()
    obj = ws.Objective(problem, data=problem.test_data)
    theta, v = traj.theta(-1, dtype=torch.float64), along.eigenvectors[0].double()

    def grad(at):
        at = at.clone().requires_grad_(True)
        return torch.autograd.grad(obj(at), at)[0]

    eps = 1e-4
    hv = (grad(theta + eps * v) - grad(theta - eps * v)) / (2 * eps)
    assert float(v @ hv) / float(v @ v) == pytest.approx(along.eigenvalues[1, 0], rel=1e-4)

    proj_out = tmp_path / "pca"
    assert main(["project", str(run), "--no-progress", "-o", str(proj_out)]) == 0
    proj = ws.load(proj_out)
    assert proj.coords[0].shape[0] == 4 and proj.metadata["parameters"] == 42880
