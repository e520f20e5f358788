"""Static figures: every function writes a non-empty PNG, draws on a given Axes, never calls
show(); surfaces follow the grid convention; NaN are gaps; clipping, log, shared scales."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from weightspace.errors import WeightspaceError
from weightspace.landscape import PlaneTrajectory
from weightspace.render import plane_trajectory, static

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def no_show(monkeypatch):
    """Any call of show() fails the test."""
    import matplotlib.pyplot as plt

    def refuse(*args, **kwargs):
        raise AssertionError("show() was called")

    monkeypatch.setattr(plt, "show", refuse)
    monkeypatch.setattr(Figure, "show", refuse)


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert img.shape[0] > 50 and img.shape[1] > 50
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10  # not blank


# ---------------------------------------------------------------------------- small inputs
XS = np.linspace(-1.0, 1.0, 9)
YS = np.linspace(-0.5, 1.0, 6)  # non-square on purpose
VALUES = XS[None, :] ** 2 + 2 * YS[:, None] ** 2 + 0.1
COORDS = np.column_stack([np.linspace(-0.8, 0, 6), np.linspace(0.8, 0, 6)])
TRAJ = [
    plane_trajectory(
        COORDS,
        name="sgd",
        steps=np.arange(6) * 10,
        loss=np.linspace(2.0, 0.1, 6),
        residual=np.linspace(0.0, 0.25, 6),
    )
]
RNG = np.random.default_rng(0)
SCORES = [np.cumsum(RNG.normal(size=(12, 4)), axis=0) for _ in range(2)]
LOSSES = [np.linspace(2.0, 0.2, 12), np.linspace(3.0, 0.5, 12)]
GRID = np.linspace(-1.0, 10.0, 50)
DENS = np.exp(-((GRID - 3.0) ** 2))
STEPS = np.arange(4) * 10.0

CASES = {
    "surface_contour": (lambda ax: static.plot_surface_contour(XS, YS, VALUES, TRAJ, ax=ax), "2d"),
    "surface_3d": (lambda ax: static.plot_surface_3d(XS, YS, VALUES, TRAJ, ax=ax), "3d"),
    "contour_and_mesh": (
        lambda ax: static.plot_contour_and_mesh(XS, YS, VALUES, TRAJ, ax=ax),
        "2d+3d",
    ),
    "line": (
        lambda ax: static.plot_line(XS, 1 - XS**2, stderr=0.1 + 0 * XS, barrier=0.25, ax=ax),
        "2d",
    ),
    "pca_spectrum": (
        lambda ax: static.plot_pca_spectrum(
            [0.6, 0.2, 0.1], [0.5, 0.15, 0.07], [0.9, 0.6, 0.3], ax=ax
        ),
        "2d",
    ),
    "pc_pairs": (lambda ax: static.plot_pc_pairs(SCORES, ["a", "b"], k=3, ax=ax), "grid4"),
    "parametric_3d": (lambda ax: static.plot_parametric_3d(SCORES, LOSSES, ax=ax), "3d"),
    "embeddings": (
        lambda ax: static.plot_embeddings(
            {"PHATE": SCORES[0][:, :2], "t-SNE": SCORES[1][:, :2]},
            {"PHATE": 0.93},
            color=np.arange(12),
            ax=ax,
        ),
        "row2",
    ),
    "density": (lambda ax: static.plot_density(GRID, DENS, 0.1, ax=ax), "2d"),
    "density_heatmap": (
        lambda ax: static.plot_density_heatmap(STEPS, GRID, np.stack([DENS] * 4), 0.1, ax=ax),
        "2d",
    ),
    "top_eigenvalues": (
        lambda ax: static.plot_top_eigenvalues(
            STEPS, np.abs(RNG.normal(size=(4, 2))), np.arange(4.0), lr=0.5, ax=ax
        ),
        "2d",
    ),
    "metrics_panel": (
        lambda ax: static.plot_metrics_panel(
            {
                "distance": (STEPS, STEPS**0.5),
                "path length": {"a": (STEPS, STEPS), "b": (STEPS, 2 * STEPS)},
            },
            ax=ax,
        ),
        "row2",
    ),
}


def given_axes(kind):
    fig = Figure()
    if kind == "2d":
        return fig, fig.add_subplot()
    if kind == "3d":
        return fig, fig.add_subplot(projection="3d")
    if kind == "2d+3d":
        return fig, (fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2, projection="3d"))
    if kind == "row2":
        return fig, fig.subplots(1, 2)
    return fig, fig.subplots(2, 2)  # grid4


def drawn(ax):
    return len(ax.lines) + len(ax.collections) + len(ax.patches) + len(ax.images)


@pytest.mark.parametrize("name", sorted(CASES))
def test_writes_a_non_empty_png(name, tmp_path):
    fig, _ = CASES[name][0](None)
    path = static.save_figure(fig, tmp_path / f"{name}.png", dpi=60)
    assert_png(path)


@pytest.mark.parametrize("name", sorted(CASES))
def test_draws_on_given_ax(name):
    make, kind = CASES[name]
    fig, ax = given_axes(kind)
    fig_out, ax_out = make(ax)
    assert fig_out is fig
    given = np.array(ax, dtype=object).ravel()
    returned = np.array(ax_out, dtype=object).ravel()
    assert all(a is b for a, b in zip(given, returned)) and len(given) == len(returned)
    assert sum(drawn(a) for a in given) > 0


def test_wrong_kind_of_axes_is_refused():
    fig = Figure()
    with pytest.raises(WeightspaceError, match=r"ax: expected a 3-D Axes"):
        static.plot_surface_3d(XS, YS, VALUES, ax=fig.add_subplot())
    with pytest.raises(WeightspaceError, match=r"ax: expected a 2-D Axes"):
        static.plot_line(XS, XS, ax=fig.add_subplot(projection="3d"))
    with pytest.raises(WeightspaceError, match=r"ax: expected 2 Axes"):
        static.plot_embeddings(
            {"a": SCORES[0][:, :2], "b": SCORES[1][:, :2]}, ax=fig.subplots(1, 3)
        )


# ---------------------------------------------------------------------------- surfaces
def contour_sets(ax):
    filled = [c for c in ax.collections if getattr(c, "filled", None) is True]
    lines = [c for c in ax.collections if getattr(c, "filled", None) is False]
    return filled[0], lines[0]


def test_contour_follows_the_grid_convention_on_a_non_square_grid():
    xs, ys = np.linspace(0.0, 1.0, 7), np.linspace(0.0, 2.0, 5)
    values = np.broadcast_to(xs, (ys.size, xs.size)).copy()  # values[j, i] = xs[i]
    _, ax = static.plot_surface_contour(xs, ys, values, axis_titles=("a", "b", "accuracy"))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("a", "b")
    assert any(a.get_ylabel() == "accuracy" for a in ax.figure.axes)  # the colour bar
    _, lines = contour_sets(ax)
    n_segments = 0
    for level, segs in zip(lines.levels, lines.allsegs):
        for seg in segs:  # every contour line of f = x is the vertical line x = level
            np.testing.assert_allclose(seg[:, 0], level, atol=1e-12)
            n_segments += 1
    assert n_segments >= 5
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 2.0)


def test_transposed_values_are_refused_with_a_hint():
    with pytest.raises(
        WeightspaceError, match=r"values: expected shape \(ny, nx\) = \(6, 9\).*transposed"
    ):
        static.plot_surface_contour(XS, YS, VALUES.T)


def test_divergent_points_are_gaps():
    values = VALUES.copy()
    values[2:4, 3:6] = np.inf  # a diverged block
    _, ax = static.plot_surface_contour(XS, YS, values)
    filled, _ = contour_sets(ax)
    hole = (XS[4], 0.5 * (YS[2] + YS[3]))
    inside = (XS[1], YS[4])
    assert not any(p.contains_point(hole) for p in filled.get_paths())
    assert any(p.contains_point(inside) for p in filled.get_paths())
    assert any("divergent" in t.get_text() for t in ax.texts)


def test_clip_caps_the_levels():
    values = VALUES.copy()
    values[0, 0] = 1e6
    _, ax = static.plot_surface_contour(XS, YS, values)
    assert contour_sets(ax)[0].levels.max() >= 1e6
    _, ax = static.plot_surface_contour(XS, YS, values, clip=2.0)
    assert contour_sets(ax)[0].levels.max() <= 2.0 + 1e-12


def test_log_draws_log10_and_refuses_non_positive_values():
    _, ax = static.plot_surface_contour(XS, YS, VALUES, log=True)
    levels = contour_sets(ax)[0].levels
    assert levels.min() <= np.log10(VALUES.min()) and levels.max() >= np.log10(VALUES.max())
    assert levels.max() < np.log10(VALUES.max()) + 1
    with pytest.raises(WeightspaceError, match="log=False"):
        static.plot_surface_contour(XS, YS, VALUES - 1.0, log=True)


def test_trajectory_is_drawn_at_its_coordinates_with_markers_and_a_legend_below():
    _, ax = static.plot_surface_contour(XS, YS, VALUES, TRAJ, color_by="loss")
    coords = TRAJ[0].coords
    path = next(ln for ln in ax.lines if ln.get_label().startswith("sgd"))
    np.testing.assert_array_equal(path.get_xdata(), coords[:, 0])
    np.testing.assert_array_equal(path.get_ydata(), coords[:, 1])
    assert path.get_label() == "sgd"  # the residuals are defined in the report's table
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert "start" in labels and "end" in labels
    assert legend.get_bbox_to_anchor().y0 < ax.get_window_extent().y0  # below the data
    with pytest.raises(WeightspaceError, match="color_by"):
        static.plot_surface_contour(XS, YS, VALUES, [plane_trajectory(coords)], color_by="loss")


def test_3d_trajectory_height_is_its_loss_or_the_surface_under_it():
    _, ax = static.plot_surface_3d(XS, YS, VALUES, TRAJ)  # plane_loss all NaN: the true loss
    z = ax.lines[0].get_data_3d()[2]
    np.testing.assert_allclose(z, TRAJ[0].loss)
    plane = 2.0 * XS[None, :] - 3.0 * YS[:, None] + 5.0  # bilinear interpolation is exact
    _, ax = static.plot_surface_3d(XS, YS, plane, [plane_trajectory(COORDS)])
    x, y, z = ax.lines[0].get_data_3d()
    np.testing.assert_allclose(z, 2.0 * x - 3.0 * y + 5.0, atol=1e-12)
    partial = np.full(6, np.nan)
    partial[2:] = 1.5  # some finite values: the plane loss is drawn, NaN stays a gap
    _, ax = static.plot_surface_3d(
        XS, YS, VALUES, plane_trajectory(COORDS, loss=np.ones(6), plane_loss=partial)
    )
    np.testing.assert_array_equal(ax.lines[0].get_data_3d()[2], partial)


def test_a_landscape_plane_trajectory_is_drawn_as_it_comes():
    coords = COORDS
    n = len(coords)
    traj = PlaneTrajectory(
        name="adam",
        steps=np.arange(n),
        coords=coords,
        residual=np.zeros(n),
        loss=np.full(n, 9.0),
        plane_loss=np.linspace(1.0, 2.0, n),
    )
    _, ax = static.plot_surface_3d(XS, YS, VALUES, [traj])
    np.testing.assert_allclose(ax.lines[0].get_data_3d()[2], traj.plane_loss)  # on the surface
    _, ax = static.plot_surface_contour(XS, YS, VALUES, traj)
    assert any(ln.get_label().startswith("adam") for ln in ax.lines)


# ---------------------------------------------------------------------------- lines, spectra
def test_line_band_and_barrier():
    alphas = np.linspace(0.0, 1.0, 11)
    values = 1.0 - (alphas - 0.4) ** 2
    se = np.full(11, 0.05)
    _, ax = static.plot_line(alphas, values, stderr=se, barrier=0.25)
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx((values - se).min())
    assert band[:, 1].max() == pytest.approx((values + se).max())
    arrow = ax.texts[0] if hasattr(ax.texts[0], "xy") else None
    assert arrow is not None
    # the gap to the chord 0.84 -> 0.64 peaks at 0.5 (0.99 - 0.74), not at the loss's top 0.4
    assert arrow.xy == pytest.approx((0.5, 0.99)) and arrow.xyann == pytest.approx((0.5, 0.74))
    assert any("barrier 0.25" in t.get_text() for t in ax.texts)


def test_line_without_a_barrier_or_standard_errors_still_saves(tmp_path):
    # evaluate_line gives a NaN barrier when the alphas miss 0 or 1, and NaN errors for
    # one batch: neither may break the figure or leave an empty legend entry
    alphas = np.linspace(-0.25, 1.25, 23)
    _, ax = static.plot_line(alphas, alphas**2, stderr=np.full(23, np.nan), barrier=float("nan"))
    static.save_figure(ax.figure, tmp_path / "line.png")
    assert (tmp_path / "line.png").stat().st_size > 0
    assert not ax.texts and not ax.collections and ax.get_legend() is None


def test_pca_spectrum_bars_are_the_ratios_and_the_null():
    t, k = 50, np.arange(1, 6)
    null = 3.0 / (2.0 * (t**2 - 1) * np.sin(np.pi * k / (2 * t)) ** 2)  # random-walk null
    ratios = np.array([0.7, 0.15, 0.06, 0.03, 0.01])
    _, ax = static.plot_pca_spectrum(ratios, null, correlations=[-0.99, 0.9, -0.8, 0.5, 0.1])
    heights = np.array([p.get_height() for p in ax.patches])
    np.testing.assert_allclose(heights[:5], ratios)
    np.testing.assert_allclose(heights[5:], null)
    twin = next(a for a in ax.figure.axes if a is not ax)
    np.testing.assert_allclose(twin.lines[0].get_ydata(), [0.99, 0.9, 0.8, 0.5, 0.1])
    with pytest.raises(WeightspaceError, match="null_ratios"):
        static.plot_pca_spectrum(ratios, null[:3])


def test_pc_pairs_places_pc_j_against_pc_i():
    _, axes = static.plot_pc_pairs(SCORES, ["a", "b"], k=4)
    assert axes.shape == (3, 3)
    for row in range(3):
        for col in range(3):
            if col > row:
                assert not axes[row, col].axison
                continue
            line = axes[row, col].lines[0]
            np.testing.assert_array_equal(line.get_xdata(), SCORES[0][:, col])
            np.testing.assert_array_equal(line.get_ydata(), SCORES[0][:, row + 1])
    with pytest.raises(WeightspaceError, match=r"k: expected 2 <= k <= 4"):
        static.plot_pc_pairs(SCORES, k=5)


def test_parametric_3d_uses_one_absolute_loss_scale():
    _, ax = static.plot_parametric_3d(SCORES, LOSSES, i=1, j=2)
    scatters = [c for c in ax.collections if hasattr(c, "_offsets3d")]
    assert len(scatters) == 2
    for sc in scatters:
        assert (sc.norm.vmin, sc.norm.vmax) == (0.2, 3.0)  # min and max over both runs
    np.testing.assert_allclose(ax.lines[1].get_data_3d()[2], -LOSSES[1])
    np.testing.assert_array_equal(ax.lines[0].get_data_3d()[0], SCORES[0][:, 1])
    _, ax = static.plot_parametric_3d(SCORES, LOSSES, vmin=0.0, vmax=10.0)
    assert ax.collections[0].norm.vmax == 10.0


def test_embeddings_titles_carry_the_preservation_score():
    _, axes = static.plot_embeddings(
        {"PHATE": SCORES[0][:, :2], "UMAP": SCORES[1][:, :2]}, {"PHATE": 0.9312, "UMAP": 0.5}
    )
    assert [a.get_title() for a in axes] == [
        "PHATE (preservation 0.931)",
        "UMAP (preservation 0.500)",
    ]
    with pytest.raises(WeightspaceError, match=r"embeddings\['x'\]: expected shape \(T, 2\)"):
        static.plot_embeddings({"x": SCORES[0]})


def test_density_is_log_scaled_with_sigma_printed():
    dens = DENS.copy()
    dens[:5] = 0.0  # zero density is drawn at the floor, not dropped
    _, ax = static.plot_density(GRID, dens, 0.125, band=np.stack([dens * 0.5, dens * 2]))
    assert ax.get_yscale() == "log"
    assert any(t.get_text() == "σ = 0.125" for t in ax.texts)
    assert np.all(np.asarray(ax.lines[0].get_ydata()) > 0)
    with pytest.raises(WeightspaceError, match="sigma"):
        static.plot_density(GRID, dens, 0.0)


def test_density_heatmap_shows_densities_by_step():
    dens = np.stack([np.exp(-((GRID - s) ** 2)) + 1e-3 for s in range(4)])
    _, ax = static.plot_density_heatmap(STEPS, GRID, dens, 0.1)
    mesh = ax.collections[0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(GRID.size, 4), dens.T)
    assert "σ = 0.1" in ax.get_title()
    _, ax = static.plot_density_heatmap(STEPS[:1], GRID, dens[:1], 0.1)  # one cell around it
    assert ax.get_xlim() == pytest.approx((STEPS[0] - 0.5, STEPS[0] + 0.5))
    with pytest.raises(WeightspaceError, match="steps: expected finite, strictly increasing"):
        static.plot_density_heatmap(STEPS[::-1], GRID, dens, 0.1)


def test_top_eigenvalues_draw_two_over_lr():
    eig = np.array([[4.0, 1.0], [5.0, 2.0], [3.0, 1.5]])
    _, ax = static.plot_top_eigenvalues([0, 10, 20], eig, trace=[10.0, 12.0, 9.0], lr=0.4)
    edge = [ln for ln in ax.lines if ln.get_label().startswith("2/lr")]
    assert len(edge) == 1 and np.allclose(edge[0].get_ydata(), 5.0)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), eig[:, 0])


def test_metrics_panel_has_one_panel_per_metric():
    _, axes = static.plot_metrics_panel(
        {
            "distance from init": (STEPS, STEPS),
            "path length": (STEPS, 2 * STEPS),
            "straightness": (STEPS, 1 / (1 + STEPS)),
        }
    )
    assert [a.get_title() for a in axes] == ["distance from init", "path length", "straightness"]
    np.testing.assert_array_equal(axes[1].lines[0].get_ydata(), 2 * STEPS)
    with pytest.raises(WeightspaceError, match=r"metrics\['x'\] values"):
        static.plot_metrics_panel({"x": (STEPS, STEPS[:2])})


# ---------------------------------------------------------------------------- saving
@pytest.mark.parametrize(
    ("suffix", "magic"), [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")]
)
def test_save_figure_formats(tmp_path, suffix, magic):
    fig, _ = static.plot_line(XS, XS**2)
    path = static.save_figure(fig, tmp_path / f"line{suffix}", dpi=50)
    assert path.read_bytes().startswith(magic)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"line{suffix}"]  # no temp files


def test_save_figure_refuses_bad_paths_and_leaves_nothing(tmp_path):
    fig, _ = static.plot_line(XS, XS**2)
    with pytest.raises(WeightspaceError, match=r"\.png, \.svg or \.pdf"):
        static.save_figure(fig, tmp_path / "line.jpg")
    with pytest.raises(WeightspaceError, match="does not exist"):
        static.save_figure(fig, tmp_path / "missing" / "line.png")

    class Broken:
        def savefig(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        static.save_figure(Broken(), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_bad_input_messages_are_one_line():
    for call in (
        lambda: static.plot_line(XS, XS[:3]),
        lambda: static.plot_surface_contour(XS, YS, np.full_like(VALUES, np.nan)),
        lambda: static.plot_surface_contour(XS[::-1], YS, VALUES),
        lambda: static.plot_surface_contour(XS, YS, VALUES, [{"steps": [1]}]),
        lambda: static.plot_surface_contour(XS, YS, VALUES, axis_titles=("x", "y")),
    ):
        with pytest.raises(WeightspaceError) as err:
            call()
        assert "\n" not in str(err.value)
