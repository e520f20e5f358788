"""Embedded problems: data shipped with installed packages, and small models.

Nothing is downloaded: scikit-learn's digits (8×8 images, inside scikit-learn), MNIST-1D
(generated offline by the ``mnist1d`` package from a fixed seed) and byte windows of the
standard library's own source text (for the small transformer, :mod:`._textgpt`). Each data
set has a fixed train/test split. The models are small enough to train, project and take
Hessians of on a laptop CPU in seconds, and are importable by tests and users.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ._textgpt import TextGPT, next_byte_loss, text_windows
from .checks import check_seed
from .errors import WeightspaceError
from .problems import Problem

__all__ = ["MLP", "DigitsCNN", "TextGPT", "digits", "mnist1d", "names", "problem", "text"]

SPLIT_SEED = 0


# ---------------------------------------------------------------------------- data
@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


@functools.cache
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 5000
    args.seed = 42
    d = make_dataset(args)
    return (
        d["x"].astype(np.float32),
        d["y"].astype(np.int64),
        d["x_test"].astype(np.float32),
        d["y_test"].astype(np.int64),
    )


def digits(split: str = "train", *, image: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits, pixel values scaled to [0, 1].

    Args:
        split: ``"train"`` (1,437 samples), ``"test"`` (360) or ``"all"`` (1,797); the split
            is a fixed permutation.
        image: return ``X`` as ``(N, 1, 8, 8)`` images instead of ``(N, 64)`` vectors.

    Returns:
        ``X: (N, 64)`` or ``(N, 1, 8, 8)`` float32, ``y: (N,)`` int64.
    """
    X, y = _digits_arrays()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    n_train = 1437
    idx = {"train": order[:n_train], "test": order[n_train:], "all": np.arange(len(y))}
    if split not in idx:
        raise WeightspaceError(f"split: expected 'train', 'test' or 'all', got {split!r}")
    Xs, ys = torch.from_numpy(X[idx[split]]), torch.from_numpy(y[idx[split]])
    return (Xs.reshape(-1, 1, 8, 8) if image else Xs), ys


def mnist1d(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-1D (Greydanus 2020): 4,000 train / 1,000 test signals of length 40, 10 classes."""
    x, y, xt, yt = _mnist1d_arrays()
    if split == "train":
        return torch.from_numpy(x), torch.from_numpy(y)
    if split == "test":
        return torch.from_numpy(xt), torch.from_numpy(yt)
    if split == "all":
        return torch.from_numpy(np.concatenate([x, xt])), torch.from_numpy(np.concatenate([y, yt]))
    raise WeightspaceError(f"split: expected 'train', 'test' or 'all', got {split!r}")


def text(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Next-byte windows of standard-library source text (``textwrap.py``, ``shlex.py``,
    ``fnmatch.py``, ``colorsys.py``, read from the installation): 256 train / 64 test windows
    of 32 bytes, split by position with one window between them.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"``.

    Returns:
        ``X: (N, 32)`` int64 bytes, ``y: (N, 32)`` int64: each position's next byte.
    """
    return text_windows(split)


# ---------------------------------------------------------------------------- models
class MLP(nn.Sequential):
    """Fully connected ReLU network ``d_in -> hidden... -> d_out``."""

    def __init__(self, d_in: int, hidden: tuple[int, ...], d_out: int) -> None:
        layers: list[nn.Module] = []
        sizes = (d_in, *hidden)
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], d_out))
        super().__init__(*layers)


class DigitsCNN(nn.Module):
    """Two 3×3 convolutions, max-pooling and two linear layers for 8×8 digits (38,282 params).

    Args:
        batchnorm: add BatchNorm after each convolution.
        dropout: dropout probability before the last layer (0: none).
    """

    def __init__(self, batchnorm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()

        def bn(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batchnorm else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            bn(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            bn(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Dropout(dropout) if dropout else nn.Identity(),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------------------- problems
def _digits_mlp(seed: int) -> Problem:
    torch.manual_seed(seed)
    return Problem(
        MLP(64, (40,), 10),
        nn.CrossEntropyLoss(),
        digits("train"),
        test_data=digits("test"),
        name="digits-mlp",
    )


def _digits_cnn(seed: int, batchnorm: bool = False) -> Problem:
    torch.manual_seed(seed)
    name = "digits-cnn-bn" if batchnorm else "digits-cnn"
    return Problem(
        DigitsCNN(batchnorm=batchnorm),
        nn.CrossEntropyLoss(),
        digits("train", image=True),
        test_data=digits("test", image=True),
        name=name,
    )


def _mnist1d_mlp(seed: int) -> Problem:
    torch.manual_seed(seed)
    return Problem(
        MLP(40, (100, 100), 10),
        nn.CrossEntropyLoss(),
        mnist1d("train"),
        test_data=mnist1d("test"),
        name="mnist1d-mlp",
    )


def _text_gpt(seed: int) -> Problem:
    torch.manual_seed(seed)
    return Problem(
        TextGPT(), next_byte_loss, text("train"), test_data=text("test"), name="text-gpt"
    )


PROBLEMS: dict[str, tuple[Callable[[int], Problem], str]] = {
    "digits-mlp": (_digits_mlp, "MLP 64-40-10 on sklearn digits (3,010 params)"),
    "digits-cnn": (_digits_cnn, "small CNN on 8x8 sklearn digits (38,282 params)"),
    "digits-cnn-bn": (
        functools.partial(_digits_cnn, batchnorm=True),
        "the digits CNN with BatchNorm (38,378 params)",
    ),
    "mnist1d-mlp": (_mnist1d_mlp, "MLP 40-100-100-10 on MNIST-1D (15,210 params)"),
    "text-gpt": (
        _text_gpt,
        "byte-level transformer LM (2 attention blocks, width 32, context 32) on "
        "standard-library source text; loss: mean next-byte cross-entropy (42,880 params)",
    ),
}


def names() -> list[str]:
    """Names of the embedded problems."""
    return list(PROBLEMS)


def problem(name: str, *, seed: int = 0) -> Problem:
    """An embedded problem on its training split.

    Args:
        name: one of :func:`names` (``"digits-mlp"``, ``"digits-cnn"``, ``"digits-cnn-bn"``,
            ``"mnist1d-mlp"``, ``"text-gpt"``).
        seed: initialisation seed of the model (the global RNG is restored afterwards).

    Example:
        >>> p = problem("digits-mlp")
        >>> tuple(p.data[0].shape), sum(t.numel() for t in p.model.parameters())
        ((1437, 64), 3010)
    """
    if name not in PROBLEMS:
        raise WeightspaceError(
            f"problem: unknown embedded problem {name!r}; choose one of {', '.join(PROBLEMS)} "
            "or give module:function / file.py:function"
        )
    seed = check_seed(seed, "seed")
    with torch.random.fork_rng(devices=[]):
        return PROBLEMS[name][0](seed)
