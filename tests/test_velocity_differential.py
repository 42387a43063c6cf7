"""Differential tests of limit rules (SPEC §9): every evaluator says which limits an ALLOW
meets, with the same key values and the same fail-closed errors as the reference evaluator,
with and without a verified token (the root ``token``, usable in keys and conditions);
settled against stores on one fixed clock, the final decisions agree too."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdp import reference, runtime
from pdp.compile import compile_program
from pdp.limits import Limiter, MemoryStore
from pdp.request import Request, parse_request

from strategies import TOKEN_VIEWS, load_policy_set, policy_sets, requests

EVALUATORS = sorted(runtime.EVALUATORS)


def _view(decision) -> tuple:
    return (decision.decision,
            [(r.rule, r.effect, r.message, dict(r.annotations)) for r in decision.reasons],
            [(e.rule, e.message) for e in decision.errors])


def _fixed_clock() -> int:
    return 1_000_000_000_000


def _reference_claims(engine, raw, token):
    parsed = parse_request(raw)
    return reference.decide_claims(engine.policy_set, Request(parsed.attrs, parsed.arrival, token), engine.revision)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=policy_sets(max_limits=3), reqs=st.lists(st.tuples(requests(), TOKEN_VIEWS), min_size=1, max_size=8))
def test_evaluators_meet_the_same_limits_as_the_reference(texts, reqs):
    engine = load_policy_set(texts)
    program = engine.program
    flat = compile_program(engine.policy_set, engine.revision, indexed=False)
    evaluators = {(name, kind): runtime.EVALUATORS[name](p)
                  for name in EVALUATORS for kind, p in (("indexed", program), ("flat", flat))}
    settled = {key: Limiter(program.limits, MemoryStore(_fixed_clock)) for key in [*evaluators, "reference"]}
    for raw, token in reqs:
        decision, claims = _reference_claims(engine, raw, token)
        want = (_view(decision), claims)
        final = _view(settled["reference"].settle(decision, claims))
        for key, evaluator in evaluators.items():
            got_decision, got_claims = evaluator.decide_claims(raw, token)
            assert (_view(got_decision), got_claims) == want, \
                f"{key} differs from the reference for {raw!r} with token {token!r}"
            parsed = parse_request(raw)
            got_decision, got_claims = evaluator.decide_parsed_claims(parsed.attrs, parsed.arrival, token)
            assert (_view(got_decision), got_claims) == want, f"{key}.decide_parsed_claims differs for {raw!r}"
            assert _view(settled[key].settle(got_decision, got_claims)) == final
    # Batches: the same pairs, in order, each request with its own token.
    raws, tokens = [raw for raw, _ in reqs], [token for _, token in reqs]
    want = [(_view(d), c) for d, c in (_reference_claims(engine, raw, token) for raw, token in reqs)]
    for key, evaluator in evaluators.items():
        pairs = evaluator.decide_many_claims(raws, tokens)
        assert [(_view(d), c) for d, c in pairs] == want, key


def test_generated_limits_are_met_and_fail_on_a_fixed_sample():
    """Not vacuous: on a fixed sample (derandomized), ALLOWs meet limits with keys, and limits
    fail closed (measured: 70 and 110 of 874 requests)."""
    seen = {"keys": 0, "errors": 0}

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    @given(texts=policy_sets(max_limits=3), reqs=st.lists(requests(), min_size=1, max_size=8))
    def sample(texts, reqs):
        engine = load_policy_set(texts)
        for raw in reqs:
            _, claims = engine.decide_claims(raw)
            if claims:
                seen["keys"] += any(type(v) is tuple for _, v in claims)
                seen["errors"] += any(type(v) is str for _, v in claims)

    sample()
    assert seen["keys"] >= 30 and seen["errors"] >= 30, seen


_API = {"payment": {"read": {"scope": "p:r"}, "charge": {"scope": "p:w", "high_value": True}},
        "admin": {"update": {"scope": "a:w", "high_value": True}, "read": {"scope": "a:r", "high_value": "yes"}}}
_TABULATED = """
policy velocity {
  let operation = data.api[resource.type][action.name]
  permit known when defined(operation)
  forbid odd when defined(operation.high_value) and operation.high_value != true and operation.high_value != false
  limit high_value 2 per 1h by identity.id, resource.type
    when defined(operation.high_value) and operation.high_value == true
}
"""


def test_limit_conditions_are_tabulated_and_agree(tmp_path):
    """A limit's data lookup keyed by request attributes is tabulated as the rules' are (its
    condition a LOOKUP on resource.type, read after the phases in the same request context,
    whose CACHED slots it may share); its claims, errors and final decisions are the reference's."""
    import pdp
    from pdp.compile import ir

    from strategies import write_policy_set

    root = write_policy_set(tmp_path / "s", [_TABULATED], {"api": _API})
    engine = pdp.load(root, backend="reference")
    (limit,) = engine.program.limits
    from pdp.compile.cse import children

    def ops(node):
        return {node[0]}.union(*(ops(k) for k in children(node)))

    assert ir.LOOKUP in ops(limit.when)
    raws = [{"identity": {"type": "w", "id": who}, "action": action, "resource": {"type": rtype}}
            for who in ("a", "b") for rtype in ("payment", "admin", "other")
            for action in ("read", "charge", "update", "delete")]
    want = [(_view(d), c) for d, c in (_reference_claims(engine, raw, None) for raw in raws)]
    assert any(c for _, c in want)
    for name in EVALUATORS:
        e = pdp.load(root, backend=name)
        assert [(_view(d), c) for d, c in map(e.decide_claims, raws)] == want, name
        assert [(_view(d), c) for d, c in e._evaluator.decide_many_claims(raws)] == want, name
