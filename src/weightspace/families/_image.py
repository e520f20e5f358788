"""Image classifiers: any module taking image tensors (torchvision- and timm-style CNNs and
ViTs, Hugging Face ``*ForImageClassification``), cross-entropy, samples weighted equally."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._batches import is_pair, logits_of
from ..errors import WeightspaceError
from ..problems import Problem

__all__ = ["image_classification"]


def image_loss(out: Any, labels: torch.Tensor, *, label_smoothing: float) -> torch.Tensor:
    """Mean cross-entropy of the batch (with ``label_smoothing``, as the training used)."""
    return F.cross_entropy(logits_of(out), labels, label_smoothing=label_smoothing)


def _stack_dataset(data: Sequence, what: str) -> Any:
    """A map-style dataset of ``(image, label)`` samples -> ``(X, y)`` tensors."""
    images, labels = [], []
    for i in range(len(data)):
        item = data[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise WeightspaceError(
                f"{what}: sample {i} is not an (image, label) pair, got {type(item).__name__}"
            )
        images.append(torch.as_tensor(item[0]))
        labels.append(int(item[1]))
    if not images:
        raise WeightspaceError(f"{what}: the dataset is empty; give at least one image")
    return torch.stack(images), torch.tensor(labels)


def _image_data(data: Any, batch_size: int | None, what: str) -> Any:
    if data is None:
        return None
    if is_pair(data):
        X, y = (torch.as_tensor(v) for v in data)
    elif isinstance(data, Sequence) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        first = data[0] if len(data) else None
        sample = isinstance(first, (tuple, list)) and len(first) == 2 and np.ndim(first[1]) == 0
        if sample:  # (image, label) with a scalar label: a map-style dataset
            X, y = _stack_dataset(data, what)
        else:
            return data  # a list of (images, labels) batches
    else:
        return data  # an iterable of (images, labels) batches (a DataLoader)
    if X.ndim < 3:
        raise WeightspaceError(
            f"{what}: expected images of shape (N, C, H, W) (or (N, H, W)), got {tuple(X.shape)}"
        )
    if batch_size is None:
        return X, y
    return [(X[a : a + batch_size], y[a : a + batch_size]) for a in range(0, len(y), batch_size)]


def image_classification(
    model: torch.nn.Module,
    data: Any,
    *,
    test_data: Any = None,
    batch_size: int | None = None,
    label_smoothing: float = 0.0,
    name: str | None = None,
) -> Problem:
    """An image classifier: the mean cross-entropy over images, exact across uneven batches.

    Args:
        model: any module called as ``model(images)`` and returning logits ``(B, C)``: a
            tensor, a ``ModelOutput`` with ``.logits`` (Hugging Face) or a tuple whose first
            element is the logits (auxiliary heads).
        data: ``(X, y)`` tensors or arrays (images ``(N, C, H, W)``, integer labels ``(N,)``);
            a map-style dataset of ``(image, label)`` samples (a torchvision dataset with
            its transform: stacked once, so give an evaluation transform); or an iterable of
            ``(images, labels)`` batches (a ``DataLoader`` without shuffling).
        test_data: held-out data in the same forms.
        batch_size: split ``(X, y)`` into batches of this many images (otherwise
            ``Objective(batch_size=...)`` does; the value does not depend on it).
        label_smoothing: as ``torch.nn.CrossEntropyLoss`` (default 0).
        name: a label for captions (default ``"image-classification (ModelClass)"``).

    Returns:
        a :class:`Problem` weighting images equally; accuracy is reported.

    Raises:
        WeightspaceError: data in no known form, or a bad option.

    Example::

        problem = ws.problems.image_classification(resnet, (images, labels), batch_size=64)
    """
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise WeightspaceError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if not 0.0 <= float(label_smoothing) < 1.0:
        raise WeightspaceError(
            f"label_smoothing: expected a value in [0, 1), got {label_smoothing!r}"
        )
    return Problem(
        model,
        functools.partial(image_loss, label_smoothing=float(label_smoothing)),
        _image_data(data, batch_size, "data"),
        test_data=_image_data(test_data, batch_size, "test_data"),
        name=name or f"image-classification ({type(model).__name__})",
        info={"family": "image-classification", "weighting": "samples"},
    )
