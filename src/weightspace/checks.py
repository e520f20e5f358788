"""Input checks shared by the compute and render layers, each failing with a one-line
:class:`~weightspace.WeightspaceError` that names the argument."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import WeightspaceError


def as_array(x: Any, name: str, ndim: int | None = None, length: int | None = None) -> np.ndarray:
    """``x`` as a float64 array, checked for its number of dimensions and first-axis length.

    Raises:
        WeightspaceError: ``x`` is not numeric or has the wrong shape.
    """
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise WeightspaceError(
            f"{name}: expected a numeric array, got {type(x).__name__}; pass numbers"
        ) from None
    if ndim is not None and arr.ndim != ndim:
        raise WeightspaceError(
            f"{name}: expected a {ndim}-D array, got shape {arr.shape}; reshape it"
        )
    if length is not None and (arr.ndim == 0 or arr.shape[0] != length):
        raise WeightspaceError(
            f"{name}: expected length {length} along the first axis, got shape {arr.shape}; "
            "pass one value per point"
        )
    return arr
