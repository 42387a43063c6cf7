"""Loading: paths ⇒ the files of a policy set, in SPEC §2 order, and their revision hash.

A path is a file or a folder; folders are searched recursively, skipping names that start
with ``.``; files are taken in sorted order of their path relative to the argument, arguments
in the order given. ``*.pdl`` are policies, ``NAME.data.yaml|yml|json`` data, and
``*_test.yaml`` suites (never policies).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import Diagnostic, PolicyError

POLICY, DATA, SUITE = "policy", "data", "suite"
DATA_SUFFIXES = (".data.yaml", ".data.yml", ".data.json")

#: Larger files are refused before they are read (a policy set is loaded into memory whole).
MAX_POLICY_BYTES = 4 * 1024 * 1024
MAX_DATA_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class SourceEntry:
    """One file found under a path argument."""

    display: str  # as shown in messages: the argument joined with the relative path
    relative: str  # relative to the argument (the file name for a file argument), '/'-separated
    kind: str  # POLICY | DATA | SUITE
    path: Path

    @property
    def data_name(self) -> str:
        return data_name(self.path.name)



@dataclass(frozen=True)
class Source:
    """A policy or data file's content as loaded: what the revision hashes and bundles embed."""

    display: str
    relative: str
    kind: str  # POLICY | DATA
    content: bytes


def data_name(path: str) -> str:
    """``identities.data.yaml`` ⇒ ``identities``."""
    name = path.rsplit("/", 1)[-1]
    return next(name[: -len(s)] for s in DATA_SUFFIXES if name.endswith(s))


def kind_of(name: str) -> str | None:
    if name.endswith("_test.yaml"):
        return SUITE
    if name.endswith(".pdl"):
        return POLICY
    if name.endswith(DATA_SUFFIXES):
        return DATA
    return None


def discover(paths: list[str | os.PathLike]) -> list[SourceEntry]:
    """Every policy, data and suite file under ``paths``, in load order; raises PolicyError."""
    entries: list[SourceEntry] = []
    seen: set[Path] = set()
    problems: list[Diagnostic] = []
    if not paths:
        raise PolicyError(Diagnostic("<arguments>", 0, 0, "no policy paths given"))
    for arg in paths:
        root = Path(arg)
        if root.is_dir():
            found = [(rel, p) for rel, p in _walk(root)]
        elif root.is_file():
            if kind_of(root.name) is None:
                problems.append(Diagnostic(str(arg), 0, 0, "not a policy (.pdl), data (.data.yaml, "
                                           ".data.yml, .data.json) or suite (_test.yaml) file"))
                continue
            found = [(root.name, root)]
        else:
            problems.append(Diagnostic(str(arg), 0, 0, "no such file or directory"))
            continue
        for rel, path in found:
            kind = kind_of(path.name)
            resolved = path.resolve()
            if kind is None or resolved in seen:
                continue
            seen.add(resolved)
            display = str(path)
            entries.append(SourceEntry(display, rel, kind, path))
    if problems:
        raise PolicyError(problems)
    return entries


def _walk(root: Path):
    found = []
    # Symlinked folders are followed (a Kubernetes volume's keys with a sub-path are symlinks
    # through its hidden ..data folder), each real folder once, so a link loop ends.
    visited = {root.resolve()}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        kept = []
        for d in dirnames:
            real = (Path(dirpath) / d).resolve()
            if not d.startswith(".") and real not in visited:
                visited.add(real)
                kept.append(d)
        dirnames[:] = kept
        for name in filenames:
            if not name.startswith("."):
                path = Path(dirpath) / name
                found.append((path.relative_to(root).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return found


def read_bytes(entry: SourceEntry) -> bytes:
    limit = MAX_DATA_BYTES if entry.kind == DATA else MAX_POLICY_BYTES
    try:
        size = entry.path.stat().st_size
        if size > limit:
            raise PolicyError(Diagnostic(entry.display, 0, 0,
                                         f"file is {size} bytes; the limit is {limit} bytes"))
        return entry.path.read_bytes()
    except OSError as exc:
        raise PolicyError(Diagnostic(entry.display, 0, 0, f"cannot read the file: {exc.strerror}")) from None


def revision(files: list[tuple[str, bytes]]) -> str:
    """A content hash of the policy set: each file's relative path and bytes, in load order.

    >>> revision([("a.pdl", b"policy a {}")]) == revision([("a.pdl", b"policy a {}")])
    True
    """
    digest = hashlib.sha256()
    for relative, content in files:
        for part in (relative.encode("utf-8"), content):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()[:16]
