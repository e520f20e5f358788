"""Animations of training (GradVis's video): the trajectory growing over the loss surface,
beside the eigenvalue density at each checkpoint.

Frames are drawn once with matplotlib (Agg) and written as a GIF with pillow and, when the
``ffmpeg`` program is on the PATH, as an MP4 (H.264). Without ffmpeg the MP4 is skipped: this is
logged once per process and returned as a note (for the report); nothing fails.

Example:
    >>> import numpy as np
    >>> from weightspace.render import animate, plane_trajectory
    >>> xs = np.linspace(-1, 1, 21)
    >>> coords = np.column_stack([np.linspace(-0.8, 0, 10), np.linspace(0.8, 0, 10)])
    >>> result = animate.animate_trajectory("train", xs, xs, xs[None] ** 2 + xs[:, None] ** 2,
    ...                                     plane_trajectory(coords), formats=("gif",))
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..curvature import SpectralDensity
from ..errors import WeightspaceError
from ..landscape.results import PlaneTrajectory
from ..store import atomic_path
from ._common import (
    as_array,
    check_grid,
    check_trajectories,
    new_figure,
    prepare_values,
    value_label,
)

__all__ = ["AnimationResult", "animate_trajectory", "ffmpeg_available"]

logger = logging.getLogger(__name__)

FORMATS = ("gif", "mp4")
FFMPEG_MISSING = "MP4 skipped: ffmpeg not installed (install it, e.g. `apt-get install ffmpeg`)"
_reported: set[str] = set()


@dataclass(frozen=True)
class AnimationResult:
    """What :func:`animate_trajectory` wrote.

    Attributes:
        paths: format (``"gif"``, ``"mp4"``) -> file written.
        notes: one line per format skipped or failed, e.g. ``FFMPEG_MISSING``.
        n_frames: number of frames (one per checkpoint).
        size: ``(width, height)`` of a frame in pixels.
    """

    paths: dict[str, Path]
    notes: tuple[str, ...]
    n_frames: int
    size: tuple[int, int]


def ffmpeg_available() -> str | None:
    """Path of the ``ffmpeg`` program, or None."""
    return shutil.which("ffmpeg")


def _report_once(message: str) -> None:
    if message not in _reported:
        _reported.add(message)
        logger.warning(message)


def animate_trajectory(
    path: str | os.PathLike,
    xs: Any,
    ys: Any,
    values: Any,
    trajectory: PlaneTrajectory,
    *,
    densities: Sequence[SpectralDensity] | None = None,
    formats: Sequence[Literal["gif", "mp4"]] = FORMATS,
    fps: float = 4.0,
    dpi: int = 72,
    figsize: tuple[float, float] = (8.0, 3.4),
    log: bool = False,
    clip: float | None = None,
) -> AnimationResult:
    """Animate a trajectory growing over a surface, beside the spectrum at each checkpoint.

    Args:
        path: output path without suffix (a ``.gif``/``.mp4`` suffix is dropped);
            ``path.gif`` and ``path.mp4`` are written.
        xs: (nx,) first grid axis.
        ys: (ny,) second grid axis.
        values: (ny, nx) surface values, ``values[j, i]`` at ``(xs[i], ys[j])``.
        trajectory: the run on the plane, a :class:`~weightspace.landscape.PlaneTrajectory`
            (one of a surface's ``trajectories``, or
            :func:`weightspace.render.plane_trajectory` of bare coordinates); one frame per
            checkpoint, its step in the frame title.
        densities: optional eigenvalue densities, one per checkpoint on one common grid and
            width ``σ`` (a spectrum's ``densities``: :func:`weightspace.curvature_along`),
            drawn in a right panel with ``σ`` printed.
        formats: which of ``"gif"``, ``"mp4"`` to write.
        fps: frames per second.
        dpi: resolution of the frames (pixels = ``figsize · dpi``).
        figsize: frame size in inches.
        log: draw ``log10(values)``.
        clip: values above ``clip`` drawn at ``clip``.

    Returns:
        An :class:`AnimationResult` with the paths written and notes on what was skipped.

    Raises:
        WeightspaceError: bad shapes or options (checked before any frame is drawn).
    """
    xs, ys, values = check_grid(xs, ys, values)
    z = prepare_values(values, log, clip)
    traj = _one_trajectory(trajectory)
    coords = np.asarray(traj.coords, dtype=np.float64)
    steps = np.asarray(traj.steps, dtype=np.float64)
    spectrum = _check_densities(densities, coords.shape[0])
    formats = tuple(formats)
    if not formats or any(f not in FORMATS for f in formats):
        raise WeightspaceError(f"formats: expected some of {FORMATS}, got {formats!r}")
    if not fps > 0:
        raise WeightspaceError(f"fps: expected a positive number, got {fps}")
    base = Path(path)
    if base.suffix.lower() in (".gif", ".mp4"):
        base = base.with_suffix("")
    if not base.parent.is_dir():
        raise WeightspaceError(f"path: directory {str(base.parent)!r} does not exist; create it")

    notes: list[str] = []
    ffmpeg = ffmpeg_available() if "mp4" in formats else None
    if "mp4" in formats and ffmpeg is None:
        _report_once(FFMPEG_MISSING)
        notes.append(FFMPEG_MISSING)
    frames = _draw_frames(xs, ys, z, coords, steps, spectrum, figsize, dpi, log, clip)
    paths: dict[str, Path] = {}
    if "gif" in formats:
        paths["gif"] = _write_gif(base.with_name(base.name + ".gif"), frames, fps)
    if ffmpeg is not None:
        out = base.with_name(base.name + ".mp4")
        error = _write_mp4(ffmpeg, out, frames, fps)
        if error is None:
            paths["mp4"] = out
        else:
            notes.append(error)
            _report_once(error)
    height, width = frames[0].shape[:2]
    return AnimationResult(
        paths=paths, notes=tuple(notes), n_frames=len(frames), size=(width, height)
    )


def _one_trajectory(trajectory: Any) -> PlaneTrajectory:
    trajs = check_trajectories(trajectory, "trajectory")
    if len(trajs) != 1:
        raise WeightspaceError(
            f"trajectory: expected one PlaneTrajectory, got {len(trajs)}; animate one run "
            "at a time, e.g. surface.trajectories[0]"
        )
    return trajs[0]


def _check_densities(densities: Any, n: int) -> tuple[np.ndarray, np.ndarray, float] | None:
    """``(grid (G,), densities (T, G), sigma)`` from one SpectralDensity per checkpoint."""
    if densities is None:
        return None
    if isinstance(densities, SpectralDensity) or not isinstance(densities, (list, tuple)):
        raise WeightspaceError(
            f"densities: expected a sequence of SpectralDensity (one per checkpoint), got "
            f"{type(densities).__name__}; pass a spectrum's densities"
        )
    if len(densities) != n:
        raise WeightspaceError(
            f"densities: expected one per checkpoint ({n}), got {len(densities)}; compute the "
            "spectrum at the trajectory's steps"
        )
    for q, d in enumerate(densities):
        if not isinstance(d, SpectralDensity):
            raise WeightspaceError(
                f"densities[{q}]: expected a SpectralDensity, got {type(d).__name__}"
            )
    grid = as_array(densities[0].grid, "densities[0].grid", ndim=1)
    sigma = float(densities[0].sigma)
    for q, d in enumerate(densities):
        same = np.shape(d.grid) == grid.shape and np.allclose(d.grid, grid)
        if not same or float(d.sigma) != sigma:
            raise WeightspaceError(
                f"densities[{q}]: expected the grid and sigma of densities[0] (σ = {sigma:.3g}), "
                f"got another (σ = {float(d.sigma):.3g}); smooth all on one grid and width"
            )
    dens = np.stack(
        [
            as_array(d.density, f"densities[{q}].density", 1, grid.size)
            for q, d in enumerate(densities)
        ]
    )
    return grid, dens, sigma


def _draw_frames(xs, ys, z, coords, steps, spectrum, figsize, dpi, log, clip):
    """(T,) list of (H, W, 3) uint8 frames.

    The surface, axes and layout are drawn once; each frame restores that background and
    draws only the moving artists on it (blitting on the Agg canvas).
    """
    fig = new_figure(figsize)
    fig.set_dpi(dpi)
    ax = fig.add_subplot(1, 2 if spectrum else 1, 1)
    filled = ax.contourf(xs, ys, z, levels=15, cmap="viridis")
    ax.contour(xs, ys, z, levels=filled.levels, colors="k", linewidths=0.3, alpha=0.5)
    fig.colorbar(filled, ax=ax, label=value_label("loss", log, clip))
    ax.set(xlim=(xs[0], xs[-1]), ylim=(ys[0], ys[-1]), xlabel="α", ylabel="β")
    ax.plot(coords[0, 0], coords[0, 1], "o", mfc="white", mec="crimson")
    (path_line,) = ax.plot([], [], "-", color="crimson", lw=1.5, animated=True)
    (head,) = ax.plot([], [], "*", color="crimson", ms=10, mec="k", mew=0.5, animated=True)
    title = fig.suptitle(f"step {steps[-1]:.0f}", animated=True)
    moving = [(ax, path_line), (ax, head), (fig, title)]
    if spectrum:
        grid, dens, sigma = spectrum
        top = np.nanmax(dens) if np.any(dens > 0) else 1.0
        floor = top * 1e-8
        sax = fig.add_subplot(1, 2, 2)
        (dens_line,) = sax.plot([], [], color="#1f77b4", animated=True)
        sax.set(yscale="log", xlim=(grid[0], grid[-1]), ylim=(floor, top * 3))
        sax.set(xlabel="eigenvalue", ylabel="density")
        sax.text(0.97, 0.95, f"σ = {sigma:.3g}", transform=sax.transAxes, ha="right", va="top")
        moving.append((sax, dens_line))
    canvas = fig.canvas
    canvas.draw()  # lays out once and draws everything that does not move
    fig.set_layout_engine("none")  # keep that layout for every frame
    background = canvas.copy_from_bbox(fig.bbox)
    frames = []
    for t in range(coords.shape[0]):
        path_line.set_data(coords[: t + 1, 0], coords[: t + 1, 1])
        head.set_data(coords[t : t + 1, 0], coords[t : t + 1, 1])
        title.set_text(f"step {steps[t]:.0f}")
        if spectrum:
            dens_line.set_data(grid, np.maximum(dens[t], floor))
        canvas.restore_region(background)
        for parent, artist in moving:
            parent.draw_artist(artist)
        frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return frames


def _write_gif(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    from PIL import Image

    images = [
        Image.fromarray(f).quantize(colors=128, method=Image.Quantize.MEDIANCUT) for f in frames
    ]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=round(1000 / fps),
            loop=0,
        )
    logger.debug("wrote %s (%d frames)", path, len(frames))
    return path


def _write_mp4(ffmpeg: str, path: Path, frames: list[np.ndarray], fps: float) -> str | None:
    """Pipe raw frames to ffmpeg; returns None on success, else a one-line note."""
    height, width = frames[0].shape[:2]
    cmd = [
        ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
        "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        "-f", "mp4",
    ]  # fmt: skip
    try:
        with atomic_path(path) as tmp:
            done = subprocess.run(
                [*cmd, str(tmp)],
                input=b"".join(f.tobytes() for f in frames),
                capture_output=True,
                check=False,
            )
            if done.returncode != 0:
                reason = done.stderr.decode(errors="replace").strip().splitlines()
                raise RuntimeError(reason[-1] if reason else f"exit code {done.returncode}")
    except (OSError, RuntimeError) as exc:
        return f"MP4 skipped: ffmpeg failed ({exc})"
    logger.debug("wrote %s (%d frames)", path, len(frames))
    return None
