"""The file format of :class:`~weightspace.between.results.Connection` (kind ``connection``).

Its parts are stored as the kinds they are: each profile as a ``line`` under
``profile{k}/``, the surface as a ``surface`` under ``surface/``, each spectrum as a
``spectrum`` under ``spectrum{k}/``, each with its own metadata, by the codecs of those kinds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..results import _CODECS
from ..results._flat import flatten, unflatten
from .results import Connection

Arrays = dict[str, np.ndarray]
Fields = dict[str, Any]


def _put(kind: str, obj: Any, prefix: str, arrays: Arrays, fields: Fields) -> None:
    a, f = _CODECS[kind].encode(obj)
    arrays.update({prefix + k: v for k, v in a.items()})
    fields.update({prefix + k: v for k, v in f.items()})
    fields[prefix + "metadata"] = obj.metadata


def _get(kind: str, prefix: str, arrays: Arrays, fields: Fields) -> Any:
    a = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    f = {k[len(prefix) :]: v for k, v in fields.items() if k.startswith(prefix)}
    return _CODECS[kind].decode(a, f, f.pop("metadata", {}))


def encode(c: Connection) -> tuple[Arrays, Fields]:
    arrays: Arrays = {}
    fields: Fields = {}
    bare = dataclasses.replace(c, profiles={}, perms={}, surface=None, spectra={})
    flatten(bare, "", arrays, fields)
    fields["profiles"] = list(c.profiles)
    for k, line in enumerate(c.profiles.values()):
        _put("line", line, f"profile{k}/", arrays, fields)
    fields["perms"] = list(c.perms)
    for g, p in c.perms.items():
        arrays[f"perm/{g}"] = np.asarray(p)
    fields["surface"] = c.surface is not None
    if c.surface is not None:
        _put("surface", c.surface, "surface/", arrays, fields)
    fields["spectra"] = list(c.spectra)
    for k, sp in enumerate(c.spectra.values()):
        _put("spectrum", sp, f"spectrum{k}/", arrays, fields)
    return arrays, fields


def decode(arrays: Arrays, fields: Fields, metadata: dict[str, Any]) -> Connection:
    profiles = {
        name: _get("line", f"profile{k}/", arrays, fields)
        for k, name in enumerate(fields["profiles"])
    }
    spectra = {
        name: _get("spectrum", f"spectrum{k}/", arrays, fields)
        for k, name in enumerate(fields["spectra"])
    }
    surface = _get("surface", "surface/", arrays, fields) if fields["surface"] else None
    perms = {g: arrays[f"perm/{g}"] for g in fields["perms"]}
    return unflatten(
        Connection, "", arrays, fields, metadata=metadata, profiles=profiles, spectra=spectra,
        surface=surface, perms=perms,
    )  # fmt: skip
