"""Bundles: a compiled policy set in one file (msgpack), to start an engine without parsing.

``pdp build PATH... -o FILE`` writes one; ``pdp.load_bundle(FILE)`` and ``pdp serve --bundle``
read it. The bundle holds the program (expression DAG, rule table, decision trees), the
revision, and the source files themselves, so ``explain`` still works (parsing lazily).

The revision is recomputed from the embedded sources on load, never taken from the header:
a header that disagrees is an error. ``pdp build --sign KEY`` signs the bundle (``signing``);
``load_bundle(FILE, verify_key=PUB)`` then accepts only a bundle that key signed.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import signing
from .compile.program import decode, encode
from .engine import Engine, collector_paused
from .errors import Diagnostic, PolicyError
from .loader import revision
from .tokens import Trust, load_trust

#: A bundle larger than this is refused before it is read.
MAX_BUNDLE_BYTES = 512 * 1024 * 1024


def write_bundle(engine: Engine, path: str | os.PathLike, sign_with=None) -> int:
    """Write ``engine``'s compiled program to ``path`` (atomically); returns the size in bytes.

    ``sign_with``: an Ed25519 private key (``signing.load_private_key``) to sign it with.
    """
    data = encode(engine.program, engine.sources)
    if sign_with is not None:
        data = signing.sign(data, sign_with)
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)
    return len(data)


def load_bundle(path: str | os.PathLike, backend: str | None = None, verify_key=None, trust=None) -> Engine:
    """Start an engine from a bundle; a missing, corrupt or version-mismatched file is a PolicyError.

    ``verify_key`` (an Ed25519 public key, or the path of its PEM file): accept only a bundle
    signed with the matching private key; an unsigned, altered or otherwise signed one is a
    PolicyError. ``trust``: a trust file (SPEC §8), as for ``pdp.load``.
    """
    name = str(path)
    if trust is not None and not isinstance(trust, Trust):
        trust = load_trust(trust)

    def fail(message: str) -> PolicyError:
        return PolicyError(Diagnostic(name, 0, 0, message, "bundle_error"))

    try:
        size = os.stat(path).st_size
        if size > MAX_BUNDLE_BYTES:
            raise fail(f"bundle is {size} bytes; the limit is {MAX_BUNDLE_BYTES}")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise fail(f"cannot read the bundle: {exc.strerror}") from None
    try:
        data = signing.unwrap(data, None if verify_key is None else signing.load_public_key(verify_key))
    except signing.SigningError as err:
        raise fail(str(err)) from None
    with collector_paused():
        program, sources = decode(data, name)
        recomputed = revision([(s.relative, s.content) for s in sources])
        if recomputed != program.revision:
            raise fail(f"the bundle's header says revision {program.revision}, but its sources hash to "
                       f"{recomputed}: the bundle was altered")
        try:
            return Engine(program, sources, None, backend, trust)
        except PolicyError as err:  # the program is malformed (compile.verify): name the file
            raise PolicyError([Diagnostic(name, 0, 0, f"corrupt bundle: {d.message}", "bundle_error")
                               for d in err.diagnostics]) from None
