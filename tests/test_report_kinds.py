"""A report of every artifact kind alone: projections of one run by each method, joint
projections of runs of different lengths, a sampling directory, a line, curves, a surface,
spectra with and without trace and density. Nothing is skipped, and the page of all of them
opens in headless Chromium without console errors."""

from __future__ import annotations

import numpy as np
import pytest

import weightspace as ws
from weightspace.render import interactive, static
from weightspace.render.build import build_report
from weightspace.train import train

METHODS = ("pca", "phate", "tsne", "umap")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Two runs of different lengths (11 and 5 snapshots) and one result of each kind."""
    root = tmp_path_factory.mktemp("kinds")
    problem = ws.zoo.problem("digits-mlp", seed=0)
    long = train(problem, root / "long", lr=0.3, momentum=0.9, steps=30, every=3)
    short = train(ws.zoo.problem("digits-mlp", seed=0), root / "short", lr=0.3, steps=12,
                  every=3, data_seed=1)  # fmt: skip
    obj = ws.Objective(ws.zoo.problem("digits-mlp", seed=0))
    test = ws.Objective(problem, data=problem.test_data)
    out = {}
    for method in METHODS:
        out[f"one-run {method}"] = ws.project_runs(long, method)
    out["joint pca"] = ws.project_runs([long, short])
    out["joint phate"] = ws.project_runs([long, short], "phate")
    out["line"] = ws.line_between(obj, long, short, points=7)
    out["curves"] = ws.curves_of_runs(test, [long, short])
    out["surface"] = ws.surface_around(obj, [long, short], grid=5, directions="pca")
    for trace in (False, True):
        for density in (False, True):
            spec = ws.spectrum_of_run(obj, long, at="every:5", top_k=2, n_probes=2, n_steps=8,
                                      trace_probes=2 if trace else 0, density=density)  # fmt: skip
            out[f"spectrum trace={trace} density={density}"] = spec
    samples = ws.sample_around(problem, long, root / "jumps", sizes=(0.5,), seeds=(0,),
                               retrain_steps=6, every=3)  # fmt: skip
    return root, out, samples


HEADINGS = {
    "one-run": "Trajectories",
    "joint": "Trajectories",
    "line": "Interpolation from long (step 30) to short (step 12)",
    "curves": "Loss and accuracy along training",
    "surface": "Loss landscape on the PCA plane of the trajectories",
    "spectrum": "Curvature along long",
}


@pytest.mark.slow
def test_each_kind_alone_is_drawn_and_nothing_is_skipped(artifacts, tmp_path):
    _, results, _ = artifacts
    for name, result in results.items():
        page = tmp_path / f"{name.replace(' ', '_')}.html"
        summary = build_report(page, results=[(name, result)], animations=False)
        assert summary.skipped == [], (name, summary.skipped)
        html = page.read_text()
        assert HEADINGS[name.split(" ")[0]] in html, name
        assert f"<p>Result {name}.</p>" in html or "Trajectories" in html


@pytest.mark.slow
def test_a_sampling_directory_and_everything_together_render_in_chromium(artifacts, tmp_path):
    from test_report_browser import CHROMIUM, open_in_chromium, page_errors

    root, results, samples = artifacts
    for name, result in results.items():
        ws.save(result, root / "art" / name.replace(" ", "_"))
    summary = ws.report(tmp_path / "jumps.html", artifacts=samples.out, animations=False)
    assert summary.skipped == []
    assert summary.results == {"projection": ["projection_pca", "projection_phate"]}
    page = tmp_path / "all.html"
    summary = ws.report(page, runs=[root / "long", root / "short"], artifacts=root,
                        animations=True)  # fmt: skip
    assert summary.skipped == []
    assert sum(len(v) for v in summary.results.values()) == len(results) + 2  # + the jumps'
    if CHROMIUM is None:
        pytest.fail("this test opens the page in chromium; install it (see .ci/run)")
    _, console = open_in_chromium(page, tmp_path)
    assert page_errors(console) == []


def test_one_run_projections_draw_in_the_interactive_scatter():
    """The crash of a single run's projection: hover given as a list with one dict."""
    coords = [np.cumsum(np.ones((6, 3)), axis=0)]
    fig = interactive.scatter_figure(coords, ["only"], [{"step": np.arange(6)}])
    assert len(fig.data) == 1 and list(fig.data[0].x) == list(coords[0][:, 0])


def test_runs_of_different_lengths_draw_in_the_parametric_3d_plot():
    """The crash of a joint projection of runs of 51 and 21 snapshots."""
    scores = [np.random.default_rng(0).normal(size=(51, 3)), np.ones((21, 3)).cumsum(0)]
    losses = [np.linspace(2, 0.1, 51), np.linspace(2, 0.5, 21)]
    _, ax = static.plot_parametric_3d(scores, losses, ["long", "short"])
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [51, 21]


def test_a_run_far_off_its_plane_is_flagged_and_the_residuals_are_defined(tmp_path):
    from weightspace.landscape import PlaneTrajectory, Surface

    xs = np.linspace(-1, 1, 5)
    values = xs[None] ** 2 + xs[:, None] ** 2 + 0.1
    steps, coords = np.arange(3.0), np.array([[-0.8, 0.5], [-0.3, 0.2], [0.0, 0.0]])
    loss = np.array([2.0, 1.0, 0.1])

    def run(name, residual, distance):
        return PlaneTrajectory(name, steps, coords, np.asarray(residual), loss, loss,
                               np.asarray(distance))  # fmt: skip

    near = run("near", [0.1, 0.9, 0.0], [10.0, 1.0, 0.0])  # relative 0.9 near the centre only
    far = run("far", [0.95, 0.9, 0.0], [10.0, 5.0, 0.0])
    surf = Surface(xs, xs, values, np.full_like(values, np.nan), None, 0,
                   {"directions": {"kind": "random"}}, (near, far))  # fmt: skip
    build_report(tmp_path / "r.html", results=[("s", surf)], animations=False)
    html = (tmp_path / "r.html").read_text()
    assert "far: most of the path lies off a random plane" in html
    assert "near: most" not in html and "near, far" not in html
    assert "its relative residual that distance over ‖θ − c‖" in html
    assert '<td>far</td><td class="num">0.95</td><td class="num">9.5</td>' in html
