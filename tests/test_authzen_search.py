"""AuthZEN search without HTTP: the declaration, pruning with the permit tree (never dropping
an allowed candidate), and the actions the policies name."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from pdp import runtime
from pdp.authzen import search
from pdp.authzen.mapping import BadRequest
from pdp.errors import RequestError

from strategies import DOMAINS, policy_sets, requests, write_policy_set

POLICY = """
policy docs {
  target resource.type == "doc"

  forbid frozen
    when resource.id in ["d3", "d7"] and action.name == "edit"
    reason "frozen"

  permit owners
    when action.name in ["read", "edit"] and data.docs[resource.id].owner == identity.id

  permit public
    when resource.id in ["d1", "d2", "d3"] and action.name == "read"

  permit admin_by_region
    when identity.region == "eu" and resource.id == "d9" and action.name != "purge"

  permit same_level
    when action.name == "audit" and data.docs[resource.id].level == identity.level
     and data.docs[resource.id].owner in ["u2", "u3"]
}

policy users {
  target resource.type == "user"

  permit self
    when identity.id == resource.id and action.name == "read"

  permit named
    when identity.id in ["u1", "u2"] and action.name == "audit"
}
"""

IDS = [f"d{i}" for i in range(12)]
USERS = ["u0", "u1", "u2", "u3", "u4"]


def engine(tmp_path, declaration: str | None = None) -> pdp.Engine:
    root = tmp_path / "p"
    root.mkdir(exist_ok=True)
    (root / "docs.pdl").write_text(POLICY)
    owners = {d: {"owner": USERS[i % len(USERS)], "level": i % 3} for i, d in enumerate(IDS)}
    import json

    (root / "docs.data.json").write_text(json.dumps(owners))
    (root / "people.data.json").write_text(json.dumps({u: {} for u in USERS}))
    (root / "authzen.data.yaml").write_text(declaration if declaration is not None else
                                            "search:\n  subject: {user: people}\n  resource: {doc: docs}\n")
    return pdp.load(root)


def brute_force(e: pdp.Engine, query: search.Query, candidates) -> list[str]:
    root, key = search.KINDS[query.kind]
    out = []
    for c in candidates:
        request = dict(query.template)
        request[root] = {**query.template[root], key: c}
        if e.decide(request).allowed:
            out.append(c)
    return out


def test_the_declaration_gives_the_candidates(tmp_path):
    e = engine(tmp_path)
    catalog = search.catalog(e)
    assert catalog.subjects == {"user": tuple(USERS)}
    assert catalog.resources == {"doc": tuple(IDS)}
    assert set(catalog.actions) == {"read", "edit", "purge", "audit"}
    assert search.catalog(e) is catalog  # computed once per engine


def test_a_declared_action_list_and_lists_of_ids(tmp_path):
    e = engine(tmp_path, "search:\n  subject: {user: [u1, u2]}\n  action: [read, edit]\n")
    catalog = search.catalog(e)
    assert catalog.subjects == {"user": ("u1", "u2")} and catalog.actions == ("read", "edit")
    assert catalog.resources == {}
    try:
        search.search(e, "resource", {"subject": {"type": "user", "id": "u1"}, "action": {"name": "read"},
                                      "resource": {"type": "doc"}})
    except BadRequest as err:
        assert err.member == "resource.type" and "declared: none" in str(err)
    else:
        raise AssertionError("an undeclared resource type must be a BadRequest")


def test_pruning_keeps_only_what_a_permit_leaf_can_reach(tmp_path):
    e = engine(tmp_path)
    query = search.parse("resource", {"subject": {"type": "user", "id": "nobody"}, "action": {"name": "purge"},
                                      "resource": {"type": "doc"}})
    # purge: only admin_by_region's leaf could apply (d9), and it says action.name != "purge"
    # purge: only admin_by_region could apply (its guards: region "eu", resource d9)
    assert search.reachable(e.program.permit_tree, query.template, "resource", "id", tuple(IDS)) == []
    eu = search.parse("resource", {"subject": {"type": "user", "id": "x", "properties": {"region": "eu"}},
                                   "action": {"name": "purge"}, "resource": {"type": "doc"}})
    assert search.reachable(e.program.permit_tree, eu.template, "resource", "id", tuple(IDS)) == ["d9"]
    assert search.permitted(e, eu, tuple(IDS)) == []  # ... and its `action.name != "purge"` says no
    read = search.parse("resource", {"subject": {"type": "user", "id": "u1"}, "action": {"name": "read"},
                                     "resource": {"type": "doc"}})
    # owners (data.docs[resource.id].owner == identity.id) may apply to any id: it is left to
    # the evaluator, which decides a candidate for less than a check here costs. u1 owns d1,
    # d6 and d11; public lists d1, d2 and d3
    assert search.reachable(e.program.permit_tree, read.template, "resource", "id", tuple(IDS)) == IDS
    assert search.permitted(e, read, tuple(IDS)) == ["d1", "d2", "d3", "d6", "d11"]
    edit = search.parse("subject", {"subject": {"type": "user"}, "action": {"name": "edit"},
                                    "resource": {"type": "doc", "id": "d6"}})
    assert search.permitted(e, edit, tuple(USERS)) == ["u1"]
    users = search.parse("resource", {"subject": {"type": "user", "id": "u0"}, "action": {"name": "audit"},
                                      "resource": {"type": "user"}})
    assert search.reachable(e.program.permit_tree, users.template, "resource", "id", tuple(USERS)) == []


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["subject", "resource", "action"]),
       subject=st.sampled_from(USERS + ["stranger"]), region=st.sampled_from([None, "eu", "us"]),
       level=st.sampled_from([None, 0, 1, 2.0, "1"]),
       action=st.sampled_from(["read", "edit", "purge", "audit", "other"]),
       resource=st.sampled_from(IDS + ["u1", "zz"]), rtype=st.sampled_from(["doc", "user"]),
       candidates=st.lists(st.sampled_from(IDS + USERS + ["read", "edit", "purge", "audit", "x"]), max_size=20,
                           unique=True))
def test_search_answers_exactly_the_candidates_a_decision_allows(tmp_path_factory, kind, subject, region, level,
                                                                 action, resource, rtype, candidates):
    e = _shared_engine(tmp_path_factory)
    props = {"region": region} if region else {}
    if level is not None:
        props["level"] = level
    body = {"subject": {"type": "user", "id": subject, "properties": props}, "action": {"name": action},
            "resource": {"type": rtype, "id": resource}}
    if kind == "subject":
        del body["subject"]["id"]
    elif kind == "resource":
        del body["resource"]["id"]
    else:
        del body["action"]
    query = search.parse(kind, body)
    assert search.permitted(e, query, tuple(candidates)) == brute_force(e, query, candidates)


_ENGINES: dict = {}


def _shared_engine(factory) -> pdp.Engine:
    if "e" not in _ENGINES:
        _ENGINES["e"] = engine(factory.mktemp("search"))
    return _ENGINES["e"]


def test_pages_cover_the_results_once(tmp_path):
    e = engine(tmp_path, "search:\n  resource: {doc: docs}\n")
    body = {"subject": {"type": "user", "id": "u1", "properties": {"region": "eu"}}, "action": {"name": "read"},
            "resource": {"type": "doc"}}
    everything = search.search(e, "resource", body)
    assert everything["page"]["next_token"] == ""
    ids = [r["id"] for r in everything["results"]]
    assert ids == brute_force(e, search.parse("resource", body), IDS)
    seen, token = [], None
    for _ in range(len(ids) + 1):
        page = {"limit": 1} if token is None else {"limit": 1, "token": token}
        answer = search.search(e, "resource", {**body, "page": page})
        seen += [r["id"] for r in answer["results"]]
        token = answer["page"]["next_token"]
        if not token:
            break
    assert seen == ids


# ---- Engine.allowed_candidates: the same answers as deciding each candidate ------------------

BACKENDS = [*sorted(runtime.EVALUATORS), "reference"]
#: Where a candidate may stand: the searched entity's id (or name), or any other attribute.
PLACES = [("identity", "id"), ("resource", "id"), ("action", "name"), ("resource", "owner"), ("identity", "env")]
#: Candidates the generated policies compare with, and some no valid request could carry.
CANDIDATES = st.lists(st.sampled_from([*DOMAINS["who"], *DOMAINS["action"], *DOMAINS["env"], "", "\ud800", 3, None]),
                      max_size=12)


def _filled(request: dict, root: str, key: str, candidate) -> dict:
    filled = dict(request)
    entity = filled.get(root)
    entity = {"name": entity} if isinstance(entity, str) else dict(entity or {})
    entity[key] = candidate
    filled[root] = entity
    return filled


def _brute_force(e: pdp.Engine, request: dict, root: str, key: str, candidates) -> list[int]:
    out = []
    for i, c in enumerate(candidates):
        if not isinstance(c, str):
            continue  # candidates are ids and names: any other value is never allowed
        try:
            if e.decide(_filled(request, root, key, c)).allowed:
                out.append(i)
        except RequestError:
            continue  # no valid request: never allowed
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(texts=policy_sets(), request=requests(), place=st.sampled_from(PLACES), candidates=CANDIDATES,
       limit=st.sampled_from([-1, -1, 1, 2]))
def test_allowed_candidates_are_the_candidates_a_decision_allows(tmp_path_factory, texts, request, place,
                                                                 candidates, limit):
    loaded = pdp.load(write_policy_set(tmp_path_factory.mktemp("gen") / "set", texts))
    where, key = place
    for backend in BACKENDS:
        e = pdp.Engine(loaded.program, loaded.sources, loaded.policy_set, backend)
        want = _brute_force(e, request, where, key, candidates)
        if limit >= 0:
            want = want[:limit]
        assert e.allowed_candidates(request, where, key, candidates, limit) == want, backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_allowed_candidates_validates_the_request_once(tmp_path, backend):
    engine(tmp_path)
    e = pdp.load(tmp_path / "p", backend=backend)
    with pytest.raises(RequestError) as err:
        e.allowed_candidates({"identity": {"type": "user"}, "action": "read", "resource": {"type": 3}},
                             "identity", "id", [])  # no candidate: the request is still checked
    assert err.value.path == "resource.type"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subject=st.sampled_from(USERS), action=st.sampled_from(["read", "edit", "audit"]),
       candidates=st.lists(st.sampled_from(IDS + ["zz"]), max_size=16), limit=st.integers(1, 4))
def test_pages_are_the_brute_force_answer_in_order(tmp_path_factory, subject, action, candidates, limit):
    e = _shared_engine(tmp_path_factory)
    body = {"subject": {"type": "user", "id": subject}, "action": {"name": action}, "resource": {"type": "doc"}}
    query = search.parse("resource", body)
    want = brute_force(e, query, candidates)
    seen, token = [], ""
    for _ in range(len(candidates) + 1):
        paged = search.parse("resource", {**body, "page": {"limit": limit, "token": token}})
        answer = search.answer(e, paged, tuple(candidates))
        assert len(answer["results"]) <= limit
        seen += [r["id"] for r in answer["results"]]
        token = answer["page"]["next_token"]
        if not token:
            break
        assert answer["results"], "a page with a next token shows results"
    assert seen == want
