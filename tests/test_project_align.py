"""Lipton's endpoint distances modulo permutations (``project_runs(align=...)``, ``weightspace
project --align``): a run that is another run with its hidden units shuffled is at distance 0
after alignment, distances to the reference never grow, and the CLI asks for ``--problem``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import weightspace as ws
from weightspace.cli import main
from weightspace.testing import write_run
from weightspace.workflows import EndpointAlignment

HIDDEN = 40  # digits-mlp: 64 -> 40 -> 10


@pytest.fixture(scope="module")
def digits():
    """The digits MLP's problem and the parameter names of its two layers."""
    problem = ws.zoo.problem("digits-mlp")
    layout = ws.ParamLayout.from_module(problem.model)
    names = [n for n in layout.names if n.endswith((".weight", ".bias"))]
    assert len(names) == 4  # the two Linear layers, in order
    return problem, layout, names


def shuffled(layout, names, theta, perm):
    """``theta`` with its hidden units reordered by ``perm`` (written out by hand)."""
    p = layout.unflatten(torch.from_numpy(theta))
    w1, b1, w2, _ = names  # the output bias keeps its order
    out = dict(p)
    out[w1], out[b1], out[w2] = p[w1][perm], p[b1][perm], p[w2][:, perm]
    return layout.flatten(out).numpy()


def walk(layout, seed, steps=6):
    """A short trajectory of the model: a random start plus a random walk, float32."""
    rng = np.random.default_rng(seed)
    start = rng.normal(scale=0.3, size=layout.numel)
    return (start + np.cumsum(rng.normal(scale=0.05, size=(steps, layout.numel)), 0)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits):
    """Run A, run B = A with its hidden units shuffled at every snapshot, run C unrelated."""
    _, layout, names = digits
    root = tmp_path_factory.mktemp("runs")
    a = walk(layout, 0)
    perm = np.random.default_rng(1).permutation(HIDDEN)
    assert (perm != np.arange(HIDDEN)).sum() > 30
    b = np.stack([shuffled(layout, names, row, perm) for row in a])
    c = walk(layout, 2)
    meta = {"label": "A"}, {"label": "B"}, {"label": "C"}
    paths = [
        write_run(root / k["label"], x, layout=layout, metadata=k) for x, k in zip((a, b, c), meta)
    ]
    return paths, (a, b, c)


def test_a_shuffled_copy_is_at_distance_zero_after_alignment(runs, digits):
    problem = digits[0]
    paths, (a, b, c) = runs
    proj = ws.project_runs(paths, align=EndpointAlignment("weights", problem))
    finals = np.stack([x[-1].astype(np.float64) for x in (a, b, c)])
    direct = np.linalg.norm(finals[:, None] - finals[None], axis=-1)
    np.testing.assert_allclose(proj.endpoint_distances, direct, rtol=1e-12)
    assert proj.endpoint_distances[0, 1] > 10  # unaligned, B is far from A ...
    assert proj.aligned_distances[0, 1] == 0.0  # ... and is A once its units are put back
    # aligned C in A's unit order: a permutation of C's own units, no closer to A than 0,
    # never farther than unaligned
    assert 0 < proj.aligned_distances[0, 2] <= proj.endpoint_distances[0, 2]
    # B aligned is A, so B and C (in A's order) are as far as A and C
    assert proj.aligned_distances[1, 2] == pytest.approx(proj.aligned_distances[0, 2], rel=1e-12)
    np.testing.assert_array_equal(proj.aligned_distances, proj.aligned_distances.T)
    record = proj.metadata["align"]
    assert record["method"] == "weights" and record["reference_index"] == 0
    assert record["groups"] == {"P_0": HIDDEN}  # the one hidden layer
    by_run = {r["run"]: r for r in record["runs"]}
    assert by_run[str(paths[1])]["distance_after"] == 0.0
    # the choice survives ws.save / ws.load
    back = ws.load(ws.save(proj, paths[0].parent / "proj"))
    np.testing.assert_array_equal(back.aligned_distances, proj.aligned_distances)
    np.testing.assert_array_equal(back.endpoint_distances, proj.endpoint_distances)
    assert back.metadata["align"]["reference"] == str(paths[0])


def test_aligned_distances_to_the_reference_never_grow(tmp_path, digits):
    problem, layout, _ = digits
    paths = [
        write_run(tmp_path / f"r{k}", walk(layout, 10 + k, 3), layout=layout) for k in range(4)
    ]
    for ref in (0, 2):
        proj = ws.project_runs(
            paths, align=EndpointAlignment("weights", problem, reference=paths[ref], seed=ref)
        )
        before, after = proj.endpoint_distances[ref], proj.aligned_distances[ref]
        assert after[ref] == 0.0 and (after <= before + 1e-9).all()
        assert proj.metadata["align"]["reference_index"] == ref


def test_activation_matching_recovers_the_shuffle(runs, digits):
    problem, _, _ = digits
    paths, _ = runs
    proj = ws.project_runs(paths[:2], align=EndpointAlignment("activations", problem))
    assert proj.aligned_distances[0, 1] == 0.0
    assert proj.metadata["align"]["n_samples"] == 1024


def test_without_align_only_the_unaligned_table(runs):
    paths, _ = runs
    proj = ws.project_runs(paths)
    assert proj.endpoint_distances.shape == (3, 3) and proj.aligned_distances is None
    assert proj.metadata["align"] is None
    assert ws.project_runs(paths[0]).endpoint_distances is None  # one run: no pairs


def test_bad_alignments_are_refused_before_any_work(runs, digits, tmp_path):
    problem, _, _ = digits
    paths, _ = runs
    with pytest.raises(ws.WeightspaceError, match=r"^align.reference: .* not one of the runs"):
        ws.project_runs(paths, align=EndpointAlignment("weights", problem, reference="elsewhere"))
    with pytest.raises(ws.WeightspaceError, match=r"^align.reference: expected a run index"):
        ws.project_runs(paths, align=EndpointAlignment("weights", problem, reference=3))
    with pytest.raises(ws.WeightspaceError, match=r"^align.method: expected"):
        ws.project_runs(paths, align=EndpointAlignment("ranks", problem))
    with pytest.raises(ws.WeightspaceError, match=r"^align: aligning runs needs at least 2"):
        ws.project_runs(paths[0], align=EndpointAlignment("weights", problem))
    with pytest.raises(ws.WeightspaceError, match=r"^align: expected None or EndpointAlignment"):
        ws.project_runs(paths, align="weights")
    other = ws.Problem(torch.nn.Linear(64, 10), torch.nn.functional.cross_entropy, problem.data)
    with pytest.raises(ws.WeightspaceError, match="vs the problem's model"):
        ws.project_runs(paths, align=EndpointAlignment("weights", other))


def test_cli_align(runs, tmp_path, capsys):
    paths, _ = runs
    out = tmp_path / "proj"
    args = ["project", *map(str, paths), "-o", str(out), "--json", "--no-progress"]
    assert main([*args, "--align", "weights", "--problem", "digits-mlp"]) == 0
    payload = json.loads(capsys.readouterr().out)["summary"]
    assert payload["align"] == {"method": "weights", "reference": str(paths[0])}
    assert payload["aligned_distances"][0][1] == 0.0
    assert payload["endpoint_distances"][0][1] > 10
    assert ws.load(out).aligned_distances[0, 1] == 0.0
    # the reference by --align-to: B's row is then the one at 0 from A
    assert main([*args, "--overwrite", "--align", "weights", "--problem", "digits-mlp",
                 "--align-to", str(paths[1])]) == 0  # fmt: skip
    payload = json.loads(capsys.readouterr().out)["summary"]
    assert payload["align"]["reference"] == str(paths[1])
    assert payload["aligned_distances"][1][0] == 0.0


def test_cli_align_needs_problem(runs, tmp_path, capsys):
    paths, _ = runs
    args = ["project", *map(str, paths), "-o", str(tmp_path / "p")]
    assert main([*args, "--align", "weights"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "weightspace project: error: --problem: required by --align weights (the runs' model "
        "gives the permutation structure)"
    )
    assert main([*args, "--align-to", str(paths[1])]) == 1
    assert "--align-to: used only with --align" in capsys.readouterr().err
    assert main([*args, "--align", "weights", "--problem", "digits-mlp", "--align-to", "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--align-to: 'x' is not one of the runs" in err
    assert not (tmp_path / "p.npz").exists()


def test_the_report_shows_both_tables(runs, digits, tmp_path):
    from weightspace.render._endpoints import endpoint_tables
    from weightspace.render.build import build_report
    from weightspace.render.report import Report

    paths, _ = runs
    proj = ws.project_runs(paths, align=EndpointAlignment("weights", digits[0]))
    out = build_report(tmp_path / "r.html", results=[("pca", proj)], animations=False)
    text = out.path.read_text()
    assert "final points (Lipton 2016), as recorded, without alignment" in text
    assert "permuted to match the reference run A (weight matching" in text
    assert "to A, unaligned" in text
    plain = Report("t")
    endpoint_tables(plain, ws.project_runs(paths))
    assert "without alignment" in plain.to_html() and "permuted" not in plain.to_html()


def test_a_cnn_with_batchnorm_by_weights_and_its_buffers_for_activations(tmp_path):
    problem = ws.zoo.problem("digits-cnn-bn")
    layout = ws.ParamLayout.from_module(problem.model)
    paths = [
        write_run(tmp_path / f"r{k}", walk(layout, 20 + k, 2), layout=layout) for k in range(2)
    ]
    proj = ws.project_runs(paths, align=EndpointAlignment("weights", problem))
    assert 0 < proj.aligned_distances[0, 1] < proj.endpoint_distances[0, 1]
    assert len(proj.metadata["align"]["groups"]) >= 2  # the convs' channels, the hidden units
    with pytest.raises(
        ws.WeightspaceError, match=r"^align: run .* did not record the model.s buffers"
    ):
        ws.project_runs(paths, align=EndpointAlignment("activations", problem))
