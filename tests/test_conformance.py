"""AuthZEN interop conformance: pdp decides the AuthZEN "todo" and "API gateway" test vectors.

The vectors are read at test time from ``shared/conformance/authzen/`` next to the repository
(see its SOURCE.md); the scenarios are written as pdp policies and data in
``tests/conformance/``. Each AuthZEN request maps to a pdp request with the product's own
mapping (``pdp.authzen.mapping``, SPEC §10), so these tests decide in-process exactly what the
HTTP endpoints decide; tests/test_authzen_http.py sends every vector, search included, over HTTP.

Not run: ``todo/decisions-authorization-api-1_0-00.json`` and ``todo/decisions.json`` use the
pre-1.0 shape (``subject.id`` is an e-mail with the PID in ``subject.identity``; ``ownerID`` sits
on the resource, not under ``properties``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pdp
from authzenkit import VECTORS, vectors
from pdp.authzen.mapping import batch, to_request

HERE = Path(__file__).parent / "conformance"
TODO_FILES = ["decisions-authorization-api-1_0-02.json", "decisions-authorization-api-1_0-01.json"]


def to_pdp(evaluation: dict) -> dict:
    """An AuthZEN Access Evaluation request ⇒ a pdp request (the product's mapping)."""
    return to_request(evaluation)


def batch_to_pdp(body: dict) -> list[dict]:
    """An AuthZEN Access Evaluations request ⇒ pdp requests: top-level members are defaults,
    each ``evaluations`` item replaces them."""
    items, _ = batch(body)
    return items


@pytest.fixture(scope="module")
def todo_engine():
    return pdp.load(HERE / "todo")


@pytest.fixture(scope="module")
def gateway_engine():
    return pdp.load(HERE / "api-gateway", HERE / "todo" / "users.data.yaml")


def _cases(relative: str, key: str) -> list:
    path = VECTORS / relative
    if not path.is_file():
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=f"{path} is absent"))]
    cases = json.loads(path.read_text(encoding="utf-8")).get(key, [])
    return [pytest.param(i, case, id=f"{Path(relative).stem}-{key}-{i}") for i, case in enumerate(cases)]


# ---- the mapping itself ------------------------------------------------------------------------


def test_an_authzen_request_maps_to_the_pdp_information_model():
    authzen = {
        "subject": {"type": "user", "id": "alice", "properties": {"department": "finance", "id": "ignored"}},
        "action": {"name": "can_read", "properties": {"method": "GET"}},
        "resource": {"type": "todo", "id": "t1", "properties": {"ownerID": "bob@example.com"}},
        "context": {"time": "2026-11-27T10:05:00Z"},
    }
    assert to_pdp(authzen) == {
        "identity": {"type": "user", "id": "alice", "department": "finance"},
        "action": {"name": "can_read", "method": "GET"},
        "resource": {"type": "todo", "id": "t1", "ownerID": "bob@example.com"},
        "context": {"time": "2026-11-27T10:05:00Z"},
    }
    batch = {"subject": authzen["subject"], "action": authzen["action"],
             "evaluations": [{"resource": authzen["resource"]}, {"resource": {"type": "todo", "id": "t2"},
                                                                  "action": {"name": "can_delete"}}]}
    first, second = batch_to_pdp(batch)
    assert first["identity"] == second["identity"] == to_pdp(authzen)["identity"]
    assert (first["action"]["name"], second["action"]["name"]) == ("can_read", "can_delete")
    assert second["resource"] == {"type": "todo", "id": "t2"}


# ---- todo --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TODO_FILES)
def test_todo_vectors_are_all_present(name):
    data = vectors(f"todo/{name}")
    assert len(data["evaluation"]) == 40


@pytest.mark.parametrize("i, case", _cases("todo/decisions-authorization-api-1_0-02.json", "evaluation")
                         + _cases("todo/decisions-authorization-api-1_0-01.json", "evaluation"))
def test_todo_evaluation(todo_engine, i, case):
    decision = todo_engine.decide(to_pdp(case["request"]))
    assert decision.allowed is case["expected"], decision.to_dict()
    assert decision.errors == (), "the scenario's requests are all well-formed for these policies"


@pytest.mark.parametrize("i, case", _cases("todo/decisions-authorization-api-1_0-02.json", "evaluations"))
def test_todo_evaluations_batch(todo_engine, i, case):
    requests = batch_to_pdp(case["request"])
    decisions = todo_engine.decide_many(requests)
    assert [{"decision": d.allowed} for d in decisions] == case["expected"]
    assert decisions == [todo_engine.decide(r) for r in requests]


def test_todo_reasons_say_why(todo_engine):
    """Beyond the booleans: the reasons name the rule and the user."""
    rick, morty, jerry = (
        "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs",
        "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs",
        "CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs",
    )

    def update(subject: str, owner: str) -> dict:
        return to_pdp({"subject": {"type": "user", "id": subject}, "action": {"name": "can_update_todo"},
                       "resource": {"type": "todo", "id": "t-1", "properties": {"ownerID": owner}}})

    d = todo_engine.decide(update(rick, "morty@the-citadel.com"))
    assert [(r.rule, r.message) for r in d.reasons] == [
        ("todos.change_any_todo", "Rick Sanchez is an admin: can_update_todo on any todo")]
    assert d.reasons[0].annotations == {"scenario": "authzen-todo"}
    d = todo_engine.decide(update(morty, "morty@the-citadel.com"))
    assert [(r.rule, r.message) for r in d.reasons] == [("todos.change_own_todo", "Morty Smith owns todo t-1")]
    d = todo_engine.decide(update(jerry, "jerry@the-smiths.com"))
    assert d.decision == "DENY" and [r.rule for r in d.reasons] == ["default"]
    d = todo_engine.decide(update("someone-else", "jerry@the-smiths.com"))
    assert d.decision == "DENY"
    assert [(r.rule, r.message) for r in d.reasons] == [
        ("todo_subjects.unknown_user", "someone-else is not a user of the todo application")]


# ---- API gateway -------------------------------------------------------------------------------


def test_gateway_vectors_are_all_present():
    assert len(vectors("api-gateway/decisions.json")["evaluation"]) == 25


@pytest.mark.parametrize("i, case", _cases("api-gateway/decisions.json", "evaluation"))
def test_gateway_evaluation(gateway_engine, i, case):
    decision = gateway_engine.decide(to_pdp(case["request"]))
    assert decision.allowed is case["expected"], decision.to_dict()
    assert decision.errors == ()


def test_gateway_batch_of_every_vector(gateway_engine):
    """All the gateway vectors as one batch: decide_many gives the expected decisions in order."""
    cases = vectors("api-gateway/decisions.json")["evaluation"]
    decisions = gateway_engine.decide_many([to_pdp(c["request"]) for c in cases])
    assert [d.allowed for d in decisions] == [c["expected"] for c in cases]
