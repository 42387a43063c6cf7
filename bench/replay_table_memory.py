"""What a full table of DPoP proofs costs in memory (bench/TOKENS.md, docs/tokens.md).

Fills one ``OnceMarks`` (the table a process or a ``--workers`` parent keeps) to its cap with
keys as ``Binding`` makes them (base64url SHA-256 of the key thumbprint and the ``jti``), and
reports what ``tracemalloc`` saw allocated, in total and per proof. Then one more proof is
refused (the table is full of live proofs), which is what bounds it.

    .venv/bin/python bench/replay_table_memory.py [--entries 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import tracemalloc
import uuid

from pdp.limits.once import MAX_ONCE_MARKS, OnceMarks
from pdp.limits.store import StoreFull
from pdp.tokens.verify import b64url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=MAX_ONCE_MARKS)
    entries = parser.parse_args().entries
    thumbprint = b64url(hashlib.sha256(b"a client's public key").digest())
    tracemalloc.start()  # the keys are made inside: the table holds them
    marks = OnceMarks(entries)
    for _ in range(entries):
        marks.first_use(b64url(hashlib.sha256(f"{thumbprint}\0{uuid.uuid4()}".encode()).digest()), 120 * 10**9)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    try:
        marks.first_use("one more", 120 * 10**9)
        refused = "no (unbounded!)"
    except StoreFull:
        refused = "yes"
    print(f"{len(marks):,} live proofs: {used / 1e6:.1f} MB, {used / entries:.0f} bytes each; "
          f"one more refused: {refused}")


if __name__ == "__main__":
    main()
