"""Claims ⇒ the final decision (SPEC §9): take units from the store, all or nothing.

Shared by every evaluator: the evaluators only say which limits an ALLOW meets and with which
key values (``(index, values)``), or why a limit could not be evaluated (``(index, message)``).
"""

from __future__ import annotations

import json
from typing import Sequence

from .. import extension
from ..compile.program import LimitCode
from ..decision import DENY, FAILED_CLOSED, Decision, Reason, RuleError, frozen_map
from .store import STORE_UNAVAILABLE, Budget, Store, StoreUnavailable

_memory = extension.compiled("pdp.limits._memory")
# None without the compiled extension: limited_decide's pure-Python closure, and no FastSettle.
LimitedDecide = None if _memory is None else _memory.LimitedDecide
FastSettle = None if _memory is None else _memory.FastSettle

#: The annotation that a limited denial's reason carries: the key whose budget ran out.
LIMIT_KEY = "limit_key"


def key_text(values: tuple) -> str:
    """The key of a budget: one string value as it is; anything else as a JSON list (which
    starts with ``[``: a string that does too is written as a list, so two keys never meet)."""
    if len(values) == 1:
        value = values[0]
        if type(value) is str and not value.startswith("["):
            return value
    return json.dumps([int(v) if type(v) is float and v.is_integer() else v for v in values],
                      ensure_ascii=False, separators=(",", ":"))


class _Limit:
    __slots__ = ("id", "count", "period_ns", "message", "annotations")

    def __init__(self, code: LimitCode):
        self.id = code.id
        self.count = code.count
        self.period_ns = round(code.period * 1_000_000_000)
        self.message = code.message
        self.annotations = dict(code.annotations)

    def budget(self, values: tuple) -> Budget:
        return Budget(self.id, key_text(values), self.count, self.period_ns)

    def reason(self, message: str, key: str | None) -> Reason:
        return Reason(self.id, "forbid", message,
                      frozen_map(self.annotations if key is None else {**self.annotations, LIMIT_KEY: key}))


class Limiter:
    """The limits of one Program, bound to a store. ``take=False`` (a shadow candidate) looks
    at the budgets without ever taking a unit."""

    def __init__(self, limits: Sequence[LimitCode], store: Store, take: bool = True):
        self.limits = [_Limit(code) for code in limits]
        self.store = store
        self.take = take
        self._take_one = getattr(store, "take_one", None)  # a store's fast path for one budget
        #: The compiled MemoryStore's common case settled in C (``_memory.FastSettle``), else None.
        self.fast = FastSettle(self) if FastSettle is not None and type(store) is _memory.MemoryStore else None

    def budgets(self, claims: list) -> list[Budget] | None:
        """The budgets of the claims, or None when one of them failed to evaluate."""
        limits = self.limits
        out = []
        for index, values in claims:
            if type(values) is str:
                return None
            out.append(limits[index].budget(values))
        return out

    def settle(self, decision: Decision, claims: list | None) -> Decision:
        """The decision once the claims are settled with the store."""
        if self.fast is not None:
            return self.fast.settle(decision, claims)
        return self.settle_slow(decision, claims)

    def settle_slow(self, decision: Decision, claims: list | None) -> Decision:
        """``settle`` without FastSettle (which comes here for all but its common case)."""
        if claims is None:
            return decision
        if len(claims) == 1 and self._take_one is not None:
            # The common case (one limit met, one string key) without building a Budget.
            index, values = claims[0]
            if type(values) is tuple and len(values) == 1 and type(values[0]) is str \
                    and not values[0].startswith("["):
                limit = self.limits[index]
                try:
                    if self._take_one(limit.id, values[0], limit.count, limit.period_ns, self.take):
                        return decision
                except StoreUnavailable:
                    return self._unavailable(decision, claims, [limit.budget(values)])
                return self.limited_one(decision, claims)
        budgets = self.budgets(claims)
        if budgets is None:
            return self._failed(decision, claims)
        try:
            short = self.store.take(budgets, self.take)
        except StoreUnavailable:
            return self._unavailable(decision, claims, budgets)
        return self._limited(decision, claims, budgets, short) if short else decision

    def settle_many(self, pairs: Sequence[tuple[Decision, list | None]]) -> list[Decision]:
        """``settle`` for a batch: units are taken in request order, in one store call."""
        if self.fast is not None:  # the in-memory store: request by request is the same
            return self.fast.settle_many(pairs)
        out, asks = self._asks(pairs)
        if not asks:
            return out
        try:
            answers = self.store.take_many([budgets for _, budgets in asks], self.take)
        except StoreUnavailable:
            answers = None
        return self._answered(pairs, out, asks, answers)

    async def settle_many_async(self, pairs: Sequence[tuple[Decision, list | None]], store) -> list[Decision]:
        """``settle_many`` on an asyncio event loop: ``store`` is an asyncio client of this
        limiter's store (``RedisStore.asyncio()``, ``SharedStore.asyncio()``: the same budgets)."""
        out, asks = self._asks(pairs)
        if not asks:
            return out
        try:
            answers = await store.take_many([budgets for _, budgets in asks], self.take)
        except StoreUnavailable:
            answers = None
        return self._answered(pairs, out, asks, answers)

    def _asks(self, pairs: Sequence[tuple[Decision, list | None]]) -> tuple[list[Decision], list]:
        """The decisions so far (a limit that failed to evaluate is settled already), and
        ``(index, budgets)`` for each request that asks the store."""
        asks: list[tuple[int, list[Budget]]] = []
        out: list[Decision] = []
        for i, (decision, claims) in enumerate(pairs):
            out.append(decision)
            if claims is None:
                continue
            budgets = self.budgets(claims)
            if budgets is None:
                out[i] = self._failed(decision, claims)
            else:
                asks.append((i, budgets))
        return out, asks

    def _answered(self, pairs, out: list[Decision], asks: list, answers: list | None) -> list[Decision]:
        """The decisions once the store answered the asks (``None``: it did not in time)."""
        if answers is None:
            for i, budgets in asks:
                out[i] = self._unavailable(out[i], pairs[i][1], budgets)
            return out
        for (i, budgets), short in zip(asks, answers):
            if short:
                out[i] = self._limited(out[i], pairs[i][1], budgets, short)
        return out

    # ---- the denials

    def limited_one(self, decision: Decision, claims: list) -> Decision:
        """The denial of a request that met one limit, whose budget had no unit left."""
        index, values = claims[0]
        return self._limited(decision, claims, [self.limits[index].budget(values)], [0])

    def _failed(self, decision: Decision, claims: list) -> Decision:
        """A limit whose condition or key cannot be evaluated fails closed."""
        reasons, errors = [], list(decision.errors)
        for index, message in claims:
            if type(message) is str:
                limit = self.limits[index]
                reasons.append(limit.reason(FAILED_CLOSED + message, None))
                errors.append(RuleError(limit.id, message))
        return Decision(DENY, tuple(reasons), tuple(errors), decision.revision, decision.eval_ns)

    def _limited(self, decision: Decision, claims: list, budgets: list[Budget], short: list[int]) -> Decision:
        reasons = []
        for i in short:
            limit = self.limits[claims[i][0]]
            reasons.append(limit.reason(limit.message, budgets[i].key))
        return Decision(DENY, tuple(reasons), decision.errors, decision.revision, decision.eval_ns)

    def _unavailable(self, decision: Decision, claims: list, budgets: list[Budget]) -> Decision:
        reasons, errors = [], list(decision.errors)
        for (index, _), budget in zip(claims, budgets):
            limit = self.limits[index]
            reasons.append(limit.reason(FAILED_CLOSED + STORE_UNAVAILABLE, budget.key))
            errors.append(RuleError(limit.id, STORE_UNAVAILABLE))
        return Decision(DENY, tuple(reasons), tuple(errors), decision.revision, decision.eval_ns)


def limited_decide(claims_of, limiter: Limiter, evaluator=None):
    """``engine.decide`` of a policy set with limit rules: ``claims_of(request)`` (a decision
    and the limits it meets), then ``limiter.settle``. The compiled one (``_memory``) takes
    the common case from its in-memory store without a Python call, and calls the compiled
    ``evaluator`` (when ``claims_of`` is its ``decide_claims``) through its C entry."""
    if LimitedDecide is not None:
        return LimitedDecide(claims_of, limiter, evaluator).decide
    settle = limiter.settle

    def decide(request: dict) -> Decision:  # bound names only: this runs per request
        decision, claims = claims_of(request)
        return decision if claims is None else settle(decision, claims)

    return decide
