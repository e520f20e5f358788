"""The embedded transformer: a small byte-level GPT on text that ships with Python.

The text is a fixed list of plain modules of the standard library (their source, read from
``sysconfig.get_paths()["stdlib"]``; nothing is downloaded), joined in a fixed order. It is cut
into non-overlapping windows of ``CONTEXT + 1`` bytes: the first ``CONTEXT`` are the input, the
last ``CONTEXT`` the next-byte targets. The splits are by position: the first ``N_TRAIN`` windows
train, one window is skipped, the next ``N_TEST`` test, so no byte is in both.

The model is written here in plain torch (token and position embeddings, pre-LayerNorm blocks of
causal self-attention and a GELU MLP, an untied head). The attention is an explicit
``softmax(q kᵀ/√d) v`` with a causal mask, not ``scaled_dot_product_attention``, so Hessian-vector
products work by double backward and forward mode alike, on every device.
"""

from __future__ import annotations

import functools
import math
import sysconfig
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import WeightspaceError

__all__ = ["TextGPT", "next_byte_loss", "text_bytes", "text_windows"]

TEXT_FILES = ("textwrap.py", "shlex.py", "fnmatch.py", "colorsys.py")  # in CPython 3.10+
CONTEXT = 32
N_TRAIN = 256
N_TEST = 64
VOCAB = 256


@functools.cache
def text_bytes() -> np.ndarray:
    """The training text: :data:`TEXT_FILES` of the standard library, newlines normalised to
    ``\\n``, joined by a blank line; ``(L,)`` uint8.

    Raises:
        WeightspaceError: the standard library's source files are not installed.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for name in TEXT_FILES:
        path = stdlib / name
        if not path.is_file():
            raise WeightspaceError(
                f"problem: 'text-gpt' reads {name} from the standard library, not found in "
                f"{str(stdlib)!r}; install Python with its source files or use another problem"
            )
        parts.append(path.read_bytes().replace(b"\r\n", b"\n"))
    return np.frombuffer(b"\n\n".join(parts), dtype=np.uint8)


def text_windows(split: str = "train", context: int = CONTEXT) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed next-byte windows of :func:`text_bytes`.

    Args:
        split: ``"train"`` (:data:`N_TRAIN` windows from the start of the text), ``"test"``
            (:data:`N_TEST` windows after them, one window apart) or ``"all"`` (both).
        context: bytes of input per window.

    Returns:
        ``X: (N, context)`` int64 bytes and ``y: (N, context)`` int64, ``y[i, t] = X[i, t + 1]``
        for ``t < context - 1`` and the byte after the window for the last.

    Raises:
        WeightspaceError: an unknown split, or a text too short for the fixed splits.
    """
    text = text_bytes()
    need = (N_TRAIN + 1 + N_TEST) * context + 1
    if len(text) < need:
        raise WeightspaceError(
            f"problem: 'text-gpt' needs {need} bytes of text, the standard library gave "
            f"{len(text)}; use another problem"
        )
    starts = np.arange(N_TRAIN + 1 + N_TEST) * context
    idx = {
        "train": starts[:N_TRAIN],
        "test": starts[N_TRAIN + 1 :],
        "all": np.concatenate([starts[:N_TRAIN], starts[N_TRAIN + 1 :]]),
    }
    if split not in idx:
        raise WeightspaceError(f"split: expected 'train', 'test' or 'all', got {split!r}")
    windows = text[idx[split][:, None] + np.arange(context + 1)].astype(np.int64)
    w = torch.from_numpy(windows)
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def next_byte_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-byte cross-entropy over every position of every window.

    Args:
        logits: ``(N, T, V)``.
        targets: ``(N, T)`` int64.

    Every window has ``T`` targets, so the mean over batches of these means (weighted by the
    number of windows, as :class:`~weightspace.Objective` does) is the mean over all tokens.
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        weights = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(n, t, d)
        return self.proj(y)


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = _Attention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp), nn.GELU(), nn.Linear(mlp, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TextGPT(nn.Module):
    """A byte-level causal transformer language model.

    Token and position embeddings, ``layers`` pre-LayerNorm blocks (causal multi-head
    self-attention written as matmul + softmax, then a GELU MLP), a final LayerNorm and an
    untied linear head without bias. Weights start at N(0, 0.02²), biases at 0 (GPT-2), so the
    initial logits are near zero and the loss near ``ln(vocab)``.

    Args:
        vocab: vocabulary size (256: bytes).
        context: longest input sequence.
        width: embedding width.
        heads: attention heads (``width`` must be divisible by it).
        layers: transformer blocks.
        mlp: hidden width of each block's MLP.

    Shapes: ``tokens (N, T)`` int64 with ``T <= context`` -> logits ``(N, T, vocab)``.

    Example:
        >>> m = TextGPT()
        >>> sum(p.numel() for p in m.parameters())
        42880
    """

    def __init__(
        self,
        vocab: int = VOCAB,
        context: int = CONTEXT,
        width: int = 32,
        heads: int = 2,
        layers: int = 2,
        mlp: int = 128,
    ) -> None:
        super().__init__()
        if width % heads:
            raise WeightspaceError(f"heads: expected a divisor of width={width}, got {heads}")
        self.context = context
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.Sequential(*(_Block(width, heads, mlp) for _ in range(layers)))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[-1]
        if t > self.context:
            raise WeightspaceError(
                f"tokens: expected at most {self.context} positions, got {t}; cut the input"
            )
        x = self.tok(tokens) + self.pos(torch.arange(t, device=tokens.device))
        return self.head(self.ln(self.blocks(x)))
