"""``weightspace -h`` and ``weightspace COMMAND -h`` answer without importing torch (nor
scipy, matplotlib, plotly, sklearn): the package imports its public names on first use."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import weightspace as ws
from _util import REPO, run_cli

HEAVY = ("torch", "scipy", "matplotlib", "plotly", "sklearn")

# Every command's -h in one interpreter: {"help": {argv: [code, stdout]}, "heavy": [...]}.
ALL_HELP = """
import contextlib, io, json, sys
from weightspace.cli import COMMANDS, build_parser, main
names = list(build_parser()._subparsers._group_actions[0].choices)
assert len(names) == len(COMMANDS), (names, COMMANDS)
out = {}
for argv in ([], *([name] for name in names)):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        code = main([*argv, "-h"])
    out[" ".join(argv)] = [code, text.getvalue()]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print(json.dumps({"help": out, "heavy": heavy}))
"""


def imported(stderr: str) -> set[str]:
    """Top-level names of the modules listed by ``-X importtime`` on stderr."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize("argv", [("-h",), ("surface", "-h")], ids=" ".join)
def test_help_does_not_import_heavy_modules(argv):
    proc = run_cli(*argv, env={"PYTHONPROFILEIMPORTTIME": "1"})  # = python -X importtime
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: weightspace")
    assert "weightspace" in imported(proc.stderr)  # the profile is there to be read
    assert sorted(imported(proc.stderr) & set(HEAVY)) == []


def test_every_command_help_does_not_import_heavy_modules():
    script = f"HEAVY = {HEAVY!r}\n{ALL_HELP}"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["heavy"] == []
    assert sorted(imported(proc.stderr) & set(HEAVY)) == []
    for argv, (code, text) in result["help"].items():
        assert code == 0, argv
        assert text.startswith(f"usage: weightspace {argv}".rstrip()), argv


def typed_imports() -> dict[str, str]:
    """Name -> module of the ``if TYPE_CHECKING:`` imports in ``weightspace/__init__.py``."""
    tree = ast.parse(Path(ws.__file__).read_text(encoding="utf-8"))
    block = next(
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    )
    out = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names:
            out[alias.name] = f"weightspace.{node.module}" if node.module else "weightspace"
    return out


def test_public_names_are_the_objects_of_their_submodules():
    typed = typed_imports()
    eager = {"__version__", "WeightspaceError", "CorruptRunError", "LayoutMismatchError"}
    assert sorted(set(typed) | eager) == sorted(ws.__all__)  # tooling sees every public name
    for name in ws.__all__:
        value = getattr(ws, name)
        if name in eager:
            continue
        if typed[name] == "weightspace":  # a submodule: ws.zoo
            assert value is importlib.import_module(f"weightspace.{name}"), name
        else:
            assert value is getattr(importlib.import_module(typed[name]), name), name
    assert set(ws.__all__) <= set(dir(ws))


def test_from_import_and_submodule_attributes():
    from weightspace import Trajectory, load, zoo

    assert Trajectory is importlib.import_module("weightspace.trajectory").Trajectory
    assert load is importlib.import_module("weightspace.results").load
    assert zoo.names() == ws.zoo.names()
    for sub in ("testing", "landscape", "directions", "projection", "results", "parallel"):
        assert getattr(ws, sub) is importlib.import_module(f"weightspace.{sub}")


@pytest.mark.parametrize("name", ["no_such_name", "NoSuchClass", "__no_such_dunder__", "a.b"])
def test_unknown_attribute_raises_attribute_error(name):
    with pytest.raises(
        AttributeError, match=re.escape(f"module 'weightspace' has no attribute '{name}'")
    ):
        getattr(ws, name)
    assert not hasattr(ws, name)
