"""Typed results and their one file format: ``ws.save(result, path)`` / ``ws.load(path)``.

Every result kind (a surface, a line, a spectrum, a projection, a loss topology, a set of
jump-and-retrain samples, eigenpairs) is a frozen dataclass holding its values, its axes and
its provenance (``metadata``). On disk it is ``PATH.npz`` (the arrays; ``allow_pickle=False``)
and ``PATH.json`` (the sidecar: ``kind``, ``format_version``, the weightspace version, the
result's scalar ``fields`` and its ``metadata``). The ``.npz`` is renamed into place before
the sidecar, so a result whose sidecar is missing was never completely written: it is treated
as absent. :func:`load` dispatches on the stored kind; a file of another kind than asked for,
or of another format version, is a one-line error naming both.

Example::

    surf = ws.evaluate_plane(objective, c, d1, d2, xs, ys)
    ws.save(surf, "out/surface")
    ws.load("out/surface").values.shape
    # -> (25, 25)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._threads import recorded_threads
from .._version import __version__
from ..errors import CorruptRunError, WeightspaceError
from ..outputs import check_result_target
from ..store import MAX_HEADER_BYTES, atomic_path, regular_file, write_json
from ._flat import jsonable
from .projection import Projection, RunProjection

__all__ = ["Projection", "RunProjection", "kind_of", "load", "result_paths", "save"]

Encode = Callable[[Any], tuple[dict[str, np.ndarray], dict[str, Any]]]
Decode = Callable[[dict[str, np.ndarray], dict[str, Any], dict[str, Any]], Any]


@dataclass(frozen=True)
class Codec:
    """How one result kind is stored: its class, format version and (de)serialisers."""

    kind: str
    cls: type
    version: int
    encode: Encode
    decode: Decode


_CODECS: dict[str, Codec] = {}


def register(codec: Codec) -> Codec:
    """Make ``codec``'s kind known to :func:`save` and :func:`load`."""
    _CODECS[codec.kind] = codec
    return codec


def _codec_for(result: Any) -> Codec:
    from . import _codecs  # noqa: F401  (registers the kinds on first use)

    for codec in _CODECS.values():
        if type(result) is codec.cls:
            return codec
    kinds = ", ".join(f"{c.cls.__name__} ({c.kind})" for c in _CODECS.values())
    raise WeightspaceError(
        f"result: cannot save a {type(result).__name__}; the result kinds are {kinds}"
    )


def result_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(PATH.npz, PATH.json)`` for a path given with or without either suffix."""
    base = Path(path)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")


def save(result: Any, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write ``result`` as ``PATH.npz`` + ``PATH.json``, atomically; returns the ``.npz``.

    Args:
        result: a result dataclass (:class:`~weightspace.Surface`, :class:`~weightspace.Line`,
            :class:`~weightspace.CurvatureAlong`, :class:`Projection`, ...).
        path: the destination, with or without the ``.npz``/``.json`` suffix.
        overwrite: replace an existing weightspace result there (files that weightspace did
            not write are never replaced).

    Raises:
        WeightspaceError: not a result kind, an array holding Python objects, or a
        destination that exists (without ``overwrite``) or is not weightspace's.
    """
    codec = _codec_for(result)
    check_result_target(path, overwrite=overwrite, what="path")
    arrays, fields = codec.encode(result)
    for name, a in arrays.items():
        if np.asarray(a).dtype.hasobject:
            raise WeightspaceError(f"result array {name!r} holds Python objects; use numbers")
    npz, side = result_paths(path)
    npz.parent.mkdir(parents=True, exist_ok=True)
    sidecar = {
        "kind": codec.kind,
        "format_version": codec.version,
        "weightspace_version": __version__,
        "fields": jsonable(fields),
        "metadata": jsonable({**recorded_threads(), **(getattr(result, "metadata", None) or {})}),
    }
    side.unlink(missing_ok=True)  # an old sidecar must not vouch for a new, partial .npz
    with atomic_path(npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    try:
        write_json(side, sidecar)  # last: a result without its sidecar is incomplete
    except BaseException:
        npz.unlink(missing_ok=True)  # both files or neither (a full disk, an interrupt)
        raise
    return npz


def _read_sidecar(side: Path) -> dict[str, Any]:
    if not side.is_file():
        raise WeightspaceError(
            f"result {str(side.with_suffix(''))!r}: no {side.name} beside it (missing or "
            "never completely written); check the path or compute the result again"
        )
    regular_file(side, "result sidecar", max_bytes=MAX_HEADER_BYTES)
    try:
        sidecar = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise CorruptRunError(f"result sidecar {side}: unreadable ({e})") from None
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("kind"), str):
        raise CorruptRunError(f"result sidecar {side}: no 'kind'; not a weightspace result")
    return sidecar


def kind_of(path: str | os.PathLike) -> str:
    """The kind stored at ``path`` (reading the sidecar only)."""
    return _read_sidecar(result_paths(path)[1])["kind"]


def load(path: str | os.PathLike, kind: str | None = None) -> Any:
    """Read a result written by :func:`save`; pickles are refused.

    Args:
        path: with or without the ``.npz``/``.json`` suffix.
        kind: the kind expected (``"surface"``, ...), or None for any.

    Raises:
        WeightspaceError: no such result, another kind than ``kind``, another format version.
        CorruptRunError: an unreadable file.
    """
    from . import _codecs  # noqa: F401  (registers the kinds on first use)

    npz, side = result_paths(path)
    sidecar = _read_sidecar(side)
    stored = sidecar["kind"]
    if kind is not None and stored != kind:
        raise WeightspaceError(
            f"result {str(npz)!r} is a {stored!r} result, expected a {kind!r} one; pass a "
            f"{kind} file"
        )
    codec = _CODECS.get(stored)
    if codec is None:
        raise WeightspaceError(
            f"result {str(npz)!r}: unknown kind {stored!r}; the kinds are {', '.join(_CODECS)}"
        )
    version = sidecar.get("format_version")
    if version != codec.version:
        raise WeightspaceError(
            f"result {str(npz)!r}: a {stored} result of format version {version!r}, this "
            f"weightspace reads version {codec.version}; compute it again with this version"
        )
    regular_file(npz, "result")
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CorruptRunError(f"result {npz}: unreadable ({e})") from None
    try:
        return codec.decode(arrays, sidecar.get("fields", {}), sidecar.get("metadata", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptRunError(
            f"result {npz}: does not hold a complete {stored} result (missing {e}); "
            "compute it again"
        ) from None
