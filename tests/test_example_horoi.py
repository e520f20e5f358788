"""The Horoi et al. example in quick mode: its statistic recomputed from the saved embeddings
and runs, its rule applied by hand, and the rule shown to be able to fail."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import numpy as np
import pytest

import weightspace as ws
from _util import REPO, run_script

EXAMPLE = REPO / "examples" / "horoi_jump_retrain.py"
VERDICTS = ("reproduced", "not reproduced", "inconclusive")


def example():
    """The example's top level (its ``main`` is not run)."""
    if str(EXAMPLE.parent) not in sys.path:
        sys.path.insert(0, str(EXAMPLE.parent))
    spec = importlib.util.spec_from_file_location("test_horoi_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing the mean of their positions."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j)
        i = j + 1
    return ranks


def monotonicity(points: np.ndarray, lengths: list[int]) -> float:
    """Mean over runs of Spearman's ρ (Pearson's r of average ranks) of time with the
    distance from the run's first point."""
    out, start = [], 0
    for n in lengths:
        x = points[start : start + n]
        start += n
        dist = np.sqrt(((x - x[0]) ** 2).sum(axis=1))
        r, t = average_ranks(dist), np.arange(n, dtype=np.float64)
        r, t = r - r.mean(), t - t.mean()
        out.append(float(r @ t / np.sqrt((r @ r) * (t @ t))))
    return float(np.mean(out))


def above(vd, value, control) -> str:
    """PHATE's interval wholly above the other's / at or below it / else."""
    if control is None:
        return "inconclusive"
    if value.low > control.high:
        return "reproduced"
    return "not reproduced" if value.high <= control.low else "inconclusive"


def test_horoi_example_quick(tmp_path):
    out = tmp_path / "horoi"
    stdout = run_script(EXAMPLE, "--quick", "--out", str(out))
    module = example()
    import _verdict as vd

    s = json.loads((out / "summary.json").read_text())
    keys = [c.key for c in module.CLAIMS]
    assert list(s["claims"]) == keys == ["phate_over_tsne", "phate_over_umap", "phate_over_both"]
    first_result = stdout.index("figure:")
    for claim in module.CLAIMS:  # pre-registered: printed before any result
        assert 0 <= stdout.index(claim.describe()) < first_result
    for name in ("horoi_embeddings", "horoi_paths"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("horoi_claims", "horoi_methods", "horoi_jumps"):
        assert (out / f"{name}.md").read_text().count("\n") >= 3
    assert s["seeds"] == len(s["seed_list"]) >= 3 and s["umap"] is False  # quick: no UMAP

    original = ws.Trajectory.load(out / "runs" / "original").array(np.float64)
    jumps = [ws.Trajectory.load(p) for p in sorted((out / "runs" / "jumps").glob("jump_*"))]
    stats = {"PHATE": [], "t-SNE": []}
    for p, seed in zip(s["per_seed"], s["seed_list"]):
        # the set: the original run and one retraining per size, jumped with this seed
        mine = sorted(
            (t for t in jumps if t.metadata["jump"]["seed"] == seed),
            key=lambda t: t.metadata["jump"]["size"],
        )
        assert [t.metadata["jump"]["size"] for t in mine] == [0.25, 0.5, 0.75, 1.0]
        runs = [original, *(t.array(np.float64) for t in mine)]
        for t in mine:  # each retraining starts at its jump: θ* + size · direction
            jump = np.linalg.norm(t.array(np.float64)[0] - original[-1])
            assert jump == pytest.approx(t.metadata["jump"]["distance"], rel=1e-5)
        lengths = [len(r) for r in runs]
        saved = np.load(out / "embeddings" / f"seed{seed}.npz")
        assert saved["lengths"].tolist() == lengths == p["lengths"]
        assert set(saved.files) == {"lengths", "PHATE", "t-SNE"}
        for method in stats:
            e = saved[method]
            assert e.shape == (sum(lengths), 2) and np.isfinite(e).all()
            value = monotonicity(e.astype(np.float64), lengths)
            assert p["monotonicity"][method] == pytest.approx(value, rel=1e-9, abs=1e-12)
            stats[method].append(value)
            assert 0 <= p["preservation"][method] <= 1
        weights = monotonicity(np.concatenate(runs), lengths)
        assert p["weight_space_monotonicity"] == pytest.approx(weights, rel=1e-9, abs=1e-12)

    phate, tsne = vd.estimate(stats["PHATE"]), vd.estimate(stats["t-SNE"])
    for key, control in (("phate_over_tsne", tsne), ("phate_over_umap", None)):
        got = s["claims"][key]
        np.testing.assert_allclose(got["value"]["values"], phate.values, rtol=1e-9, atol=1e-12)
        assert [got["value"]["low"], got["value"]["high"]] == pytest.approx(
            [phate.low, phate.high], rel=1e-9
        )
        assert got["verdict"] == above(vd, phate, control)
    assert s["claims"]["phate_over_umap"]["control"] is None
    got = s["claims"]["phate_over_tsne"]["control"]
    assert [got["mean"], got["low"], got["high"]] == pytest.approx(
        [tsne.mean, tsne.low, tsne.high], rel=1e-9
    )
    # both: t-SNE's verdict and UMAP's (inconclusive without it) must hold together
    tsne_verdict = above(vd, phate, tsne)
    both = "not reproduced" if tsne_verdict == "not reproduced" else "inconclusive"
    assert s["claims"]["phate_over_both"]["verdict"] == both
    assert s["control_verdicts"]["phate_over_tsne"] == above(vd, tsne, phate)
    for v in (*s["control_verdicts"].values(), *(c["verdict"] for c in s["claims"].values())):
        assert v in VERDICTS
    assert all(
        isinstance(v, (int, float)) and math.isfinite(v)
        for p in s["per_seed"]
        for v in p["monotonicity"].values()
    )


def test_horoi_claim_can_fail():
    """The example's own rule says "not reproduced" where PHATE draws the paths worse than
    either other method, "reproduced" only where its interval is above both, and never more
    than "inconclusive" when UMAP is missing."""
    judge = example().judge
    low, high = [0.6, 0.7, 0.65, 0.62, 0.68], [0.95, 0.97, 0.96, 0.94, 0.98]
    worse = judge({"PHATE": low, "t-SNE": high, "UMAP": high})
    assert {k: v["verdict"] for k, v in worse.items()} == dict.fromkeys(worse, "not reproduced")
    assert {v["control_verdict"] for v in worse.values()} == {"reproduced"}
    better = judge({"PHATE": high, "t-SNE": low, "UMAP": low})
    assert {k: v["verdict"] for k, v in better.items()} == dict.fromkeys(better, "reproduced")
    # above t-SNE but below UMAP: the claim (above both) is not reproduced
    mixed = judge({"PHATE": high, "t-SNE": low, "UMAP": [0.99, 1.0, 0.995, 0.998, 1.0]})
    assert mixed["phate_over_tsne"]["verdict"] == "reproduced"
    assert mixed["phate_over_both"]["verdict"] == "not reproduced"
    # ties at the top (every seed 1.0): not above, so not reproduced
    tie = judge({"PHATE": [1.0] * 3, "t-SNE": [1.0] * 3, "UMAP": None})
    assert tie["phate_over_tsne"]["verdict"] == "not reproduced"
    no_umap = judge({"PHATE": high, "t-SNE": low, "UMAP": None})
    assert no_umap["phate_over_umap"]["verdict"] == "inconclusive"
    assert no_umap["phate_over_both"]["verdict"] == "inconclusive"
