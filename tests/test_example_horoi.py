"""The Horoi et al. example runs in quick mode and writes its figures, tables and numbers."""

from __future__ import annotations

import json
import math

from _util import REPO, run_script


def test_horoi_example_quick(tmp_path):
    out = tmp_path / "horoi"
    stdout = run_script(REPO / "examples" / "horoi_jump_retrain.py", "--quick", "--out", str(out))
    for name in ("horoi_embeddings", "horoi_phate_runs", "horoi_persistence"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    table = (out / "table.md").read_text()
    assert "PHATE" in table and "t-SNE" in table and table in stdout
    assert "| 0.25 |" in (out / "jumps.md").read_text()

    summary = json.loads((out / "summary.json").read_text())
    spaces = summary["spaces"]
    assert {"PHATE", "t-SNE"} <= set(spaces) and len(spaces) >= 3  # plus the PCA reference
    for row in spaces.values():
        for key in ("step continuity", "trajectory preservation", "trustworthiness"):
            assert 0 <= row[key] <= 1, (key, row)
        assert row["largest/median step"] >= 1
        assert math.isfinite(row["total persistence"]) and row["total persistence"] >= 0
        assert row["significant basins"] >= row["graph components"] >= 1
    sizes = sorted(summary["jumps"], key=float)
    assert [float(s) for s in sizes] == [0.25, 0.5, 0.75, 1.0]
    jumps = [summary["jumps"][s] for s in sizes]
    for row in jumps:
        assert all(math.isfinite(v) for v in row.values()), row
        assert row["loss after retraining"] < row["loss after jump"]
    # jump length is linear in the size (filter-normalised: size × the weights' norm)
    lengths = [r["jump length"] / float(s) for r, s in zip(jumps, sizes)]
    assert max(lengths) - min(lengths) < 1e-9 * lengths[0]
    check = summary["check"]
    assert isinstance(check["holds"], bool)
    assert check["step_continuity"]["PHATE"] == spaces["PHATE"]["step continuity"]
    assert ("holds" in stdout) and summary["n_runs"] == 1 + 4 * 2
