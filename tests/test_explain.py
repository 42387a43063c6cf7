"""``Engine.explain`` (SPEC §4): every rule considered, and why it did or did not apply.

An explanation lists each rule with its id, effect, status (``applied``, ``not applied``,
``error``, ``not evaluated``) and a note in words; each clause it evaluated (target, when,
unless) is a tree of the sub-expressions evaluated, each with its value or its error.
"""

from __future__ import annotations

import json

import pytest
from conftest import request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import load_policy_set, policy_set_models, requests

PAYMENTS = """
@owner("sec")
policy payments {
  target resource.type == "payment"
  let fresh = age(identity.issued_at) < 1h

  @control("NHI7")
  forbid stale
    unless fresh
    reason "issued {age(identity.issued_at)}s ago"
  forbid cross_env
    when identity.env != resource.env
  permit billing
    when action.name in ["charge", "refund"] and identity.scopes contains "payments:write"
    reason "billing may {action.name}"
}

policy docs {
  target resource.type == "doc"
  permit read when action.name == "read"
}
"""

NOW = {"time": "2026-11-27T10:05:00Z"}
BILLING = {"env": "prod", "issued_at": "2026-11-27T10:00:00Z", "scopes": ["payments:write"]}
STATUSES = {"applied", "not applied", "error", "not evaluated"}


def charge(identity: dict | None = None, resource: dict | None = None) -> dict:
    return request({**BILLING, **(identity or {})}, "charge", {"type": "payment", "env": "prod", **(resource or {})},
                   NOW)


def traces(explanation) -> dict:
    return {t.rule: t for t in explanation.rules}


def clause(trace, name: str):
    """The trace node of one clause of a rule trace."""
    found = [node for clause_name, node in trace.clauses if clause_name == name]
    assert len(found) == 1, f"{trace.rule} has {len(found)} {name!r} clauses"
    return found[0]


def walk(node):
    yield node
    for child in node.children:
        yield from walk(child)


def node_for(root, text: str):
    """The first node of a trace tree whose expression text is ``text``."""
    for node in walk(root):
        if node.text == text:
            return node
    raise AssertionError(f"{text!r} is not in the trace: {[n.text for n in walk(root)]}")


def failing_leaf(root):
    """The innermost sub-expression that failed: it has an error and no child has one."""
    failed = [n for n in walk(root) if n.error is not None and not any(c.error is not None for c in n.children)]
    assert failed, "no failing node"
    return failed[0]


@pytest.fixture
def payments(make_engine):
    return make_engine(PAYMENTS)


# ---- every rule, with its status and a note --------------------------------------------------


def test_every_rule_is_reported_once_with_id_effect_status_and_note(payments):
    explanation = payments.explain(charge())
    assert explanation.decision.decision == "ALLOW"
    assert sorted(t.rule for t in explanation.rules) == sorted(payments.rule_ids)
    by_rule = traces(explanation)
    assert {rule: (t.effect, t.status) for rule, t in by_rule.items()} == {
        "payments.stale": ("forbid", "not applied"),
        "payments.cross_env": ("forbid", "not applied"),
        "payments.billing": ("permit", "applied"),
        "docs.read": ("permit", "not applied"),
    }
    assert "unless" in by_rule["payments.stale"].note
    assert "when" in by_rule["payments.cross_env"].note
    assert "target" in by_rule["docs.read"].note
    assert by_rule["payments.billing"].note
    assert by_rule["payments.billing"].message == "billing may charge"
    assert by_rule["payments.billing"].error is None


def test_a_forbid_that_cannot_be_evaluated_is_an_error_and_permits_are_not_evaluated(payments):
    explanation = payments.explain(charge(identity={"env": None}))
    d = explanation.decision
    assert d.decision == "DENY"
    by_rule = traces(explanation)
    cross = by_rule["payments.cross_env"]
    assert cross.status == "error"
    assert cross.error == "identity.env is missing"
    assert "fail closed" in cross.note
    for permit in ("payments.billing", "docs.read"):
        assert by_rule[permit].status == "not evaluated"
        assert by_rule[permit].clauses == []
        assert by_rule[permit].note
    assert [(e.rule, e.message) for e in d.errors] == [("payments.cross_env", "identity.env is missing")]


def test_a_permit_that_cannot_be_evaluated_does_not_apply(make_engine):
    engine = make_engine('policy p {\n  permit r when len(identity.level) > 2\n  permit s when false\n}')
    explanation = engine.explain(request({"level": 3}, context=NOW))
    r, s = traces(explanation)["p.r"], traces(explanation)["p.s"]
    assert r.status == "error" and "does not apply" in r.note
    assert r.error == "len expects a string, list or map, got number"
    assert s.status == "not applied"
    assert explanation.decision.decision == "DENY"
    assert [x.rule for x in explanation.decision.reasons] == ["default"]


def test_a_failing_target_is_reported_for_every_rule_of_its_policy(make_engine):
    engine = make_engine('policy p {\n  target resource.env == "prod" and lower(resource.owner) == "a"\n'
                         "  forbid f\n  permit r\n}")
    explanation = engine.explain(request(resource={"env": "prod", "owner": 7}, context=NOW))
    by_rule = traces(explanation)
    message = "lower expects a string, got number"
    assert by_rule["p.f"].status == "error" and by_rule["p.f"].error == message
    target = clause(by_rule["p.f"], "target")
    assert target.error == message
    assert failing_leaf(target).text == "lower(resource.owner)"
    assert node_for(target, 'resource.env == "prod"').value is True
    assert by_rule["p.r"].status == "not evaluated"
    # The same target, evaluated for a second rule, reports the same failure.
    engine = make_engine('policy p {\n  target lower(resource.owner) == "a"\n  permit r1\n  permit r2\n}')
    explanation = engine.explain(request(resource={"owner": 7}, context=NOW))
    for trace in explanation.rules:
        assert trace.status == "error" and trace.error == message
        assert clause(trace, "target").error == message


# ---- the failing sub-expression and its message -----------------------------------------------


@pytest.mark.parametrize(
    "when, identity, failing, message",
    [
        ("identity.env != resource.env", {}, "identity.env", "identity.env is missing"),
        ("len(identity.level) > 2", {"level": 3}, "len(identity.level)",
         "len expects a string, list or map, got number"),
        ('identity.level < "3"', {"level": 3}, 'identity.level < "3"', "cannot compare number with string using <"),
        ("context.source_ip in cidr(\"10.0.0.0/8\")", {}, 'context.source_ip in cidr("10.0.0.0/8")',
         "'nope' is not an IP address"),
        ("age(identity.issued_at) < 1h", {"issued_at": "yesterday"}, "age(identity.issued_at)",
         "'yesterday' is not an RFC 3339 time"),
        ('data.roles[identity.id] == "admin"', {}, "data.roles[identity.id]", 'data.roles["svc"] is missing'),
    ],
)
def test_the_failing_sub_expression_is_marked_with_its_error(make_engine, when, identity, failing, message):
    engine = make_engine(f"policy p {{\n  forbid f when {when}\n}}", data={"roles": {"alice": "admin"}})
    explanation = engine.explain(request(identity, context={**NOW, "source_ip": "nope"}))
    trace = traces(explanation)["p.f"]
    assert trace.status == "error" and trace.error == message
    when_node = clause(trace, "when")
    assert when_node.error == message
    leaf = failing_leaf(when_node)
    assert (leaf.text, leaf.error) == (failing, message)
    assert explanation.decision.reasons[0].message == f"failed closed: {message}"


def test_a_non_boolean_condition_names_the_clause(make_engine):
    engine = make_engine("policy p {\n  permit r when identity.env\n}")
    trace = traces(engine.explain(request({"env": "prod"}, context=NOW)))["p.r"]
    assert trace.status == "error"
    assert trace.error == "when expects a boolean, got string"
    assert clause(trace, "when").value == "prod"


# ---- values of the evaluated sub-expressions ---------------------------------------------------


def test_values_of_evaluated_sub_expressions(payments):
    by_rule = traces(payments.explain(charge()))
    unless = clause(by_rule["payments.stale"], "unless")
    assert unless.text == "fresh" and unless.value is True
    assert node_for(unless, "age(identity.issued_at)").value == 300
    assert node_for(unless, "identity.issued_at").value == "2026-11-27T10:00:00Z"
    when = clause(by_rule["payments.billing"], "when")
    assert node_for(when, "action.name").value == "charge"
    assert node_for(when, "identity.scopes").value == ["payments:write"]
    assert node_for(when, 'identity.scopes contains "payments:write"').value is True
    target = clause(by_rule["docs.read"], "target")
    assert (target.value, node_for(target, "resource.type").value) == (False, "payment")


def test_short_circuited_operands_are_not_in_the_trace(make_engine):
    engine = make_engine('policy p {\n  permit r when action.name == "read" and identity.level > 1\n'
                         '  permit s when action.name == "charge" or identity.level > 1\n}')
    by_rule = traces(engine.explain(request(action="charge", context=NOW)))
    for rule in ("p.r", "p.s"):
        texts = [n.text for n in walk(clause(by_rule[rule], "when"))]
        assert "identity.level > 1" not in texts and "identity.level" not in texts
    assert by_rule["p.r"].status == "not applied" and by_rule["p.s"].status == "applied"


def test_defined_records_the_error_it_swallows(make_engine):
    engine = make_engine("policy p {\n  permit r when not defined(identity.env)\n}")
    trace = traces(engine.explain(request(context=NOW)))["p.r"]
    assert trace.status == "applied"
    defined = node_for(clause(trace, "when"), "defined(identity.env)")
    assert defined.value is False
    assert node_for(defined, "identity.env").error == "identity.env is missing"


def test_a_rule_without_conditions_and_literal_clauses(make_engine):
    engine = make_engine("policy p {\n  permit always\n  permit literal when true unless false\n}")
    by_rule = traces(engine.explain(request(context=NOW)))
    assert by_rule["p.always"].status == "applied" and by_rule["p.always"].clauses == []
    literal = by_rule["p.literal"]
    assert literal.status == "applied"
    assert [(name, node.value) for name, node in literal.clauses] == [("when", True), ("unless", False)]


def test_a_failing_interpolation_is_shown_as_in_the_decision(make_engine):
    engine = make_engine('policy p {\n  permit r reason "level {identity.level}, env {identity.env}"\n}')
    explanation = engine.explain(request({"level": 2}, context=NOW))
    assert traces(explanation)["p.r"].message == "level 2, env {?}"
    assert explanation.decision.reasons[0].message == "level 2, env {?}"


# ---- to_dict and render -----------------------------------------------------------------------


def test_to_dict_is_json_with_every_rule_and_clause(payments):
    for req in (charge(), charge(identity={"env": None}), charge(resource={"type": "doc"})):
        explanation = payments.explain(req)
        out = json.loads(json.dumps(explanation.to_dict()))
        assert out["decision"] == json.loads(json.dumps(explanation.decision.to_dict()))
        assert [r["rule"] for r in out["rules"]] == [t.rule for t in explanation.rules]
        for rule in out["rules"]:
            assert {"rule", "effect", "status", "note", "clauses"} <= set(rule)
            assert rule["status"] in STATUSES and rule["note"]
            for c in rule["clauses"]:
                assert c["clause"] in ("target", "when", "unless")
                assert ("value" in c) != ("error" in c)
    out = payments.explain(charge(identity={"env": None})).to_dict()
    cross = next(r for r in out["rules"] if r["rule"] == "payments.cross_env")
    assert cross["error"] == "identity.env is missing"
    when = next(c for c in cross["clauses"] if c["clause"] == "when")
    assert when["error"] == "identity.env is missing"
    assert when["children"][0] == {"expr": "identity.env", "error": "identity.env is missing"}


def test_cidr_sets_in_values_are_shown_as_their_networks(make_engine):
    engine = make_engine('policy p {\n  let nets = [cidr("10.0.0.0/8"), "x"]\n  permit r when nets == []\n'
                         '  permit s when cidr("fd00::/8") == cidr("fd00::/8")\n}')
    explanation = engine.explain(request(context=NOW))
    out = json.loads(json.dumps(explanation.to_dict()))
    r = next(rule for rule in out["rules"] if rule["rule"] == "p.r")
    assert r["clauses"][0]["children"][0] == {
        "expr": "nets", "value": [["10.0.0.0/8"], "x"],
        "children": [{"expr": '[cidr("10.0.0.0/8"), "x"]', "value": [["10.0.0.0/8"], "x"],
                      "children": [{"expr": 'cidr("10.0.0.0/8")', "value": ["10.0.0.0/8"]}]}],
    }
    text = explanation.render()
    assert '[{"cidr": ["10.0.0.0/8"]}, "x"]' in text
    assert '{"cidr": ["fd00::/8"]}' in text


def test_render_mentions_the_decision_each_rule_and_each_error(payments):
    for req, decision in ((charge(), "ALLOW"), (charge(identity={"env": None}), "DENY")):
        explanation = payments.explain(req)
        text = explanation.render()
        assert text.splitlines()[0].startswith(decision)
        assert explanation.decision.revision in text.splitlines()[0]
        for trace in explanation.rules:
            assert f"{trace.effect} {trace.rule}: {trace.status.upper()}" in text
        for reason in explanation.decision.reasons:
            assert reason.rule in text and reason.message in text
        for error in explanation.decision.errors:
            assert error.message in text
    text = payments.explain(charge()).render()
    assert 'identity.scopes  ⇒  ["payments:write"]' in text
    assert "age(identity.issued_at)  ⇒  300" in text


def test_explain_decides_like_decide(payments):
    for req in (charge(), charge(identity={"env": None}), charge(identity={"issued_at": None}),
                charge(resource={"type": "doc"})):
        assert payments.explain(req).decision == payments.decide(req)


def test_explain_rejects_a_malformed_request(payments):
    import pdp

    with pytest.raises(pdp.RequestError) as err:
        payments.explain({"identity": {"type": "t"}, "action": "a", "resource": {"type": "r"}})
    assert err.value.path == "identity.id"


# ---- over generated policy sets ----------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_set_models(), st.lists(requests(), min_size=1, max_size=4))
def test_explanations_of_generated_policy_sets(model, reqs):
    """For any policy set and request: the explanation is JSON, its statuses match the
    decision (applied or failed forbids are the forbid reasons, failed rules are the errors,
    permits are not evaluated exactly when a forbid applied), and render() names every rule."""
    engine = load_policy_set(model.texts())
    for req in reqs:
        explanation = engine.explain(req)
        d = explanation.decision
        json.dumps(explanation.to_dict())
        text = explanation.render()
        assert text.startswith(d.decision)
        assert sorted(t.rule for t in explanation.rules) == sorted(engine.rule_ids)
        forbid_applied = {t.rule for t in explanation.rules if t.effect == "forbid" and t.status in ("applied", "error")}
        for trace in explanation.rules:
            assert trace.status in STATUSES and trace.note
            assert f"{trace.effect} {trace.rule}: {trace.status.upper()}" in text
            assert (trace.status == "not evaluated") == (trace.effect == "permit" and bool(forbid_applied))
            assert (trace.error is not None) == (trace.status == "error")
        assert [e.rule for e in d.errors] == [t.rule for t in explanation.rules if t.status == "error"]
        applied = {t.rule: t.message for t in explanation.rules if t.status == "applied"}
        if forbid_applied:
            assert {r.rule for r in d.reasons} == forbid_applied
        elif applied:
            assert {r.rule: r.message for r in d.reasons} == applied
        else:
            assert [r.rule for r in d.reasons] == ["default"]
            # The closest permits: exactly those whose target held (or that have none), each
            # with a failing node inside its stopping clause that errored or took the stopping value.
            held = {t.rule for t in explanation.rules
                    if t.effect == "permit" and t.clauses and t.clauses[-1][0] != "target"}
            assert {m.trace.rule for m in explanation.closest} == held
            for miss in explanation.closest:
                stopping_clause = miss.trace.clauses[-1][1]
                assert any(node is miss.failing for node in walk(stopping_clause))
                assert miss.failing.error is not None or miss.trace.status == "error" or \
                    miss.failing.value is (miss.clause == "unless")


# ---- values are cut for people ------------------------------------------------------------------


INVENTORY = {f"spiffe://acme.prod/ns/team{i}/sa/api": {"team": f"team{i}", "owner": f"owner{i}@acme.example",
                                                        "scopes": ["inventory:read"] * 3} for i in range(2000)}


def test_a_large_data_file_is_cut_in_the_trace_and_in_json(make_engine, tmp_path, capsys):
    """A 2,000-entry inventory: no trace line over 300 characters, in pdp eval --explain too."""
    from pdp.cli import main

    policy = ('policy p {\n  let entry = data.inventory[identity.id]\n'
              '  permit r when entry.team == "warehouse" and action.name == "read"\n'
              '  permit s when data.inventory == data.blocked\n'  # shows the whole inventory
              '  forbid f when identity.id in data.blocked reason "{identity.note} blocked"\n}')
    engine = make_engine(policy, data={"inventory": INVENTORY, "blocked": []})
    req = request({"id": "spiffe://acme.prod/ns/team7/sa/api", "note": "n" * 5000}, context=NOW)
    text = engine.explain(req).render()
    assert max(len(line) for line in text.splitlines()) <= 300
    assert "… (2000 entries)" in text
    out = json.dumps(engine.explain(req).to_dict())
    assert len(out) < 20_000  # the inventory alone is over 200,000 characters of JSON
    s = traces(engine.explain(req))["p.s"]
    node = node_for(clause(s, "when"), "data.inventory")
    assert node.value is not None and len(node.value) == 2000  # the API keeps the value itself
    shown = next(c for c in s.to_dict()["clauses"][0]["children"] if c["expr"] == "data.inventory")
    assert "value" not in shown and shown["value_preview"].endswith("… (2000 entries)")
    assert len(shown["value_preview"]) <= 200 + len("… (2000 entries)")
    request_file = tmp_path / "req.json"
    request_file.write_text(json.dumps(req))
    policies = tmp_path / "set0"
    assert main(["eval", str(policies), "--request", str(request_file), "--explain"]) == 0
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 300


def test_short_values_are_shown_whole_and_long_strings_say_their_length(make_engine):
    engine = make_engine('policy p {\n  permit r when identity.note == "x" and identity.tags == []\n}')
    text = engine.explain(request({"note": "é" * 500, "tags": ["a"]}, context=NOW)).render()
    assert '"' + "é" * 199 + "… (500 characters)" in text
    text = engine.explain(request({"note": "x", "tags": ["a", "b"]}, context=NOW)).render()
    assert 'identity.tags  ⇒  ["a", "b"]' in text


def test_a_long_reason_message_is_cut_in_the_trace_only(make_engine):
    engine = make_engine('policy p {\n  permit r reason "{identity.note}"\n}')
    explanation = engine.explain(request({"note": "m" * 1000}, context=NOW))
    assert explanation.decision.reasons[0].message == "m" * 1000
    assert "because permit p.r: " + "m" * 200 + "…\n" in explanation.render() + "\n"


# ---- a default DENY starts with the permits that came closest ------------------------------------


CLOSE = """
policy api {
  target resource.type == "doc"
  let senior = identity.level > 3
  permit far when action.name == "write" and identity.team == "docs"
  permit near when identity.team == "docs" and senior and action.name == "write"
  permit nearest when identity.team == "docs" unless identity.suspended or identity.on_leave
  permit broken when identity.team == "docs" and identity.clearance > 2
}

policy other {
  target resource.type == "payment"
  permit never
}
"""


def test_a_default_deny_lists_the_closest_permits_first(make_engine):
    engine = make_engine(CLOSE)
    req = request({"team": "docs", "level": 5, "suspended": False, "on_leave": True}, action="read", context=NOW)
    explanation = engine.explain(req)
    assert [r.rule for r in explanation.decision.reasons] == ["default"]
    closest = explanation.closest
    assert [(m.trace.rule, m.clause) for m in closest] == [
        ("api.nearest", "unless"), ("api.near", "when"), ("api.broken", "when"), ("api.far", "when")]
    by_rule = {m.trace.rule: m.failing for m in closest}
    assert (by_rule["api.nearest"].text, by_rule["api.nearest"].value) == ("identity.on_leave", True)
    assert (by_rule["api.near"].text, by_rule["api.near"].value) == ('action.name == "write"', False)
    assert (by_rule["api.broken"].text, by_rule["api.broken"].error) == ("identity.clearance",
                                                                         "identity.clearance is missing")
    assert (by_rule["api.far"].text, by_rule["api.far"].value) == ('action.name == "write"', False)
    assert "other.never" not in by_rule  # its target did not hold
    lines = explanation.render().splitlines()
    assert lines[:4] == ["DENY  (revision " + explanation.decision.revision + ")",
                         "  because forbid default: no permit rule matched",
                         "  error in api.broken: identity.clearance is missing", ""]
    assert lines[4] == "closest permits (their target held; the first got furthest):"
    assert lines[5] == "  permit api.nearest: unless is true, because"
    assert lines[6] == "    identity.on_leave  ⇒  true"
    assert "  permit api.broken: could not be evaluated, because" in lines
    assert "    identity.clearance  ⇒  error: identity.clearance is missing" in lines
    assert lines.index("  permit api.nearest: unless is true, because") < lines.index(
        "permit api.nearest: NOT APPLIED — unless is true")  # the full trace follows
    out = explanation.to_dict()
    assert list(out) == ["decision", "closest", "rules"]
    assert out["closest"][0] == {"rule": "api.nearest", "status": "not applied", "clause": "unless",
                                 "failing": {"expr": "identity.on_leave", "value": True}}
    assert out["closest"][2]["failing"] == {"expr": "identity.clearance", "error": "identity.clearance is missing"}


def test_the_failing_sub_condition_of_a_let_is_its_expression(make_engine):
    engine = make_engine(CLOSE)
    req = request({"team": "docs", "level": 1, "suspended": True}, action="read", context=NOW)
    near = {m.trace.rule: m.failing for m in engine.explain(req).closest}["api.near"]
    assert (near.text, near.value) == ("identity.level > 3", False)


def test_no_closest_section_unless_the_deny_is_the_default(make_engine, payments):
    engine = make_engine(CLOSE)
    allowed = engine.explain(request({"team": "docs", "level": 5}, action="write", context=NOW))
    assert allowed.decision.decision == "ALLOW" and allowed.closest == []
    assert "closest" not in allowed.render() and "closest" not in allowed.to_dict()
    forbidden = payments.explain(charge(identity={"env": "dev"}))
    assert forbidden.decision.decision == "DENY" and forbidden.closest == []
    assert "closest" not in forbidden.render() and "closest" not in forbidden.to_dict()


def test_when_no_permit_target_held_the_trace_says_so(make_engine):
    engine = make_engine(CLOSE)
    explanation = engine.explain(request(resource={"type": "image"}, context=NOW))
    assert explanation.closest == []
    assert explanation.render().splitlines()[3] == "closest permits: none (no permit rule's target held)"
    assert explanation.to_dict()["closest"] == []


def test_at_most_five_closest_permits_are_listed(make_engine):
    rules = "\n".join(f'  permit r{i} when action.name == "w{i}"' for i in range(8))
    explanation = make_engine(f"policy p {{\n{rules}\n}}").explain(request(context=NOW))
    assert len(explanation.closest) == 8
    text = explanation.render()
    assert text.count(", because") == 5
    assert "  … and 3 more (every rule is below)" in text
