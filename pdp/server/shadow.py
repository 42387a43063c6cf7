"""Shadow mode (``pdp serve PATH... --shadow CANDIDATE...``): every decided request is decided
by a candidate policy set too, off the answer's path (SPEC §11).

``ShadowLog`` stands where the decision log stands (handlers call ``record`` as they always
did, so no handler knows about shadowing): ``record`` is one non-blocking put on a bounded
queue, and a background thread decides the request with the candidate, counts the outcome
(``pdp_shadow_decisions_total{outcome="agree|allow_to_deny|deny_to_allow"}``) and writes the
log line with ``shadow: {decision, revision, reasons}``. When the queue is full the request
is not shadowed: its line is logged without ``shadow`` and the drop is counted
(``pdp_shadow_dropped_total``). The live answer is never waited for, changed or delayed by
anything but the CPU the thread takes.

The candidate decides "at the time of the live decision" (``Engine.decide_at``): ``now`` of a
request without ``context.time``, and the clock bound's reference, are the time of the live
decision, so that a backlog in the queue neither ages credentials nor trips the clock bound.
The candidate has its own engine (and, once velocity limits exist, must never take units from
the live budgets).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from ..decision import Decision
from ..tokens import TOKEN_RULE
from .holder import EngineHolder

log = logging.getLogger("pdp.server")

AGREE, ALLOW_TO_DENY, DENY_TO_ALLOW = "agree", "allow_to_deny", "deny_to_allow"
_STOP = object()


def outcome(live: str, shadow: str) -> str:
    if live == shadow:
        return AGREE
    return ALLOW_TO_DENY if live == "ALLOW" else DENY_TO_ALLOW


class ShadowLog:
    """Decides logged requests with ``holder``'s engine in the background, then passes them on
    to ``inner`` (the decision log, or None when there is none) with the shadow decision.

    Args:
        holder: the candidate's EngineHolder (its own Reloader swaps it).
        inner: the DecisionLog to write to, if any.
        metrics: Metrics to count outcomes and drops in, if any.
        max_queue: requests waiting to be shadowed beyond which new ones are not shadowed.
    """

    def __init__(self, holder: EngineHolder, inner: Any = None, metrics: Any = None, max_queue: int = 10_000):
        self.holder = holder
        self.inner = inner
        self.metrics = metrics
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._put = self._queue.put_nowait
        self.dropped = 0
        self.outcomes = {AGREE: 0, ALLOW_TO_DENY: 0, DENY_TO_ALLOW: 0}
        self._thread = threading.Thread(target=self._run, name="pdp-shadow", daemon=True)
        self._thread.start()

    # ---- the DecisionLog interface the handlers use

    def record(self, api: str, request_id: str, request: Any, decision: Any, latency_ns: int, shadow: Any = None,
               when: float | None = None) -> None:
        when = time.time() if when is None else when
        try:
            self._put((when, api, request_id, request, decision, latency_ns))
        except queue.Full:
            self.dropped += 1  # one thread at a time holds the GIL here; a lost increment is harmless
            if self.metrics is not None:
                self.metrics.shadow_dropped()
            if self.inner is not None:
                self.inner.record(api, request_id, request, decision, latency_ns, when=when)

    def record_error(self, api: str, request_id: str, request: Any, error: str) -> None:
        if self.inner is not None:
            self.inner.record_error(api, request_id, request, error)

    def record_search(self, *args) -> None:
        """A search is not a decision to shadow: straight to the log."""
        if self.inner is not None:
            self.inner.record_search(*args)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is shadowed (and written, with a log)."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        if not done.wait(timeout):
            return False
        return self.inner.flush(timeout) if self.inner is not None else True

    def close(self, timeout: float = 30.0) -> None:
        """Shadow everything queued, then close the inner log."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("shadow: the candidate is stuck; %d requests not shadowed", self._queue.qsize())
        self._thread.join(timeout)
        if self.inner is not None:
            self.inner.close()

    def reopen(self) -> None:
        if self.inner is not None:
            self.inner.reopen()

    # ---- the shadow thread

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._shadow(*item)
            except Exception:  # never let one odd request stop shadowing
                log.exception("shadow: cannot decide a request with the candidate")

    #: request ⇒ the claims of its verified token (the live engine's ``token_claims``), or None.
    token_claims: Any = None

    def _candidate_decides(self, request: dict, live: Any, when: float) -> Any:
        """The candidate's decision at ``when``, the time of the live one (``Engine.decide_at``).
        A token the live engine verified is decided on its claims (a DPoP proof is good once:
        checking it again would see a replay); a token it rejected is rejected alike, the trust
        file being the same."""
        context = request.get("context")
        if type(context) is dict and context.get("token") is not None and self.token_claims is not None:
            if live.reasons and live.reasons[0].rule == TOKEN_RULE:
                return Decision(live.decision, live.reasons, live.errors, self.holder.engine.revision, 0)
            claims = self.token_claims(request)
            if claims is not None:
                rest = {k: v for k, v in context.items() if k != "token"}
                return self.holder.engine.decide_at({**request, "context": rest}, when, claims)
        return self.holder.engine.decide_at(request, when)

    def _shadow(self, when: float, api: str, request_id: str, request: Any, decision: Any, latency_ns: int) -> None:
        shadow = None
        if type(request) is dict:
            try:
                shadow = self._candidate_decides(request, decision, when)
            except Exception as exc:  # RequestError: the candidate refuses what the live set took
                log.warning("shadow: the candidate refuses request %r: %s", request_id, exc)
        if shadow is not None:
            result = outcome(decision.decision, shadow.decision)
            self.outcomes[result] += 1
            if self.metrics is not None:
                self.metrics.shadowed(result)
        if self.inner is not None:
            self.inner.record(api, request_id, request, decision, latency_ns, shadow=shadow, when=when)
