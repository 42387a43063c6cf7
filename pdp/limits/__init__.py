"""Velocity limits (SPEC §9): per-key budgets that the evaluators' claims take units from.

The evaluators say which limits an ALLOW meets and with which key values (the *claims*);
``Limiter`` turns claims into a final decision with a store: ``MemoryStore`` (one process),
``SharedStore`` (the workers of one ``pdp serve``, through their parent) or ``RedisStore``
(every server that shares one Redis).
"""

from .limiter import LIMIT_KEY, Limiter, limited_decide
from .memory import MemoryStore
from .store import STORE_UNAVAILABLE, Budget, Store, StoreUnavailable, open_store

__all__ = ["LIMIT_KEY", "STORE_UNAVAILABLE", "Budget", "Limiter", "MemoryStore", "Store", "StoreUnavailable",
           "limited_decide", "open_store"]
