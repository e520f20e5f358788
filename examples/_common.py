"""Shared plumbing of the paper-reproduction examples: arguments, tables, summaries, figures.

Every example imports this module by its own location, so it runs as
``python examples/NAME.py --quick --out DIR`` from any working directory::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import parse_args, write_summary, write_table
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from _verdict import VERDICTS, Claim, Estimate, record

from weightspace.errors import WeightspaceError
from weightspace.render.static import save_figure
from weightspace.store import atomic_path, write_json

__all__ = ["check_line", "fresh_dir", "parse_args", "save", "write_summary", "write_table"]


def parse_args(
    description: str | None, argv: Sequence[str] | None = None, **extra: Any
) -> argparse.Namespace:
    """Parse the common options ``--quick``, ``--out DIR`` (required) and ``--seed`` (0).

    Args:
        description: the example's help text (its module docstring).
        argv: the arguments (default: ``sys.argv[1:]``).
        **extra: more options as ``name=default``; ``--name`` (underscores become dashes)
            takes the type of its default, and a ``False`` default makes a switch.

    Returns:
        the namespace, with ``out`` a :class:`~pathlib.Path` that exists. ``--quick`` also
        sets torch to one thread.

    Example:
        >>> args = parse_args("demo", ["--out", "/tmp/x", "--steps", "5"], steps=100)
        >>> args.quick, args.seed, args.steps
        (False, 0, 5)
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny settings for a fast check (seconds)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    for name, default in extra.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, dest=name, action="store_true", default=default)
        else:
            kind = type(default) if default is not None else str
            parser.add_argument(
                flag, dest=name, type=kind, default=default, help="default: %(default)s"
            )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        torch.set_num_threads(1)  # tiny models: one thread is fastest, and fair to a busy machine
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args


def _cell(value: Any) -> str:
    """A table cell: numbers with 4 significant digits, booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def cell(est: Estimate | None) -> str:
    """``mean [low, high]`` to 3 significant digits (``—`` for no estimate)."""
    return "—" if est is None else f"{est.mean:.3g} [{est.low:.3g}, {est.high:.3g}]"


def claims_table(
    claims: Sequence[Claim], verdicts: Mapping[str, Mapping[str, Any]], out_dir: Any, name: str
) -> dict[str, dict]:
    """Print and record every claim's numbers and verdict (for ``summary.json``) and write the
    claims table ``out_dir/name.md`` and ``.csv``: rule, value and control with their
    intervals, the verdict, and the control judged by the same rule.

    Args:
        verdicts: claim key -> ``{"value", "control", "verdict", "control_verdict"}``.
    """
    recorded = {
        c.key: record(
            c, verdicts[c.key]["value"], verdicts[c.key]["control"], verdicts[c.key]["verdict"]
        )
        for c in claims
    }
    rows = [
        {
            "claim": c.key,
            "rule": c.rule,
            "value [95 %]": cell(verdicts[c.key]["value"]),
            "control [95 %]": cell(verdicts[c.key]["control"]),
            "verdict": verdicts[c.key]["verdict"],
            "control's verdict": verdicts[c.key]["control_verdict"],
        }
        for c in claims
    ]
    write_table(rows, out_dir, name)
    return recorded


def write_table(rows: list[dict[str, Any]], out_dir: str | os.PathLike, name: str) -> str:
    """Print a markdown table and write it as ``out_dir/name.md`` and ``out_dir/name.csv``.

    Args:
        rows: one dict per row; the columns are the keys of the first row, in order.
        out_dir: an existing directory.
        name: file stem.

    Returns:
        the markdown text.

    Raises:
        WeightspaceError: no rows, or rows with different keys.
    """
    if not rows:
        raise WeightspaceError(f"rows: expected at least one row for table {name!r}, got none")
    cols = list(rows[0])
    for r, row in enumerate(rows):
        if list(row) != cols:
            raise WeightspaceError(
                f"rows[{r}]: expected the columns {cols} of row 0, got {list(row)}; "
                "give every row the same keys"
            )

    def md(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "| " + " | ".join(md(c) for c in cols) + " |",
        "|" + "|".join("---" for _ in cols) + "|",
        *("| " + " | ".join(md(_cell(row[c])) for c in cols) + " |" for row in rows),
    ]
    text = "\n".join(lines) + "\n"
    out = Path(out_dir)
    with atomic_path(out / f"{name}.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    with atomic_path(out / f"{name}.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(cols)
        writer.writerows(
            [[repr(v) if isinstance(v, float) else v for v in row.values()] for row in rows]
        )
    print(text)
    return text


def _clean(value: Any, where: str) -> Any:
    """Numbers (non-finite ones as None), booleans and None, in nested dicts and lists."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and value in VERDICTS):
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy or torch scalar
        value = value.item()
        if isinstance(value, bool):
            return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise WeightspaceError(
        f"summary{where}: expected a number, a boolean, None or a verdict, got "
        f"{type(value).__name__}; keep other text out of the summary"
    )


def write_summary(out_dir: str | os.PathLike, summary: Mapping[str, Any]) -> Path:
    """Write ``out_dir/summary.json``: numbers (finite, or null), booleans and verdicts
    (:data:`_verdict.VERDICTS`), nested in dicts.

    Returns:
        the path written.

    Raises:
        WeightspaceError: a value that is not a number, a boolean or None.
    """
    path = Path(out_dir) / "summary.json"
    write_json(path, _clean(summary, ""))  # _clean leaves no NaN or infinity
    return path


def fresh_dir(path: str | os.PathLike) -> Path:
    """An empty directory at ``path`` for an example's recorded runs (an earlier one is removed).

    Raises:
        WeightspaceError: ``path`` exists and is not a directory.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WeightspaceError(f"path: {str(path)!r} is a file, expected a directory; remove it")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def save(fig: Any, out_dir: str | os.PathLike, name: str) -> Path:
    """Save a figure as ``out_dir/name.png`` (atomic) and print where it went."""
    path = save_figure(fig, Path(out_dir) / f"{name}.png", dpi=110)
    print(f"figure: {path}")
    return path


def check_line(paper: str, measured: str, holds: bool) -> str:
    """Print and return what the paper observed, what this run measured, and the verdict."""
    text = (
        f"paper:    {paper}\nmeasured: {measured}\n"
        f"check:    {'holds' if holds else 'does not hold'}"
    )
    print(text)
    return text
