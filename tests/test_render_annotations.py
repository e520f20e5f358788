"""Every annotation on the report's figures is the result's own number: read the matplotlib
artists (the barrier arrow, the stability line, the trace axis, the heat map's cells, each
density's σ) and compare them with the result they were drawn from."""

from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pytest

import weightspace as ws
from weightspace.curvature import CurvatureAlong, SpectralDensity, curvature_at
from weightspace.errors import WeightspaceError
from weightspace.landscape import Line
from weightspace.optimizers import stability
from weightspace.render import Report, static
from weightspace.render._sections import line_section, spectrum_section
from weightspace.testing import quadratic_problem

matplotlib.use("Agg")


class Recording(Report):
    """A report that keeps each matplotlib figure and its caption."""

    def __init__(self) -> None:
        super().__init__("annotations")
        self.figures: list[tuple[object, str]] = []

    def add_figure(self, fig, caption=None, **kwargs):
        if hasattr(fig, "savefig"):
            self.figures.append((fig, caption or ""))
        return super().add_figure(fig, caption, **kwargs)


def arrows(ax):
    return [t for t in ax.texts if hasattr(t, "xyann")]


def dashed(ax):
    return [ln for ln in ax.lines if ln.get_linestyle() == "--"]


def legend_labels(fig):
    return [t.get_text() for a in fig.axes if a.get_legend() for t in a.get_legend().get_texts()]


# ---------------------------------------------------------------------------- barrier
ALPHAS = np.linspace(-0.5, 1.5, 41)  # the default line: the ends and beyond


def tent(a, at, height, half_width=0.2):
    return height * np.maximum(0.0, 1.0 - np.abs(a - at) / half_width)


def line_of(alphas, values, barrier):
    n = len(alphas)
    return Line(alphas, values, np.full(n, np.nan), None, 0, barrier, False, {})


def test_the_arrow_is_at_the_bump_not_at_the_extrapolated_maximum():
    # L(0) = 0, L(1) = 1, so the straight line between the ends is a itself; the bump of 0.5
    # at a = 0.3 is the barrier; beyond a = 1 the loss climbs to its maximum 4 at a = 1.5
    values = ALPHAS + tent(ALPHAS, 0.3, 0.5) + 10 * np.maximum(ALPHAS - 1, 0) ** 2
    assert ALPHAS[np.argmax(values)] == 1.5  # where an argmax over the whole line would go
    _, ax = static.plot_line(ALPHAS, values, barrier=0.5)
    (arrow,) = arrows(ax)
    assert arrow.xy == pytest.approx((0.3, 0.8))  # on the curve
    assert arrow.xyann == pytest.approx((0.3, 0.3))  # on the line between the ends
    assert any(t.get_text().strip() == "barrier 0.5" for t in ax.texts)


def test_the_arrow_measures_from_a_sloping_chord():
    # the ends 2 -> 0: the chord falls; a bump of 0.3 at a = 0.7 sits below the loss at
    # a = 0 (the curve's maximum on [0, 1]) and is the barrier all the same
    values = 2 - 2 * ALPHAS + tent(ALPHAS, 0.7, 0.3)
    point = static.barrier_point(ALPHAS, values)
    assert point == pytest.approx((0.7, 0.6, 0.9))
    _, ax = static.plot_line(ALPHAS, values, barrier=0.3)
    (arrow,) = arrows(ax)
    assert arrow.xy == pytest.approx((0.7, 0.9)) and arrow.xyann == pytest.approx((0.7, 0.6))


def test_line_section_draws_and_states_the_lines_own_barrier():
    values = ALPHAS + tent(ALPHAS, 0.3, 0.5) + 10 * np.maximum(ALPHAS - 1, 0) ** 2
    report = Recording()
    line_section(report, "a to b", line_of(ALPHAS, values, 0.5))
    ((fig, caption),) = report.figures
    (arrow,) = arrows(fig.axes[0])
    assert arrow.xy[0] == pytest.approx(0.3)
    assert arrow.xy[1] - arrow.xyann[1] == pytest.approx(0.5)  # the arrow is the barrier
    assert "barrier 0.5 " in caption and "α = 0.3" in caption


def test_no_arrow_when_the_barrier_is_not_defined():
    alphas = np.linspace(-0.5, 0.9, 15)  # 1 is not among them: the barrier is NaN
    line = line_of(alphas, alphas**2, math.nan)
    report = Recording()
    line_section(report, "x", line)
    ((fig, caption),) = report.figures
    assert not arrows(fig.axes[0]) and not fig.axes[0].texts
    assert "no barrier" in caption and "α = 0 and α = 1" in caption
    _, ax = static.plot_line(alphas, alphas**2, barrier=math.nan)
    assert not arrows(ax)


def test_a_barrier_that_is_not_the_lines_is_refused():
    values = ALPHAS + tent(ALPHAS, 0.3, 0.5)
    with pytest.raises(WeightspaceError, match=r"barrier: expected .* 0\.5 \(at α = 0\.3\)"):
        static.plot_line(ALPHAS, values, barrier=0.7)
    with pytest.raises(WeightspaceError, match="miss one of them"):
        static.plot_line(ALPHAS[:20], values[:20], barrier=0.5)  # no alpha = 1
    _, ax = static.plot_line(ALPHAS, values, barrier=0.7, barrier_at=1.25)  # placed by hand
    (arrow,) = arrows(ax)
    assert arrow.xy == pytest.approx((1.25, 1.25)) and arrow.xyann == pytest.approx((1.25, 0.55))


# ---------------------------------------------------------------------------- curvature
STEPS = np.arange(0, 601, 150)


def measured(trace_probes=0, **run):
    """A real CurvatureAlong of a 6-parameter quadratic at five 'steps' (no training)."""
    problem, _, _ = quadratic_problem()
    obj = ws.Objective(problem)
    theta = obj.theta0
    points = [(int(s), theta + 0.01 * k) for k, s in enumerate(STEPS)]
    return curvature_at(
        obj, points, top_k=2, density=True, n_probes=2, n_steps=6, trace_probes=trace_probes,
        seed=0, **run,
    )  # fmt: skip


@pytest.fixture(scope="module")
def momentum_run():
    return measured(trace_probes=3, optimizer={"optimizer": "SGD", "lr": 0.05, "momentum": 0.9})


def test_the_stability_line_is_the_optimizers_threshold(momentum_run, tmp_path):
    spec = momentum_run
    report = Recording()
    spectrum_section(report, "sgd", spec)
    fig, caption = report.figures[0]
    (edge,) = dashed(fig.axes[0])
    y = float(np.unique(edge.get_ydata())[0])
    assert y == pytest.approx(76.0)  # (2 + 2·0.9) / 0.05, not 2/lr = 40
    assert y == pytest.approx(spec.stability_threshold / spec.metadata["lr"])
    ws.save(spec, tmp_path / "spec")  # and what the artifact's JSON says
    meta = json.loads((tmp_path / "spec.json").read_text())["metadata"]
    assert y == pytest.approx(meta["stability_threshold"] / meta["lr"])
    assert edge.get_label() == "(2+2β)/lr = 76"
    assert "(2+2β)/lr = 76" in caption and "heavy-ball momentum β=0.9" in caption


@pytest.mark.parametrize(
    ("optimizer", "value", "label"),
    [
        ({"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}, 76.0, "(2+2β)/lr = 76"),
        ({"optimizer": "sgd", "lr": 0.05, "momentum": 0.0}, 40.0, "2/lr = 40"),
        ({"lr": 0.05}, 40.0, "2/lr = 40"),  # no optimizer recorded: SGD, and the rule says so
        (
            {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
            3.8 / 2.8 / 0.05,
            "(2+2β)/(1+2β)/lr = 27.14",
        ),
    ],
)
def test_the_stability_line_follows_the_rule_of_stability(optimizer, value, label):
    eig = np.array([[50.0, 10.0], [70.0, 20.0]])
    _, ax = static.plot_top_eigenvalues([0, 100], eig, optimizer=optimizer)
    (edge,) = dashed(ax)
    stab = stability(optimizer)
    assert edge.get_ydata()[0] == pytest.approx(stab.threshold / stab.lr)
    assert edge.get_ydata()[0] == pytest.approx(value)
    assert edge.get_label() == label


def test_no_stability_line_for_adam_and_the_caption_says_why():
    spec = measured(optimizer={"optimizer": "AdamW", "lr": 1e-3})
    report = Recording()
    spectrum_section(report, "adam", spec)
    fig, caption = report.figures[0]
    assert not dashed(fig.axes[0])
    assert not any("/lr" in label for label in legend_labels(fig))
    assert "no stability line: no classical threshold for adamw" in caption
    _, ax = static.plot_top_eigenvalues([0, 1], np.ones((2, 1)), optimizer={"optimizer": "adam"})
    assert not dashed(ax)


def test_no_trace_axis_without_a_trace(momentum_run):
    spec = measured(lr=0.05)  # trace_probes=0: the trace is NaN everywhere
    assert np.isnan(spec.trace).all()
    report = Recording()
    spectrum_section(report, "no trace", spec)
    fig, caption = report.figures[0]
    assert len(fig.axes) == 1  # no twin axis
    assert "trace" not in legend_labels(fig) and "no trace computed" in caption
    _, ax = static.plot_top_eigenvalues(STEPS, np.ones((5, 1)), trace=np.full(5, np.nan))
    assert len(ax.figure.axes) == 1 and "trace" not in legend_labels(ax.figure)
    report = Recording()  # with a trace: its axis, its entry, its values
    spectrum_section(report, "trace", momentum_run)
    fig, caption = report.figures[0]
    assert len(fig.axes) == 2 and "trace" in legend_labels(fig)
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), momentum_run.trace)
    assert "Hutchinson trace (3 probes) on the right axis" in caption


# ---------------------------------------------------------------------------- heat map
def mesh_x_edges(ax):
    return ax.collections[0].get_coordinates()[0, :, 0]


@pytest.mark.parametrize(
    ("steps", "edges"),
    [
        (STEPS, [-75, 75, 225, 375, 525, 675]),
        ([0, 10, 40, 100], [-5, 5, 25, 70, 130]),  # irregular
        ([600], [599.5, 600.5]),  # one step: a cell one unit wide
    ],
)
def test_heat_map_cells_are_around_the_evaluated_steps(steps, edges):
    grid = np.linspace(0.0, 5.0, 30)
    dens = np.exp(-((grid[None] - 1.0 - np.arange(len(steps))[:, None]) ** 2))
    _, ax = static.plot_density_heatmap(steps, grid, dens, 0.1)
    x = mesh_x_edges(ax)
    np.testing.assert_allclose(x, edges)
    steps = np.asarray(steps, dtype=np.float64)
    assert np.all((x[:-1] < steps) & (steps < x[1:]))  # each step inside its own cell
    np.testing.assert_allclose(x[1:-1], (steps[:-1] + steps[1:]) / 2)  # halfway between
    assert (x[0] + x[1]) / 2 == steps[0] and (x[-2] + x[-1]) / 2 == steps[-1]  # end cells centred
    limits = (steps[0], steps[-1]) if len(steps) > 1 else (edges[0], edges[-1])
    assert ax.get_xlim() == pytest.approx(limits)  # the axis does not run past the run


def test_the_reports_heat_map_stays_within_the_steps_cells(momentum_run):
    report = Recording()
    spectrum_section(report, "sgd", momentum_run)
    heat = report.figures[1][0].axes[0]
    assert heat.get_xlim() == pytest.approx((0.0, 600.0))


# ---------------------------------------------------------------------------- σ
NODES = [np.array([[0.0, 0.1, 0.2]]), np.array([[1.0, 3.0, 6.0]])]
WEIGHTS = np.array([[0.5, 0.25, 0.25]])


def density(nodes, sigma, grid):
    """A one-probe density smoothed with ``sigma`` on ``grid`` (the closed form, by hand)."""
    g = np.exp(-0.5 * ((grid[None] - nodes[0][:, None]) / sigma) ** 2)
    return (WEIGHTS[0][:, None] * g).sum(0) / (sigma * math.sqrt(2 * math.pi))


def spectral(nodes, sigma, grid):
    d = density(nodes, sigma, grid)
    return SpectralDensity(
        grid=grid, density=d, per_probe=d[None], stderr=np.full(grid.size, np.nan),
        nodes=nodes, weights=WEIGHTS, sigma=sigma, n_steps=3, n_probes=1, n_matvecs=3,
    )  # fmt: skip


def along(densities, sigma_rule=None, positions=(0, 300)):
    t = len(densities)
    return CurvatureAlong(
        positions=np.asarray(positions), axis="step", loss=np.ones(t),
        eigenvalues=np.zeros((t, 0)), residuals=np.zeros((t, 0)), overlap=np.zeros(t - 1),
        eigenvectors=None, trace=np.full(t, np.nan), trace_stderr=np.full(t, np.nan),
        densities=tuple(densities), lambda_max_lr=None, stability_threshold=None, n_matvecs=0,
        metadata={"sigma_rule": sigma_rule},
    )  # fmt: skip


def test_each_density_is_drawn_with_its_own_sigma_on_a_common_grid():
    # an early step with a wide range (σ 0.05) and a late one with a narrow range (σ 0.002),
    # each on its own grid: the heat map puts both on one grid, each with its own σ
    sig = [0.01 * 5.0, 0.01 * 0.2]  # 1 % of each one's own node range
    early = spectral(NODES[1], sig[0], np.linspace(0.5, 6.5, 300))
    late = spectral(NODES[0], sig[1], np.linspace(-0.05, 0.25, 200))
    spec = along([early, late], sigma_rule="0.01 × (max node − min node)")
    report = Recording()
    spectrum_section(report, "σ", spec)
    (heat, heat_caption), (last, last_caption) = report.figures
    ax = heat.axes[0]
    y = ax.collections[0].get_coordinates()[:, 0, 1]
    grid = (y[:-1] + y[1:]) / 2  # the cells' centres: the common grid
    assert grid[0] == pytest.approx(-0.05) and grid[-1] == pytest.approx(6.5)
    drawn = np.asarray(ax.collections[0].get_array()).reshape(grid.size, 2)
    floor = drawn.max() * 1e-8
    for col, (nodes, sigma) in enumerate(zip([NODES[1], NODES[0]], sig)):
        np.testing.assert_allclose(drawn[:, col], np.maximum(density(nodes, sigma, grid), floor))
    assert "σ per step, 0.002 to 0.05" in ax.get_title()
    assert "σ from 0.002 to 0.05" in heat_caption
    assert "1 % of that step's eigenvalue range" in heat_caption
    # the last point's own figure: its own grid, density and σ
    lax = last.axes[0]
    np.testing.assert_allclose(lax.lines[0].get_xdata(), late.grid)
    np.testing.assert_allclose(
        lax.lines[0].get_ydata(), np.maximum(late.density, late.density.max() * 1e-8)
    )
    assert any(t.get_text() == "σ = 0.002" for t in lax.texts)
    assert "σ = 0.002 (1 % of this step's eigenvalue range)" in last_caption


def test_each_steps_own_sigma_is_the_default_and_stated_as_such(momentum_run):
    spec = momentum_run  # curvature_at's default: each point 1 % of its own node range
    sigmas = spec.metadata["sigma"]
    assert [d.sigma for d in spec.densities] == sigmas
    report = Recording()
    spectrum_section(report, "sgd", spec)
    heat_caption = report.figures[1][1]
    lo, hi = min(sigmas), max(sigmas)
    value = f"σ = {hi:.3g} at every step" if lo == hi else f"σ from {lo:.3g} to {hi:.3g}"
    assert f"{value}, each step smoothed with its own σ, 1 % of that step's" in heat_caption
    grid = np.linspace(0.0, 7.0, 50)
    given = along([spectral(n, 0.1, grid) for n in NODES], sigma_rule="given")
    report = Recording()
    spectrum_section(report, "given", given)
    assert "σ = 0.1 at every step, as given" in report.figures[0][1]


def test_the_heat_map_refuses_a_bad_sigma():
    grid = np.linspace(0, 1, 5)
    with pytest.raises(WeightspaceError, match="sigma"):
        static.plot_density_heatmap([0, 1], grid, np.ones((2, 5)), [0.1, 0.0])
    with pytest.raises(WeightspaceError, match="sigma: expected length 2"):
        static.plot_density_heatmap([0, 1], grid, np.ones((2, 5)), [0.1, 0.1, 0.1])
