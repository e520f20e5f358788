"""A single-file HTML report that works offline.

Matplotlib figures are embedded as base64 PNG (or inline SVG), plotly figures as ``<div>``
fragments with plotly.js embedded once per page from the installed plotly package (never
from a CDN), tables as HTML tables. All user text (titles, captions, labels, cells, notes) is
HTML-escaped. A note with the same text is shown once.

Example:
    >>> from weightspace.render import Report, static
    >>> import numpy as np
    >>> xs = np.linspace(-1, 1, 11)
    >>> fig, _ = static.plot_surface_contour(xs, xs, xs[None] ** 2 + xs[:, None] ** 2)
    >>> report = Report("Loss surface").add_section("Surface")
    >>> report = report.add_figure(fig, "Loss on a random filter-normalised plane, 11×11 grid.")
    >>> path = report.write("report.html")
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .._version import __version__
from ..errors import WeightspaceError
from ..store import atomic_path

__all__ = ["Report"]

logger = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GIF_MAGIC = (b"GIF87a", b"GIF89a")

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; --accent: #2f6fb3; }
* { box-sizing: border-box; }
body { margin: 0; background: #f5f7fa; color: var(--ink);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 32px 64px; background: #fff;
  min-height: 100vh; box-shadow: 0 0 0 1px var(--line); }
header h1 { margin: 0 0 4px; font-size: 1.9em; }
.meta { color: var(--muted); margin: 0 0 18px; font-size: 0.9em; }
nav { border: 1px solid var(--line); border-radius: 6px; padding: 10px 16px; margin: 0 0 24px; }
nav ol { margin: 4px 0; padding-left: 20px; columns: 2; }
nav a, h2 a { color: var(--accent); text-decoration: none; }
h2 { margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
figure { margin: 18px 0 26px; }
figure img, figure svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figure.plotly > div { width: 100%; }
figcaption { color: var(--muted); font-size: 0.9em; margin-top: 6px; }
figcaption b, caption b { color: var(--ink); }
table { border-collapse: collapse; margin: 10px 0 24px; font-size: 0.92em; }
caption { caption-side: top; text-align: left; color: var(--muted); padding-bottom: 6px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px; text-align: left; }
th { background: #eef2f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #f8fafc; }
.note { border-left: 4px solid var(--accent); background: #eef4fb; padding: 8px 14px;
  margin: 12px 0; border-radius: 0 4px 4px 0; }
.note.warning { border-color: #c98a00; background: #fff6e0; }
p { margin: 8px 0; }
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _slug(text: str, n: int) -> str:
    return f"s{n}-" + (re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "section")


def _plain_text(fig: Any) -> None:
    """Show every text of ``fig`` that came from a name as written: a run label such as
    ``$\\bad{x}$`` is a name, not TeX for matplotlib's math parser (which would fail on
    it). Tick labels keep their math (a log axis writes ``10^{-2}`` in it)."""
    from matplotlib.text import Text

    ticks = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis, getattr(ax, "zaxis", None)):
            if axis is None:
                continue
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks.update((id(tick.label1), id(tick.label2)))
            ticks.add(id(axis.get_offset_text()))
    for text in fig.findobj(Text):
        if id(text) not in ticks:
            text.set_parse_math(False)


def format_cell(value: Any, digits: int = 4) -> tuple[str, bool]:
    """Text of a table cell and whether it is a number (right-aligned)."""
    if isinstance(value, bool) or value is None:
        return ("—" if value is None else str(value)), False
    if isinstance(value, numbers.Integral):
        return str(int(value)), True
    if isinstance(value, numbers.Real):
        x = float(value)
        return ("—" if math.isnan(x) else f"{x:.{digits}g}"), True
    return str(value), False


class Report:
    """A report page built section by section; every ``add_*`` returns the report.

    Args:
        title: page title.
        subtitle: optional line under the title (e.g. the runs shown).

    Example:
        >>> Report("Runs").add_text("Two runs.").add_table([[1, 0.5]], ["step", "loss"])
        <Report 'Runs': 2 blocks>
    """

    def __init__(self, title: str, *, subtitle: str | None = None) -> None:
        self.title = str(title)
        self.subtitle = subtitle
        self._blocks: list[str] = []
        self._sections: list[tuple[str, str]] = []  # (id, title)
        self._notes: set[str] = set()
        self._figures = 0
        self._tables = 0
        self._plotly = False

    def __repr__(self) -> str:
        return f"<Report {self.title!r}: {len(self._blocks)} blocks>"

    def mark(self) -> tuple[int, int, int, int, frozenset[str], bool]:
        """The report's state now, for :meth:`rollback` (drop a section that failed midway)."""
        return (
            len(self._blocks),
            len(self._sections),
            self._figures,
            self._tables,
            frozenset(self._notes),
            self._plotly,
        )

    def rollback(self, mark: tuple[int, int, int, int, frozenset[str], bool]) -> Report:
        """Remove everything added since :meth:`mark` returned ``mark``."""
        blocks, sections, self._figures, self._tables, notes, self._plotly = mark
        del self._blocks[blocks:]
        del self._sections[sections:]
        self._notes = set(notes)
        return self

    @property
    def has_plotly(self) -> bool:
        """Whether the page embeds plotly.js (it has an interactive figure)."""
        return self._plotly

    def add_section(self, title: str, text: str | None = None) -> Report:
        """Start a section (a heading in the page and in its table of contents)."""
        sid = _slug(str(title), len(self._sections) + 1)
        self._sections.append((sid, str(title)))
        self._blocks.append(f'<h2 id="{sid}"><a href="#{sid}">{_esc(title)}</a></h2>')
        return self.add_text(text) if text else self

    def add_text(self, text: str) -> Report:
        """Add paragraphs of plain text (separated by blank lines; escaped)."""
        for para in re.split(r"\n\s*\n", str(text).strip()):
            if para:
                self._blocks.append(f"<p>{_esc(para)}</p>")
        return self

    def add_note(self, text: str, *, level: Literal["info", "warning"] = "warning") -> Report:
        """Add a highlighted note, e.g. "MP4 skipped: ffmpeg not installed"; the same text is
        shown once per report."""
        if level not in ("info", "warning"):
            raise WeightspaceError(f"level: expected 'info' or 'warning', got {level!r}")
        if str(text) not in self._notes:
            self._notes.add(str(text))
            self._blocks.append(f'<div class="note {level}">{_esc(text)}</div>')
        return self

    def _caption(self, caption: str | None) -> str:
        self._figures += 1
        body = f" {_esc(caption)}" if caption else ""
        return f"<figcaption><b>Figure {self._figures}.</b>{body}</figcaption>"

    def add_figure(
        self,
        fig: Any,
        caption: str | None = None,
        *,
        format: Literal["png", "svg"] = "png",
        dpi: int = 110,
    ) -> Report:
        """Add a matplotlib figure (as base64 PNG or inline SVG) or PNG/GIF bytes.

        Args:
            fig: a matplotlib Figure, or the bytes of a PNG or GIF image (e.g. an animation).
            caption: what the figure shows and how it was computed.
            format: ``"png"`` or ``"svg"`` for matplotlib figures.
            dpi: resolution of PNG output.

        Raises:
            WeightspaceError: ``fig`` is neither a figure nor PNG/GIF bytes.
        """
        alt = _esc(caption or self.title)
        if isinstance(fig, (bytes, bytearray)):
            data = bytes(fig)
            mime = "image/png" if data.startswith(PNG_MAGIC) else None
            mime = "image/gif" if data.startswith(GIF_MAGIC) else mime
            if mime is None:
                raise WeightspaceError(
                    "fig: expected a matplotlib Figure or PNG/GIF bytes, got other bytes; "
                    "pass the figure or the contents of a .png/.gif file"
                )
            body = f'<img alt="{alt}" src="data:{mime};base64,{base64.b64encode(data).decode()}">'
        elif hasattr(fig, "savefig"):
            if format not in ("png", "svg"):
                raise WeightspaceError(f"format: expected 'png' or 'svg', got {format!r}")
            buf = io.BytesIO()
            fig = getattr(fig, "figure", fig) or fig
            _plain_text(fig)
            fig.savefig(buf, format=format, dpi=dpi)
            if format == "png":
                b64 = base64.b64encode(buf.getvalue()).decode()
                body = f'<img alt="{alt}" src="data:image/png;base64,{b64}">'
            else:
                svg = buf.getvalue().decode("utf-8")
                body = svg[svg.index("<svg") :]
        else:
            raise WeightspaceError(
                f"fig: expected a matplotlib Figure or PNG/GIF bytes, got {type(fig).__name__}; "
                "use add_plotly for plotly figures"
            )
        self._blocks.append(f"<figure>{body}{self._caption(caption)}</figure>")
        return self

    def add_plotly(self, fig: Any, caption: str | None = None, *, height: str = "520px") -> Report:
        """Add an interactive plotly figure; plotly.js is embedded once in the page."""
        from .interactive import html_fragment

        div = html_fragment(fig, div_id=f"plotly-{self._figures + 1}", height=height)
        self._plotly = True
        self._blocks.append(f'<figure class="plotly">{div}{self._caption(caption)}</figure>')
        return self

    def add_table(
        self,
        rows: Sequence[Any],
        columns: Sequence[str] | None = None,
        caption: str | None = None,
        *,
        digits: int = 4,
    ) -> Report:
        """Add a table of numbers and text.

        Args:
            rows: sequences of cells, or mappings of column -> cell.
            columns: column names (required for sequence rows; for mapping rows, default:
                the keys of the first row).
            caption: what the table holds.
            digits: significant digits of floats.

        Raises:
            WeightspaceError: rows of the wrong length or without column names.
        """
        rows = list(rows)
        if columns is None:
            if not rows or not isinstance(rows[0], Mapping):
                raise WeightspaceError(
                    "columns: expected column names for rows of cells; pass them"
                )
            columns = list(rows[0])
        columns = [str(c) for c in columns]
        cells = []
        for n, row in enumerate(rows):
            row = [row.get(c) for c in columns] if isinstance(row, Mapping) else list(row)
            if len(row) != len(columns):
                raise WeightspaceError(
                    f"rows[{n}]: expected {len(columns)} cells like columns, got {len(row)}"
                )
            tds = []
            for value in row:
                text, num = format_cell(value, digits)
                tds.append(
                    f'<td class="num">{_esc(text)}</td>' if num else f"<td>{_esc(text)}</td>"
                )
            cells.append(f"<tr>{''.join(tds)}</tr>")
        self._tables += 1
        cap = f" {_esc(caption)}" if caption else ""
        head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
        self._blocks.append(
            f"<table><caption><b>Table {self._tables}.</b>{cap}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(cells)}</tbody></table>"
        )
        return self

    def to_html(self) -> str:
        """The whole page as one string."""
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="weightspace {_esc(__version__)}">',
            f"<title>{_esc(self.title)}</title>",
            f"<style>{CSS}</style>",
        ]
        if self._plotly:
            from .interactive import plotly_js

            parts.append(f'<script type="text/javascript">{plotly_js()}</script>')
        parts.append("</head><body><main><header>")
        parts.append(f"<h1>{_esc(self.title)}</h1>")
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
        sub = f"{_esc(self.subtitle)} · " if self.subtitle else ""
        parts.append(f'<p class="meta">{sub}weightspace {_esc(__version__)} · {stamp}</p>')
        parts.append("</header>")
        if len(self._sections) > 1:
            items = "".join(f'<li><a href="#{i}">{_esc(t)}</a></li>' for i, t in self._sections)
            parts.append(f"<nav><b>Contents</b><ol>{items}</ol></nav>")
        parts.extend(self._blocks)
        parts.append("</main></body></html>")
        return "\n".join(parts) + "\n"

    def write(self, path: str | os.PathLike) -> Path:
        """Write the page atomically to ``path`` (UTF-8) and return the path.

        Raises:
            WeightspaceError: the directory does not exist.
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise WeightspaceError(
                f"path: directory {str(path.parent)!r} does not exist; create it first"
            )
        text = self.to_html()
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        logger.info("wrote report %s (%.1f MB)", path, len(text.encode()) / 1e6)
        return path
