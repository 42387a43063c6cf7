"""``pdp fmt PATH...``: rewrite policy files (``.pdl``) in the one canonical layout.

Comments are kept, and the result is checked to mean exactly what the original meant before
anything is written. ``--check`` writes nothing and exits 1 listing the files that would
change (for CI); ``--diff`` prints the changes instead of writing them. A file that does not
parse is reported with its position and left untouched; the other files are still formatted.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from pathlib import Path

from ..errors import PolicyError
from ..loader import POLICY, discover
from ..syntax.formatter import FormatError, format_source
from ..syntax.parser import SyntaxProblem

EXAMPLE = """examples:
  $ pdp fmt policies/
  formatted policies/payments.pdl
  $ pdp fmt --check policies/          # in CI: exit 1 when a file is not formatted
  would reformat policies/payments.pdl
  $ pdp fmt --diff policies/payments.pdl
  $ pdp fmt - < payments.pdl           # standard input to standard output (for editors)
"""


def register(sub) -> None:
    p = sub.add_parser("fmt", help="format policy files canonically (--check for CI)",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="policy files or folders (their .pdl files); '-' formats standard input to standard output")
    p.add_argument("--check", action="store_true",
                   help="write nothing; list the files that are not formatted and exit 1 if there are any")
    p.add_argument("--diff", action="store_true", help="write nothing; print a unified diff of each change")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.paths == ["-"]:
        return _stdin(args)
    if "-" in args.paths:
        print("pdp fmt: '-' (standard input) cannot be mixed with paths", file=sys.stderr)
        return 2
    try:
        files = [entry.path for entry in discover(args.paths) if entry.kind == POLICY]
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 1
    status = 0
    changed = 0
    for path in files:
        try:
            original = path.read_text(encoding="utf-8")
            formatted = format_source(original, str(path))
        except (SyntaxProblem, FormatError) as err:
            print(err, file=sys.stderr)
            status = 1
            continue
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            status = 1
            continue
        if formatted == original:
            continue
        changed += 1
        if args.diff:
            sys.stdout.writelines(difflib.unified_diff(
                original.splitlines(keepends=True), formatted.splitlines(keepends=True),
                f"{path}", f"{path} (formatted)"))
        if args.check:
            print(f"would reformat {path}")
        elif not args.diff:
            try:
                _write(path, formatted)
            except OSError as exc:
                print(f"{path}: cannot write: {exc.strerror}", file=sys.stderr)
                status = 1
                continue
            print(f"formatted {path}")
    if args.check and changed:
        status = 1
    return status


def _stdin(args) -> int:
    original = sys.stdin.read()
    try:
        formatted = format_source(original, "<stdin>")
    except (SyntaxProblem, FormatError) as err:
        print(err, file=sys.stderr)
        return 1
    if args.diff:
        sys.stdout.writelines(difflib.unified_diff(
            original.splitlines(keepends=True), formatted.splitlines(keepends=True),
            "<stdin>", "<stdin> (formatted)"))
    elif not args.check:
        sys.stdout.write(formatted)
    return 1 if args.check and formatted != original else 0


def _write(path: Path, text: str) -> None:
    """Replace the file in one step (a reader never sees half of it), keeping its mode."""
    mode = path.stat().st_mode
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(temp, mode & 0o7777)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
