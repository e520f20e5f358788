"""Tokenized data in the forms users have (token ids, dicts of tensors, per-sample dicts of
any lengths, iterables of batches) as ``(inputs, labels)`` pairs with the ignore index."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from .._batches import map_tensors
from ..errors import WeightspaceError

__all__ = ["IGNORE_INDEX", "text_data"]

IGNORE_INDEX = -100  # PyTorch's and Hugging Face's label for "no target here"
_LABEL_KEYS = ("labels", "label")


def _tensor(x: Any, what: str) -> torch.Tensor:
    try:
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as e:
        raise WeightspaceError(
            f"{what}: expected a tensor or equal-length lists of token ids, got "
            f"{type(x).__name__} ({e}); pad the sequences or pass samples one by one"
        ) from None


def _split_labels(batch: Mapping[str, Any], what: str) -> tuple[dict[str, Any], Any]:
    """``{input_ids, attention_mask, ..., labels}`` -> (model inputs, labels or None)."""
    if "input_ids" not in batch:
        raise WeightspaceError(
            f"{what}: expected a dict with 'input_ids', got keys {sorted(batch)}; give "
            "tokenized data (input_ids, attention_mask, labels)"
        )
    inputs = {k: v for k, v in batch.items() if k not in _LABEL_KEYS}
    labels = next((batch[k] for k in _LABEL_KEYS if k in batch), None)
    return inputs, labels


def _collate(samples: list[Mapping[str, Any]], pad_id: int, what: str) -> dict[str, Any]:
    """Per-sample dicts (1-D ``input_ids`` of any lengths) -> one right-padded batch dict."""
    length = max(len(s["input_ids"]) for s in samples)
    out: dict[str, list] = {}
    for s in samples:
        ids = [int(t) for t in s["input_ids"]]
        pad = length - len(ids)
        out.setdefault("input_ids", []).append(ids + [pad_id] * pad)
        mask = [int(t) for t in s.get("attention_mask", [1] * len(ids))]
        out.setdefault("attention_mask", []).append(mask + [0] * pad)
        label = next((s[k] for k in _LABEL_KEYS if k in s), None)
        if label is None:
            continue
        label = label.tolist() if isinstance(label, (torch.Tensor, np.ndarray)) else label
        if isinstance(label, list):  # token labels
            label = [int(t) for t in label] + [IGNORE_INDEX] * pad
        out.setdefault("labels", []).append(label)
    if "labels" in out and len(out["labels"]) != len(samples):
        raise WeightspaceError(f"{what}: some samples have labels and some not; label all")
    return {k: _tensor(v, what) for k, v in out.items()}


def _sample_major(data: Any, pad_id: int, what: str) -> tuple[dict[str, Any], Any] | None:
    """A tensor of ids, a dict of sample-major tensors, or per-sample dicts -> one
    ``(inputs, labels)`` pair indexed by sample; None for an iterable of batches."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        ids = _tensor(data, what)
        if ids.ndim != 2 or ids.is_floating_point():
            raise WeightspaceError(
                f"{what}: expected integer token ids of shape (sequences, length), got "
                f"{ids.dtype} of shape {tuple(ids.shape)}"
            )
        return {"input_ids": ids}, None
    if isinstance(data, Mapping):
        inputs, labels = _split_labels(data, what)
        inputs = {k: _tensor(v, what) for k, v in inputs.items()}
        return inputs, None if labels is None else _tensor(labels, what)
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes)):
        raise WeightspaceError(
            f"{what}: expected token ids, a dict of tensors, per-sample dicts or an iterable "
            f"of batches, got {type(data).__name__}"
        )
    items = list(data)
    if not items:
        raise WeightspaceError(f"{what}: the data yielded nothing; give at least one sequence")
    first = items[0]
    if isinstance(first, Mapping) and "input_ids" in first:
        ids = first["input_ids"]
        if not isinstance(ids, (torch.Tensor, np.ndarray)) or np.ndim(ids) == 1:
            bad = next((i for i, s in enumerate(items) if not isinstance(s, Mapping)), None)
            if bad is not None:
                raise WeightspaceError(f"{what}: item {bad} is not a dict like item 0")
            return _sample_major(_collate(items, pad_id, what), pad_id, what)
    return None


def _default_labels(inputs: dict[str, Any], labels: Any, family: str, what: str) -> Any:
    if labels is not None or family == "sequence-classification":
        if labels is None:
            raise WeightspaceError(
                f"{what}: sequence classification needs 'labels' (one class per sequence)"
            )
        return labels
    if family == "masked-lm":
        raise WeightspaceError(
            f"{what}: a masked LM needs 'labels' (IGNORE_INDEX where nothing is masked), or "
            "mask_token_id= to mask the data here"
        )
    labels = inputs["input_ids"].clone()  # causal LM: the inputs, padding ignored
    if "attention_mask" in inputs:
        labels[inputs["attention_mask"] == 0] = IGNORE_INDEX
    return labels


def _mask_tokens(
    inputs: dict[str, Any], mask_token_id: int, probability: float, seed: int
) -> tuple[dict[str, Any], torch.Tensor]:
    """A fixed masking: each attended token replaced by ``mask_token_id`` with
    ``probability`` (seeded); labels hold the original ids there and IGNORE_INDEX elsewhere."""
    ids = inputs["input_ids"]
    gen = torch.Generator().manual_seed(int(seed))
    chosen = torch.rand(ids.shape, generator=gen) < probability
    if "attention_mask" in inputs:
        chosen &= inputs["attention_mask"].bool()
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    masked = torch.where(chosen, torch.full_like(ids, mask_token_id), ids)
    return {**inputs, "input_ids": masked}, labels


def _batches(pair: tuple[dict[str, Any], Any], batch_size: int | None) -> Any:
    if batch_size is None:
        return pair
    inputs, labels = pair
    n = int(labels.shape[0])
    return [
        (map_tensors(inputs, lambda t, a=a: t[a : a + batch_size]), labels[a : a + batch_size])
        for a in range(0, n, batch_size)
    ]


def text_data(
    data: Any,
    family: str,
    *,
    batch_size: int | None,
    pad_token_id: int,
    mask_token_id: int | None = None,
    mlm_probability: float = 0.15,
    seed: int = 0,
    what: str = "data",
) -> Any:
    """The family's data in the Problem's form: ``(inputs, labels)`` indexed by sample (split
    into batches of ``batch_size`` when given), or the user's batches as ``(inputs, labels)``."""
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise WeightspaceError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if isinstance(data, Iterable) and not isinstance(data, (torch.Tensor, np.ndarray, Mapping)):
        data = list(data)  # a generator or a DataLoader: read once
    pair = _sample_major(data, pad_token_id, what)
    if pair is not None:
        inputs, labels = pair
        if labels is None and family == "masked-lm" and mask_token_id is not None:
            inputs, labels = _mask_tokens(inputs, mask_token_id, mlm_probability, seed)
        return _batches((inputs, _default_labels(inputs, labels, family, what)), batch_size)
    out = []
    for i, batch in enumerate(data):
        where = f"{what} batch {i}"
        if isinstance(batch, Mapping):
            inputs, labels = _split_labels(batch, where)
        elif isinstance(batch, (tuple, list)) and len(batch) == 2:
            inputs, labels = batch
        else:
            raise WeightspaceError(
                f"{where}: expected a dict (input_ids, attention_mask, labels) or an "
                f"(inputs, labels) pair, got {type(batch).__name__}"
            )
        if isinstance(inputs, Mapping) and labels is None and family == "masked-lm":
            if mask_token_id is not None:
                inputs, labels = _mask_tokens(inputs, mask_token_id, mlm_probability, seed + i)
        if isinstance(inputs, Mapping):
            labels = _default_labels(inputs, labels, family, where)
        out.append((inputs, _tensor(labels, where)))
    return out
