"""``weightspace`` command-line tool: one small module per subcommand, no logic here.

Each module in :data:`COMMANDS` defines ``add_parser(subparsers)`` and ``run(args) ->
Output``: it parses flags into the workflow's arguments, makes one library call, writes the
result and says what it wrote. Modules import the library inside ``run``, so ``-h`` answers
without importing torch.

``--json`` prints one schema for every command::

    {"command": NAME, "artifacts": {ROLE: PATH, ...}, "sidecar": PATH | null, "summary": {...}}

Exit codes: 0 done, 1 a user error (one line on stderr, naming the flag), 2 a usage error
(argparse's convention; one line), 130 interrupted. ``-v`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._threads import threads_for_command
from .._version import __version__
from ..errors import WeightspaceError, describe_os_error

COMMANDS = (
    "demo",
    "record",
    "import_",
    "info",
    "project",
    "surface",
    "line",
    "curves",
    "spectrum",
    "sample",
    "connect",
    "report",
)


@dataclass
class Output:
    """What a command wrote and its key numbers: the ``--json`` payload without the name."""

    artifacts: dict[str, str]
    summary: dict[str, Any]
    sidecar: str | None = None
    lines: list[str] = field(default_factory=list)  # the human-readable report


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's convention)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="weightspace",
        description="See and measure neural-network training: trajectories, loss landscapes "
        "and curvature in weight space.",
        epilog="Run `weightspace COMMAND -h` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"weightspace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub)
    return parser


def common_options(p: argparse.ArgumentParser) -> None:
    """Options every subcommand takes."""
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log details and show tracebacks on errors"
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (bars on a terminal, a line every 30 s otherwise)",
    )
    p.add_argument(
        "--threads",
        metavar="N",
        help="torch intra-op threads: a count, 0 for torch's defaults, or auto (default: "
        "$WEIGHTSPACE_THREADS, else $OMP_NUM_THREADS, else chosen from the CPUs this process "
        "may use and the load, with OpenMP told not to spin; recorded in the metadata)",
    )


def add_command(sub, name: str, help: str, examples: str) -> argparse.ArgumentParser:
    """A subparser with an epilog of copy-pasteable examples."""
    p = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog="examples:\n" + examples.strip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common_options(p)
    return p


def show_progress(args: argparse.Namespace) -> bool:
    """Progress on unless ``--no-progress``: a bar on a terminal, else a line every 30 s."""
    return not getattr(args, "no_progress", False)


def _flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """Python argument name -> the flag that sets it, for this command."""
    sub = parser._subparsers._group_actions[0].choices[args.command]  # the command's parser
    names: dict[str, str] = {}
    for action in sub._actions:
        if action.option_strings:
            flag = max(action.option_strings, key=len)
            names.setdefault(action.dest, flag)
        elif action.dest != "help":
            names.setdefault(action.dest, action.dest.upper())
    names.update(getattr(args, "flag_names", {}))
    return names


def translate(message: str, flags: dict[str, str]) -> str:
    """A library message names Python arguments (``at: ...``, ``at=...``); the CLI names the
    flags (``--at: ...``)."""
    m = re.match(r"^([A-Za-z_][\w.]*)(?=[:( ])", message)
    if m and m.group(1) in flags:
        message = flags[m.group(1)] + message[m.end() :]
    for name, flag in flags.items():  # "overwrite=True" -> "--overwrite", "steps='order'" ->
        word = rf"(?<![\w-]){re.escape(name)}"  # "--steps order"
        message = re.sub(rf"{word}=True\b", flag, message)
        message = re.sub(rf"{word}='([^']*)'", rf"{flag} \1", message)
    return message


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # -h, --version (0) and usage errors (2): a code, not an exit
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        with threads_for_command(getattr(args, "threads", None)):  # before torch starts
            out: Output = args.func(args)
    except (WeightspaceError, OSError) as e:
        if args.verbose:
            raise
        if isinstance(e, OSError) and not isinstance(e, WeightspaceError):
            text = describe_os_error(e)
        else:
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"weightspace {args.command}: error: {translate(text, _flags(parser, args))}",
              file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:
        print(f"weightspace {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # not the user's doing: the traceback, and where to report it
        if args.verbose:
            raise
        traceback.print_exc()
        print(
            f"weightspace {args.command}: internal error (a bug in weightspace "
            f"{__version__}); please report it with the command and the traceback above",
            file=sys.stderr,
        )
        return 1
    device = getattr(args, "device_used", None)  # set where a command built an objective
    if device is not None:
        out.summary.setdefault("device", device)
        if out.lines:  # (ranks other than 0 say nothing)
            out.lines.insert(0, f"on {device}")
    try:
        _print(out, args.json, args.command)
    except BrokenPipeError:  # `weightspace info RUN | head`: the reader left; so do we
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def _print(out: Output, as_json: bool, command: str) -> None:
    if as_json:
        payload = {
            "command": command,
            "artifacts": out.artifacts,
            "sidecar": out.sidecar,
            "summary": out.summary,
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        for line in out.lines:
            print(line)
    sys.stdout.flush()
