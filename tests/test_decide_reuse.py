"""The compiled evaluator reuses one context from a ``decide`` to the next (and writes a valid
request's roots into it without a tuple between): a request decided after any other, with or
without a token, after a malformed request or through another entry point, decides exactly as
the reference evaluator does, and the context kept between requests holds none of the last
request's values.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdp import reference, runtime
from pdp.errors import RequestError
from pdp.request import Request, parse_request

from strategies import TOKEN_VIEWS, load_policy_set, policy_sets, requests
from test_differential import _view
from test_skeleton import PADDING

EVALUATORS = sorted(runtime.EVALUATORS)

#: Requests request.py refuses (RequestError), between valid ones.
_MALFORMED = st.sampled_from([
    {"identity": {"type": "user", "id": "u"}, "action": "read"},  # no resource
    {"identity": {"type": "user"}, "action": "read", "resource": {"type": "t"}},  # no identity.id
    {"identity": {"type": "user", "id": "u"}, "action": "", "resource": {"type": "t"}},
    {"identity": {"type": "user", "id": "u"}, "action": "read", "resource": {"type": "t"}, "extra": {}},
    ["not", "a", "map"],
])

_STEPS = st.lists(st.tuples(st.one_of(requests(), _MALFORMED), TOKEN_VIEWS,
                            st.sampled_from(["decide", "decide_claims", "decide_parsed"])),
                  min_size=2, max_size=10)


def _run_steps(engine, steps) -> None:
    for name in EVALUATORS:
        evaluator = runtime.EVALUATORS[name](engine.program)
        for raw, token, entry in steps:
            try:
                parsed = parse_request(raw)
            except RequestError:
                with pytest.raises(RequestError):
                    evaluator.decide(raw, token)
                continue
            want = _view(reference.decide(engine.policy_set, Request(parsed.attrs, parsed.arrival, token),
                                          engine.revision))
            if entry == "decide":
                got = evaluator.decide(raw, token)
            elif entry == "decide_claims":
                got = evaluator.decide_claims(raw, token)[0]
            else:
                got = evaluator.decide_parsed(parsed.attrs, parsed.arrival, token)
            assert _view(got) == want, f"{name}.{entry} differs for {raw!r} with token {token!r}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=policy_sets(), steps=_STEPS)
def test_requests_in_a_row_decide_as_the_reference(texts, steps):
    _run_steps(load_policy_set(texts), steps)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=policy_sets(min_policies=2, max_policies=6), steps=_STEPS)
def test_requests_in_a_row_decide_as_the_reference_on_the_skeleton(texts, steps):
    """Leaves of many rules (the reasons gathered from the skeleton's outcomes)."""
    engine = load_policy_set([PADDING, *texts])
    if "compiled" in runtime.EVALUATORS:
        assert runtime.EVALUATORS["compiled"](engine.program).flat
    _run_steps(engine, steps)


@pytest.mark.skipif("compiled" not in runtime.EVALUATORS, reason="the extension is not built")
@pytest.mark.parametrize("padded", [False, True])
def test_the_kept_context_holds_nothing_of_the_last_request(padded):
    engine = load_policy_set([PADDING] * padded + [
        'policy p {\n  permit r when token.sub == "a" and context.env == "prod" reason "{identity.id}"\n}\n'])
    evaluator = runtime.EVALUATORS["compiled"](engine.program)
    roots = {"identity": {"type": "user", "id": "u"}, "action": {"name": "read"}, "resource": {"type": "t"},
             "context": {"env": "prod"}}
    token = {"sub": "a"}
    before = [sys.getrefcount(v) for v in roots.values()] + [sys.getrefcount(token)]
    for entry in ("decide", "decide_claims"):
        for _ in range(3):
            decision = getattr(evaluator, entry)(dict(roots), token)
            if entry == "decide_claims":
                decision = decision[0]
            assert decision.decision == "ALLOW" and decision.reasons[0].message == "u"
            assert [sys.getrefcount(v) for v in roots.values()] + [sys.getrefcount(token)] == before
    # The token of one request is not the next one's.
    assert evaluator.decide(dict(roots)).decision == "DENY"


@pytest.mark.skipif("compiled" not in runtime.EVALUATORS, reason="the extension is not built")
def test_the_kept_context_holds_no_address_of_the_last_request():
    engine = load_policy_set(['policy p {\n  permit r when context.ip in cidr("10.0.0.0/8")\n}\n'])
    evaluator = runtime.EVALUATORS["compiled"](engine.program)
    address = "".join(["10.1.2.", "3"])  # a string of this test's own, not an interned literal
    before = sys.getrefcount(address)
    request = {"identity": {"type": "user", "id": "u"}, "action": {"name": "read"}, "resource": {"type": "t"},
               "context": {"ip": address}}
    assert evaluator.decide(request).decision == "ALLOW"
    del request
    assert sys.getrefcount(address) == before
    outside = {"identity": {"type": "user", "id": "u"}, "action": {"name": "read"}, "resource": {"type": "t"},
               "context": {"ip": "192.168.0.1"}}
    assert evaluator.decide(outside).decision == "DENY"
