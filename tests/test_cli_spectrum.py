"""``weightspace spectrum``: results with every setting, directions, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import weightspace as ws
from weightspace.cli import main
from weightspace.train import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short digits-mlp runs (3,010 parameters) from different initialisations."""
    root = tmp_path_factory.mktemp("runs")
    out = []
    for seed in (0, 1):
        problem = ws.zoo.problem("digits-mlp", seed=seed)
        out.append(train(problem, root / f"run{seed}", lr=0.1, steps=20, every=5, batch_size=64))
    return out


def spectrum(capsys, *argv) -> tuple[int, dict | str | None, str]:
    """Exit code, the --json summary (or the printed text), and stderr."""
    code = main(["spectrum", "--problem", "digits-mlp", "--no-progress", *map(str, argv)])
    captured = capsys.readouterr()
    if code == 0 and "--json" in argv:
        payload = json.loads(captured.out)
        return code, {**payload["summary"], **payload["artifacts"]}, captured.err
    return code, captured.out, captured.err


def test_final_point_with_trace_density_and_directions(runs, tmp_path, capsys):
    out = tmp_path / "spec"
    code, s, _ = spectrum(
        capsys, runs[0], "--at", "final", "--top-k", "3", "--trace", "--trace-probes", "8",
        "--density", "--probes", "2", "--lanczos-steps", "12", "--sigma", "0.01", "--seed", "4",
        "-o", out, "--json",
    )  # fmt: skip
    assert code == 0
    spec = ws.load(out, "spectrum")
    meta = spec.metadata
    for key, value in {
        "sigma": 0.01, "n_probes": 2, "n_steps": 12, "seed": 4, "trace_probes": 8, "top_k": 3,
    }.items():  # fmt: skip
        assert meta[key] == value, key
    assert meta["data"]["split"] == "train" and meta["data"]["n_samples"] == 1437
    assert meta["mode"] == "eval" and meta["problem"] == "digits-mlp"
    assert spec.positions.tolist() == [20]
    assert spec.eigenvalues.shape == (1, 3) and np.all(np.diff(spec.eigenvalues[0]) <= 0)
    (dens,) = spec.densities
    assert dens.density.shape == (1000,) and dens.nodes.shape == (2, 12)
    assert np.trapezoid(dens.density, dens.grid) == pytest.approx(1.0, abs=1e-6)
    # the eigenvectors are Hessian eigenvectors at the final point
    traj = ws.Trajectory.load(runs[0])
    obj = ws.Objective(ws.zoo.problem("digits-mlp"))
    op = ws.HessianOperator(obj, traj.theta(len(traj) - 1))
    x = spec.eigenvectors[0]
    lam = float(spec.eigenvalues[0, 0])
    assert float((op @ x - lam * x).norm()) <= 1e-3 * abs(lam)
    # the result file gives surface --directions the top two
    d = ws.load_directions(s["spectrum"])
    assert d.vectors.shape == (3, 3010)
    np.testing.assert_allclose(d.vectors[:2].numpy(), spec.eigenvectors[:2].numpy(), atol=1e-7)
    assert s["eigenvalues"] == spec.eigenvalues.tolist()


def test_every_k_and_the_edge_of_stability_summary(runs, tmp_path, capsys):
    code, s, _ = spectrum(
        capsys, runs[0], "--at", "every:2", "--top-k", "1", "-o", tmp_path / "a", "--json"
    )
    assert code == 0
    assert s["positions"] == [0, 10, 20]
    np.testing.assert_allclose(s["lambda_max_lr"], 0.1 * np.array(s["eigenvalues"])[:, 0])
    assert s["stability_threshold"] == 2.0
    code, s, _ = spectrum(
        capsys, runs[0], "--at", "5", "--top-k", "1", "-o", tmp_path / "b", "--json"
    )
    assert code == 0 and s["positions"] == [5]


def test_between_two_runs(runs, tmp_path, capsys):
    code, s, _ = spectrum(
        capsys, runs[0], "--between", runs[1], "--points", "3", "--top-k", "2",
        "-o", tmp_path / "line", "--json",
    )  # fmt: skip
    assert code == 0
    assert s["axis"] == "alpha" and s["positions"] == [0.0, 0.5, 1.0]
    meta = ws.load(tmp_path / "line").metadata
    assert meta["between"].endswith("run1") and meta["step_b"] == 20
    assert meta["distance"] > 0


def test_human_readable_output(runs, tmp_path, capsys):
    code, text, _ = spectrum(capsys, runs[0], "--top-k", "1", "-o", tmp_path / "h")
    assert code == 0
    device, first, last = text.splitlines()
    assert device == "on cpu"
    assert first.startswith("step 20  loss ") and "λmax·lr" in first and "(vs 2)" in first
    assert last == f"wrote {tmp_path / 'h.npz'}"


def test_split_gives_the_same_spectrum_and_is_recorded(runs, tmp_path, capsys):
    results = {}
    for split in ("none", "0.*"):
        out = tmp_path / f"split-{split[0]}"
        code, _, _ = spectrum(capsys, runs[0], "--top-k", "3", "--split", split, "-o", out)
        assert code == 0
        results[split] = ws.load(out)
    plain, split = results["none"], results["0.*"]
    assert plain.metadata["hvp_split"] is None
    assert split.metadata["hvp_split"] == ["0.weight", "0.bias"]
    np.testing.assert_allclose(split.eigenvalues, plain.eigenvalues, rtol=1e-4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--at", "every:x"], "--at: expected every:K"),
        (["--at", "later"], "--at: expected 'final', 'all', 'every:K', a recorded step"),
        (["--at", "7"], "step 7 is not in run"),
        (["--top-k", "3010"], "--top-k: expected 0 <= k < n=3010"),
        (["--include", "conv*"], "--include conv* matched no parameter"),
        (["--split", "conv*"], "--split conv* matched none of the operator's tensors"),
        (["--at", "all", "--between", "RUN"], "--at: the line to the other run needs one point"),
    ],
)
def test_bad_input_is_one_line_exit_1(runs, tmp_path, capsys, argv, message):
    argv = [str(runs[1]) if a == "RUN" else a for a in argv]
    code, _, err = spectrum(capsys, runs[0], *argv, "-o", tmp_path / "x")
    assert code == 1
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_problem_that_is_not_the_runs_model_is_a_layout_mismatch(runs, tmp_path, capsys):
    code = main(["spectrum", "--problem", "digits-cnn", str(runs[0]), "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 1 and "use runs of the same model" in err and err.count("\n") == 1
