"""Data in the forms users have: ``(X, y)`` sample-major pairs or iterables of batches.

Inputs may be a tensor, a tuple of tensors (positional arguments) or a dict (keyword
arguments); targets a tensor or a dict of tensors. The same rules serve the objective (a fixed
evaluation set) and training (endless shuffled minibatches), so anything one accepts the other
does too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from .errors import WeightspaceError

Batch = tuple[Any, Any]


def map_tensors(x: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``fn`` applied to every tensor in a tensor, tuple, list or dict (others kept)."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, (tuple, list)):
        return type(x)(map_tensors(v, fn) for v in x)
    if isinstance(x, Mapping):
        return {k: map_tensors(v, fn) for k, v in x.items()}
    return x


def _as_tensors(x: Any) -> Any:
    """Arrays and lists of numbers as tensors, inside dicts too; tensors as they are."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.as_tensor(x)
    if isinstance(x, Mapping):
        return {k: _as_tensors(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (int, float)) for v in x):
        return torch.as_tensor(x)
    return x


def _leaves(x: Any) -> Iterator[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (tuple, list)):
        for v in x:
            yield from _leaves(v)
    elif isinstance(x, Mapping):
        for v in x.values():
            yield from _leaves(v)


def count(inputs: Any, targets: Any) -> int:
    """Samples in a batch: the leading size of the first target tensor (of the inputs when
    the targets hold none)."""
    for part in (targets, inputs):
        for t in _leaves(part):
            if t.ndim >= 1:
                return int(t.shape[0])
    return 1


def _sample_major(x: Any) -> bool:
    """A tensor/array, or a non-empty dict of them: something indexed by sample."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return True
    return (
        isinstance(x, Mapping)
        and bool(x)
        and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in x.values())
    )


def is_pair(data: Any) -> bool:
    """Whether ``data`` is one ``(X, y)`` pair of sample-major tensors (or dicts of them)."""
    return (
        isinstance(data, (tuple, list)) and len(data) == 2 and all(_sample_major(v) for v in data)
    )


def _pair(data: Any, what: str) -> tuple[Any, Any, int]:
    X, y = (_as_tensors(v) for v in data)
    xs = [int(t.shape[0]) if t.ndim else -1 for t in _leaves(X)]
    ys = [(int(t.shape[0]) if t.ndim else -1, tuple(t.shape)) for t in _leaves(y)]
    if len(set(xs)) != 1 or xs[0] < 0 or any(m != xs[0] for m, _ in ys):
        shapes = ", ".join(str(shape) for _, shape in ys)
        raise WeightspaceError(
            f"{what}: X has {xs[0]} samples but y has shape {shapes}; give one target per "
            "sample (every tensor of X and y indexed by sample)"
        )
    n = xs[0]
    if n == 0:
        raise WeightspaceError(f"{what}: the data set is empty; give at least one sample")
    return X, y, n


def as_batches(data: Any, batch_size: int | None, what: str) -> list[Batch]:
    """Normalise ``(X, y)`` or an iterable of batches into a list of ``(inputs, targets)``.

    Raises:
        WeightspaceError: naming ``what``, for data in no known form, an empty data set or
        a batch that is not an ``(inputs, targets)`` pair.
    """
    if is_pair(data):
        X, y, n = _pair(data, what)
        size = n if batch_size is None else int(batch_size)
        return [
            (
                map_tensors(X, lambda t, a=a: t[a : a + size]),
                map_tensors(y, lambda t, a=a: t[a : a + size]),
            )
            for a in range(0, n, size)
        ]
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes, Mapping)):
        raise WeightspaceError(
            f"{what}: expected (X, y) tensors or an iterable of (inputs, targets) batches, "
            f"got {type(data).__name__}"
        )
    batches = []
    for i, b in enumerate(data):
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise WeightspaceError(
                f"{what}: batch {i} is not an (inputs, targets) pair; "
                "yield (inputs, targets) from the data iterable"
            )
        batches.append((_as_tensors(b[0]), _as_tensors(b[1])))
    if not batches:
        raise WeightspaceError(f"{what}: the data iterable yielded no batch")
    return batches


def minibatches(data: Any, batch_size: int, seed: int) -> Iterator[Batch]:
    """Endless training minibatches: shuffled ``(X, y)`` epochs drawn with ``seed``, or the
    user's own batches cycled in their order."""
    if is_pair(data):
        X, y, n = _pair(data, "data")
        gen = torch.Generator().manual_seed(int(seed))
        while True:
            order = torch.randperm(n, generator=gen)
            for a in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
                idx = order[a : a + batch_size]
                yield map_tensors(X, lambda t, i=idx: t[i]), map_tensors(y, lambda t, i=idx: t[i])
    batches = as_batches(data, None, "data")
    while True:
        yield from batches


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    """``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple, else ``model(inputs)``."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def weighted_mean(losses: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean loss ``Σ_b w_b L_b`` and its standard error over batches, per point.

    Args:
        losses: ``(P, B)`` each point's mean loss on each batch.
        weights: ``(B,)`` the batches' shares of the samples, ``N_b / N``.

    Returns:
        ``values (P,)`` and ``stderr (P,)`` (the weighted variance over batches, corrected by
        ``B / (B − 1)``, over ``B``; NaN with one batch).
    """
    b = len(weights)
    with np.errstate(invalid="ignore", over="ignore"):
        values = losses @ weights
        if b > 1:
            var = ((losses - values[:, None]) ** 2 @ weights) * b / (b - 1)
            stderr = np.sqrt(var / b)
        else:
            stderr = np.full(len(values), np.nan)
    return values, stderr


def mean_over_batch(loss: torch.Tensor, inputs: Any, targets: Any, problem: Any) -> torch.Tensor:
    """A batch's mean loss from what ``problem.loss_fn`` returned (``problem.reduction``): a
    sum is divided by ``problem.count_fn(inputs, targets)`` (samples, or target tokens)."""
    if problem.reduction == "sum":
        return loss / problem.count_fn(inputs, targets)
    return loss


def logits_of(out: Any) -> Any:
    """The logits in a model's output: a tensor as it is, ``out.logits`` / ``out["logits"]``
    (a Hugging Face ``ModelOutput`` or a dict), or the first element of a tuple."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping) and "logits" in out:
        return out["logits"]
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise WeightspaceError(
        f"model: expected outputs with logits (a tensor or a ModelOutput), got "
        f"{type(out).__name__}; return the logits from forward"
    )


def is_classification(targets: Any) -> bool:
    """Integer class labels, one per sample (accuracy is counted for these)."""
    return (
        isinstance(targets, torch.Tensor)
        and not targets.is_floating_point()
        and targets.ndim == 1
        and not targets.is_complex()
        and targets.dtype != torch.bool
    )


class WithLoss(torch.nn.Module):
    """The user's model and loss as one module, so that one ``functional_call`` covers both:
    a loss that reads ``model.parameters()`` sees the point's tensors."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[..., Any]) -> None:
        super().__init__()
        self.model = model
        object.__setattr__(self, "loss_fn", loss_fn)  # not a submodule: never re-registered

    def forward(self, inputs: Any, targets: Any, with_loss: bool = True) -> Any:
        out = call_model(self.model, inputs)
        return (out, self.loss_fn(out, targets)) if with_loss else out
