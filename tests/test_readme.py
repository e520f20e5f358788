"""The README documents every command, and its examples (and each command's own `-h`
examples) use options that exist."""

from __future__ import annotations

import importlib
import re
import shlex

import pytest

from _util import REPO
from weightspace.cli import COMMANDS, build_parser

README = (REPO / "README.md").read_text(encoding="utf-8")


def command_name(module: str) -> str:
    return module.rstrip("_")


def example_lines(text: str) -> list[str]:
    """``weightspace ...`` command lines (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = []
    for line in joined.splitlines():
        line = line.split("  #")[0].strip()
        m = re.search(r"(?:^|-m )weightspace (\S.*)$", line)
        if m and not line.startswith(("pip ", "python ")):
            lines.append(m.group(1))
    return lines


def shell_blocks(text: str) -> str:
    """The README's fenced blocks without a language (the shell examples)."""
    out, inside, shell = [], False, False
    for line in text.splitlines():
        if line.startswith("```"):
            inside, shell = not inside, line.strip() == "```" and not inside
        elif inside and shell:
            out.append(line)
    return "\n".join(out)


README_EXAMPLES = example_lines(shell_blocks(README))


@pytest.mark.parametrize("module", COMMANDS)
def test_every_command_is_in_the_table_and_has_a_readme_example(module):
    name = command_name(module)
    assert f"| `weightspace {name}" in README, f"{name} missing from the command table"
    assert any(line.split()[0] == name for line in README_EXAMPLES), f"no example of {name}"


def parse(line: str) -> None:
    parser = build_parser()
    try:
        args = parser.parse_args(shlex.split(line))
    except SystemExit as e:  # argparse's way of saying no
        raise AssertionError(f"does not parse: weightspace {line}") from e
    assert args.command == line.split()[0]


@pytest.mark.parametrize("line", README_EXAMPLES)
def test_readme_examples_parse(line):
    parse(line)


@pytest.mark.parametrize("module", COMMANDS)
def test_each_commands_help_examples_parse(module):
    text = importlib.import_module(f"weightspace.cli.{module}").EXAMPLES
    lines = example_lines(text)
    assert lines, f"{module} has no examples"
    for line in lines:
        parse(line)
