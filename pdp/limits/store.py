"""What every limit store does, and ``open_store`` for ``pdp serve --limits``."""

from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence

#: The message of a limit met while its store does not answer (after ``failed closed: ``).
STORE_UNAVAILABLE = "limit store unavailable"
#: How long a store may take to answer before the requests waiting on it fail closed.
DEFAULT_TIMEOUT = 0.05


class StoreUnavailable(Exception):
    """The store did not answer within its deadline (or refused): fail closed."""


class StoreFull(Exception):
    """``first_use`` found the store's once-only keys all live (pdp/limits/once.py): the new
    key is refused rather than a live one forgotten."""


class Budget(NamedTuple):
    """One budget a request takes a unit from: the limit rule's id, the key (``Limiter``'s
    text of the key values), and the budget: ``count`` units per ``period_ns`` nanoseconds."""

    rule: str
    key: str
    count: int
    period_ns: int


class Store(Protocol):
    def take(self, budgets: Sequence[Budget], take: bool = True) -> list[int]:
        """Take one unit from every budget, all or nothing, in one atomic step; return the
        indices of the budgets without a unit (then nothing is taken). ``take=False`` only
        looks. Raises StoreUnavailable when the store does not answer in time."""

    def take_many(self, requests: Sequence[Sequence[Budget]], take: bool = True) -> list[list[int]]:
        """``take`` for each request's budgets, in order (a batch)."""

    def set_remaining(self, budget: Budget, remaining: int) -> None:
        """Set the units left in one budget (test suites)."""

    def first_use(self, key: str, ttl_ns: int) -> bool:
        """True the first time ``key`` is seen (then remembered for ``ttl_ns``), False while it
        is remembered; bounded (pdp/limits/once.py). Raises StoreFull or StoreUnavailable."""

    def close(self) -> None:
        ...


#: The longest period of a limit rule, in seconds (100 years): budgets count nanoseconds in
#: 64 bits (and microseconds in Redis's doubles). A budget is also at most one request per
#: microsecond of its period, so that a unit comes back after at least one whole microsecond
#: (the Redis script's unit): every store then gives a budget the same pace.
MAX_LIMIT_PERIOD = 36500 * 86400


def gcra_interval(count: int, period_ns: int) -> int:
    """Nanoseconds for one unit to come back. Rounded down, so that N units fit in the period
    exactly (N × interval ≤ period < (N + 1) × interval)."""
    return period_ns // count


def open_store(url: str | None, timeout: float = DEFAULT_TIMEOUT, max_marks: int | None = None) -> Store:
    """``None``/``memory``: in this process; ``redis://HOST:PORT/DB``; ``pdp-parent:PATH``: the
    store a ``pdp serve --workers N`` parent keeps on the Unix socket PATH. ``max_marks``: the
    once-only keys (DPoP proofs) a memory or Redis store remembers at once; a parent's store
    has its own, set where the parent opens it. (None: ``once.MAX_ONCE_MARKS``, imported here
    because ``once`` imports this module.)"""
    if max_marks is None:
        from .once import MAX_ONCE_MARKS

        max_marks = MAX_ONCE_MARKS
    if url is None or url == "memory":
        from .memory import MemoryStore

        return MemoryStore(max_marks=max_marks)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis_store import RedisStore

        return RedisStore(url, timeout, max_marks=max_marks)
    if url.startswith("pdp-parent:"):
        from .shared import SharedStore

        return SharedStore(url[len("pdp-parent:"):], timeout)
    raise ValueError(f"--limits {url}: expected redis://HOST:PORT/DB (or memory, the default)")
