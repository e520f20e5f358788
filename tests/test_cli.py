"""The command line as a whole: one --json schema for every command, exit codes, one-line
errors naming flags, the demo, and the entry points in real processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import weightspace as ws
from _util import run_cli
from weightspace.cli import COMMANDS, main

SCHEMA_KEYS = {"command", "artifacts", "sidecar", "summary"}


def call(capsys, *args):
    """``(exit code, stdout, stderr lines)`` of ``weightspace ARGS`` in this process."""
    code = main([*map(str, args), "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err.strip().splitlines()


def call_json(capsys, *args) -> dict:
    code, out, err = call(capsys, *args, "--json")
    assert code == 0, err
    payload = json.loads(out)
    check_schema(payload, args[0])
    return payload


def check_schema(payload: dict, command: str) -> None:
    """The one documented --json schema (README, "Command line")."""
    assert set(payload) == SCHEMA_KEYS, payload.keys()
    assert payload["command"] == command
    assert isinstance(payload["artifacts"], dict) and payload["artifacts"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in payload["artifacts"].items())
    assert payload["sidecar"] is None or isinstance(payload["sidecar"], str)
    assert isinstance(payload["summary"], dict)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    assert main(["record", "--problem", "digits-mlp", "--steps", "20", "--every", "5",
                 "--lr", "0.3", "-o", str(root / "run"), "--no-progress"]) == 0  # fmt: skip
    return root / "run"


def test_every_command_prints_the_one_json_schema(run_dir, tmp_path, capsys):
    """Each command once with --json (the demo has its own test below)."""
    (tmp_path / "ckpt").mkdir()
    traj = ws.Trajectory.load(run_dir)
    for i, step in enumerate(traj.steps[:2]):
        torch.save(
            {k: v.clone() for k, v in traj.layout.unflatten(traj.theta(i)).items()},
            tmp_path / "ckpt" / f"step_{step}.pt",
        )
    p = ["--problem", "digits-mlp"]
    art = tmp_path / "art"
    commands = {
        "record": ["record", *p, "--steps", "5", "--every", "5", "-o", tmp_path / "r2"],
        "import_": ["import", tmp_path / "ckpt", "-o", tmp_path / "imp", *p],
        "info": ["info", run_dir],
        "project": ["project", run_dir, "-o", art / "pca"],
        "surface": ["surface", *p, run_dir, "--grid", "3", "-o", art / "s"],
        "line": ["line", *p, run_dir, "--points", "3", "-o", art / "l"],
        "curves": ["curves", *p, run_dir, "--at", "every:2", "-o", art / "c"],
        "spectrum": ["spectrum", *p, run_dir, "--top-k", "1", "-o", art / "h"],
        "sample": ["sample", *p, run_dir, "--step-sizes", "0.5", "--seeds", "0",
                   "--retrain-steps", "5", "--no-project", "-o", tmp_path / "jumps"],
        "connect": ["connect", *p, f"{run_dir}:0", run_dir, "--steps", "5", "--points", "3",
                    "--grid", "3", "3", "-o", art / "ab"],
        "report": ["report", "--artifacts", art, "-o", tmp_path / "r.html", "--no-animations"],
    }  # fmt: skip
    assert set(commands) | {"demo"} == set(COMMANDS)
    for name, args in commands.items():
        payload = call_json(capsys, *args)
        if name in ("surface", "line", "curves", "spectrum"):  # an objective: its device
            assert payload["summary"]["device"] == "cpu", name
        for path in payload["artifacts"].values():
            assert Path(path).exists(), (name, path)
        if payload["sidecar"] is not None:
            assert json.loads(Path(payload["sidecar"]).read_text())


def test_usage_errors_exit_2_and_user_errors_exit_1_in_one_line(run_dir, tmp_path, capsys):
    code, _, err = call(capsys, "record", "--problem", "digits-mlp", "--every", "0", "-o", "x")
    assert code == 2 and len(err) == 1 and "--every" in err[0]  # argparse: a usage error
    code, _, err = call(capsys, "surface", run_dir, "-o", tmp_path / "s")
    assert code == 2 and len(err) == 1 and "--problem" in err[0]
    code, _, err = call(capsys, "spectrum", "--problem", "digits-mlp", run_dir, "--at", "later",
                        "-o", tmp_path / "h")  # fmt: skip
    assert code == 1 and len(err) == 1
    assert err[0].startswith("weightspace spectrum: error: --at: expected")  # the flag, not at=
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["info", "{tmp}/missing"], ["does not exist"]),
        (["info", "{tmp}"], ["is not a weightspace run"]),
        (["record", "--problem", "cifar", "-o", "{tmp}/r"], ["unknown problem 'cifar'"]),
        (
            ["record", "--problem", "{tmp}/p.py:bad", "-o", "{tmp}/r"],
            ["returned int, expected a weightspace.Problem"],
        ),
        (["import", "{tmp}/none_*.pt", "-o", "{tmp}/r"], ["matched no checkpoint file"]),
        (["record", "--problem", "digits-mlp", "--optimizer", "sgdd", "-o", "{tmp}/r"],
         ["--optimizer: expected one of"]),
    ],
)  # fmt: skip
def test_bad_input_gives_one_line_and_exit_1(tmp_path, capsys, args, fragments):
    (tmp_path / "p.py").write_text("def bad():\n    return 42\n")
    code, _, err = call(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 1 and len(err) == 1, err
    for frag in fragments:
        assert frag in err[0], err[0]
    assert not (tmp_path / "r").exists()


def test_corrupt_snapshot_is_one_line_and_verbose_shows_the_traceback(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    victim = run / "snapshots" / "000000005.npy"
    victim.write_bytes(victim.read_bytes()[:200])  # header intact, data cut
    code, _, err = call(capsys, "info", run)
    assert code == 1 and len(err) == 1 and "000000005.npy" in err[0] and "truncated" in err[0]
    assert err[0].startswith("weightspace info: error:")
    with pytest.raises(ws.CorruptRunError, match="truncated"):  # -v: the exception itself
        main(["info", str(run), "-v"])


def test_help_has_examples_and_every_option_documented(capsys):
    for name in COMMANDS:
        cmd = name.rstrip("_")
        assert main([cmd, "-h"]) == 0
        out = capsys.readouterr().out
        assert "examples:" in out and "--json" in out, cmd


def test_entry_point_in_a_real_process(tmp_path):
    res = run_cli("record", "--problem", "digits-mlp", "--steps", "10", "--every", "5",
                  "-o", str(tmp_path / "run"), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    check_schema(payload, "record")
    assert payload["summary"]["snapshots"] == 3 and payload["summary"]["parameters"] == 3010
