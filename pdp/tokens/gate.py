"""The token gate in front of the evaluators: a request ⇒ its verified token, none, or why not.

The token is ``context.token`` (the Envoy mapping puts a ``Bearer`` token there). Verifying
one costs tens of µs (bench/TOKENS.md); the outcome is cached until the token expires, so a
repeated token costs a hash and a look-up. The cache is a dict keyed by the token itself: the
look-up hashes it with Python's keyed SipHash (about 4x cheaper than SHA-256 here, measured)
and compares it in full, so no two tokens can share an entry. The binding (certificate, DPoP
proof) belongs to each request and is checked every time.
"""

from __future__ import annotations

import threading
import time

from ..decision import DENY, Decision, Reason
from .binding import Binding
from .trust import Trust
from .verify import EXPIRED, STABLE, Rejected, Verified, verify

#: Outcomes remembered at once, and the token text they hold at most (a token may be up to
#: 16 KB: the count alone would let 10,000 large ones take 160 MB); beyond either, the oldest
#: half is forgotten.
MAX_CACHED = 10_000
MAX_CACHED_BYTES = 16 * 1024 * 1024
#: A cached rejection is forgotten after this long (a verified token stays until it expires).
REJECTION_SECONDS = 60.0
TOKEN_KEY = "token"
#: The rule id of the single reason of a decision whose token was rejected.
TOKEN_RULE = "pdp.token"


def rejected_decision(rejected: Rejected, revision: str) -> Decision:
    """DENY with the single reason ``pdp.token``: ``token rejected: WHY``."""
    return Decision(DENY, (Reason(TOKEN_RULE, "forbid", rejected.message, {}),), (), revision, 0)


class TokenGate:
    """Verifies the tokens of requests against one loaded trust file."""

    def __init__(self, trust: Trust, clock=time.time, max_cached: int = MAX_CACHED,
                 max_cached_bytes: int = MAX_CACHED_BYTES):
        self.trust = trust
        self.clock = clock
        self.max_cached = max_cached
        self.max_cached_bytes = max_cached_bytes
        self.binding = Binding(trust.leeway)
        self._cache: dict[str, tuple[Verified | Rejected, float]] = {}
        self._cached_bytes = 0  # the length of the tokens in _cache
        self._lock = threading.Lock()

    def share_replays(self, store) -> None:
        """Keep DPoP proofs' ``jti``s in ``store`` (a server's velocity-limit store: its own, a
        ``--workers`` parent's, or Redis) instead of this process's ``binding.REPLAYS``."""
        self.binding.replays = store

    def check(self, request: object) -> Verified | None:
        """The verified token of ``request``, or None when it carries none; raises ``Rejected``.

        A request whose ``context`` is not a map carries no token here: validation reports it.
        """
        context = request.get("context") if type(request) is dict else None
        if type(context) is not dict:
            return None
        token = context.get(TOKEN_KEY)
        if token is None:
            return None
        now = self.clock()
        hit = self._cache.get(token) if type(token) is str else None
        if hit is not None and type(hit[0]) is Verified and now < hit[1]:
            verified = hit[0]  # the common case, without a call
        else:
            verified = self.verified(token, now)
        if verified.cnf is not None:
            self.binding.check(verified, context, now)
        return verified

    def verified(self, token: object, now: float) -> Verified:
        """``verify`` with the cache; raises ``Rejected``."""
        if type(token) is not str:
            raise Rejected("malformed", "context.token is not a string")
        key = token
        hit = self._cache.get(key)
        if hit is not None:
            outcome, until = hit
            if now < until:
                if type(outcome) is Rejected:
                    raise outcome
                return outcome  # type: ignore[return-value]
            self._forget(key)
            if type(outcome) is Verified:
                raise Rejected(EXPIRED)
        try:
            outcome = verify(self.trust, token, now)
            until = outcome.valid_until
        except Rejected as rejected:
            if rejected.why not in STABLE:
                raise
            outcome, until = rejected, now + REJECTION_SECONDS
        self._remember(key, outcome, until)
        if type(outcome) is Rejected:
            raise outcome
        return outcome

    def _remember(self, key: str, outcome: Verified | Rejected, until: float) -> None:
        with self._lock:
            cache = self._cache
            if cache.pop(key, None) is not None:  # another thread verified it meanwhile
                self._cached_bytes -= len(key)
            while cache and (len(cache) >= self.max_cached or
                             self._cached_bytes + len(key) > self.max_cached_bytes):
                for old in list(cache)[: max(1, len(cache) // 2)]:  # dicts keep insertion order: the oldest
                    del cache[old]
                    self._cached_bytes -= len(old)
            cache[key] = (outcome, until)
            self._cached_bytes += len(key)

    def _forget(self, key: str) -> None:
        with self._lock:
            if self._cache.pop(key, None) is not None:
                self._cached_bytes -= len(key)
