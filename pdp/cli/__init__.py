"""The ``pdp`` command: argument parsing and dispatch to one module per subcommand.

Exit codes: 0 success (whatever the decision), 1 a policy or request error
(or failing tests), 2 a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from . import bench, build, check, evaluate, fmt, health, replay, report, review, run_tests, serve, token

COMMANDS = (check, fmt, evaluate, run_tests, report, build, serve, health, bench, replay, review, token)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors exit 2, as argparse does, with the usage line
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pdp", description="pdp: a policy decision point for machine-to-machine APIs.",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="Run 'pdp COMMAND --help' for the options and an example of each command.")
    parser.add_argument("--version", action="version", version=f"pdp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except BrokenPipeError:
        # The reader went away (`pdp test ... | head`): stop quietly, as other tools do, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


__all__ = ["main", "build_parser"]
