"""AuthZEN search over 10,000 candidates (issue 13: at most 50 ms). Run:

    pytest bench/test_search_speed.py --benchmark-only --benchmark-json=bench/results/search.json

Figures and how to read them: bench/SEARCH.md. Three shapes of policy set, each checked
against deciding every candidate before timing:

- ``owner``: records owned by users, or in the user's department (``data.records[resource.id].owner
  == identity.id``): no guard on the searched id, so every candidate is decided (resource
  and subject search);
- ``listed``: the permit rules name the records they allow (``resource.id in [...]``): the
  decision tree and the rules' guards drop the others before any is decided;
- ``groups``: the permission is a ``contains`` on a list from ``data``: nothing can be
  pruned, every candidate is decided (the worst case);

and a first page of 10 results (``page.limit``) on ``groups``, which stops deciding after
the eleventh permit.
"""

from __future__ import annotations

import json

import pytest

import pdp
from pdp.authzen import search

N = 10_000

OWNER = """
policy records {
  target resource.type == "record"
  let record = data.records[resource.id]
  permit owner_views when action.name == "view" and record.owner == identity.id
  permit department_views
    when action.name == "view" and record.department == data.users[identity.id].department
}
"""

LISTED = """
policy records {
  target resource.type == "record"
  permit team_a when action.name == "view" and identity.team == "a" and resource.id in [%s]
  permit team_b when action.name == "view" and identity.team == "b" and resource.id in [%s]
  permit pinned when action.name in ["view", "edit"] and resource.id == "r17"
}
"""


def _write(root, policy: str, declaration: str) -> pdp.Engine:
    root.mkdir()
    (root / "p.pdl").write_text(policy)
    users = {f"u{i}": {"department": f"d{i % 50}"} for i in range(N)}
    records = {f"r{i}": {"owner": f"u{i % 997}", "department": f"d{i % 50}"} for i in range(N)}
    (root / "users.data.json").write_text(json.dumps(users))
    (root / "records.data.json").write_text(json.dumps(records))
    (root / "authzen.data.yaml").write_text(declaration)
    return pdp.load(root)


GROUPS = """
policy records {
  target resource.type == "record"
  permit group_views when action.name == "view" and identity.groups contains data.records[resource.id].department
}
"""

DECLARATION = "search:\n  subject: {user: users}\n  resource: {record: records}\n"


def _check_and_time(benchmark, engine, kind, body):
    query = search.parse(kind, body)
    candidates = search.catalog(engine).candidates(query)
    assert len(candidates) == N
    root, key = search.KINDS[kind]
    everyone = engine.decide_many([{**query.template, root: {**query.template[root], key: c}} for c in candidates])
    expected = [c for c, d in zip(candidates, everyone) if d.allowed]
    assert search.permitted(engine, query, candidates) == expected
    benchmark.extra_info["results"] = len(expected)
    benchmark.extra_info["decided"] = len(search.reachable(engine.program.permit_tree, query.template, root, key,
                                                           candidates))
    benchmark(search.search, engine, kind, body)


@pytest.fixture(scope="module")
def owner_engine(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("s") / "owner", OWNER, DECLARATION)


def test_resource_search_10k_through_data_lookups(benchmark, owner_engine):
    benchmark.group = "search over 10,000 candidates"
    _check_and_time(benchmark, owner_engine, "resource", {"subject": {"type": "user", "id": "u3"},
                                                          "action": {"name": "view"}, "resource": {"type": "record"}})


def test_subject_search_10k_through_data_lookups(benchmark, owner_engine):
    benchmark.group = "search over 10,000 candidates"
    _check_and_time(benchmark, owner_engine, "subject", {"subject": {"type": "user"}, "action": {"name": "view"},
                                                         "resource": {"type": "record", "id": "r42"}})


def test_resource_search_10k_pruned_by_guards(benchmark, tmp_path_factory):
    a = ", ".join(f'"r{i}"' for i in range(0, N, 7))
    b = ", ".join(f'"r{i}"' for i in range(3, N, 11))
    engine = _write(tmp_path_factory.mktemp("s") / "listed", LISTED % (a, b), DECLARATION)
    benchmark.group = "search over 10,000 candidates"
    _check_and_time(benchmark, engine, "resource", {"subject": {"type": "user", "id": "u1",
                                                                "properties": {"team": "b"}},
                                                    "action": {"name": "view"}, "resource": {"type": "record"}})


def test_resource_search_10k_nothing_to_prune(benchmark, tmp_path_factory):
    engine = _write(tmp_path_factory.mktemp("s") / "groups", GROUPS, DECLARATION)
    benchmark.group = "search over 10,000 candidates"
    _check_and_time(benchmark, engine, "resource", {"subject": {"type": "user", "id": "u1",
                                                                "properties": {"groups": ["d3", "d7"]}},
                                                    "action": {"name": "view"}, "resource": {"type": "record"}})


def test_resource_search_10k_first_page_of_10(benchmark, tmp_path_factory):
    engine = _write(tmp_path_factory.mktemp("s") / "groups", GROUPS, DECLARATION)
    benchmark.group = "search over 10,000 candidates"
    body = {"subject": {"type": "user", "id": "u1", "properties": {"groups": ["d3", "d7"]}},
            "action": {"name": "view"}, "resource": {"type": "record"}}
    everything = search.search(engine, "resource", body)["results"]
    first = search.search(engine, "resource", {**body, "page": {"limit": 10}})
    assert first["results"] == everything[:10] and first["page"]["next_token"]
    benchmark.extra_info["results"] = len(first["results"])
    benchmark(search.search, engine, "resource", {**body, "page": {"limit": 10}})
