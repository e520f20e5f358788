"""The file format of every result kind (registered with :mod:`weightspace.results`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import Oscillations, PathMetrics
from ..curvature import CurvatureAlong, Eigenpairs, SpectralDensity
from ..landscape import Curve, Curves, Line, PlaneTrajectory, Surface
from ..projection.nulls import NullComparison
from ..sampling import JumpSamples
from ..topology import LossTopology
from . import Codec, register
from ._flat import flatten, unflatten
from .projection import Projection, RunProjection

Arrays = dict[str, np.ndarray]
Fields = dict[str, Any]


def _plain(cls: type) -> tuple[Any, Any]:
    """Encode/decode for a dataclass of arrays, scalars and ``metadata`` only."""

    def encode(result: Any) -> tuple[Arrays, Fields]:
        arrays: Arrays = {}
        fields: Fields = {}
        flatten(result, "", arrays, fields)
        return arrays, fields

    def decode(arrays: Arrays, fields: Fields, metadata: dict[str, Any]) -> Any:
        return unflatten(cls, "", arrays, fields, metadata=metadata)

    return encode, decode


def _with_items(cls: type, name: str, item: type, prefix: str) -> tuple[Any, Any]:
    """Encode/decode for a result whose field ``name`` is a tuple of ``item`` dataclasses
    (a surface's trajectories, a spectrum's densities), each stored under ``prefix{k}/``."""

    def encode(result: Any) -> tuple[Arrays, Fields]:
        arrays: Arrays = {}
        fields: Fields = {}
        items = getattr(result, name)
        flatten(dataclasses.replace(result, **{name: ()}), "", arrays, fields)
        fields[name] = len(items)
        for k, x in enumerate(items):
            flatten(x, f"{prefix}{k}/", arrays, fields)
            if hasattr(x, "metadata"):
                fields[f"{prefix}{k}/metadata"] = x.metadata
        return arrays, fields

    def decode(arrays: Arrays, fields: Fields, metadata: dict[str, Any]) -> Any:
        has_meta = any(f.name == "metadata" for f in dataclasses.fields(item))
        items = tuple(
            unflatten(item, f"{prefix}{k}/", arrays, fields,
                      **({"metadata": fields.get(f"{prefix}{k}/metadata", {})} if has_meta else {}))
            for k in range(int(fields[name]))
        )  # fmt: skip
        return unflatten(cls, "", arrays, fields, metadata=metadata, **{name: items})

    return encode, decode


# ---------------------------------------------------------------------------- projection
_RUN_PARTS = {"paths": PathMetrics, "null": NullComparison, "oscillations": Oscillations}


def _encode_projection(p: Projection) -> tuple[Arrays, Fields]:
    arrays: Arrays = {}
    fields: Fields = {}
    flatten(dataclasses.replace(p, runs=()), "", arrays, fields)
    fields["runs"] = len(p.runs)
    for r, run in enumerate(p.runs):
        pre = f"run{r}/"
        flatten(
            dataclasses.replace(run, paths=None, null=None, oscillations=None, metrics={}),
            pre,
            arrays,
            fields,
        )
        fields[pre + "metadata"] = run.metadata
        fields[pre + "metrics"] = list(run.metrics)
        for name, values in run.metrics.items():
            arrays[f"{pre}metric/{name}"] = values
        for part in _RUN_PARTS:
            value = getattr(run, part)
            fields[f"{pre}{part}"] = value is not None
            if value is not None:
                flatten(value, f"{pre}{part}/", arrays, fields)
    return arrays, fields


def _decode_projection(arrays: Arrays, fields: Fields, metadata: dict[str, Any]) -> Projection:
    runs = []
    for r in range(int(fields["runs"])):
        pre = f"run{r}/"
        parts = {
            part: unflatten(cls, f"{pre}{part}/", arrays, fields) if fields[pre + part] else None
            for part, cls in _RUN_PARTS.items()
        }
        metrics = {name: arrays[f"{pre}metric/{name}"] for name in fields[pre + "metrics"]}
        runs.append(
            unflatten(
                RunProjection,
                pre,
                arrays,
                fields,
                metrics=metrics,
                metadata=fields.get(pre + "metadata", {}),
                **parts,
            )
        )
    return unflatten(Projection, "", arrays, fields, metadata=metadata, runs=tuple(runs))


# ---------------------------------------------------------------------------- samples
def _encode_samples(s: JumpSamples) -> tuple[Arrays, Fields]:
    arrays: Arrays = {}
    fields: Fields = {}
    flatten(dataclasses.replace(s, settings={}), "", arrays, fields)
    fields["settings"] = s.settings
    return arrays, fields


def _decode_samples(arrays: Arrays, fields: Fields, metadata: dict[str, Any]) -> JumpSamples:
    paths = {
        "out": Path(fields["out"]),
        "origin": Path(fields["origin"]),
        "runs": tuple(Path(p) for p in fields["runs"]),
    }
    return unflatten(JumpSamples, "", arrays, fields, settings=fields["settings"], **paths)


for _codec in (
    Codec("surface", Surface, 2, *_with_items(Surface, "trajectories", PlaneTrajectory, "traj")),
    Codec("line", Line, 2, *_plain(Line)),
    Codec("curves", Curves, 1, *_with_items(Curves, "runs", Curve, "run")),
    Codec(
        "spectrum",
        CurvatureAlong,
        2,
        *_with_items(CurvatureAlong, "densities", SpectralDensity, "density"),
    ),
    Codec("projection", Projection, 2, _encode_projection, _decode_projection),
    Codec("topology", LossTopology, 2, *_plain(LossTopology)),
    Codec("jump_and_retrain", JumpSamples, 1, _encode_samples, _decode_samples),
    Codec("eigenpairs", Eigenpairs, 1, *_plain(Eigenpairs)),
):
    register(_codec)

from ..between import _codec as _connection  # noqa: E402  (its parts use the kinds above)
from ..between.results import Connection  # noqa: E402

register(Codec("connection", Connection, 1, _connection.encode, _connection.decode))
