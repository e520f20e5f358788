"""The report opens in headless Chromium: no console errors, the plotly figures render, and
the screenshot is not blank. Needs Debian's ``chromium`` (CI installs it via ``.ci/run``)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from weightspace.render import Report, interactive, plane_trajectory, static

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (CI installs Debian's chromium via .ci/run)",
)

# Messages the browser itself logs about software rendering in a GPU-less container; they
# are performance hints, not errors of the page.
BENIGN = (
    re.compile(r"GL Driver Message \(OpenGL, Performance"),
    re.compile(r"^Canvas2D: Multiple readback operations using getImageData"),
    re.compile(r"Automatic fallback to software WebGL"),
)
# If any label were not escaped, this would run and log to the console.
INJECTED = '<script>console.error("injected")</script><img src=x onerror="console.error(1)">'


def open_in_chromium(html_path, tmp_path, screenshot=None):
    """Load a page headless; returns (dom after scripts ran, console messages)."""
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=8000",
        "--window-size=1200,1800", "--dump-dom",
    ]  # fmt: skip
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    done = subprocess.run(
        [*args, html_path.resolve().as_uri()], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = re.findall(r':CONSOLE(?:\(\d+\))?:?\d*\] "(.*)", source:', done.stderr)
    return done.stdout, console


def page_errors(console):
    return [m for m in console if not any(p.search(m) for p in BENIGN)]


def test_console_errors_are_detected(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>"
    )
    _, console = open_in_chromium(page, tmp_path)
    assert any("undefinedFunction" in m for m in page_errors(console))


def test_report_renders_in_headless_chromium(tmp_path):
    xs, ys = np.linspace(-1.0, 1.0, 15), np.linspace(-1.0, 1.0, 11)
    values = xs[None, :] ** 2 + 2 * ys[:, None] ** 2 + 0.1
    values[2, 3] = np.nan
    traj = plane_trajectory(
        np.column_stack([np.linspace(-0.8, 0, 6), np.linspace(0.8, 0, 6)]),
        name=INJECTED,
        loss=np.linspace(2.0, 0.1, 6),
        plane_loss=np.linspace(2.1, 0.1, 6),
        residual=np.linspace(0, 0.2, 6),
    )
    rng = np.random.default_rng(0)
    scores = np.cumsum(rng.normal(size=(20, 2)), axis=0)
    fig, _ = static.plot_surface_contour(xs, ys, values, [traj])
    report = (
        Report("Browser check " + INJECTED, subtitle=INJECTED)
        .add_section("Surface " + INJECTED, text=INJECTED)
        .add_figure(fig, "Contour " + INJECTED, dpi=60)
        .add_plotly(interactive.surface_figure(xs, ys, values, [traj]), "3-D surface")
        .add_plotly(
            interactive.scatter_figure(scores, [INJECTED], hover={"step": np.arange(20)}),
            "PCA scores",
        )
        .add_table([[INJECTED, 0.5]], ["run", "loss"], INJECTED)
        .add_note("MP4 skipped: ffmpeg not installed")
    )
    path = report.write(tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    dom, console = open_in_chromium(path, tmp_path, screenshot=shot)

    assert page_errors(console) == []
    for div in ("plotly-2", "plotly-3"):  # rendered by plotly.js: class added, SVG inside
        assert re.search(rf'id="{div}" class="[^"]*js-plotly-plot', dom), div
    assert dom.count('class="main-svg"') >= 4
    assert "<canvas" in dom  # the 3-D surface draws with WebGL
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (1800, 1200)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200  # not blank


def test_built_report_renders_in_headless_chromium(tmp_path):
    from weightspace.landscape import Line, Surface
    from weightspace.render.build import build_report

    xs, ys = np.linspace(-1.0, 1.0, 9), np.linspace(-1.0, 1.0, 7)
    values = xs[None, :] ** 2 + 2 * ys[:, None] ** 2 + 0.1
    path = plane_trajectory(
        np.column_stack([np.linspace(-0.8, 0, 5), np.linspace(0.8, 0, 5)]),
        name=INJECTED,
        loss=np.linspace(2.0, 0.2, 5),
        plane_loss=np.linspace(2.1, 0.2, 5),
        residual=np.linspace(0, 0.1, 5),
    )
    nan = np.full_like(values, np.nan)
    surface = Surface(xs, ys, values, nan, None, 0, {"objective": {"problem": INJECTED}}, (path,))
    alphas = np.linspace(0.0, 1.0, 11)
    line = Line(alphas, 1 + np.sin(np.pi * alphas), np.full(11, np.nan), None, 0, 1.0, False)
    summary = build_report(
        tmp_path / "report.html",
        results=[(INJECTED, surface), ("line", line)],
        title=INJECTED,
        animations=False,
    )
    dom, console = open_in_chromium(summary.path, tmp_path)
    assert page_errors(console) == []
    assert re.search(r'id="plotly-\d+" class="[^"]*js-plotly-plot', dom)
    assert "<canvas" in dom and "Loss along a line" in dom and "Result line." in dom


def test_a_report_with_a_diverged_and_an_unreadable_result_renders(tmp_path):
    """One all-NaN surface among good results, and one result that could not be read: the
    page draws the good ones, says where the loss diverged everywhere, and shows the
    "Skipped" note."""
    from weightspace.landscape import Surface
    from weightspace.render.build import build_report

    xs = np.linspace(-1.0, 1.0, 7)
    values = xs[None, :] ** 2 + xs[:, None] ** 2 + 0.1
    nan = np.full_like(values, np.nan)
    good = Surface(xs, xs, values, nan, None, 0, {})
    diverged = Surface(xs, xs, nan, nan, None, nan.size, {})
    summary = build_report(
        tmp_path / "report.html",
        results=[("good", good), ("diverged", diverged)],
        skipped=[("broken", "result broken.npz: unreadable (File is not a zip file)")],
        animations=False,
    )
    assert summary.results == {"surface": ["good", "diverged"]}
    assert summary.skipped == [("broken", "result broken.npz: unreadable (File is not a zip file)")]
    dom, console = open_in_chromium(summary.path, tmp_path)
    assert page_errors(console) == []
    assert re.search(r'id="plotly-\d+" class="[^"]*js-plotly-plot', dom)  # the good surface
    assert "Diverged everywhere in this region" in dom
    assert re.search(r'<div class="note warning">skipped broken: result broken.npz', dom)
    assert '<a href="#s3-skipped">Skipped</a>' in dom  # listed in the contents too
