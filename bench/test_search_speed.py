"""AuthZEN search over 10,000 candidates (issue 13: at most 50 ms). Run:

    pytest bench/test_search_speed.py --benchmark-only --benchmark-json=bench/results/search.json

Three shapes of policy set, each checked against deciding every candidate before timing:

- ``owner``: records owned by users (``data.records[resource.id].owner == identity.id``): no
  guard on the id, so every candidate is decided (the worst case: pruning cannot help);
- ``listed``: the permit rules name the records they allow (``resource.id in [...]``): the
  decision tree and the rules' guards drop the others before anything is decided;
- ``subjects``: who may view a record, over 10,000 users (``data.users[identity.id]``).
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


def test_resource_search_10k_every_candidate_decided(benchmark, owner_engine):
    benchmark.group = "search over 10,000 candidates"
    _check_and_time(benchmark, owner_engine, "resource", {"subject": {"type": "user", "id": "u3"},
                                                          "action": {"name": "view"}, "resource": {"type": "record"}})


def test_subject_search_10k_every_candidate_decided(benchmark, owner_engine):
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
