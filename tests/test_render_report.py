"""The HTML report: one self-contained file, user text escaped, plotly.js embedded once."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from weightspace.errors import WeightspaceError
from weightspace.render import Report, interactive, static

EVIL = "<script>alert('x')</script>"
XS = np.linspace(-1.0, 1.0, 7)
VALUES = XS[None, :] ** 2 + XS[:, None] ** 2


def line_figure():
    return static.plot_line(XS, XS**2)[0]


def test_all_user_text_is_escaped(tmp_path):
    fig = interactive.scatter_figure(np.ones((3, 2)), [EVIL])
    report = (
        Report(EVIL, subtitle=EVIL)
        .add_section(EVIL, text=EVIL)
        .add_figure(line_figure(), EVIL)
        .add_plotly(fig, EVIL)
        .add_table([[EVIL, 1.0]], [EVIL, "value"], EVIL)
        .add_note(EVIL)
    )
    text = report.write(tmp_path / "r.html").read_text(encoding="utf-8")
    assert EVIL not in text
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    assert text.count(escaped) >= 8  # title ×2, subtitle, section, text, captions, table, note


def test_plotly_js_is_embedded_once_and_never_fetched(tmp_path):
    surface = interactive.surface_figure(XS, XS, VALUES)
    scatter = interactive.scatter_figure(np.ones((3, 2)))
    text = Report("r").add_plotly(surface, "a").add_plotly(scatter, "b").to_html()
    assert text.count(interactive.plotly_js()[:120]) == 1
    assert text.count("Plotly.newPlot(") == 2
    assert not re.search(r"<script[^>]*\bsrc=", text)
    assert not re.search(r"<link[^>]*\bhref=", text)
    plain = Report("r").add_figure(line_figure(), "a").to_html()
    assert "Plotly" not in plain and len(plain) < len(text) / 10


def test_figures_embed_png_svg_and_image_bytes():
    png = Report("r").add_figure(line_figure(), "line", dpi=50).to_html()
    b64 = re.search(r'src="data:image/png;base64,([^"]+)"', png).group(1)
    assert base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")
    svg = Report("r").add_figure(line_figure(), "line", format="svg").to_html()
    assert "<svg" in svg and "<?xml" not in svg
    gif = b"GIF89a" + bytes(20)
    assert "data:image/gif;base64," in Report("r").add_figure(gif, "animation").to_html()
    with pytest.raises(WeightspaceError, match="PNG/GIF bytes"):
        Report("r").add_figure(b"not an image", "x")
    with pytest.raises(WeightspaceError, match="add_plotly"):
        Report("r").add_figure(interactive.scatter_figure(np.ones((3, 2))), "x")


def test_figures_and_tables_are_numbered_with_their_captions():
    report = Report("r").add_figure(line_figure(), "first").add_figure(line_figure(), "second")
    report.add_table([[1, 2]], ["a", "b"], "numbers")
    text = report.to_html()
    assert "<b>Figure 1.</b> first" in text and "<b>Figure 2.</b> second" in text
    assert "<b>Table 1.</b> numbers" in text


def test_table_cells_numbers_and_mapping_rows():
    rows = [{"run": "sgd", "loss": 0.123456789, "step": 100, "ok": True, "gap": float("nan")}]
    text = Report("r").add_table(rows, caption="runs").to_html()
    for cell in ('<td class="num">0.1235</td>', '<td class="num">100</td>', "<td>True</td>"):
        assert cell in text
    assert '<td class="num">—</td>' in text  # NaN
    assert "<th>run</th><th>loss</th>" in text
    text = Report("r").add_table([[1.0 / 3]], ["x"], digits=2).to_html()
    assert '<td class="num">0.33</td>' in text
    with pytest.raises(WeightspaceError, match=r"rows\[0\]: expected 2 cells"):
        Report("r").add_table([[1, 2, 3]], ["a", "b"])
    with pytest.raises(WeightspaceError, match="columns"):
        Report("r").add_table([[1, 2]])


def test_notes_are_shown_once_and_sections_are_listed():
    report = Report("r").add_section("Surfaces").add_note("MP4 skipped: ffmpeg not installed")
    report.add_section("Spectra").add_note("MP4 skipped: ffmpeg not installed")
    text = report.to_html()
    assert text.count("MP4 skipped: ffmpeg not installed") == 1
    assert re.search(r"<nav>.*Surfaces.*Spectra.*</nav>", text, re.S)
    assert text.count("<h2 ") == 2


def test_write_is_atomic_and_checks_the_directory(tmp_path):
    with pytest.raises(WeightspaceError, match="does not exist"):
        Report("r").write(tmp_path / "missing" / "r.html")
    path = Report("r").add_text("hello").write(tmp_path / "r.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_names_are_drawn_as_written_and_log_ticks_keep_their_math():
    """A run label like ``$\\bad{x}$`` must not reach matplotlib's TeX parser (it would fail
    the page), while a log axis's ``10^{-2}`` tick labels are math and must stay so."""
    from matplotlib.figure import Figure

    from weightspace.render import Report

    fig = Figure()
    ax = fig.subplots()
    ax.semilogy([1, 2, 3], [1e-3, 1e-2, 1e-1], label=r"$\undefinedcommand{x}$")
    ax.legend()
    Report("t").add_figure(fig)  # draws the figure: it would raise on the label as TeX
    assert [t.get_parse_math() for t in ax.get_legend().get_texts()] == [False]
    ticks = ax.get_yticklabels()
    assert ticks and all(t.get_parse_math() for t in ticks)
    assert any(t.get_text().startswith("$\\mathdefault") for t in ticks)
