"""``hf-causal-lm:DIR``, ``hf-masked-lm:DIR``, ``hf-sequence-classification:DIR``: a model
saved with ``save_pretrained`` and a local data file, read with no network access."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import WeightspaceError
from ..problems import Problem
from ._text import causal_lm, masked_lm, sequence_classification

__all__ = ["HF_KINDS", "load_hf_model", "load_hf_problem"]

HF_KINDS = ("hf-causal-lm", "hf-masked-lm", "hf-sequence-classification")
_AUTO = {
    "hf-causal-lm": "AutoModelForCausalLM",
    "hf-masked-lm": "AutoModelForMaskedLM",
    "hf-sequence-classification": "AutoModelForSequenceClassification",
}
DATA_FORMATS = ".txt (text), .jsonl (one {'text': ...} per line) or .npy (token ids)"


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise WeightspaceError(
            "problem: hf-* problems need transformers; pip install 'weightspace[huggingface]'"
        ) from None
    return transformers


def _model(kind: str, folder: Path) -> torch.nn.Module:
    auto = getattr(_transformers(), _AUTO[kind])
    try:
        model = auto.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise WeightspaceError(
            f"problem: cannot load a model from {str(folder)!r} with {_AUTO[kind]} "
            f"({str(e).splitlines()[0]}); give a folder written by save_pretrained"
        ) from e
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False  # our own model: no key/value cache at evaluation
    return model.eval()


def _tokenizer(folder: Path, data: Path) -> Any:
    try:
        return _transformers().AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise WeightspaceError(
            f"data: {str(data)!r} is text, but no tokenizer loads from {str(folder)!r} "
            f"({str(e).splitlines()[0]}); save the tokenizer beside the model "
            "(tokenizer.save_pretrained) or give token ids as .npy"
        ) from e


def _chunks(ids: np.ndarray, seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """A 1-D token stream -> ``(ceil(L / seq_len), seq_len)`` blocks, the last right-padded."""
    n = math.ceil(len(ids) / seq_len)
    out = np.full(n * seq_len, pad_id, dtype=np.int64)
    mask = np.zeros(n * seq_len, dtype=np.int64)
    out[: len(ids)], mask[: len(ids)] = ids, 1
    return {
        "input_ids": torch.from_numpy(out.reshape(n, seq_len)),
        "attention_mask": torch.from_numpy(mask.reshape(n, seq_len)),
    }


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise WeightspaceError(f"data: line {i} of {str(path)!r} is not JSON ({e})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise WeightspaceError(
                f"data: line {i} of {str(path)!r} has no 'text' string; write one "
                '{"text": ..., "label": ...} object per line'
            )
        rows.append(row)
    if not rows:
        raise WeightspaceError(f"data: {str(path)!r} holds no line; give at least one text")
    return rows


def _label(value: Any, label2id: dict[str, int], where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise WeightspaceError(f"data: {where} has label {value!r}; give an integer class")
    if isinstance(value, str):
        if value not in label2id:
            raise WeightspaceError(
                f"data: {where} has label {value!r}, not one of the model's labels "
                f"{sorted(label2id)}; give an integer class or a name in config.label2id"
            )
        return label2id[value]
    return value


def _read(
    kind: str, folder: Path, path: Path, model: torch.nn.Module, seq_len: int
) -> tuple[Any, int | None]:
    """The data file as tokenized data, and the tokenizer's mask id (None without one)."""
    config = model.config
    pad = getattr(config, "pad_token_id", None)
    if path.suffix == ".npy":
        if kind == "hf-sequence-classification":
            raise WeightspaceError(
                f"data: {str(path)!r} holds no labels; give .jsonl with text and label"
            )
        ids = np.load(path, allow_pickle=False)
        if ids.dtype.kind not in "iu" or ids.ndim not in (1, 2):
            raise WeightspaceError(
                f"data: {str(path)!r} holds {ids.dtype} of shape {ids.shape}; expected integer "
                "token ids, a stream (L,) or sequences (N, T)"
            )
        data = _chunks(ids, seq_len, pad or 0) if ids.ndim == 1 else torch.from_numpy(ids)
        return data, None
    if path.suffix not in (".txt", ".jsonl"):
        raise WeightspaceError(f"data: {str(path)!r}: expected {DATA_FORMATS}")
    tok = _tokenizer(folder, path)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (pad or 0)
    if path.suffix == ".txt":
        if kind == "hf-sequence-classification":
            raise WeightspaceError(
                f"data: {str(path)!r} holds no labels; give .jsonl with text and label"
            )
        text = path.read_text(encoding="utf-8")
        ids = np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
        if len(ids) == 0:
            raise WeightspaceError(f"data: {str(path)!r} holds no token; give some text")
        return _chunks(ids, seq_len, pad), tok.mask_token_id
    samples = []
    label2id = dict(getattr(config, "label2id", None) or {})
    for i, row in enumerate(_jsonl(path), start=1):
        enc = tok(row["text"], truncation=True, max_length=seq_len)
        sample = {"input_ids": list(enc["input_ids"])}
        if "attention_mask" in enc:
            sample["attention_mask"] = list(enc["attention_mask"])
        if kind == "hf-sequence-classification":
            if "label" not in row:
                raise WeightspaceError(f"data: line {i} of {str(path)!r} has no 'label'")
            sample["labels"] = _label(row["label"], label2id, f"line {i}")
        samples.append(sample)
    return samples, tok.mask_token_id


def _folder(spec: str) -> tuple[str, Path]:
    """``(kind, folder)`` of an ``hf-*:DIR`` spec whose folder holds a ``config.json``."""
    kind, sep, folder = spec.partition(":")
    if kind not in HF_KINDS or not sep or not folder:
        raise WeightspaceError(
            f"problem: expected {', '.join(k + ':DIR' for k in HF_KINDS)}, got {spec!r}"
        )
    if not (Path(folder) / "config.json").is_file():
        raise WeightspaceError(
            f"problem: {folder!r} has no config.json; give a folder written by save_pretrained"
        )
    return kind, Path(folder)


def load_hf_model(spec: str) -> torch.nn.Module:
    """The model of an ``hf-*:DIR`` spec alone, without data (what matching checkpoint
    tensors needs: ``weightspace import``). Loaded with ``local_files_only=True``.

    Raises:
        WeightspaceError: an unknown kind, a folder that does not load.
    """
    kind, root = _folder(spec)
    return _model(kind, root)


def load_hf_problem(
    spec: str,
    data: str | os.PathLike,
    *,
    seq_len: int = 128,
    batch_size: int | None = None,
    seed: int = 0,
) -> Problem:
    """A problem from a Hugging Face model folder and a local data file.

    Args:
        spec: ``hf-causal-lm:DIR``, ``hf-masked-lm:DIR`` or ``hf-sequence-classification:DIR``,
            ``DIR`` written by ``save_pretrained`` (the tokenizer beside it for text data).
            Loaded with ``local_files_only=True``: nothing is downloaded.
        data: ``.txt`` (one token stream, cut into sequences of ``seq_len``), ``.jsonl``
            (one ``{"text": ..., "label": ...}`` object per line; each text a sequence,
            truncated to ``seq_len``; ``label`` an integer class or a name in the config's
            ``label2id``, for sequence classification), or ``.npy`` (integer token ids: a
            stream ``(L,)`` cut like text, or sequences ``(N, T)``; no tokenizer needed).
        seq_len: tokens per sequence (default 128).
        batch_size: sequences per batch (default: one batch; ``Objective(batch_size=)``
            can split it too).
        seed: seed of the masking, for a masked LM on unlabelled data.

    Returns:
        the family's :class:`Problem` (:func:`causal_lm`, :func:`masked_lm` or
        :func:`sequence_classification`), named after the folder.

    Raises:
        WeightspaceError: an unknown kind, a folder or file that does not load, data in no
        known format.
    """
    if not isinstance(seq_len, int) or seq_len < 2:
        raise WeightspaceError(f"seq_len: expected an integer of 2 or more, got {seq_len!r}")
    kind, root = _folder(spec)
    path = Path(data)
    if not path.is_file():
        raise WeightspaceError(f"data: file {str(data)!r} does not exist; check the path")
    model = _model(kind, root)
    tokens, mask_id = _read(kind, root, path, model, seq_len)
    name = f"{kind.removeprefix('hf-')} {root.name}"
    if kind == "hf-causal-lm":
        problem = causal_lm(model, tokens, batch_size=batch_size, name=name)
    elif kind == "hf-masked-lm":
        problem = masked_lm(
            model, tokens, batch_size=batch_size, mask_token_id=mask_id, seed=seed, name=name
        )
    else:
        problem = sequence_classification(model, tokens, batch_size=batch_size, name=name)
    problem.info.update({"spec": spec, "data_file": str(path), "seq_len": seq_len})
    return problem
