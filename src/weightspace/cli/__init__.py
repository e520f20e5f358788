"""``weightspace`` command-line tool: one small module per subcommand, no logic here.

Each module in :data:`COMMANDS` defines ``add_parser(subparsers)`` and ``run(args) -> dict``;
the dict is the machine-readable summary printed by ``--json`` (artifact paths, key numbers).
User errors print one line on stderr and exit with code 1; ``-v`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import WeightspaceError

COMMANDS = (
    "demo",
    "record",
    "import_",
    "info",
    "project",
    "surface",
    "line",
    "spectrum",
    "sample",
    "report",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 1 (argparse's own is exit 2)
        self.exit(1, f"{self.prog}: error: {message}\n")


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
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


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
    """Progress bars on by default when stderr is a terminal."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        summary = args.func(args)
    except (WeightspaceError, FileNotFoundError, PermissionError) as e:
        if args.verbose:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"weightspace {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"weightspace {args.command}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0
