"""AuthZEN interop conformance: pdp decides the AuthZEN "todo" and "API gateway" test vectors.

The vectors are read at test time from ``shared/conformance/authzen/`` next to the repository
(see its SOURCE.md); the scenarios are written as pdp policies and data in
``tests/conformance/``. Each AuthZEN Access Evaluation request maps to a pdp request as SPEC §3
says (the AuthZEN information model):

- ``subject`` ⇒ ``identity`` (``type``, ``id``, and each ``properties`` member as an attribute),
- ``action`` ⇒ ``action`` (``name`` and properties), ``resource`` ⇒ ``resource`` (same),
- ``context`` ⇒ ``context``.

An Access Evaluations (batch) request gives defaults at the top level and per-item overrides
in ``evaluations``; each item becomes one pdp request and the batch one ``decide_many`` call.

Not run: ``todo/decisions-authorization-api-1_0-00.json`` and ``todo/decisions.json`` use the
pre-1.0 shape (``subject.id`` is an e-mail with the PID in ``subject.identity``; ``ownerID`` sits
on the resource, not under ``properties``); the search and IdP vectors test the Search API,
which pdp does not offer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pdp

HERE = Path(__file__).parent / "conformance"
VECTORS = Path(__file__).parents[2] / "shared" / "conformance" / "authzen"
TODO_FILES = ["decisions-authorization-api-1_0-02.json", "decisions-authorization-api-1_0-01.json"]
ENTITY_KEYS = ("type", "id")


def vectors(relative: str) -> dict:
    path = VECTORS / relative
    if not VECTORS.is_dir():
        pytest.skip(f"the AuthZEN conformance vectors are not there: {VECTORS} is absent")
    return json.loads(path.read_text(encoding="utf-8"))


def flatten(entity: dict) -> dict:
    """An AuthZEN subject, action or resource ⇒ a pdp attribute map: its own members with
    ``properties`` flattened in (``type``, ``id`` and ``name`` are never replaced)."""
    out = {k: v for k, v in entity.items() if k != "properties"}
    for key, value in (entity.get("properties") or {}).items():
        out.setdefault(key, value)
    return out


def to_pdp(evaluation: dict) -> dict:
    """An AuthZEN Access Evaluation request ⇒ a pdp request (SPEC §3)."""
    request = {
        "identity": flatten(evaluation["subject"]),
        "action": flatten(evaluation["action"]),
        "resource": flatten(evaluation["resource"]),
    }
    if evaluation.get("context"):
        request["context"] = dict(evaluation["context"])
    return request


def batch_to_pdp(batch: dict) -> list[dict]:
    """An AuthZEN Access Evaluations request ⇒ pdp requests: top-level members are defaults,
    each ``evaluations`` item overrides them."""
    defaults = {key: batch[key] for key in ("subject", "action", "resource", "context") if key in batch}
    return [to_pdp({**defaults, **item}) for item in batch["evaluations"]]


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
