"""The README works top to bottom: every command example and every Python snippet runs, in
the README's order, scaled down (the MLP problem, few steps, small grids), and the report at
the end opens in headless Chromium without console errors.

The scaling is the only change made to the README's text: each rule below names what it
replaces and why. A README example that no rule covers runs as written.
"""

from __future__ import annotations

import re
import shlex

import numpy as np
import pytest
import torch

import weightspace as ws
from _util import REPO
from test_readme import example_lines, shell_blocks
from weightspace.cli import main

README = (REPO / "README.md").read_text(encoding="utf-8")

# (pattern, replacement): the README's full-size settings and the small ones run here
SCALE = [
    (r"digits-cnn", "digits-mlp"),  # the small model: seconds instead of minutes
    (r"--grid \d+", "--grid 5"),
    (r"grid=\d+", "grid=5"),
    (r"--at every:\d+", "--at every:5"),
    (r'at="every:\d+"', 'at="every:5"'),
    (r"every=5, top_k=3", "every=5, top_k=2"),
    (r"trace_probes=\d+", "trace_probes=4"),
    (r"n_probes=10, n_steps=80", "n_probes=2, n_steps=12"),
    (r"n_products=800", "n_products=40"),
    (r"PCA\(n_components=12\)", "PCA(n_components=5)"),  # fewer snapshots, fewer PCs
    (r"--step-sizes [\d.,]+", "--step-sizes 0.5"),
    (r"--seeds [\d,]+", "--seeds 0"),
    (r"--retrain-steps \d+", "--retrain-steps 6"),  # a multiple of the runs' every
    (
        r"sizes=\(0\.25, 0\.5, 0\.75, 1\.0\), seeds=\(0, 1, 2\), retrain_steps=200",
        "sizes=(0.5,), seeds=(0,), retrain_steps=6",
    ),
    (r"--steps 2000", "--steps 20"),  # connect: a short curve training
    (r"steps=200\)", "steps=10)"),
    (r"runs/sgd:100", "runs/sgd:9"),  # a recorded step of the short run
    (r"-o /tmp/demo", "-o demo"),  # inside the test's directory
]
RECORD_STEPS = "--steps 30 --every 3"  # record: 11 snapshots instead of 51
SPECTRUM_SIZE = "--probes 2 --lanczos-steps 12 --trace-probes 4"  # spectrum: small SLQ

# Python blocks: names the README's snippets take from the reader's own code
PRELUDE = """
import numpy as np
import torch
import weightspace as ws
from weightspace import render

problem = ws.zoo.problem("digits-mlp")
model = problem.model
X, y = problem.data
loss_fn = torch.nn.functional.cross_entropy
loader = [(X[a:a + 64], y[a:a + 64]) for a in range(0, 640, 64)]
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
traj = traj_sgd = ws.Trajectory.load("runs/sgd")
traj_adam = ws.Trajectory.load("runs/order1")
i = 0
theta = center = start = traj.theta(-1)
objective = ws.Objective(problem)
direction = ws.random_directions(theta, objective.layout, n=1, seed=1)[0]
xs = ys = np.linspace(-1, 1, 3)
alphas = np.linspace(-0.5, 1.5, 5)
points = traj.array()[:3]
"""
# per block: what must change so that it does not collide with the command-line flow's files
BLOCK_EDITS = {
    "with ws.Recorder(model, ": [('"runs/sgd"', '"runs/py-sgd"')],
    "samples = ws.sample_around(": [
        ('"out/jumps")', '"out/py-jumps", sizes=(0.5,), seeds=(0,), retrain_steps=6)'),
        ('"report.html"', '"py-report.html"'),
    ],
    "samples = ws.jump_and_retrain(": [('"out/jumps"', '"out/py-jumps2"')],
}
# blocks that need optional packages this suite does not install (tests/test_integrations.py
# checks the callbacks against fakes of those packages)
NEEDS_OPTIONAL = ("lightning.Trainer", "transformers.Trainer")


def scaled(text: str) -> str:
    for pattern, replacement in SCALE:
        text = re.sub(pattern, replacement, text)
    return text


def command(line: str) -> list[str]:
    line = scaled(line)
    if line.startswith("record"):
        line = re.sub(r" --steps \d+| --every \d+", "", line) + f" {RECORD_STEPS}"
    if line.startswith("spectrum") and "--density" in line:
        line += f" {SPECTRUM_SIZE}"
    return [*shlex.split(line), "--no-progress"]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def prepare_import(tmp_path) -> None:
    """What the import example reads: checkpoint files and the user's module."""
    traj = ws.Trajectory.load(tmp_path / "runs" / "sgd")
    (tmp_path / "ckpt").mkdir()
    for k in range(len(traj)):
        state = traj.layout.unflatten(traj.theta(k))
        torch.save({n: v.clone() for n, v in state.items()}, tmp_path / "ckpt" / f"epoch_{k}.pt")
    (tmp_path / "mymodule.py").write_text(
        'import weightspace as ws\n\ndef make_problem():\n    return ws.zoo.problem("digits-mlp")\n'
    )


@pytest.mark.slow
def test_the_readme_flow_runs_and_its_report_opens_in_chromium(tmp_path, monkeypatch, capsys):
    from test_report_browser import CHROMIUM, open_in_chromium, page_errors

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # `--problem mymodule:make_problem`
    lines = example_lines(shell_blocks(README))
    assert any(x.startswith("report") for x in lines)
    for line in lines:
        if line.startswith("import "):
            prepare_import(tmp_path)
        code = main(command(line))
        err = capsys.readouterr().err
        assert code == 0, f"weightspace {line}\n{err}"

    blocks = python_blocks(README)
    skipped = [b for b in blocks if any(n in b for n in NEEDS_OPTIONAL)]
    assert len(skipped) == 1  # only the integrations block; any other is run
    for block in blocks:
        if block in skipped:
            continue
        code = scaled(block)
        for marker, edits in BLOCK_EDITS.items():
            if marker in code:
                for old, new in edits:
                    assert old in code, (marker, old)
                    code = code.replace(old, new)
        namespace: dict = {}
        exec(compile(PRELUDE, "<prelude>", "exec"), namespace)
        exec(compile(code, "<README block>", "exec"), namespace)

    # the README's report, once more at the end, over everything the flow wrote
    report_line = next(x for x in lines if x.startswith("report"))
    assert main([*command(report_line), "--overwrite"]) == 0
    page = tmp_path / "report.html"
    html = page.read_text()
    headings = ("Runs", "Trajectories: PCA", "Loss landscape on", "Interpolation", "Curvature")
    for heading in (*headings, "Loss and accuracy along training"):
        assert heading in html, heading
    assert "Skipped" not in html
    assert np.isfinite(ws.load(tmp_path / "out" / "pca").values).all()
    if CHROMIUM is None:
        pytest.fail("the README flow ends in a browser check; install chromium (see .ci/run)")
    _, console = open_in_chromium(page, tmp_path)
    assert page_errors(console) == []
