"""Bundles: a compiled policy set in one file (msgpack), to start an engine without parsing.

``pdp build PATH... -o FILE`` writes one; ``pdp.load_bundle(FILE)`` and ``pdp serve --bundle``
read it. The bundle holds the program (expression DAG, rule table, decision trees), the
revision, and the source files themselves, so ``explain`` still works (parsing lazily).
"""

from __future__ import annotations

import os
from pathlib import Path

from .compile.program import decode, encode
from .engine import Engine, collector_paused
from .errors import Diagnostic, PolicyError

#: A bundle larger than this is refused before it is read.
MAX_BUNDLE_BYTES = 512 * 1024 * 1024


def write_bundle(engine: Engine, path: str | os.PathLike) -> int:
    """Write ``engine``'s compiled program to ``path`` (atomically); returns the size in bytes."""
    data = encode(engine.program, engine.sources)
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)
    return len(data)


def load_bundle(path: str | os.PathLike, backend: str | None = None) -> Engine:
    """Start an engine from a bundle; a missing, corrupt or version-mismatched file is a PolicyError."""
    name = str(path)
    try:
        size = os.stat(path).st_size
        if size > MAX_BUNDLE_BYTES:
            raise PolicyError(Diagnostic(name, 0, 0, f"bundle is {size} bytes; the limit is {MAX_BUNDLE_BYTES}",
                                         "bundle_error"))
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(Diagnostic(name, 0, 0, f"cannot read the bundle: {exc.strerror}", "bundle_error")) from None
    with collector_paused():
        program, sources = decode(data, name)
        return Engine(program, sources, None, backend)
