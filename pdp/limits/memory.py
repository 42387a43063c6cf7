"""The in-process store: GCRA budgets in a dict, on the monotonic clock.

``MemoryStore`` is the compiled one (``_memory.pyx``: atomic under the GIL, no lock) when the
extension is built and the interpreter has a GIL, else ``LockedMemoryStore`` (one lock).
Both give the same answers; tests run both.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Sequence

from .. import extension
from .once import MAX_ONCE_MARKS, OnceMarks
from .store import Budget, gcra_interval

#: Full budgets are swept out once the table has grown past this many keys (then past twice
#: what the last sweep kept), so memory follows the keys in use, not every key ever seen.
_FIRST_SWEEP = 4096


class LockedMemoryStore:
    """GCRA: each budget keeps its *theoretical arrival time* (TAT). A request at ``now`` may
    take a unit when ``max(TAT, now) + interval - now ≤ period``; taking moves TAT there. A
    budget whose TAT is past is full, and is forgotten (the key expires)."""

    def __init__(self, clock=time.monotonic_ns, max_marks: int = MAX_ONCE_MARKS):
        self._tat: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._sweep_at = _FIRST_SWEEP
        self._marks = OnceMarks(max_marks, clock)

    def take(self, budgets: Sequence[Budget], take: bool = True) -> list[int]:
        tats = self._tat
        with self._lock:
            now = self._clock()
            if len(budgets) == 1:  # the common case, without lists
                rule, key, count, period = budgets[0]
                tat = tats.get((rule, key), now)
                new = (tat if tat > now else now) + period // count
                if new - now > period:
                    return [0]
                if take:
                    tats[(rule, key)] = new
                    if len(tats) > self._sweep_at:
                        self._sweep(now)
                return []
            short = []
            moved = []
            for i, (rule, key, count, period) in enumerate(budgets):
                tat = tats.get((rule, key), now)
                new = (tat if tat > now else now) + gcra_interval(count, period)
                if new - now > period:
                    short.append(i)
                else:
                    moved.append(((rule, key), new))
            if not short and take:
                tats.update(moved)
                if len(tats) > self._sweep_at:
                    self._sweep(now)
            return short

    def take_one(self, rule: str, key: str, count: int, period: int, take: bool = True) -> bool:
        """``take`` of one budget, without building it: True when it had a unit."""
        tats = self._tat
        with self._lock:
            now = self._clock()
            tat = tats.get((rule, key), now)
            new = (tat if tat > now else now) + period // count
            if new - now > period:
                return False
            if take:
                tats[(rule, key)] = new
                if len(tats) > self._sweep_at:
                    self._sweep(now)
            return True

    def take_many(self, requests: Sequence[Sequence[Budget]], take: bool = True) -> list[list[int]]:
        return [self.take(budgets, take) for budgets in requests]

    def set_remaining(self, budget: Budget, remaining: int) -> None:
        rule, key, count, period = budget
        with self._lock:
            now = self._clock()
            left = max(0, min(count, remaining))
            if left == count:
                self._tat.pop((rule, key), None)
            else:
                self._tat[(rule, key)] = now + (count - left) * gcra_interval(count, period)

    def remaining(self, budget: Budget) -> int:
        """Units left in one budget now."""
        rule, key, count, period = budget
        with self._lock:
            now = self._clock()
            tat = self._tat.get((rule, key), now)
            used = max(0, tat - now)
            interval = gcra_interval(count, period)
            return max(0, min(count, (period - used) // interval))

    def first_use(self, key: str, ttl_ns: int) -> bool:
        """A once-only key (pdp/limits/once.py): True the first time it is seen."""
        return self._marks.first_use(key, ttl_ns)

    def _sweep(self, now: int) -> None:
        """Forget full budgets (TAT past): the lock is held."""
        tats = self._tat
        for k in [k for k, tat in tats.items() if tat <= now]:
            del tats[k]
        self._sweep_at = max(_FIRST_SWEEP, 2 * len(tats))

    def __len__(self) -> int:
        return len(self._tat)

    def close(self) -> None:
        pass


def _compiled():
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        return None  # the compiled store relies on the GIL to be atomic
    module = extension.compiled("pdp.limits._memory")
    return None if module is None else module.MemoryStore


#: The in-process store pdp uses (``pdp.load``'s default, a ``--workers`` parent's).
MemoryStore = _compiled() or LockedMemoryStore
