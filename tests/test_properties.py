"""Properties of decisions (SPEC §1–§2, §4) over generated policy sets and requests.

The policy sets and requests come from ``tests/strategies.py``: statically valid programs
over a small attribute vocabulary, with evaluation errors on purpose (missing attributes,
wrong types, bad times and IPs), and requests whose optional attributes are sometimes
missing, ``null`` or of the wrong type. Every request carries a ``context.time`` so that
two evaluations of it agree.

``PDP_PROPERTY_EXAMPLES`` sets the examples per property (default 60; the whole module then
runs in well under a minute).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import (
    DATA,
    PolicySetModel,
    conditions,
    load_policy_set,
    policy_models,
    policy_set_models,
    requests,
    write_policy_set,
)

import pdp
from pdp.decision import DEFAULT_REASON

EXAMPLES = int(os.environ.get("PDP_PROPERTY_EXAMPLES", "60"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REQUESTS = st.lists(requests(), min_size=1, max_size=6)
FAILED_CLOSED = "failed closed: "


# ---- helpers -----------------------------------------------------------------------------------


def effects_by_rule(model: PolicySetModel) -> dict[str, str]:
    return {f"{p.name}.{r.name}": r.effect for p in model.policies for r in p.rules}


def reason_ids(decision: pdp.Decision) -> list[str]:
    return [r.rule for r in decision.reasons]


def reason_bag(decision: pdp.Decision) -> Counter:
    """The reasons as a multiset (annotations are mappings, so reasons are not hashable)."""
    return Counter((r.rule, r.effect, r.message, tuple(sorted(r.annotations.items()))) for r in decision.reasons)


def error_bag(decision: pdp.Decision) -> Counter:
    return Counter((e.rule, e.message) for e in decision.errors)


def same_outcome(a: pdp.Decision, b: pdp.Decision) -> bool:
    """Equal decisions, reasons and errors (the revision and timing aside)."""
    return a.decision == b.decision and a.reasons == b.reasons and a.errors == b.errors


def load_single(*policies: str) -> pdp.Engine:
    return load_policy_set(["\n\n".join(policies) + "\n"])


# ---- deny overrides, default deny, fail closed (SPEC §2) --------------------------------------


@PROPERTY
@given(policy_set_models(), REQUESTS)
def test_deny_overrides_and_fail_closed(model, reqs):
    """A forbid among the reasons means DENY; DENY reasons are all forbids (or the default);
    every forbid that could not be evaluated is a ``failed closed:`` reason naming its error,
    and when a forbid applies, no permit was evaluated (so no permit errors)."""
    engine = load_policy_set(model.texts())
    effects = effects_by_rule(model)
    for request in reqs:
        d = engine.decide(request)
        if any(r.effect == "forbid" for r in d.reasons):
            assert d.decision == "DENY"
        if d.decision == "DENY":
            assert all(r.effect == "forbid" for r in d.reasons)
        forbid_errors = {e.rule: e.message for e in d.errors if effects[e.rule] == "forbid"}
        failed_closed = {r.rule: r.message for r in d.reasons if r.message.startswith(FAILED_CLOSED)}
        assert failed_closed == {rule: FAILED_CLOSED + message for rule, message in forbid_errors.items()}
        if d.reasons[0].rule != "default" and d.decision == "DENY":
            assert all(effects[e.rule] == "forbid" for e in d.errors), "permits ran after a forbid applied"


@PROPERTY
@given(policy_set_models(), REQUESTS)
def test_allow_means_only_permits(model, reqs):
    """ALLOW ⇒ every reason is a permit and no forbid rule is among the errors."""
    engine = load_policy_set(model.texts())
    effects = effects_by_rule(model)
    for request in reqs:
        d = engine.decide(request)
        assert d.allowed == (d.decision == "ALLOW")
        if d.allowed:
            assert d.reasons and all(r.effect == "permit" for r in d.reasons)
            assert all(effects[e.rule] == "permit" for e in d.errors)


@PROPERTY
@given(policy_set_models(), REQUESTS)
def test_an_always_applying_forbid_denies_everything(model, reqs):
    """Adding ``forbid x`` (no conditions) turns every decision into DENY with it among the
    reasons; the other reasons are the forbids that applied before, the errors those of forbids."""
    base = load_policy_set(model.texts())
    extended = load_policy_set(model.texts() + ["policy zz_always {\n  forbid x\n}\n"])
    effects = effects_by_rule(model)
    added = pdp.Reason("zz_always.x", "forbid", "", {})
    for request in reqs:
        before, after = base.decide(request), extended.decide(request)
        assert after.decision == "DENY"
        assert added in after.reasons
        assert list(after.reasons) == [r for r in before.reasons if r.rule != "default" and r.effect == "forbid"] \
            + [added]
        assert list(after.errors) == [e for e in before.errors if effects[e.rule] == "forbid"]


@PROPERTY
@given(policy_set_models(), st.data(), REQUESTS)
def test_adding_permits_never_lifts_a_forbid(model, data, reqs):
    """Adding a policy of permit rules leaves a DENY by forbid exactly as it was; an ALLOW
    stays ALLOW with its reasons first (the new policy is last in source order)."""
    extra = data.draw(policy_models("zz_extra", effects=("permit",)), label="extra permits")
    base = load_policy_set(model.texts())
    extended = load_policy_set(model.texts() + [extra.text()])
    for request in reqs:
        before, after = base.decide(request), extended.decide(request)
        if before.decision == "DENY" and before.reasons[0].rule != "default":
            assert same_outcome(before, after)
        elif before.allowed:
            assert after.allowed
            assert after.reasons[: len(before.reasons)] == before.reasons
            assert after.errors[: len(before.errors)] == before.errors
        else:  # denied by default: only the new permits can allow
            assert after.errors[: len(before.errors)] == before.errors
            if after.allowed:
                assert all(rule.startswith("zz_extra.") for rule in reason_ids(after))


@PROPERTY
@given(policy_set_models(effects=("forbid",)), REQUESTS)
def test_default_deny_without_permits(model, reqs):
    """With no permit rules every decision is DENY; the default reason comes alone, exactly
    when no forbid applied."""
    engine = load_policy_set(model.texts())
    for request in reqs:
        d = engine.decide(request)
        assert d.decision == "DENY"
        if DEFAULT_REASON in d.reasons:
            assert d.reasons == (DEFAULT_REASON,)
            assert d.reasons[0].to_dict() == {"rule": "default", "effect": "forbid",
                                              "message": "no permit rule matched", "annotations": {}}
        else:
            assert all(r.effect == "forbid" for r in d.reasons)


# ---- reasons and errors are well formed -------------------------------------------------------


@PROPERTY
@given(policy_set_models(), REQUESTS)
def test_reasons_and_errors_are_well_formed(model, reqs):
    """Reasons are never empty, name existing rules (or ``default``, alone), at most once each,
    sorted by source position, and carry the policy's annotations overridden by the rule's;
    errors name existing rules, at most once each; a reason without interpolation is its text."""
    engine = load_policy_set(model.texts())
    assert engine.rule_ids == model.rule_ids()
    position = {rule: i for i, rule in enumerate(engine.rule_ids)}
    annotations = model.annotations_by_rule()
    literal = {f"{p.name}.{r.name}": (r.reason.literal if r.reason else "") for p in model.policies for r in p.rules}
    for request in reqs:
        d = engine.decide(request)
        assert d.reasons
        assert d.revision == engine.revision
        ids = reason_ids(d)
        if "default" in ids:
            assert d.reasons == (DEFAULT_REASON,)
        else:
            assert all(rule in position for rule in ids)
            assert [position[r] for r in ids] == sorted(position[r] for r in ids)
            assert len(set(ids)) == len(ids)
            for reason in d.reasons:
                assert dict(reason.annotations) == annotations[reason.rule]
                if not reason.message.startswith(FAILED_CLOSED) and literal[reason.rule] is not None:
                    assert reason.message == literal[reason.rule]
        error_rules = [e.rule for e in d.errors]
        assert all(rule in position for rule in error_rules)
        assert len(set(error_rules)) == len(error_rules)
        assert all(e.message for e in d.errors)
        json.dumps(d.to_dict())


@PROPERTY
@given(policy_set_models(), REQUESTS)
def test_interpolation_never_changes_the_decision(model, reqs):
    """The same policies without their reasons decide the same, with the same rules as reasons
    and the same errors (SPEC §1: a failing interpolation renders as ``{?}``)."""
    with_reasons = load_policy_set(model.texts())
    without = load_policy_set(model.texts(with_reasons=False))
    for request in reqs:
        a, b = with_reasons.decide(request), without.decide(request)
        assert a.decision == b.decision
        assert reason_ids(a) == reason_ids(b)
        assert a.errors == b.errors
        for reason in b.reasons:
            if reason.rule != "default" and not reason.message.startswith(FAILED_CLOSED):
                assert reason.message == ""


# ---- expressions: double negation and short-circuits ------------------------------------------


@PROPERTY
@given(conditions(), REQUESTS)
def test_double_negation(condition, reqs):
    """``when not not (e)`` decides exactly like ``when e``, with errors in exactly the same
    cases. The messages are the same except when ``e`` yields a non-boolean: ``when`` then
    says "when expects a boolean, got T" and the inner ``not`` says that it expects one."""
    plain = load_single(f'policy p {{\n  permit r\n    when {condition}\n    reason "yes"\n}}')
    doubled = load_single(f'policy p {{\n  permit r\n    when not not ({condition})\n    reason "yes"\n}}')
    for request in reqs:
        a, b = plain.decide(request), doubled.decide(request)
        assert a.decision == b.decision
        assert a.reasons == b.reasons
        assert [e.rule for e in a.errors] == [e.rule for e in b.errors]
        for x, y in zip(a.errors, b.errors):
            if x.message != y.message:
                got = re.fullmatch(r"when expects a boolean, got (.+)", x.message)
                assert got and re.fullmatch(rf"not expects (a boolean|booleans), got {re.escape(got[1])}", y.message)


@PROPERTY
@given(conditions(), REQUESTS)
def test_short_circuit(condition, reqs):
    """``false and (E)`` and ``true or (E)`` never evaluate E, so never error (for a permit or
    a forbid); ``(E) and false`` errors exactly when E errors or is not a boolean, and then
    with E's own message when E errors."""
    engine = load_single(
        "policy sc {\n"
        f"  permit and_first when false and ({condition})\n"
        f"  permit or_first when true or ({condition})\n"
        "}",
        f"policy fsc {{\n  forbid never when false and ({condition})\n}}",
    )
    late = load_single(f"policy late {{\n  permit r when ({condition}) and false\n}}")
    # E errors ⇔ this probe errors; E is a boolean ⇔ it applies (``==`` itself never errors).
    probe = load_single(f"policy probe {{\n  permit r when ({condition}) == true or ({condition}) == false\n}}")
    for request in reqs:
        d = engine.decide(request)
        assert d.errors == ()
        assert d.decision == "ALLOW" and reason_ids(d) == ["sc.or_first"]
        late_d, probe_d = late.decide(request), probe.decide(request)
        assert late_d.decision == "DENY"
        assert bool(late_d.errors) == (not probe_d.allowed)
        if probe_d.errors:
            assert late_d.errors[0].message == probe_d.errors[0].message
        elif late_d.errors:
            assert late_d.errors[0].message.startswith("and expects booleans, got ")


# ---- order independence ----------------------------------------------------------------------


def _regroup(model: PolicySetModel, order: list[int], cuts: list[int]) -> list[str]:
    """The policies of ``model`` in ``order``, cut into files at ``cuts``."""
    policies = [model.policies[i] for i in order]
    bounds = [0] + sorted({c for c in cuts if 0 < c < len(policies)}) + [len(policies)]
    return ["\n\n".join(p.text() for p in policies[a:b]) + "\n" for a, b in itertools.pairwise(bounds)]


@PROPERTY
@given(policy_set_models(), st.data(), REQUESTS)
def test_order_independence(model, data, reqs):
    """Permuting policies within and across files gives the same decision and the same sets
    of reasons and errors; only their order follows the new source order."""
    n = len(model.policies)
    order = data.draw(st.permutations(range(n)), label="policy order")
    cuts = data.draw(st.lists(st.integers(1, max(1, n - 1)), max_size=3), label="file cuts")
    base = load_policy_set(model.texts())
    shuffled = load_policy_set(_regroup(model, order, cuts))
    position = {rule: i for i, rule in enumerate(shuffled.rule_ids)}
    for request in reqs:
        a, b = base.decide(request), shuffled.decide(request)
        assert a.decision == b.decision
        assert reason_bag(a) == reason_bag(b)
        assert error_bag(a) == error_bag(b)
        if b.reasons[0].rule != "default":
            assert [position[r] for r in reason_ids(b)] == sorted(position[r] for r in reason_ids(b))


@PROPERTY
@given(policy_set_models(min_policies=2), st.data(), REQUESTS)
def test_path_argument_order(model, data, reqs):
    """One file per policy, given to ``pdp.load`` as separate paths in any order: same
    decisions, same sets of reasons and errors."""
    texts = [p.text() + "\n" for p in model.policies]
    order = data.draw(st.permutations(range(len(texts))), label="argument order")
    with tempfile.TemporaryDirectory(prefix="pdp-order-") as tmp:
        root = Path(tmp)
        paths = []
        for i, text in enumerate(texts):
            paths.append(root / f"policy_{i}.pdl")
            paths[-1].write_text(text, encoding="utf-8")
        (root / "x.data.json").write_text(json.dumps(DATA["x"]), encoding="utf-8")
        data_path = root / "x.data.json"
        forward = pdp.load(*paths, data_path)
        backward = pdp.load(*[paths[i] for i in order], data_path)
    for request in reqs:
        a, b = forward.decide(request), backward.decide(request)
        assert a.decision == b.decision
        assert reason_bag(a) == reason_bag(b) and error_bag(a) == error_bag(b)


# ---- decide, explain and decide_many agree ----------------------------------------------------


@PROPERTY
@given(policy_set_models(), REQUESTS)
def test_explain_and_decide_many_agree_with_decide(model, reqs):
    """``explain(r).decision`` is ``decide(r)`` (decision, reasons, errors, revision), and
    ``decide_many(rs)`` is ``[decide(r) for r in rs]``."""
    engine = load_policy_set(model.texts())
    decisions = [engine.decide(r) for r in reqs]
    for request, decided in zip(reqs, decisions):
        explanation = engine.explain(request)
        assert explanation.decision == decided
        traced = [t.rule for t in explanation.rules]
        assert sorted(traced) == sorted(engine.rule_ids)
    assert engine.decide_many(reqs) == decisions


# ---- revision ----------------------------------------------------------------------------------


def _mutations(texts: list[str]) -> st.SearchStrategy[tuple[str, list[str], dict]]:
    """A change to a policy set: (what, new texts, new data)."""
    i = st.integers(0, len(texts) - 1)
    return st.one_of(
        i.map(lambda k: ("comment", texts[:k] + [texts[k] + "# changed\n"] + texts[k + 1:], DATA)),
        i.map(lambda k: ("whitespace", texts[:k] + [texts[k] + " "] + texts[k + 1:], DATA)),
        st.just(("new file", texts + ["# an empty policy file\n"], DATA)),
        st.just(("data", texts, {"x": {**DATA["x"], "limit": 3}})),
        st.just(("data key order", texts, {"x": dict(reversed(list(DATA["x"].items())))})),
        st.just(("more data", texts, {**DATA, "y": {}})),
    )


@PROPERTY
@given(policy_set_models(), st.data())
def test_revision(model, data):
    """The same files give the same revision wherever they are; any change to a file's bytes,
    a new file or changed data gives a different one."""
    texts = model.texts()
    first, second = load_policy_set(texts), load_policy_set(texts)
    assert first.revision == second.revision
    what, changed_texts, changed_data = data.draw(_mutations(texts), label="change")
    changed = load_policy_set(changed_texts, changed_data)
    assert changed.revision != first.revision, what


@PROPERTY
@given(policy_set_models(max_files=1))
def test_revision_depends_on_file_names(model):
    """The same bytes under another relative path is another policy set revision."""
    (text,) = model.texts()
    with tempfile.TemporaryDirectory(prefix="pdp-rev-") as tmp:
        a = write_policy_set(Path(tmp) / "a", [text])
        b = Path(tmp) / "b"
        b.mkdir()
        (b / "renamed.pdl").write_text(text, encoding="utf-8")
        (b / "x.data.json").write_text((a / "x.data.json").read_text(encoding="utf-8"), encoding="utf-8")
        assert pdp.load(a).revision != pdp.load(b).revision


# ---- the generators themselves -----------------------------------------------------------------


def test_generated_sets_cover_every_outcome():
    """Guard against a generator drifting into one corner: across a fixed sample, the
    decisions include ALLOW, DENY by forbid, DENY by default, fail-closed forbids and
    errors of permits."""
    seen: set[str] = set()

    @settings(max_examples=80, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(policy_set_models(), REQUESTS)
    def sample(model, reqs):
        engine = load_policy_set(model.texts())
        effects = effects_by_rule(model)
        for request in reqs:
            d = engine.decide(request)
            seen.add("allow" if d.allowed else ("default" if d.reasons[0].rule == "default" else "forbid"))
            if any(r.message.startswith(FAILED_CLOSED) for r in d.reasons):
                seen.add("failed closed")
            if any(effects[e.rule] == "permit" for e in d.errors):
                seen.add("permit error")

    sample()
    assert seen == {"allow", "default", "forbid", "failed closed", "permit error"}

