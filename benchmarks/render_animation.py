"""Writing a training animation (trajectory over a surface beside the spectrum) as a GIF.

Compares, on the same surface, trajectory, densities, frame size and GIF settings:

- ``weightspace``: ``render.animate.animate_trajectory`` (surface and layout drawn once,
  only the path, density and title drawn per frame by blitting; GIF written with pillow);
- ``FuncAnimation+PillowWriter, update``: matplotlib's animation API updating the same
  artists (every frame is a full draw of the figure);
- ``FuncAnimation+PillowWriter, redraw``: the common script style that clears and redraws the
  contour, path and density for every frame.

Variants are interleaved over several repeats; the median seconds and the ratio to
weightspace are printed, with the size of each GIF.

    python benchmarks/render_animation.py            # full (about a minute)
    python benchmarks/render_animation.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from weightspace.curvature import SpectralDensity
from weightspace.render import animate, plane_trajectory

matplotlib.use("Agg")


def inputs(n_grid: int, n_frames: int):
    xs = np.linspace(-1.0, 1.0, n_grid)
    values = np.log1p(xs[None, :] ** 2 + 3 * xs[:, None] ** 2) + 0.1 * np.sin(8 * xs[None, :])
    t = np.linspace(0, 1, n_frames)
    coords = np.column_stack([-0.9 * (1 - t) * np.cos(6 * t), 0.9 * (1 - t) * np.sin(6 * t)])
    grid = np.linspace(-1.0, 20.0, 200)
    dens = np.stack([np.exp(-((grid - 15 * s) ** 2)) + 1e-6 for s in t])
    return xs, values, coords, grid, dens


def ours(out: Path, xs, values, coords, grid, dens, figsize, dpi) -> None:
    densities = [
        SpectralDensity(
            grid, d, d[None], np.zeros_like(d), np.zeros((1, 1)), np.ones((1, 1)), 0.5, 1, 1, 0
        )
        for d in dens
    ]
    animate.animate_trajectory(out, xs, xs, values, plane_trajectory(coords), densities=densities,
                               formats=("gif",), figsize=figsize, dpi=dpi)  # fmt: skip


def peer(out: Path, xs, values, coords, grid, dens, figsize, dpi, redraw: bool) -> None:
    fig = Figure(figsize=figsize)  # a plain figure, as in scripts (no layout engine)
    FigureCanvasAgg(fig)
    ax, sax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    floor = dens.max() * 1e-8

    def background():
        filled = ax.contourf(xs, xs, values, levels=15, cmap="viridis")
        ax.contour(xs, xs, values, levels=filled.levels, colors="k", linewidths=0.3, alpha=0.5)
        sax.set(yscale="log", xlim=(grid[0], grid[-1]), ylim=(floor, dens.max() * 3))
        return filled

    fig.colorbar(background(), ax=ax)
    (path,) = ax.plot([], [], "-", color="crimson")
    (line,) = sax.plot([], [])

    def update(t):
        nonlocal path, line
        if redraw:
            ax.clear()
            sax.clear()
            background()
            (path,) = ax.plot([], [], "-", color="crimson")
            (line,) = sax.plot([], [])
        path.set_data(coords[: t + 1, 0], coords[: t + 1, 1])
        line.set_data(grid, np.maximum(dens[t], floor))
        fig.suptitle(f"step {t}")
        return path, line

    anim = FuncAnimation(fig, update, frames=len(coords), blit=False)
    anim.save(str(out), writer=PillowWriter(fps=4), dpi=dpi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n_grid, n_frames, repeats = (21, 6, 1) if args.quick else (51, 40, args.repeats)
    figsize, dpi = (8.0, 3.4), 72
    data = inputs(n_grid, n_frames)
    variants = {
        "weightspace": lambda out: ours(out, *data, figsize, dpi),
        "FuncAnimation+PillowWriter, update": lambda out: peer(out, *data, figsize, dpi, False),
        "FuncAnimation+PillowWriter, redraw": lambda out: peer(out, *data, figsize, dpi, True),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as d:
        for rep in range(repeats):
            for q, (name, run) in enumerate(variants.items()):
                out = Path(d) / f"v{q}-{rep}.gif"
                start = time.perf_counter()
                run(out)
                times[name].append(time.perf_counter() - start)
                sizes[name] = out.stat().st_size
    print(f"# {platform.processor() or platform.machine()}, matplotlib {matplotlib.__version__}")
    print(f"# grid {n_grid}x{n_grid}, {n_frames} frames of {figsize[0]:g}x{figsize[1]:g} in "
          f"at {dpi} dpi, {repeats} repeats (median)")  # fmt: skip
    base = statistics.median(times["weightspace"])
    print(f"{'variant':38s} {'median s':>9s} {'s/frame':>8s} {'x weightspace':>14s} {'GIF kB':>7s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:38s} {med:9.3f} {med / n_frames:8.4f} {med / base:14.2f} "
              f"{sizes[name] / 1024:7.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
