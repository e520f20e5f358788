"""Hessian products through scaled-dot-product attention, against attention written by hand.

The fused SDPA kernels have no double backward and no forward-mode rule; the operators run
the math backend for their products. Each model here is compared with the same weights
under an attention that never calls SDPA (Hugging Face's ``"eager"`` attention, or softmax
written out), so the expected numbers come from independent code.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import weightspace as ws
from weightspace._attention import ATTENTION, differentiable_attention
from weightspace.curvature import HessianOperator, plan_hessian
from weightspace.curvature.plan import LINEARIZE_AFTER
from weightspace.testing import generator as gen

F64 = torch.float64


# ---------------------------------------------------------------------------- plain SDPA
class SelfAttention(nn.Module):
    """One causal self-attention head on ``(N, T, d)`` inputs, then a linear readout of the
    last position: by ``F.scaled_dot_product_attention`` or written out by hand."""

    def __init__(self, d: int = 4, by_hand: bool = False) -> None:
        super().__init__()
        self.qkv, self.out, self.by_hand = nn.Linear(d, 3 * d), nn.Linear(d, 1), by_hand
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen(7 + p.numel()), dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if self.by_hand:
            t = x.shape[1]
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            causal = torch.ones(t, t, dtype=torch.bool).tril()
            a = scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(a[:, -1])[:, 0]


def attention_problem(by_hand: bool) -> ws.Problem:
    g = gen(3)
    X, y = torch.randn(6, 5, 4, generator=g, dtype=F64), torch.randn(6, generator=g, dtype=F64)
    model = SelfAttention(by_hand=by_hand).double()
    return ws.Problem(model, lambda out, t: ((out - t) ** 2).mean(), (X, y))


def dense_hessian(problem: ws.Problem) -> torch.Tensor:
    """The Hessian of the mean loss by ``torch.autograd.functional.hessian`` (no operator)."""
    model, (X, y) = problem.model, problem.data
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(w: torch.Tensor) -> torch.Tensor:
        params = {n: u.view(s) for n, u, s in zip(names, w.split(sizes), shapes)}
        return problem.loss_fn(torch.func.functional_call(model, params, (X,)), y)

    return torch.autograd.functional.hessian(loss, theta)


@pytest.fixture(scope="module")
def attention_reference() -> torch.Tensor:
    return dense_hessian(attention_problem(by_hand=True))


@pytest.mark.parametrize(
    ("method", "cache", "vectorize"),
    [
        ("double-backward", True, False),
        ("double-backward", False, False),
        ("forward", True, False),
        ("forward", False, False),
        ("forward", True, True),  # columns through one vmap of forward-over-reverse
    ],
)
def test_products_through_sdpa_equal_the_hand_written_attention(
    method, cache, vectorize, attention_reference
):
    obj = ws.Objective(attention_problem(by_hand=False))
    op = HessianOperator(obj, method=method, cache=cache, vectorize=vectorize)
    assert op.batches_columns == vectorize
    torch.testing.assert_close(op.to_dense(), attention_reference, rtol=0, atol=1e-10)
    assert op.metadata["attention"] == ATTENTION == "math sdpa for products"
    assert "hvp_note" not in op.metadata  # plain SDPA traces: nothing fell back


def backends() -> tuple[bool, bool, bool]:
    cuda = torch.backends.cuda
    return cuda.flash_sdp_enabled(), cuda.mem_efficient_sdp_enabled(), cuda.math_sdp_enabled()


def test_the_backend_setting_comes_back_after_products():
    before = backends()
    op = HessianOperator(ws.Objective(attention_problem(by_hand=False)))
    op @ torch.ones(op.shape[0], dtype=F64)
    assert backends() == before
    with pytest.raises(RuntimeError, match="inside"), differentiable_attention():
        assert backends() == (False, False, True)
        raise RuntimeError("inside")  # an error inside the block restores it too
    assert backends() == before


def test_split_columns_pass_through_sdpa(attention_reference):
    obj = ws.Objective(attention_problem(by_hand=False))
    op = plan_hessian(obj, n_products=LINEARIZE_AFTER, method="forward", split="qkv.*")
    assert op.metadata["hvp_split"] == ["qkv.weight", "qkv.bias"]
    torch.testing.assert_close(op.to_dense(), attention_reference, rtol=0, atol=1e-10)


def test_top_eigenpairs_of_plain_sdpa_module(attention_reference):
    expected = torch.linalg.eigvalsh(attention_reference).flip(0)[:3]
    obj = ws.Objective(attention_problem(by_hand=False))
    for method in ("double-backward", "forward"):
        eig = ws.top_eigenpairs(HessianOperator(obj, method=method), k=3)
        torch.testing.assert_close(torch.as_tensor(eig.eigenvalues), expected, atol=1e-8, rtol=0)
        assert eig.metadata["attention"] == ATTENTION


# ---------------------------------------------------------------------------- Hugging Face GPT-2
transformers = pytest.importorskip("transformers")


def gpt2(attention: str | None) -> nn.Module:
    """The tiny GPT-2 of the issue, in float64, with the same weights for every attention
    (``None``: the library's default, scaled-dot-product attention)."""
    kw = {} if attention is None else {"attn_implementation": attention}
    config = transformers.GPT2Config(
        n_layer=1, n_embd=16, n_head=2, vocab_size=40, n_positions=16,
        bos_token_id=0, eos_token_id=0, **kw,
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).double().eval()
    g = gen(11)
    with torch.no_grad():  # weights drawn here, identical whatever the attention
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=F64))
    return model


def lm_problem(model: nn.Module) -> ws.Problem:
    """Two batches of dict inputs with labels, the second padded (mask and ignored labels);
    the loss is the model's own ``out.loss``."""
    g = gen(5)
    batches = []
    for n, pad in ((3, 0), (2, 3)):
        ids = torch.randint(0, 40, (n, 8), generator=g)
        mask, labels = torch.ones_like(ids), ids.clone()
        if pad:
            mask[0, -pad:], labels[0, -pad:] = 0, -100
        batches.append(({"input_ids": ids, "attention_mask": mask, "labels": labels}, labels))
    return ws.Problem(model, lambda out, t: out.loss, batches, name="tiny-gpt2")


@pytest.fixture(scope="module")
def eager_eigenvalues() -> torch.Tensor:
    model = gpt2("eager")
    assert model.config._attn_implementation == "eager"
    op = HessianOperator(ws.Objective(lm_problem(model)), method="double-backward")
    return torch.as_tensor(ws.top_eigenpairs(op, k=3, seed=0).eigenvalues)


@pytest.mark.parametrize("method", ["double-backward", "forward"])
def test_gpt2_with_sdpa_has_the_eigenvalues_of_eager_attention(method, eager_eigenvalues):
    model = gpt2(None)
    assert model.config._attn_implementation == "sdpa"
    op = HessianOperator(ws.Objective(lm_problem(model)), method=method)
    eig = ws.top_eigenpairs(op, k=3, seed=0)
    torch.testing.assert_close(
        torch.as_tensor(eig.eigenvalues), eager_eigenvalues, atol=1e-5, rtol=0
    )
    meta = eig.metadata
    assert meta["attention"] == ATTENTION and meta["hvp_method"] == method
    if method == "forward":  # the mask code reads a tensor's value: no trace, a recorded note
        assert op.linearize_failed
        note = meta["hvp_note"]
        assert note.startswith("linearisation failed to trace (") and "\n" not in note
        assert note.endswith("at batch 0: uncached forward products")


def test_gpt2_plan_falls_back_to_double_backward_with_a_note(eager_eigenvalues):
    obj = ws.Objective(lm_problem(gpt2(None)))
    op = plan_hessian(obj, n_products=LINEARIZE_AFTER, split=None)
    assert op.method == "double-backward" and op.plan["route"] == "double-backward"
    note = op.metadata["hvp_plan"]["note"]
    assert note.startswith("linearisation failed to trace (") and "\n" not in note
    assert note.endswith("using double backward, the kept graph is faster")
    eig = ws.top_eigenpairs(op, k=3, seed=0)
    torch.testing.assert_close(
        torch.as_tensor(eig.eigenvalues), eager_eigenvalues, atol=1e-5, rtol=0
    )


# ---------------------------------------------------------------------------- grids, compiled
def test_a_compiler_failure_is_a_one_line_note_and_an_eager_grid(monkeypatch):
    obj = ws.Objective(attention_problem(by_hand=False))
    theta = obj.theta0
    d = torch.randn(theta.shape, generator=gen(2), dtype=F64)
    xs = torch.linspace(-1, 1, 3, dtype=F64)

    def broken_compile(fn, **kw):
        def run(*args, **kwargs):
            raise RuntimeError("backend could not lower the attention\n  traceback-like detail")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    line = ws.evaluate_line(obj, theta, d, xs, engine={"compile": "on"})
    expected = [float(obj(theta + a * d)) for a in xs]
    torch.testing.assert_close(torch.as_tensor(line.values), torch.tensor(expected, dtype=F64))
    engine = line.metadata["engine"]
    assert engine["compiled"] is False
    reason = engine["compile_reason"]
    assert reason == "torch.compile failed: RuntimeError: backend could not lower the attention"
