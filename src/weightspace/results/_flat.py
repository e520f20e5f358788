"""Dataclasses to arrays and JSON fields and back: the building block of every result codec.

A frozen result is stored as named arrays (``.npz``, no pickles) and JSON fields (the
sidecar). :func:`flatten` puts every array (and tensor) field under ``prefix + name`` in
``arrays`` and every other field in ``fields``; :func:`unflatten` rebuilds the dataclass,
turning JSON lists back into tuples where the field is a tuple and arrays back into tensors
where they were tensors.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

TENSORS = "_tensors"  # field names (with prefix) that were torch tensors


def jsonable(x: Any) -> Any:
    """``x`` as JSON-native values (what a sidecar gives back): tuples become lists, NumPy
    scalars Python numbers, paths strings; non-finite floats stay floats."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (Path, torch.dtype, torch.device)):
        return str(x)
    if isinstance(x, float) and math.isnan(x):
        return x
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return json.loads(json.dumps(x, default=str))


def flatten(obj: Any, prefix: str, arrays: dict[str, np.ndarray], fields: dict[str, Any]) -> None:
    """Store the fields of dataclass ``obj`` (not ``metadata``) under ``prefix``."""
    for f in dataclasses.fields(obj):
        if f.name == "metadata":
            continue
        value = getattr(obj, f.name)
        key = prefix + f.name
        if isinstance(value, torch.Tensor):
            arrays[key] = value.detach().cpu().numpy()
            fields.setdefault(TENSORS, []).append(key)
        elif isinstance(value, np.ndarray):
            arrays[key] = value
        else:
            fields[key] = jsonable(value)


def unflatten(
    cls: type,
    prefix: str,
    arrays: dict[str, np.ndarray],
    fields: dict[str, Any],
    **given: Any,
) -> Any:
    """Rebuild a ``cls`` stored by :func:`flatten`; ``given`` fields win (nested results)."""
    tensors = set(fields.get(TENSORS, ()))
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if f.name in given:
            kwargs[f.name] = given[f.name]
        elif key in arrays:
            a = arrays[key]
            kwargs[f.name] = torch.from_numpy(a) if key in tensors else a
        elif key in fields:
            value = fields[key]
            if isinstance(value, list) and "tuple" in str(f.type):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            kwargs[f.name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KeyError(key)
    return cls(**kwargs)
