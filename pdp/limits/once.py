"""Once-only marks: keys that may each be used once while they are remembered (the ``jti``s of
DPoP proofs, docs/tokens.md), with bounded memory.

``OnceMarks.first_use(key, ttl_ns)`` is True the first time ``key`` is seen, and remembers it
for ``ttl_ns``; it is False while the key is remembered. At most ``max_entries`` keys are
remembered at once. When a new key finds the table full, the keys whose time is up are
forgotten first (the caller chose ``ttl_ns`` so that such a key can no longer be used: a DPoP
proof that old is refused as stale); when every key is still live, the call raises
``StoreFull`` instead of forgetting one, because a forgotten live key could be used twice.

Every limit store offers ``first_use`` with these answers: this table in a ``MemoryStore``
(one process, or a ``--workers`` parent's, over its socket) and a sorted set in Redis.
"""

from __future__ import annotations

import heapq
import threading
import time

from .store import StoreFull

#: Keys remembered at once by one table (one process, a ``--workers`` parent, one Redis). A
#: key lives for the proof's acceptance window (at most 60 s plus twice the leeway: 120 s by
#: default), so this is about 830 new proofs a second, sustained, at the default leeway; a
#: full table costs about 23 MB in a process (bench/replay_table_memory.py).
MAX_ONCE_MARKS = 100_000


class OnceMarks:
    """The marks of one process, on the monotonic clock (``clock``: nanoseconds, for tests)."""

    def __init__(self, max_entries: int = MAX_ONCE_MARKS, clock=time.monotonic_ns):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._until: dict[str, int] = {}  # key -> when it is forgotten (ns)
        self._expiry: list[tuple[int, str]] = []  # the same, as a heap: the next to forget first
        self._lock = threading.Lock()

    def first_use(self, key: str, ttl_ns: int) -> bool:
        """True the first time ``key`` is seen (then remembered for ``ttl_ns``); False while it
        is remembered. Raises ``StoreFull`` when ``max_entries`` live keys are remembered."""
        with self._lock:
            now = self._clock()
            until = self._until.get(key)
            if until is not None and until > now:
                return False
            self._forget(now)
            if len(self._until) >= self.max_entries:
                raise StoreFull(f"{self.max_entries} once-only keys are live")
            until = now + max(1, int(ttl_ns))
            self._until[key] = until
            heapq.heappush(self._expiry, (until, key))
            return True

    def _forget(self, now: int) -> None:
        """Drop every key whose time is up (the lock is held). Afterwards each remembered key
        has exactly one heap entry, so the heap is bounded like the table."""
        expiry, table = self._expiry, self._until
        while expiry and expiry[0][0] <= now:
            until, key = heapq.heappop(expiry)
            if table.get(key) == until:
                del table[key]

    def __len__(self) -> int:
        return len(self._until)
