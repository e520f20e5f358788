"""Directions in weight space and their normalisation (coordinates on a plane:
:mod:`weightspace.overlay`).

A direction is a flat vector ``d: (n,)`` laid out like the parameters (a
:class:`~weightspace.ParamLayout`). Any vector becomes one: Gaussian noise (Li et al. 2018), a
principal component of a trajectory, a Hessian eigenvector, the difference of two points, a
vector loaded from a ``.npy`` file. Filter normalisation (Li et al. 2018, Sec. 4) rescales it
so that every filter of ``d`` has the norm of the matching filter of ``theta``::

    d_i <- d_i * ||theta_i|| / (||d_i|| + 1e-10)      for every slice i along dim 0 of a weight

1-D tensors (biases, BatchNorm affine parameters) are zeroed (``ignore="biasbn"``, the default)
or scaled to the tensor's norm. Buffers (BatchNorm statistics) are not in the layout, so no
direction ever moves them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .checks import Seed, as_generator, as_vector
from .errors import WeightspaceError
from .layout import ParamLayout

__all__ = [
    "Directions",
    "cosine",
    "directions_from_vectors",
    "interpolation_directions",
    "load_directions",
    "normalize_direction",
    "plane_through",
    "random_directions",
]

Normalization = Literal["filter", "layer", "none"]
Ignore = Literal["biasbn"] | None
NORMALIZATIONS = ("filter", "layer", "none")
EPS = 1e-10  # Li et al.'s guard against a zero filter of the direction


@dataclass(frozen=True)
class Directions:
    """``k`` directions through weight space, with where they came from.

    Attributes:
        vectors: ``(k, n)`` the directions; ``d[i]`` is ``vectors[i]``.
        kind: ``"random"``, ``"pca"``, ``"eigen"``, ``"interpolation"``, ``"file"`` or
            ``"vectors"``.
        normalization: ``"filter"``, ``"layer"`` or ``"none"``.
        ignore: ``"biasbn"`` (1-D tensors zeroed) or None.
        metadata: seed, source file, orthogonalisation, ...

    Example:
        >>> theta = torch.randn(10, dtype=torch.float64)
        >>> layout = ParamLayout(("w", "b"), ((2, 4), (2,)))
        >>> d = random_directions(theta, layout, seed=0)
        >>> len(d), tuple(d[0].shape), bool(d[0][8:].eq(0).all())
        (2, (10,), True)
    """

    vectors: torch.Tensor
    kind: str
    normalization: str = "none"
    ignore: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.vectors[i]

    def __iter__(self):
        return iter(self.vectors)

    @property
    def norms(self) -> tuple[float, ...]:
        """Euclidean norm of each direction."""
        return tuple(float(v) for v in torch.linalg.vector_norm(self.vectors.double(), dim=1))

    @property
    def cosine(self) -> float | None:
        """Cosine between the first two directions (None for a single direction)."""
        if len(self) < 2:
            return None
        return cosine(self.vectors[0], self.vectors[1])

    def describe(self) -> dict[str, Any]:
        """JSON-ready record for a result's metadata."""
        return {
            "kind": self.kind,
            "normalization": self.normalization,
            "ignore": self.ignore,
            "count": len(self),
            "norms": list(self.norms),
            "cosine": self.cosine,
            **self.metadata,
        }


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of the angle between two flat vectors, computed in float64."""
    a, b = a.double(), b.double()
    den = float(torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))
    return float(a @ b) / den if den > 0 else float("nan")


# ---------------------------------------------------------------------------- helpers
def _segments(layout: ParamLayout, normalization: Normalization) -> tuple[torch.Tensor, int]:
    """Segment id of every element: one segment per filter (or per tensor for "layer")."""
    ids, start = [], 0
    for shape in layout.shapes:
        numel = int(np.prod(shape)) if shape else 1
        k = shape[0] if (normalization == "filter" and len(shape) > 1) else 1
        ids.append(torch.arange(start, start + k).repeat_interleave(numel // max(k, 1)))
        start += k
    return torch.cat(ids), start


def _one_d_mask(layout: ParamLayout) -> torch.Tensor:
    mask = torch.zeros(layout.numel, dtype=torch.bool)
    for sl, is_filter in zip(layout.slices, layout.is_filter):
        if not is_filter:
            mask[sl] = True
    return mask


# ---------------------------------------------------------------------------- normalisation
def normalize_direction(
    d: torch.Tensor,
    theta: torch.Tensor,
    layout: ParamLayout,
    normalization: Normalization = "filter",
    ignore: Ignore = "biasbn",
) -> torch.Tensor:
    """Rescale a direction to the scale of ``theta``, filter by filter or layer by layer.

    Args:
        d: ``(n,)`` the raw direction (not modified).
        theta: ``(n,)`` the point whose filter norms set the scale.
        layout: which slices of the vectors are which tensors.
        normalization: ``"filter"`` (Li et al.: every slice along dim 0 of a weight tensor
            gets that slice's norm in ``theta``; a 1-D tensor counts as one filter),
            ``"layer"`` (every tensor gets its norm in ``theta``) or ``"none"``.
        ignore: ``"biasbn"`` zeroes the 1-D tensors (biases, BatchNorm weights), whatever
            the normalisation; None keeps them (scaled to the tensor's norm, or raw for
            ``"none"``).

    Returns:
        ``(n,)`` the normalised direction, in ``d``'s dtype and device.

    Raises:
        WeightspaceError: unknown option, mismatched shapes, or a zero direction.
    """
    if normalization not in NORMALIZATIONS:
        raise WeightspaceError(
            f"normalization: expected one of {', '.join(NORMALIZATIONS)}, got {normalization!r}"
        )
    if ignore not in ("biasbn", None):
        raise WeightspaceError(f"ignore: expected 'biasbn' or None, got {ignore!r}")
    n = layout.numel
    d = as_vector(d, n, "direction")
    theta = as_vector(theta, n, "theta", dtype=d.dtype, device=d.device)
    out = d.clone()
    if normalization != "none":
        seg, n_seg = _segments(layout, normalization)
        seg = seg.to(d.device)
        sq = torch.zeros(n_seg, dtype=torch.float64, device=d.device)
        d_norm = sq.index_add(0, seg, d.double() ** 2).sqrt()
        t_norm = sq.index_add(0, seg, theta.double() ** 2).sqrt()
        out = (d.double() * (t_norm / (d_norm + EPS))[seg]).to(d.dtype)
    if ignore == "biasbn":
        out[_one_d_mask(layout).to(d.device)] = 0
    if not bool(out.abs().max() > 0):
        raise WeightspaceError(
            f"direction: has zero norm after normalization={normalization!r}, "
            f"ignore={ignore!r}; use ignore=None or a direction that moves the weight tensors"
        )
    return out


# ---------------------------------------------------------------------------- constructors
def random_directions(
    theta: torch.Tensor,
    layout: ParamLayout,
    n: int = 2,
    *,
    normalization: Normalization = "filter",
    ignore: Ignore = "biasbn",
    orthogonalize: bool = False,
    seed: Seed = None,
) -> Directions:
    """Gaussian directions, normalised to ``theta`` (Li et al. 2018).

    Args:
        theta: ``(n_params,)`` the centre whose scale the directions take.
        layout: the parameters' layout.
        n: how many directions.
        normalization: ``"filter"`` (default), ``"layer"`` or ``"none"``.
        ignore: ``"biasbn"`` (default: 1-D tensors zeroed) or None.
        orthogonalize: make the directions exactly orthogonal (Gram-Schmidt before the
            normalisation, then each later one re-orthogonalised and rescaled to its norm).
        seed: int, generator or None (a fresh seed, recorded in the metadata).

    Returns:
        :class:`Directions` of kind ``"random"``, in ``theta``'s dtype and device.
    """
    if not isinstance(n, int) or n < 1:
        raise WeightspaceError(f"n: expected a positive number of directions, got {n!r}")
    theta = as_vector(theta, layout.numel, "theta")
    gen = as_generator(seed)
    used_seed = None if isinstance(seed, torch.Generator) else int(gen.initial_seed())
    raw = torch.randn((n, layout.numel), generator=gen, dtype=theta.dtype).to(theta.device)
    vecs = [normalize_direction(r, theta, layout, normalization, ignore) for r in raw]
    if orthogonalize:
        vecs = _gram_schmidt(vecs)
    meta = {"seed": used_seed, "orthogonalize": orthogonalize}
    return Directions(torch.stack(vecs), "random", normalization, ignore, meta)


def _gram_schmidt(vecs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Orthogonalise later vectors against earlier ones, keeping each one's norm."""
    out: list[torch.Tensor] = []
    for v in vecs:
        w, norm = v.double(), torch.linalg.vector_norm(v.double())
        for u in out:
            u = u.double()
            w = w - (w @ u) / (u @ u) * u
        wn = torch.linalg.vector_norm(w)
        if not bool(wn > 1e-12 * norm):
            raise WeightspaceError(
                "directions: linearly dependent, cannot orthogonalise; use independent vectors"
            )
        out.append((w * (norm / wn)).to(v.dtype))
    return out


def directions_from_vectors(
    vectors: Any,
    *,
    theta: torch.Tensor | None = None,
    layout: ParamLayout | None = None,
    normalization: Normalization = "none",
    ignore: Ignore = None,
    orthogonalize: bool = False,
    kind: str = "vectors",
    metadata: Mapping[str, Any] | None = None,
) -> Directions:
    """Directions from any ``(k, n)`` vectors: PCA components, eigenvectors, a file's rows.

    Args:
        vectors: ``(k, n)`` or ``(n,)`` tensor, array, or sequence of ``(n,)`` vectors.
        theta, layout: needed for ``normalization`` other than ``"none"`` or for
            ``ignore="biasbn"`` (GradVis' filter-normalised PCA directions).
        normalization, ignore, orthogonalize: as in :func:`random_directions`.
        kind: the source, recorded (``"pca"``, ``"eigen"``, ...).
        metadata: extra facts to record (explained variance, eigenvalues, file name).

    Returns:
        :class:`Directions`; device and dtype follow ``theta`` when given.
    """
    if isinstance(vectors, Sequence) and not isinstance(vectors, (torch.Tensor, np.ndarray)):
        vectors = torch.stack([torch.as_tensor(np.asarray(v)) for v in vectors])
    v = torch.as_tensor(vectors.detach() if isinstance(vectors, torch.Tensor) else vectors)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.shape[0] < 1:
        raise WeightspaceError(
            f"vectors: expected shape (k, n) or (n,), got {tuple(v.shape)}; stack one "
            "direction per row"
        )
    n = v.shape[1] if layout is None else layout.numel
    if theta is not None:
        theta = as_vector(theta, n, "theta")
    needs_layout = normalization != "none" or ignore is not None
    if needs_layout and (theta is None or layout is None):
        raise WeightspaceError(
            f"normalization={normalization!r}, ignore={ignore!r}: give theta and layout, or "
            "use normalization='none', ignore=None"
        )
    rows = []
    for i, row in enumerate(v):
        row = as_vector(row, n, f"vectors[{i}]")
        if theta is not None:
            row = row.to(dtype=theta.dtype, device=theta.device)
        if needs_layout:
            row = normalize_direction(row, theta, layout, normalization, ignore)
        if not bool(row.abs().max() > 0):
            raise WeightspaceError(f"vectors[{i}]: zero-norm direction; give a nonzero vector")
        rows.append(row)
    if orthogonalize:
        rows = _gram_schmidt(rows)
    meta = {"orthogonalize": orthogonalize, **dict(metadata or {})}
    return Directions(torch.stack(rows), kind, normalization, ignore, meta)


def load_directions(
    path: str | os.PathLike,
    *,
    theta: torch.Tensor | None = None,
    layout: ParamLayout | None = None,
    normalization: Normalization = "none",
    ignore: Ignore = None,
    orthogonalize: bool = False,
) -> Directions:
    """Directions stored in a ``.npy`` file of shape ``(k, n)`` or ``(n,)``, or in a result
    ``.npz``: a surface's plane (``directions``) or a spectrum's eigenvectors (no pickles).

    Raises:
        WeightspaceError: missing or unreadable file, wrong shape (naming the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightspaceError(f"directions file {path!r} does not exist; check the path")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                name = next((k for k in ("directions", "eigenvectors") if k in z.files), None)
                if name is None:
                    raise ValueError("it holds no 'directions' or 'eigenvectors'")
                arr = z[name]
        else:
            arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise WeightspaceError(
            f"directions file {path!r}: unreadable ({e}); give a (k, n) float array saved with "
            "numpy.save, or a surface or spectrum result (.npz)"
        ) from None
    try:
        return directions_from_vectors(
            arr,
            theta=theta,
            layout=layout,
            normalization=normalization,
            ignore=ignore,
            orthogonalize=orthogonalize,
            kind="file",
            metadata={"file": path},
        )
    except WeightspaceError as e:
        raise type(e)(f"directions file {path!r}: {e}") from None


def interpolation_directions(theta_a: Any, theta_b: Any) -> Directions:
    """The direction ``theta_b - theta_a`` (Goodfellow et al. 2015): alpha=1 reaches b."""
    a = as_vector(theta_a, int(np.shape(theta_a)[-1]), "theta_a")
    b = as_vector(theta_b, a.shape[0], "theta_b", dtype=a.dtype, device=a.device)
    d = b - a
    if not bool(d.abs().max() > 0):
        raise WeightspaceError(
            "theta_b: equals theta_a, so the interpolation direction has zero norm; give two "
            "different points"
        )
    return Directions(d[None], "interpolation", "none", None, {"points": 2})


def plane_through(
    theta_a: Any, theta_b: Any, theta_c: Any, *, orthogonalize: bool = False
) -> Directions:
    """The plane through three points, centred on ``theta_a``: ``d1 = b - a``, ``d2 = c - a``.

    With ``orthogonalize=True`` ``d2`` is made orthogonal to ``d1`` and rescaled to
    ``||d1||``, so that the grid units of both axes are equal (Garipov et al. 2018).
    """
    a = as_vector(theta_a, int(np.shape(theta_a)[-1]), "theta_a")
    b = as_vector(theta_b, a.shape[0], "theta_b", dtype=a.dtype, device=a.device)
    c = as_vector(theta_c, a.shape[0], "theta_c", dtype=a.dtype, device=a.device)
    d1, d2 = b - a, c - a
    if orthogonalize:
        d1, d2 = _gram_schmidt([d1, d2])
        d2 = d2 * (torch.linalg.vector_norm(d1) / torch.linalg.vector_norm(d2))
    vecs = torch.stack([d1, d2])
    if float(abs(cosine(d1, d2))) > 1 - 1e-12 or not bool((vecs.abs().amax(1) > 0).all()):
        raise WeightspaceError(
            "theta_a, theta_b, theta_c: the three points are collinear or coincide; give "
            "three points that span a plane"
        )
    return Directions(
        vecs, "interpolation", "none", None, {"points": 3, "orthogonalize": orthogonalize}
    )
