"""The serving engine: one reference that a reload replaces in a single store.

A request handler reads ``holder.engine`` once and uses that engine for the whole call, so a
reload that lands in the middle of a CheckBatch never mixes two revisions in one answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..engine import Engine


class EngineHolder:
    """Holds the engine that decides; ``swap`` replaces it atomically.

    INVARIANT: ``engine`` is always a fully built Engine. A new one is built off to the side
    (reload.py) and published by one attribute store, which CPython makes atomic: a reader
    sees the old engine or the new one, never a half-built one.
    """

    def __init__(self, engine: Engine, limits=None, take: bool = True):
        # Velocity limits (SPEC §9): every engine this holder serves takes units from one
        # store, so budgets outlive reloads; ``take=False`` (a shadow candidate) only looks.
        self.limits = limits
        self._take = take
        self.engine = self._bound(engine)
        self._lock = threading.Lock()  # serializes swaps and listener calls, never readers
        self._listeners: list[Callable[[Engine, Engine], None]] = []

    @property
    def revision(self) -> str:
        return self.engine.revision

    def on_swap(self, listener: Callable[[Engine, Engine], None]) -> None:
        """Call ``listener(old, new)`` after every swap (metrics, logs)."""
        with self._lock:
            self._listeners.append(listener)

    def _bound(self, engine: Engine) -> Engine:
        if self.limits is None:
            return engine
        tokens = getattr(engine, "tokens", None)
        if tokens is not None and self._take:
            # DPoP proofs seen are kept in the same store, so that a proof replayed to another
            # worker (or, with Redis, another server) is seen; a shadow candidate uses none.
            tokens.share_replays(self.limits)
        if getattr(engine, "limiter", None) is None:
            return engine
        return engine.with_limits(self.limits, self._take)

    def swap(self, engine: Engine) -> Engine:
        """Publish ``engine``; returns the engine it replaced."""
        engine = self._bound(engine)
        with self._lock:
            old, self.engine = self.engine, engine
            for listener in self._listeners:
                listener(old, engine)
        return old
