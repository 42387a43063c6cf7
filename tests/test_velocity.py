"""Velocity limits (SPEC §9) in process: the language, GCRA budgets, what counts, fail closed,
batches, the store's clock, bundles and explain. Every backend runs every test."""

from __future__ import annotations

import time

import pytest

import pdp
from pdp.bundle import load_bundle, write_bundle
from pdp.limits import Budget, MemoryStore, StoreUnavailable

BACKENDS = ["reference", *sorted(pdp.engine.runtime.EVALUATORS)]

POLICY = """
policy pay {
  permit charge when action.name in ["charge", "read"]
  forbid test_env when resource.env == "test"
  @control("OWASP-NHI")
  limit charges 3 per 1h by identity.id when action.name == "charge" reason "too many charges"
  limit pairs 5 per 1m by identity.id, resource.type
}
"""

BAD_KEY = """
policy pay {
  permit any
  limit by_team 2 per 1h by identity.team
}
"""


class FakeClock:
    def __init__(self, start: int = 10**15):
        self.now = start

    def __call__(self) -> int:
        return self.now


class Refusing:
    """A store that must never be asked."""

    def take(self, budgets, take=True):
        raise AssertionError(f"the store was asked for {budgets}")

    take_many = take


class Down:
    def take(self, budgets, take=True):
        raise StoreUnavailable("down")

    def take_many(self, requests, take=True):
        raise StoreUnavailable("down")


def req(who="billing", action="charge", env="prod", **identity):
    return {"identity": {"type": "workload", "id": who, **identity}, "action": action,
            "resource": {"type": "payment", "id": "p1", "env": env}}


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def engine(tmp_path, backend, text=POLICY, store=None):
    path = tmp_path / "p.pdl"
    path.write_text(text)
    return pdp.load(path, backend=backend, limits=store)


def test_a_burst_of_n_passes_then_one_unit_per_period_over_n(tmp_path, backend):
    clock = FakeClock()
    e = engine(tmp_path, backend, store=MemoryStore(clock))
    got = [e.decide(req()).decision for _ in range(5)]
    assert got == ["ALLOW"] * 3 + ["DENY"] * 2
    d = e.decide(req())
    assert [(r.rule, r.effect, r.message) for r in d.reasons] == [("pay.charges", "forbid", "too many charges")]
    assert dict(d.reasons[0].annotations) == {"control": "OWASP-NHI", "limit_key": "billing"}
    clock.now += 20 * 60 * 10**9 - 1  # one unit comes back after 1h/3, not before
    assert e.decide(req()).decision == "DENY"
    clock.now += 1
    assert e.decide(req()).decision == "ALLOW"
    assert e.decide(req()).decision == "DENY"
    clock.now += 10 * 3600 * 10**9  # never above N
    assert [e.decide(req()).decision for _ in range(4)] == ["ALLOW"] * 3 + ["DENY"]


def test_keys_are_separate_budgets(tmp_path, backend):
    e = engine(tmp_path, backend, store=MemoryStore(FakeClock()))
    assert [e.decide(req("a")).decision for _ in range(4)] == ["ALLOW"] * 3 + ["DENY"]
    assert e.decide(req("b")).decision == "ALLOW"


def test_denied_requests_consume_nothing_and_all_or_nothing(tmp_path, backend):
    store = MemoryStore(FakeClock())
    e = engine(tmp_path, backend, store=store)
    for _ in range(10):  # forbidden: never counted
        assert e.decide(req(env="test")).decision == "DENY"
    assert len(store) == 0
    assert [e.decide(req()).decision for _ in range(3)] == ["ALLOW"] * 3
    # charges is empty now: a charge is denied by it alone, and pairs is not charged for it.
    assert [r.rule for r in e.decide(req()).reasons] == ["pay.charges"]
    pairs = Budget("pay.pairs", '["billing","payment"]', 5, 60 * 10**9)
    assert store.remaining(pairs) == 2
    assert [e.decide(req(action="read")).decision for _ in range(3)] == ["ALLOW", "ALLOW", "DENY"]
    d = e.decide(req())
    assert [r.rule for r in d.reasons] == ["pay.charges", "pay.pairs"]  # every empty limit, in source order
    assert d.reasons[1].annotations["limit_key"] == '["billing","payment"]'


def test_a_request_that_meets_no_limit_never_touches_the_store(tmp_path, backend):
    e = engine(tmp_path, backend, text=POLICY.replace('by identity.id, resource.type',
                                                      'by identity.id, resource.type when action.name == "x"'),
               store=Refusing())
    assert e.decide(req(action="read")).decision == "ALLOW"
    assert e.decide(req(env="test")).decision == "DENY"
    assert [d.decision for d in e.decide_many([req(action="read"), req(env="test")])] == ["ALLOW", "DENY"]


def test_a_policy_set_without_limits_never_touches_the_store(tmp_path, backend):
    e = engine(tmp_path, backend, text='policy p { permit any }', store=Refusing())
    assert e.decide(req()).decision == "ALLOW"
    assert e.limits is None


def test_a_key_that_cannot_be_evaluated_fails_closed(tmp_path, backend):
    store = MemoryStore(FakeClock())
    e = engine(tmp_path, backend, text=BAD_KEY, store=store)
    d = e.decide(req())
    assert d.decision == "DENY"
    assert [(r.rule, r.effect, r.message) for r in d.reasons] == [
        ("pay.by_team", "forbid", "failed closed: identity.team is missing")]
    assert [(x.rule, x.message) for x in d.errors] == [("pay.by_team", "identity.team is missing")]
    d = e.decide(req(team=["a"]))
    assert d.reasons[0].message == "failed closed: a limit key must be a string, number or boolean, got list"
    assert len(store) == 0
    assert [e.decide(req(team="x")).decision for _ in range(3)] == ["ALLOW", "ALLOW", "DENY"]


def test_a_store_that_does_not_answer_fails_closed_only_for_limited_requests(tmp_path, backend):
    e = engine(tmp_path, backend, text=POLICY.replace('by identity.id, resource.type',
                                                      'by identity.id when action.name == "x"'), store=Down())
    d = e.decide(req())
    assert d.decision == "DENY"
    assert [(r.rule, r.message) for r in d.reasons] == [("pay.charges", "failed closed: limit store unavailable")]
    assert [(x.rule, x.message) for x in d.errors] == [("pay.charges", "limit store unavailable")]
    assert e.decide(req(action="read")).decision == "ALLOW"
    assert [x.decision for x in e.decide_many([req(), req(action="read")])] == ["DENY", "ALLOW"]


def test_batches_take_units_in_request_order(tmp_path, backend):
    e = engine(tmp_path, backend, store=MemoryStore(FakeClock()))
    batch = [req("a"), req("b"), req("a", env="test"), req("a"), req("a"), req("a"), req("b")]
    assert [d.decision for d in e.decide_many(batch)] == ["ALLOW", "ALLOW", "DENY", "ALLOW", "ALLOW", "DENY", "ALLOW"]


def test_the_store_clock_not_context_time(tmp_path, backend):
    e = engine(tmp_path, backend, store=MemoryStore(FakeClock()))
    later = {**req(), "context": {"time": "2099-01-01T00:00:00Z"}}
    assert [e.decide(later).decision for _ in range(4)] == ["ALLOW"] * 3 + ["DENY"]


def test_the_default_store_is_in_memory_and_own_to_the_engine(tmp_path, backend):
    a, b = engine(tmp_path, backend), engine(tmp_path, backend)
    assert [a.decide(req()).decision for _ in range(4)] == ["ALLOW"] * 3 + ["DENY"]
    assert b.decide(req()).decision == "ALLOW"
    assert isinstance(a.limits, MemoryStore)


def test_with_limits_shares_a_store_and_looks_without_taking(tmp_path, backend):
    store = MemoryStore(FakeClock())
    live = engine(tmp_path, backend, store=store)
    shadow = engine(tmp_path, backend).with_limits(store, take=False)
    for _ in range(5):
        assert shadow.decide(req()).decision == "ALLOW"
    assert len(store) == 0
    assert [live.decide(req()).decision for _ in range(4)] == ["ALLOW"] * 3 + ["DENY"]
    assert shadow.decide(req()).decision == "DENY"


def test_set_remaining(tmp_path, backend):
    store = MemoryStore(FakeClock())
    e = engine(tmp_path, backend, store=store)
    store.set_remaining(Budget("pay.charges", "billing", 3, 3600 * 10**9), 1)
    assert [e.decide(req()).decision for _ in range(2)] == ["ALLOW", "DENY"]
    store.set_remaining(Budget("pay.charges", "billing", 3, 3600 * 10**9), 0)
    assert e.decide(req()).decision == "DENY"


def test_number_and_string_keys_are_different_budgets(tmp_path, backend):
    text = 'policy p {\n permit any\n limit n 1 per 1h by identity.n\n}'
    e = engine(tmp_path, backend, text=text, store=MemoryStore(FakeClock()))
    assert e.decide(req(n=1)).decision == "ALLOW"
    assert e.decide(req(n=1.0)).decision == "DENY"  # one number, as JSON says
    assert e.decide(req(n="1")).decision == "ALLOW"
    assert e.decide(req(n="[1]")).decision == "ALLOW"
    assert e.decide(req(n=True)).decision == "ALLOW"


def test_bundles_keep_their_limits(tmp_path, backend):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "p.pdl").write_text(POLICY)
    write_bundle(pdp.load(tmp_path / "src"), tmp_path / "b.pdpb")
    e = load_bundle(tmp_path / "b.pdpb", backend=backend)
    assert [e.decide(req()).decision for _ in range(4)] == ["ALLOW"] * 3 + ["DENY"]


def test_explain_shows_limits_and_takes_no_unit(tmp_path, backend):
    store = MemoryStore(FakeClock())
    e = engine(tmp_path, backend, store=store)
    x = e.explain(req())
    assert x.decision.decision == "ALLOW"
    traces = {t.rule: t for t in x.rules}
    assert traces["pay.charges"].status == "applied" and "for key billing" in traces["pay.charges"].note
    assert [c for c, _ in traces["pay.pairs"].clauses] == ["key", "key"]
    assert "limit pay.charges: APPLIED" in x.render()
    assert len(store) == 0
    assert e.explain(req(env="test")).to_dict()["rules"][-1]["status"] == "not evaluated"
    bad = engine(tmp_path, backend, text=BAD_KEY).explain(req())
    assert bad.decision.decision == "DENY"
    assert bad.decision.reasons[0].message == "failed closed: identity.team is missing"


def test_a_malformed_limit_is_refused_before_linking(tmp_path, backend):
    import dataclasses

    from pdp.engine import Engine

    e = engine(tmp_path, backend)
    for change, words in ((dict(count=0), "budget"), (dict(period=float("inf")), "period"), (dict(keys=()), "keys"),
                          (dict(policy=7), "out of range"), (dict(when=("nope",)), "when"),
                          (dict(count=10**10), "microsecond"), (dict(period=36501 * 86400.0), "36500d")):
        bad = dataclasses.replace(e.program, limits=(dataclasses.replace(e.program.limits[0], **change),))
        with pytest.raises(pdp.PolicyError, match=words):
            Engine(bad, e.sources, None, backend)


def test_without_limits_decides_as_the_policies_say_and_takes_nothing(tmp_path, backend):
    store = MemoryStore(FakeClock())
    e = engine(tmp_path, backend, store=store)
    free = e.without_limits()
    assert [free.decide(req()).decision for _ in range(5)] == ["ALLOW"] * 5
    assert [d.decision for d in free.decide_many([req()] * 5)] == ["ALLOW"] * 5
    assert len(store) == 0
    assert free.limits is None and e.limits is store


TOKEN_POLICY = """
policy pay {
  permit charge when action.name == "charge" and defined(token)
  limit per_subject 2 per 1h by token.sub when token.scopes contains "payments:write"
}
"""


def test_the_token_gate_comes_before_the_limits(tmp_path, backend):
    """A rejected token is DENY pdp.token and takes no unit; a verified one is usable in a
    limit's key and conditions; decide_verified and decide_many settle limits as decide does."""
    from tokenkit import key, token, write_trust

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "pay.pdl").write_text(TOKEN_POLICY)
    store = MemoryStore(FakeClock())
    signer = key("ES256", "es1")
    e = pdp.load(tmp_path / "p", backend=backend, limits=store,
                 trust=write_trust(tmp_path / "trust", [signer]))

    def with_token(tok):
        return {**req(), "context": {"token": tok}}

    good = with_token(token(signer, "ES256"))
    expired = with_token(token(signer, "ES256", now=time.time() - 3600))
    for _ in range(3):
        d = e.decide(expired)
        assert [(r.rule, r.message) for r in d.reasons] == [("pdp.token", "token rejected: expired")]
    assert [d.decision for d in e.decide_many([expired, expired])] == ["DENY", "DENY"]
    assert len(store) == 0  # nothing taken
    budget = Budget("pay.per_subject", "spiffe://acme.prod/ns/billing/sa/api", 2, 3600 * 10**9)
    assert [d.decision for d in e.decide_many([good, expired, good, good])] == ["ALLOW", "DENY", "ALLOW", "DENY"]
    assert store.remaining(budget) == 0
    d = e.decide(good)
    assert [(r.rule, r.annotations["limit_key"]) for r in d.reasons] == [
        ("pay.per_subject", "spiffe://acme.prod/ns/billing/sa/api")]
    # A token taken as verified (suites, replays) meets the limits too, under its own subject.
    claims = {"iss": "https://sts.acme.example", "sub": "other", "aud": ["payments-api"], "iat": 1, "exp": 2,
              "scope": "payments:write"}
    assert [e.decide_verified(req(), claims).decision for _ in range(3)] == ["ALLOW", "ALLOW", "DENY"]
    # Without the scope the limit does not apply: the request is allowed and nothing is taken.
    read_only = {**claims, "sub": "third", "scope": "payments:read"}
    assert [e.decide_verified(req(), read_only).decision for _ in range(3)] == ["ALLOW"] * 3
    assert e.decide_claims(req(), read_only)[1] is None


CLOCK_POLICY = """
policy pay {
  permit charge when action.name == "charge"
  limit recent 2 per 1h by identity.id when now > 0
}
"""


def test_the_clock_bound_applies_to_limits_and_budgets_keep_the_store_clock(tmp_path, backend):
    """With a clock bound (pdp serve), a limit that reads ``now`` fails closed on a
    ``context.time`` off the server clock; budgets run on the store's clock whatever
    ``context.time`` says; ``with_max_clock_skew`` and ``decide_at`` keep the engine's budgets."""
    store = MemoryStore(FakeClock())
    unbounded = engine(tmp_path, backend, text=CLOCK_POLICY, store=store)
    bounded = unbounded.with_max_clock_skew(30)
    assert bounded.limits is store
    far = {**req(), "context": {"time": "2001-01-01T00:00:00Z"}}
    d = bounded.decide(far)
    assert d.decision == "DENY"
    assert d.reasons[0].rule == "pay.recent" and d.reasons[0].message.startswith("failed closed: context.time is ")
    assert len(store) == 0
    assert unbounded.decide(far).decision == "ALLOW"  # taken as given without a bound: one unit taken
    assert bounded.decide(req()).decision == "ALLOW"  # now is the server clock: the second unit
    assert bounded.decide_at(req(), time.time() - 3600).decision == "DENY"  # an hour ago, yet no unit now
    shadow = bounded.with_limits(store, take=False).with_max_clock_skew(30)
    assert shadow.decide(req("other")).decision == "ALLOW" and len(store) == 1  # looks, takes nothing


def test_metrics_count_limited_denials_by_rule_and_each_request_the_store_left_unanswered(tmp_path):
    from pdp.server.metrics import Metrics

    metrics = Metrics()
    value = metrics.registry.get_sample_value
    live = engine(tmp_path, "reference")
    for _ in range(4):  # the fourth charge finds the `charges` budget empty
        d = live.decide(req())
        metrics.decided("pdp", d.decision, d.reasons, 0.001)
    assert value("pdp_limited_decisions_total", {"rule": "pay.charges"}) == 1
    assert value("pdp_limited_decisions_total", {"rule": "pay.pairs"}) is None
    assert value("pdp_limit_store_errors_total") == 0
    down = engine(tmp_path, "reference", store=Down())
    d = down.decide(req())  # meets both limits; the store does not answer
    assert sorted(r.rule for r in d.reasons) == ["pay.charges", "pay.pairs"]
    metrics.decided("pdp", d.decision, d.reasons, 0.001)
    assert value("pdp_limited_decisions_total", {"rule": "pay.charges"}) == 2
    assert value("pdp_limited_decisions_total", {"rule": "pay.pairs"}) == 1
    assert value("pdp_limit_store_errors_total") == 1  # one request, not one per limit


def test_limit_key_is_a_reserved_annotation(tmp_path):
    # A rule could otherwise pass its denials off as limited ones (decision log, metrics, suites).
    path = tmp_path / "p.pdl"
    path.write_text('policy p {\n  @limit_key("billing")\n  forbid f when true\n}\n')
    with pytest.raises(pdp.PolicyError, match="@limit_key is reserved"):
        pdp.load(path)


ERRING = POLICY.replace('permit charge when', 'permit tiered when identity.tier > 1\n  permit charge when')


def _view(decision) -> tuple:
    return (decision.decision, [(r.rule, r.effect, r.message, dict(r.annotations)) for r in decision.reasons],
            [(e.rule, e.message) for e in decision.errors], decision.revision)


@pytest.mark.parametrize("keys", [3, 4100])  # 4100: past the denials the compiled store keeps per limit
def test_repeated_denials_are_the_ones_the_python_limiter_builds(tmp_path, backend, keys):
    """The compiled store keeps each key's denial reasons once built; every later denial of
    that key (with the request's own errors) equals what the pure-Python store's limiter
    builds for it, however many keys come and go."""
    from pdp.limits.memory import LockedMemoryStore

    fast = engine(tmp_path, backend, ERRING.replace("3 per 1h", "1 per 1h"), store=MemoryStore(FakeClock()))
    slow = engine(tmp_path, backend, ERRING.replace("3 per 1h", "1 per 1h"), store=LockedMemoryStore(FakeClock()))
    order = [f"id{k}" for k in range(keys)] * 3 + ["id0", "id1"]
    denied = 0
    for who in order:
        got, want = fast.decide(req(who)), slow.decide(req(who))
        assert _view(got) == _view(want), who
        denied += got.decision == "DENY"
    assert denied == len(order) - keys
    assert _view(fast.decide(req("id0")))[2] == [("pay.tiered", "identity.tier is missing")]
