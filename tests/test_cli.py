import json

import pytest
import torch

import weightspace as ws
from _util import run_cli


def one_line_error(res, *fragments):
    assert res.returncode == 1, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


def test_record_info_import_round_trip(tmp_path):
    res = run_cli(
        "record",
        "--problem",
        "digits-mlp",
        "--steps",
        "20",
        "--every",
        "10",
        "--lr",
        "0.3",
        "-o",
        str(tmp_path / "run"),
        "--json",
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["snapshots"] == 3 and summary["parameters"] == 3010
    info = json.loads(run_cli("info", str(tmp_path / "run"), "--json").stdout)
    assert info["steps"] == {"first": 0, "last": 20, "every": 10}
    assert info["metadata"]["lr"] == 0.3 and "loss" in info["metrics"]
    text = run_cli("info", str(tmp_path / "run"))
    assert "3,010 in 4 tensors" in text.stdout
    # checkpoints of the recorded run, imported back through the CLI
    traj = ws.Trajectory.load(tmp_path / "run")
    (tmp_path / "ckpt").mkdir()
    for i, step in enumerate(traj.steps):
        torch.save(
            {k: v.clone() for k, v in traj.layout.unflatten(traj.theta(i)).items()},
            tmp_path / "ckpt" / f"step_{step}.pt",
        )
    res = run_cli(
        "import",
        str(tmp_path / "ckpt" / "step_*.pt"),
        "-o",
        str(tmp_path / "imp"),
        "--problem",
        "digits-mlp",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["steps"] == [0, 10, 20]


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path):
    res = run_cli("demo", "--quick", "-o", str(tmp_path / "demo"), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    runs = summary["runs"]
    assert len(runs) == 6
    assert {len(ws.Trajectory.load(p)) for p in runs.values()} == {13}
    kinds = sorted(
        json.loads(f.read_text())["kind"] for f in (tmp_path / "demo" / "artifacts").glob("*.json")
    )
    assert kinds == ["line", "projection", "projection", "projection", "spectrum", "surface"]
    page = (tmp_path / "demo" / "report.html").read_text()
    for section in ("Trajectories: PCA", "PHATE", "Loss landscape", "Interpolation", "Curvature"):
        assert section in page, section
    again = run_cli("demo", "--quick", "-o", str(tmp_path / "demo"))
    one_line_error(again, "already holds demo output", "--overwrite")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["info", "{tmp}/missing"], ["does not exist"]),
        (["info", "{tmp}"], ["is not a weightspace run"]),
        (["record", "--problem", "digits-mlp", "--every", "0", "-o", "{tmp}/r"], ["--every"]),
        (["record", "--problem", "cifar", "-o", "{tmp}/r"], ["unknown problem 'cifar'"]),
        (
            ["record", "--problem", "{tmp}/p.py:bad", "-o", "{tmp}/r"],
            ["returned int, expected a weightspace.Problem"],
        ),
        (["import", "{tmp}/none_*.pt", "-o", "{tmp}/r"], ["matched no checkpoint file"]),
    ],
)
def test_bad_input_gives_one_line_and_exit_1(tmp_path, args, fragments):
    (tmp_path / "p.py").write_text("def bad():\n    return 42\n")
    res = run_cli(*[a.format(tmp=tmp_path) for a in args])
    one_line_error(res, *fragments)
    assert not (tmp_path / "r").exists()


def test_corrupt_snapshot_via_cli(tmp_path):
    run_cli(
        "record",
        "--problem",
        "digits-mlp",
        "--steps",
        "10",
        "--every",
        "5",
        "-o",
        str(tmp_path / "run"),
    )
    victim = tmp_path / "run" / "snapshots" / "000000005.npy"
    victim.write_bytes(victim.read_bytes()[:200])  # header intact, data cut
    line = one_line_error(run_cli("info", str(tmp_path / "run")), "000000005.npy", "truncated")
    assert line.startswith("weightspace info: error:")
    verbose = run_cli("info", str(tmp_path / "run"), "-v")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_help_has_examples():
    for cmd in ("info", "record", "import", "demo"):
        res = run_cli(cmd, "-h")
        assert res.returncode == 0 and "examples:" in res.stdout and "--json" in res.stdout
