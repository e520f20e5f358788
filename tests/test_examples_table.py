"""examples/README.md: the committed full-mode table says what the committed JSON outputs say."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = ("lorch_momentum", "lipton_paths", "li_landscape", "gradvis_hessian", "horoi_jump_retrain")
CELL = re.compile(r"^(?P<mean>\S+) \[(?P<low>\S+), (?P<high>\S+)\]$")


def _rows() -> dict[tuple[str, str], list[str]]:
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| `(\w+)` (\w+) \|", line)
        if m:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            rows[(m.group(1), m.group(2))] = cells
    return rows


def _close(cell: str, entry: dict) -> None:
    m = CELL.match(cell)
    assert m, cell
    for key in ("mean", "low", "high"):
        # the table rounds to 3 significant digits
        assert float(m.group(key)) == pytest.approx(entry[key], rel=6e-3, abs=1e-12), (key, cell)


@pytest.mark.parametrize("name", NAMES)
def test_the_table_holds_every_claim_of_the_committed_outputs(name):
    rows = _rows()
    summary = json.loads((EXAMPLES / "results" / name / "summary.json").read_text())
    assert summary["claims"], name
    for key, got in summary["claims"].items():
        cells = rows[(name, key)]
        _close(cells[4], got["value"])
        _close(cells[5], got["control"])
        assert cells[6].startswith(f"**{got['verdict']}**")
        assert cells[7] == summary.get("control_verdicts", {}).get(key, "—")
        assert int(cells[8]) == summary["seeds"] >= 5  # full mode: at least 5 seeds
    assert {k for (n, k) in rows if n == name} == set(summary["claims"])
