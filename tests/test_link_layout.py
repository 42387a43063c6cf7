"""How the compiled evaluator lays out what it links (pdp/runtime/_ceval.pyx): its objects come
from a bump allocator in link order, the forbid and the permit leaves of each value of a
shared switch linked one after the other, and the CACHED slots renumbered (the most used
inline, the others in link order). None of it may change a decision, a reason or an error:
these sets give both trees a switch on resource.type, conditions shared across policies
and more slots than the inline ones, and are checked against the reference evaluator,
one request at a time, in batches and from a bundle, also while evaluators are made and
dropped around the ones deciding."""

from __future__ import annotations

import gc
import ipaddress
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from pdp import reference, runtime
from pdp.request import parse_request

from strategies import DOMAINS, conditions, load_policy_set, requests
from test_differential import MANY_SLOTS, _check_all, _view

pytestmark = pytest.mark.skipif("compiled" not in runtime.EVALUATORS, reason="the extension is not built")


@st.composite
def _targeted_sets(draw):
    """Policies targeted on each resource type (so both trees switch on it), each of rules
    with generated conditions, a condition shared by every policy, and a set past the inline
    slots."""
    shared = draw(conditions(depth=2))
    lines = []
    for p, rtype in enumerate(draw(st.lists(st.sampled_from(DOMAINS["rtype"]), min_size=2, max_size=6))):
        lines.append(f'policy p{p} {{\n  target resource.type == "{rtype}"')
        for r in range(draw(st.integers(1, 4))):
            effect = draw(st.sampled_from(["permit", "forbid"]))
            condition = draw(st.one_of(conditions(depth=2), st.just(shared),
                                       conditions(depth=1).map(lambda c: f"({shared}) and ({c})")))
            lines.append(f"  {effect} r{r} when {condition}")
        lines.append("}")
    return ["\n".join(lines) + "\n", MANY_SLOTS]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=_targeted_sets(), reqs=st.lists(requests(), min_size=2, max_size=10))
def test_sets_linked_leaf_by_leaf_agree_with_the_reference(texts, reqs, tmp_path_factory):
    engine = load_policy_set(texts)
    assert engine.program.slots > 64  # past the inline slots (_INLINE_SLOTS in _ceval.pyx)
    _check_all(engine, reqs)
    want = [_view(reference.decide(engine.policy_set, parse_request(r), engine.revision)) for r in reqs]
    evaluator = runtime.EVALUATORS["compiled"](engine.program)
    assert [_view(d) for d in evaluator.decide_many(reqs)] == want
    bundle = tmp_path_factory.mktemp("bundle") / "set.bundle"
    pdp.write_bundle(engine, bundle)
    assert [_view(d) for d in pdp.load_bundle(bundle).decide_many(reqs)] == want


def test_evaluators_made_and_dropped_meanwhile_decide_alike():
    """Objects are freed in any order and their memory reused: evaluators kept among many
    dropped (more than a 2 MiB chunk of them in all) still decide as the reference."""
    engine = load_policy_set(["".join(f"""
policy t{i} {{
  target resource.type == "{DOMAINS['rtype'][i % 3]}"
  forbid f when identity.env == "dev" and resource.tags contains "t{i}"
  permit p when identity.scopes contains "payments:write" or resource.owner == identity.id
}}
""" for i in range(60)), MANY_SLOTS])
    reqs = [{"identity": {"type": "workload", "id": who, "env": env, "scopes": scopes},
             "action": "read", "resource": {"type": rtype, "id": "r", "owner": "bob", "tags": ["t3", "t7"]},
             "context": {"source_ip": ip}}
            for who in ("bob", "eve") for env in ("prod", "dev") for scopes in ([], ["payments:write"])
            for rtype in DOMAINS["rtype"] for ip in ("10.3.2.1", "nope")]
    want = [_view(reference.decide(engine.policy_set, parse_request(r), engine.revision)) for r in reqs]
    make = runtime.EVALUATORS["compiled"]
    kept = []
    for n in range(120):
        evaluator = make(engine.program)
        if n % 7 == 0:
            kept.append(evaluator)
        if n % 11 == 0:
            kept = kept[1:]  # the oldest go too: their chunks empty out
            gc.collect()
        assert [_view(evaluator.decide(r)) for r in reqs[n % 4::4]] == want[n % 4::4]
    for evaluator in kept:
        assert [_view(d) for d in evaluator.decide_many(reqs)] == want


@st.composite
def _one_switch_sets(draw):
    """Policies targeted on values of one path, each of forbids only, permits only or both (so
    both trees switch on that path first, with values in one tree only), some untargeted; the
    path is resource.type or resource.env, which a request may lack or give another type (the
    trees' error branches)."""
    path = draw(st.sampled_from(["resource.type", "resource.env"]))
    values = DOMAINS["rtype"] if path == "resource.type" else DOMAINS["env"]
    lines = []
    for p in range(draw(st.integers(1, 6))):
        value = draw(st.sampled_from(values + [None]))
        lines.append(f"policy p{p} {{" + ("" if value is None else f'\n  target {path} == "{value}"'))
        effects = draw(st.sampled_from([["forbid"], ["permit"], ["forbid", "permit"]]))
        for r in range(draw(st.integers(1, 3))):
            lines.append(f"  {draw(st.sampled_from(effects))} r{r} when {draw(conditions(depth=2))}")
        lines.append("}")
    return ["\n".join(lines) + "\n"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=_one_switch_sets(), reqs=st.lists(requests(), min_size=2, max_size=10))
def test_one_switch_for_both_trees_agrees_with_the_reference(texts, reqs):
    """Where both trees switch first on the same path, the evaluator looks the value up once for
    the two (Evaluator.both): decisions, reasons and errors as the reference's, and the
    AuthZEN search (allowed_candidates) admits the candidates whose decisions are ALLOW."""
    engine = load_policy_set(texts)
    _check_all(engine, reqs)
    evaluator = runtime.EVALUATORS["compiled"](engine.program)
    candidates = DOMAINS["rtype"] + ["other", "", 7]
    for r in reqs:
        allowed = []
        for i, c in enumerate(candidates):
            probe = {**r, "resource": {**r["resource"], "type": c}}
            try:
                parsed = parse_request(probe)
            except Exception:
                continue
            if reference.decide(engine.policy_set, parsed, engine.revision).decision == "ALLOW":
                allowed.append(i)
        assert evaluator.allowed_candidates(r, "resource", "type", candidates) == allowed


# ---- constants kept beside their nodes (_Compare's constant operand, _InCidr, _InStrs' table) ----

_TEXTS = ["read", "write", "admin", "rEad", "re", "", "é", "日本", "read ", "x" * 40, "a\u0000b", "delete"]


@st.composite
def _networks(draw):
    """A cidr(...) argument list of IPv4 and IPv6 networks (overlapping, adjacent or apart)."""
    out = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            out.append(f"10.{draw(st.integers(0, 3))}.{draw(st.sampled_from([0, 1, 128]))}.0/{draw(st.sampled_from([16, 24, 25, 32]))}")
        else:
            out.append(f"fd00:{draw(st.integers(0, 3)):x}::/{draw(st.sampled_from([16, 32, 64, 128]))}")
    return ", ".join(f'"{ipaddress.ip_network(n, strict=False)}"' for n in out)


_ADDRESSES = ["10.0.0.1", "10.1.128.7", "10.3.1.0", "10.9.9.9", "192.168.0.1", "fd00::1", "fd00:3::5", "fd01::",
              "::ffff:10.0.0.1", "::ffff:10.9.0.1", "10.0.0.01", "not an ip", "", "10.0.0.256", "FD00::1"]


@st.composite
def _constant_sets(draw):
    """Policies targeted on resource types (so linked leaf by leaf) whose rules test a value
    against constant sets of networks (``in``/``not in cidr(...)``) and of strings (lists of
    0 to 12, past the inline table's 8), also inside and/or/not, and compare constants."""
    lines = []
    for p, rtype in enumerate(draw(st.lists(st.sampled_from(["doc", "db", "queue"]), min_size=1, max_size=3))):
        lines.append(f'policy p{p} {{\n  target resource.type == "{rtype}"')
        for r in range(draw(st.integers(1, 4))):
            kind = draw(st.integers(0, 3))
            negate = draw(st.sampled_from(["in", "not in"]))
            if kind == 0:
                cond = f"context.source_ip {negate} cidr({draw(_networks())})"
            elif kind == 1:
                texts = draw(st.lists(st.sampled_from(_TEXTS), max_size=12))
                cond = f"identity.env {negate} [{', '.join(json.dumps(t) for t in texts)}]"
            elif kind == 2:
                cond = (f'identity.level {draw(st.sampled_from(["<", ">=", "==", "!="]))} {draw(st.integers(-1, 300))} '
                        f'or identity.scopes contains {json.dumps(draw(st.sampled_from(_TEXTS)))}')
            else:
                cond = (f"not (context.source_ip {negate} cidr({draw(_networks())})) "
                        f'and identity.env in [{json.dumps(draw(st.sampled_from(_TEXTS)))}, "prod"]')
            lines.append(f"  {draw(st.sampled_from(['permit', 'forbid']))} r{r} when {cond}")
        lines.append("}")
    return ["\n".join(lines) + "\n"]


@st.composite
def _constant_requests(draw):
    value = st.one_of(st.sampled_from(_TEXTS + ["prod"]), st.integers(-2, 301), st.lists(st.sampled_from(_TEXTS)))
    identity = {"type": "workload", "id": "alice"}
    for key, strategy in (("env", value), ("level", value), ("scopes", value)):
        if draw(st.integers(0, 4)):
            identity[key] = draw(strategy)
    context = {}
    if draw(st.integers(0, 5)):
        context["source_ip"] = draw(st.one_of(st.sampled_from(_ADDRESSES), st.integers(0, 9), st.lists(st.sampled_from(_ADDRESSES), max_size=2)))
    return {"identity": identity, "action": "read", "resource": {"type": draw(st.sampled_from(["doc", "db", "queue"])), "id": "r"},
            "context": context}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=_constant_sets(), reqs=st.lists(_constant_requests(), min_size=2, max_size=12))
def test_constants_beside_their_nodes_agree_with_the_reference(texts, reqs):
    """A compare holds its constant operand's value, ``in cidr(...)`` of a constant set keeps
    its ranges beside it and ``in`` a list of at most 8 strings scans them beside it: decisions,
    reasons and errors as the reference's, one by one and in a batch, sets shared by rules of
    several policies included."""
    engine = load_policy_set(texts)
    _check_all(engine, reqs)
    want = [_view(reference.decide(engine.policy_set, parse_request(r), engine.revision)) for r in reqs]
    assert [_view(d) for d in runtime.EVALUATORS["compiled"](engine.program).decide_many(reqs)] == want


def test_large_constant_network_sets_agree_with_the_reference():
    """A set of more ranges than an _InCidr keeps beside it (2,100 IPv4 ones apart, IPv6 ones)
    is left to _Compare's ranges; one within the bound, next to it, is kept inline: both as
    the reference decides, addresses in, between and outside the ranges, malformed or not
    strings."""
    many = ", ".join(f'"10.{i // 128}.{(i % 128) * 2}.0/24"' for i in range(2100))
    few = ", ".join(f'"10.{i // 128}.{(i % 128) * 2}.0/24"' for i in range(2000))
    engine = load_policy_set([f"""
policy p {{
  target resource.type == "doc"
  forbid big when context.source_ip in cidr({many}, "fd00::/16")
  permit small when context.source_ip not in cidr({few}, "fd00:1::/32")
  permit spare when identity.env in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
}}
"""])
    reqs = [{"identity": {"type": "workload", "id": "a", "env": env}, "action": "read",
             "resource": {"type": "doc", "id": "r"}, "context": {"source_ip": ip}}
            for env in ("a", "i", "z") for ip in ("10.0.0.1", "10.0.1.1", "10.16.8.9", "10.16.87.1", "10.15.254.3",
                                                  "10.16.88.0", "fd00::1", "fd00:1::1", "fd01::", "::ffff:10.0.0.3",
                                                  "nope", 7)]
    _check_all(engine, reqs)
