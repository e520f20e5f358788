"""Language models and sequence classifiers: dict inputs, ``ModelOutput`` outputs, labels with
an ignore index, and the mean over target tokens (causal and masked LMs) or samples
(classifiers) across uneven batches."""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from .._batches import logits_of
from ..errors import WeightspaceError
from ..problems import Problem
from ._tokens import IGNORE_INDEX, text_data

__all__ = ["IGNORE_INDEX", "causal_lm", "masked_lm", "sequence_classification"]


# ---------------------------------------------------------------------------- outputs and losses
def _targets(labels: torch.Tensor, shift: bool) -> torch.Tensor:
    return labels[:, 1:] if shift else labels


def token_loss(out: Any, labels: torch.Tensor, *, shift: bool, ignore_index: int) -> torch.Tensor:
    """Mean cross-entropy over the batch's non-ignored target tokens (0 when it has none).

    With ``shift``, position ``t`` predicts ``labels[:, t + 1]`` (causal LM; labels are the
    input ids, as Hugging Face takes them); without, ``labels[:, t]`` (masked LM).
    """
    logits = logits_of(out)
    if shift:
        logits = logits[:, :-1]
    target = _targets(labels, shift)
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        target.reshape(-1),
        ignore_index=ignore_index,
        reduction="sum",
    )
    return total / (target != ignore_index).sum().clamp_min(1)


def token_count(inputs: Any, labels: torch.Tensor, *, shift: bool, ignore_index: int) -> int:
    """A batch's weight: its number of non-ignored target tokens."""
    return int((_targets(labels, shift) != ignore_index).sum())


def _class_loss(out: Any, labels: torch.Tensor) -> torch.Tensor:
    logits = logits_of(out)
    if labels.is_floating_point():  # regression (num_labels == 1): mean squared error
        return F.mse_loss(logits.reshape(labels.shape), labels)
    return F.cross_entropy(logits, labels)


def _check_tokens(problem: Problem, shift: bool) -> Problem:
    """Refuse data without a single target token (the mean would be 0/0)."""
    from .._batches import as_batches

    for data, what in ((problem.data, "data"), (problem.test_data, "test_data")):
        if data is None:
            continue
        batches = as_batches(data, None, what)
        if sum(problem.count_fn(x, y) for x, y in batches) == 0:
            kind = "shifted labels" if shift else "labels"
            raise WeightspaceError(
                f"{what}: no target token (every {kind} entry is {IGNORE_INDEX}); give "
                "sequences of two tokens or more, or labels to predict"
            )
    return problem


def _pad_id(model: torch.nn.Module, pad_token_id: int | None) -> int:
    if pad_token_id is not None:
        return int(pad_token_id)
    config = getattr(model, "config", None)
    value = getattr(config, "pad_token_id", None)
    return 0 if value is None else int(value)


def _lm(
    family: str,
    model: torch.nn.Module,
    data: Any,
    *,
    shift: bool,
    test_data: Any,
    batch_size: int | None,
    pad_token_id: int | None,
    ignore_index: int,
    name: str | None,
    **masking: Any,
) -> Problem:
    pad = _pad_id(model, pad_token_id)

    def prepare(d: Any, what: str) -> Any:
        if d is None:
            return None
        return text_data(d, family, batch_size=batch_size, pad_token_id=pad, what=what, **masking)

    problem = Problem(
        model,
        functools.partial(token_loss, shift=shift, ignore_index=ignore_index),
        prepare(data, "data"),
        test_data=prepare(test_data, "test_data"),
        name=name or f"{family} ({type(model).__name__})",
        count_fn=functools.partial(token_count, shift=shift, ignore_index=ignore_index),
        info={"family": family, "ignore_index": ignore_index, "weighting": "target tokens"},
    )
    return _check_tokens(problem, shift)


def causal_lm(
    model: torch.nn.Module,
    data: Any,
    *,
    test_data: Any = None,
    batch_size: int | None = None,
    pad_token_id: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    name: str | None = None,
) -> Problem:
    """A causal language model (GPT-2 style): the mean next-token cross-entropy over every
    non-ignored target token of the data, exact across padded and uneven batches.

    Position ``t`` predicts ``labels[:, t + 1]`` (labels are the input ids, as Hugging Face
    takes them; the shift is done here). A batch's loss is the mean over its target tokens and
    its weight their number, so the objective is ``Σ token losses / Σ target tokens``.

    Args:
        model: any module called as ``model(input_ids=..., attention_mask=..., ...)``
            returning logits ``(B, T, V)`` (a tensor or a ``ModelOutput`` with ``.logits``).
        data: token ids ``(N, T)`` (tensor or array); a dict of sample-major tensors
            (``input_ids``, optional ``attention_mask`` and other model inputs, optional
            ``labels``); per-sample dicts of any lengths (a ``datasets.Dataset`` or a list;
            right-padded here); or an iterable of batches (dicts as a ``DataLoader`` with a
            collator yields, or ``(inputs, labels)`` pairs). Without ``labels``, the labels
            are the input ids with padding (``attention_mask == 0``) ignored.
        test_data: held-out data in the same forms.
        batch_size: split sample-major data into batches of this many sequences (otherwise
            ``Objective(batch_size=...)`` does; the value does not depend on it).
        pad_token_id: the id used to pad per-sample dicts (default the model config's
            ``pad_token_id``, else 0); padded positions are never targets.
        ignore_index: the label that marks "no target" (default -100).
        name: a label for captions (default ``"causal-lm (ModelClass)"``).

    Returns:
        a :class:`Problem` whose ``count_fn`` counts target tokens.

    Raises:
        WeightspaceError: data in no known form, or without a single target token.

    Example::

        problem = ws.problems.causal_lm(gpt2, {"input_ids": ids, "attention_mask": mask})
    """
    return _lm(
        "causal-lm",
        model,
        data,
        shift=True,
        test_data=test_data,
        batch_size=batch_size,
        pad_token_id=pad_token_id,
        ignore_index=ignore_index,
        name=name,
    )


def masked_lm(
    model: torch.nn.Module,
    data: Any,
    *,
    test_data: Any = None,
    batch_size: int | None = None,
    mask_token_id: int | None = None,
    mlm_probability: float = 0.15,
    seed: int = 0,
    pad_token_id: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    name: str | None = None,
) -> Problem:
    """A masked language model (BERT style): the mean cross-entropy over the masked tokens.

    Position ``t`` predicts ``labels[:, t]``; every label other than ``ignore_index`` is a
    target, and a batch weighs its number of targets.

    Args:
        model: any module called as ``model(input_ids=..., attention_mask=..., ...)``
            returning logits ``(B, T, V)``.
        data: as :func:`causal_lm`; with ``labels`` (the original id at masked positions,
            ``ignore_index`` elsewhere), or without them and with ``mask_token_id``: then a
            fixed masking is drawn here.
        test_data: held-out data in the same forms.
        batch_size: as :func:`causal_lm`.
        mask_token_id: the ``[MASK]`` id; masks unlabelled data once, here (each attended
            token with probability ``mlm_probability``, replaced by the mask id; no
            80/10/10 rule: an evaluation set, not training noise).
        mlm_probability: the share of tokens masked (default 0.15, as BERT).
        seed: seed of the masking (batches of an iterable use ``seed + i``).
        pad_token_id: as :func:`causal_lm`.
        ignore_index: the label that marks "no target" (default -100).
        name: a label for captions.

    Returns:
        a :class:`Problem` whose ``count_fn`` counts masked tokens.

    Raises:
        WeightspaceError: unlabelled data without ``mask_token_id``, or no target token.
    """
    if not 0.0 < float(mlm_probability) <= 1.0:
        raise WeightspaceError(
            f"mlm_probability: expected a share in (0, 1], got {mlm_probability!r}"
        )
    return _lm(
        "masked-lm",
        model,
        data,
        shift=False,
        test_data=test_data,
        batch_size=batch_size,
        pad_token_id=pad_token_id,
        ignore_index=ignore_index,
        name=name,
        mask_token_id=mask_token_id,
        mlm_probability=float(mlm_probability),
        seed=int(seed),
    )


def sequence_classification(
    model: torch.nn.Module,
    data: Any,
    *,
    test_data: Any = None,
    batch_size: int | None = None,
    pad_token_id: int | None = None,
    name: str | None = None,
) -> Problem:
    """A sequence classifier (``AutoModelForSequenceClassification`` style): the mean
    cross-entropy over sequences (mean squared error for float labels: regression).

    Args:
        model: any module called as ``model(input_ids=..., attention_mask=..., ...)``
            returning logits ``(B, C)`` (a tensor or a ``ModelOutput``).
        data: as :func:`causal_lm`, with ``labels`` (or ``label``): one class per sequence.
        test_data: held-out data in the same forms.
        batch_size: as :func:`causal_lm`.
        pad_token_id: as :func:`causal_lm`.
        name: a label for captions.

    Returns:
        a :class:`Problem` weighting sequences equally; accuracy is reported for classes.

    Raises:
        WeightspaceError: data without labels or in no known form.
    """
    pad = _pad_id(model, pad_token_id)

    def prepare(d: Any, what: str) -> Any:
        if d is None:
            return None
        return text_data(
            d, "sequence-classification", batch_size=batch_size, pad_token_id=pad, what=what
        )

    return Problem(
        model,
        _class_loss,
        prepare(data, "data"),
        test_data=prepare(test_data, "test_data"),
        name=name or f"sequence-classification ({type(model).__name__})",
        info={"family": "sequence-classification", "weighting": "samples"},
    )
