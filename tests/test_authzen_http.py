"""AuthZEN Authorization API 1.0 over HTTP (SPEC §10): every interop vector sent to a real
server, and one test per rule of the section."""

from __future__ import annotations

import json
import signal
import ssl

import pytest

import pdp
from authzenkit import CONFORMANCE, Client, serving, vectors
from pdp.server import EngineHolder, ServerOptions, TLSConfig
from pdp.server.decision_log import DecisionLog
from pdp.server.metrics import Metrics
from serverkit import WAIT, ServeProcess, make_certs, scrape_until, write_policies

EVALUATION = "/access/v1/evaluation"
EVALUATIONS = "/access/v1/evaluations"
SEARCH = "/access/v1/search/"
TODO_FILES = ["todo/decisions-authorization-api-1_0-02.json", "todo/decisions-authorization-api-1_0-01.json"]


@pytest.fixture(scope="module")
def todo_port():
    with serving(pdp.load(CONFORMANCE / "todo")) as (_, port):
        yield port


@pytest.fixture(scope="module")
def gateway_port():
    with serving(pdp.load(CONFORMANCE / "api-gateway", CONFORMANCE / "todo" / "users.data.yaml")) as (_, port):
        yield port


@pytest.fixture(scope="module")
def search_server():
    with serving(pdp.load(CONFORMANCE / "search")) as (holder, port):
        yield holder, port


def _as_set(results: list) -> set:
    return {json.dumps(r, sort_keys=True) for r in results}


# ---- every interop vector, over HTTP ----------------------------------------------------------


@pytest.mark.parametrize("relative", TODO_FILES)
def test_todo_evaluation_vectors(todo_port, relative):
    cases = vectors(relative)["evaluation"]
    assert len(cases) == 40
    client = Client(todo_port)
    wrong = []
    for i, case in enumerate(cases):
        status, _, body = client.post(EVALUATION, case["request"])
        if status != 200 or body["decision"] is not case["expected"]:
            wrong.append((i, status, body))
    client.close()
    assert wrong == []


def test_todo_evaluations_vectors(todo_port):
    cases = vectors(TODO_FILES[0])["evaluations"]
    assert cases
    client = Client(todo_port)
    for case in cases:
        status, _, body = client.post(EVALUATIONS, case["request"])
        assert status == 200
        assert [{"decision": e["decision"]} for e in body["evaluations"]] == case["expected"]
    client.close()


def test_gateway_vectors(gateway_port):
    cases = vectors("api-gateway/decisions.json")["evaluation"]
    assert len(cases) == 25
    client = Client(gateway_port)
    got = [client.post(EVALUATION, c["request"])[2]["decision"] for c in cases]
    client.close()
    assert got == [c["expected"] for c in cases]


@pytest.mark.parametrize("relative, kind, key, count", [
    ("search/subject/results.json", "subject", "evaluation", 60),
    ("search/resource/results.json", "resource", "evaluation", 18),
    ("search/action/results.json", "action", "evaluation", 120),
    ("idp/results.json", "resource", "search", 6),
])
def test_search_vectors(search_server, relative, kind, key, count):
    cases = vectors(relative)[key]
    assert len(cases) == count
    client = Client(search_server[1])
    wrong = []
    for i, case in enumerate(cases):
        status, _, body = client.post(SEARCH + kind, case["request"])
        if status != 200 or _as_set(body["results"]) != _as_set(case["expected"]["results"]) \
                or body["page"]["next_token"] != "":
            wrong.append((i, status, body))
    client.close()
    assert wrong == []


# ---- errors -------------------------------------------------------------------------------------

GOOD = {"subject": {"type": "user", "id": "alice"}, "action": {"name": "view"},
        "resource": {"type": "record", "id": "101"}}


@pytest.mark.parametrize("body, member", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "request body: must be a JSON object"),
    (b"null", "request body: must be a JSON object, got null"),
    ({"action": GOOD["action"], "resource": GOOD["resource"]}, "subject: is required"),
    ({**GOOD, "subject": "alice"}, "subject: must be a JSON object"),
    ({**GOOD, "subject": {"id": "alice"}}, "subject.type: is required"),
    ({**GOOD, "subject": {"type": 3, "id": "alice"}}, "subject.type: must be a non-empty string"),
    ({**GOOD, "subject": {"type": "user", "id": ""}}, "subject.id: must be a non-empty string"),
    ({**GOOD, "subject": {"type": "user", "id": "a", "properties": [1]}}, "subject.properties: must be a JSON object"),
    ({**GOOD, "action": {}}, "action.name: is required"),
    ({**GOOD, "resource": {"type": "record"}}, "resource.id: is required"),
    ({**GOOD, "context": "now"}, "context: must be a JSON object"),
    ({**GOOD, "context": {"peer": {"spiffe_id": "x"}}}, "context.peer: is set by the server"),
    ({**GOOD, "subject": {"type": "user", "id": "a", "properties": {"n": 2 ** 70}}}, "subject.n"),
])
def test_bad_input_is_400_naming_the_member_and_the_server_keeps_serving(search_server, body, member):
    client = Client(search_server[1])
    status, headers, answer = client.post(EVALUATION, body)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert member in answer["error"], answer
    assert client.post(EVALUATION, GOOD)[:3:2] == (200, client.post(EVALUATION, GOOD)[2])
    client.close()


def test_a_body_over_the_size_limit_is_413(tmp_path):
    engine = pdp.load(CONFORMANCE / "search")
    with serving(engine, ServerOptions(max_message_bytes=2000)) as (_, port):
        client = Client(port)
        big = {**GOOD, "context": {"padding": "x" * 3000}}
        status, headers, body = client.post(EVALUATION, big, {"X-Request-ID": "big-1"})
        assert status == 413 and "2000 bytes" in body["error"] and headers["X-Request-ID"] == "big-1"
        client.close()
        client = Client(port)
        assert client.post(EVALUATION, GOOD)[0] == 200  # still serving
        client.close()
        # no Content-Length: the body is counted as it arrives
        data = json.dumps(big).encode()
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (data[:1500], data[1500:])) + b"0\r\n\r\n"
        answer = _raw_exchange(port, b"POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split()[1] == b"413" and "2000 bytes" in json.loads(body)["error"]


def test_unknown_path_is_404_and_wrong_method_405(search_server):
    client = Client(search_server[1])
    status, _, body = client.post("/access/v1/evaluate", GOOD)
    assert status == 404 and "/access/v1/evaluate" in body["error"]
    status, headers, body = client.get(EVALUATION)
    assert status == 405 and headers["Allow"] == "POST" and "GET" in body["error"]
    status, headers, _ = client.post("/.well-known/authzen-configuration", {})
    assert status == 405 and "GET" in headers["Allow"]
    client.close()


def test_x_request_id_is_echoed_on_every_answer(search_server):
    client = Client(search_server[1])
    for method, path, body, status in [("POST", EVALUATION, GOOD, 200), ("POST", EVALUATION, {}, 400),
                                       ("POST", EVALUATIONS, {"evaluations": [GOOD]}, 200),
                                       ("POST", SEARCH + "action", {**GOOD, "action": None}, 200),
                                       ("POST", "/nowhere", GOOD, 404), ("GET", EVALUATION, None, 405),
                                       ("GET", "/.well-known/authzen-configuration", None, 200)]:
        raw = json.dumps(body).encode() if body is not None else None
        got, headers, _ = client.send(method, path, raw, {"X-Request-ID": f"req-{path}-{status}"})
        assert got == status
        assert headers["X-Request-ID"] == f"req-{path}-{status}"
    _, headers, _ = client.post(EVALUATION, GOOD)
    assert headers.get("X-Request-ID") is None
    client.close()


# ---- evaluation ---------------------------------------------------------------------------------


def test_evaluation_answer_has_decision_reasons_and_revision(search_server):
    holder, port = search_server
    client = Client(port)
    status, _, body = client.post(EVALUATION, {**GOOD, "action": {"name": "delete"}, "resource":
                                               {"type": "record", "id": "102"}})
    assert status == 200
    assert body == {"decision": False, "context": {"reasons": [
        {"rule": "default", "effect": "forbid", "message": "no permit rule matched"}], "revision": holder.revision}}
    status, _, body = client.post(EVALUATION, {**GOOD, "action": {"name": "delete"}})
    assert body["decision"] is True
    assert body["context"]["reasons"] == [{"rule": "records.owner_deletes", "effect": "permit",
                                           "message": "alice owns record 101"}]
    client.close()


def test_unknown_members_are_ignored(search_server):
    client = Client(search_server[1])
    body = {"subject": {"type": "user", "id": "alice", "_note": "x", "extra": {"a": 1}},
            "action": {"name": "delete", "unknown": 1}, "resource": {"type": "record", "id": "101", "v": [1]},
            "something": "else", "options": {"whatever": True}}
    status, _, answer = client.post(EVALUATION, body)
    assert status == 200 and answer["decision"] is True
    client.close()


def test_subject_properties_never_replace_type_or_id(search_server):
    client = Client(search_server[1])
    # bob may not delete record 101; a property claiming to be alice changes nothing
    body = {"subject": {"type": "user", "id": "bob", "properties": {"id": "alice", "type": "admin", "role": "x"}},
            "action": {"name": "delete", "properties": {"name": "view"}},
            "resource": {"type": "record", "id": "101", "properties": {"id": "102", "type": "other"}}}
    status, _, answer = client.post(EVALUATION, body)
    assert status == 200 and answer["decision"] is False
    body["subject"]["id"] = "alice"
    assert client.post(EVALUATION, body)[2]["decision"] is True
    client.close()


def test_properties_become_attributes(tmp_path):
    engine = pdp.load(write_policies(tmp_path / "p", """
policy p {
  permit by_department
    when identity.department == resource.department and action.method == "GET"
     and context.channel == "web"
}""", None))
    with serving(engine) as (_, port):
        client = Client(port)
        body = {"subject": {"type": "user", "id": "u", "properties": {"department": "Sales"}},
                "action": {"name": "read", "properties": {"method": "GET"}},
                "resource": {"type": "doc", "id": "d", "properties": {"department": "Sales"}},
                "context": {"channel": "web"}}
        assert client.post(EVALUATION, body)[2]["decision"] is True
        body["resource"]["properties"]["department"] = "Legal"
        assert client.post(EVALUATION, body)[2]["decision"] is False
        client.close()


# ---- evaluations --------------------------------------------------------------------------------


def _batch(semantic: str | None, *items) -> dict:
    body = {"subject": {"type": "user", "id": "bob"}, "resource": {"type": "record", "id": "102"},
            "evaluations": list(items)}
    if semantic is not None:
        body["options"] = {"evaluations_semantic": semantic}
    return body


VIEW, EDIT, DELETE_101 = ({"action": {"name": "view"}}, {"action": {"name": "edit"}},
                          {"action": {"name": "delete"}, "resource": {"type": "record", "id": "101"}})


@pytest.mark.parametrize("semantic, expected", [
    (None, [True, False, True]),
    ("execute_all", [True, False, True]),
    ("deny_on_first_deny", [True, False]),
    ("permit_on_first_permit", [True]),
])
def test_evaluations_semantics(search_server, semantic, expected):
    client = Client(search_server[1])
    status, _, body = client.post(EVALUATIONS, _batch(semantic, VIEW, DELETE_101, EDIT))
    assert status == 200
    assert [e["decision"] for e in body["evaluations"]] == expected
    client.close()


def test_evaluations_items_replace_the_defaults_and_bad_items_answer_errors(search_server):
    client = Client(search_server[1])
    body = _batch(None, VIEW, {"action": {"name": "view"}, "subject": {"type": "user"}}, "not an object",
                  {"action": {"name": "delete"}, "subject": {"type": "user", "id": "alice"},
                   "resource": {"type": "record", "id": "101"}})
    status, _, answer = client.post(EVALUATIONS, body)
    assert status == 200
    first, missing_id, not_object, alice = answer["evaluations"]
    assert first["decision"] is True
    assert missing_id == {"decision": False, "context": {"error": {"status": 400, "message": "subject.id: is required"}}}
    assert not_object["decision"] is False and not_object["context"]["error"]["message"].startswith("evaluations[2]")
    assert alice["decision"] is True  # the item's own subject and resource replaced the defaults
    # an item error counts as a deny for deny_on_first_deny
    status, _, answer = client.post(EVALUATIONS, _batch("deny_on_first_deny", {"action": {}}, VIEW))
    assert [e["decision"] for e in answer["evaluations"]] == [False]
    client.close()


def test_evaluations_without_items_is_one_evaluation_and_bad_options_are_400(search_server):
    client = Client(search_server[1])
    status, _, body = client.post(EVALUATIONS, GOOD)
    assert status == 200 and body["decision"] is True and "evaluations" not in body
    status, _, body = client.post(EVALUATIONS, _batch("first_come", VIEW))
    assert status == 400 and "options.evaluations_semantic" in body["error"]
    status, _, body = client.post(EVALUATIONS, {**GOOD, "evaluations": {"a": 1}})
    assert status == 400 and body["error"].startswith("evaluations:")
    client.close()


# ---- well-known configuration -------------------------------------------------------------------


@pytest.mark.parametrize("host, shown", [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]")])
def test_well_known_configuration_without_a_host_names_the_address_reached(host, shown):
    import socket

    from pdp.server.http import HttpServer

    try:
        socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET).close()
    except OSError:
        pytest.skip(f"no {host} here")
    server = HttpServer(EngineHolder(pdp.load(CONFORMANCE / "search")), f"[{host}]:0" if ":" in host else f"{host}:0",
                        grace=1.0)
    port = server.start()
    try:
        with socket.create_connection((host, port), timeout=WAIT) as sock:
            sock.sendall(b"GET /.well-known/authzen-configuration HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    finally:
        server.stop()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", head
    document = json.loads(body)
    assert document["policy_decision_point"] == f"http://{shown}:{port}"
    assert document["access_evaluation_endpoint"] == f"http://{shown}:{port}{EVALUATION}"


def test_well_known_configuration_uses_the_host_the_client_used(search_server):
    client = Client(search_server[1])
    status, _, body = client.get("/.well-known/authzen-configuration", {"Host": "pdp.example.com:8443"})
    assert status == 200
    base = "http://pdp.example.com:8443"
    assert body == {
        "policy_decision_point": base,
        "access_evaluation_endpoint": base + EVALUATION,
        "access_evaluations_endpoint": base + EVALUATIONS,
        "search_subject_endpoint": base + SEARCH + "subject",
        "search_resource_endpoint": base + SEARCH + "resource",
        "search_action_endpoint": base + SEARCH + "action",
    }
    client.close()


# ---- search -------------------------------------------------------------------------------------


def test_search_pages_with_limit_and_token(search_server):
    client = Client(search_server[1])
    request = {"subject": {"type": "user", "id": "alice"}, "action": {"name": "view"}, "resource": {"type": "record"}}
    pages, token = [], None
    for _ in range(20):  # bounded: 20 records, 3 per page
        page = {"limit": 3} if token is None else {"limit": 3, "token": token}
        status, _, body = client.post(SEARCH + "resource", {**request, "page": page})
        assert status == 200 and len(body["results"]) <= 3
        pages.append([r["id"] for r in body["results"]])
        token = body["page"]["next_token"]
        if token == "":
            break
    assert [i for p in pages for i in p] == [str(n) for n in range(101, 121)]
    assert len(pages) == 7 and len(pages[-1]) == 2
    client.close()


def test_a_page_token_is_tied_to_its_request_and_revision(search_server, tmp_path):
    holder, port = search_server
    client = Client(port)
    request = {"subject": {"type": "user", "id": "alice"}, "action": {"name": "view"},
               "resource": {"type": "record"}, "page": {"limit": 5}}
    token = client.post(SEARCH + "resource", request)[2]["page"]["next_token"]
    assert token and "alice" not in token
    ok = client.post(SEARCH + "resource", {**request, "page": {"limit": 5, "token": token}})
    assert ok[0] == 200 and ok[2]["results"][0]["id"] == "106"
    for other in ({**request, "subject": {"type": "user", "id": "dan"}}, {**request, "action": {"name": "edit"}}):
        status, _, body = client.post(SEARCH + "resource", {**other, "page": {"limit": 5, "token": token}})
        assert status == 400 and body["error"].startswith("page.token")
    status, _, body = client.post(SEARCH + "subject", {"subject": {"type": "user"}, "action": {"name": "view"},
                                                       "resource": {"type": "record", "id": "101"},
                                                       "page": {"token": token}})
    assert status == 400 and "page.token" in body["error"]
    for forged in ("garbage", "", token[:-2], "AAAB" + token[4:]):
        status, _, body = client.post(SEARCH + "resource", {**request, "page": {"limit": 5, "token": forged}})
        assert status == (200 if forged == "" else 400), forged
    # another revision: the same set with one more data file
    root = tmp_path / "reloaded"
    root.mkdir()
    for f in (CONFORMANCE / "search").iterdir():
        (root / f.name).write_bytes(f.read_bytes())
    (root / "extra.data.yaml").write_text("a: 1\n")
    old = holder.swap(pdp.load(root))
    try:
        status, _, body = client.post(SEARCH + "resource", {**request, "page": {"limit": 5, "token": token}})
        assert status == 400 and "revision" in body["error"]
    finally:
        holder.swap(old)
    client.close()


@pytest.mark.parametrize("page, member", [({"limit": 0}, "page.limit"), ({"limit": "3"}, "page.limit"),
                                          ({"token": 5}, "page.token"), ([], "page")])
def test_bad_page_members_are_400(search_server, page, member):
    client = Client(search_server[1])
    status, _, body = client.post(SEARCH + "subject", {"subject": {"type": "user"}, "action": {"name": "view"},
                                                       "resource": {"type": "record", "id": "101"}, "page": page})
    assert status == 400 and body["error"].startswith(member)
    client.close()


def test_search_errors_name_the_member(search_server):
    client = Client(search_server[1])
    status, _, body = client.post(SEARCH + "subject", {"subject": {"type": "robot"}, "action": {"name": "view"},
                                                       "resource": {"type": "record", "id": "101"}})
    assert status == 400 and body["error"].startswith("subject.type") and "user" in body["error"]
    status, _, body = client.post(SEARCH + "resource", {"subject": {"type": "user", "id": "alice"},
                                                        "action": {"name": "view"}, "resource": {}})
    assert status == 400 and body["error"] == "resource.type: is required"
    status, _, body = client.post(SEARCH + "action", {"subject": {"type": "user", "id": "alice"}})
    assert status == 400 and body["error"] == "resource: is required"
    # unknown ids and actions are valid searches with no results (the scenario's rule)
    for kind, body in (("subject", {"subject": {"type": "user"}, "action": {"name": "fly"},
                                    "resource": {"type": "record", "id": "101"}}),
                       ("resource", {"subject": {"type": "user", "id": "zed"}, "action": {"name": "view"},
                                     "resource": {"type": "record"}})):
        status, _, answer = client.post(SEARCH + kind, body)
        assert (status, answer["results"], answer["page"]["next_token"]) == (200, [], "")
    client.close()


# ---- TLS, mTLS, decision log, metrics -----------------------------------------------------------


PEER_POLICY = """
policy peer {
  permit billing_peer
    when context.peer.spiffe_id == "spiffe://acme.prod/ns/billing/sa/api"
    reason "the mTLS peer is billing"
}
"""


def test_mtls_gives_context_peer_and_refuses_strangers(tmp_path):
    certs = make_certs(tmp_path / "certs")
    engine = pdp.load(write_policies(tmp_path / "p", PEER_POLICY, None))
    options = ServerOptions(tls=TLSConfig(certs.server_cert, certs.server_key, certs.ca))
    body = {"subject": {"type": "workload", "id": "w"}, "action": {"name": "a"}, "resource": {"type": "r", "id": "1"}}
    with serving(engine, options) as (_, port):
        context = ssl.create_default_context(cafile=str(certs.ca))
        context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
        client = Client(port, context)
        status, _, answer = client.post(EVALUATION, body)
        assert status == 200 and answer["decision"] is True
        assert answer["context"]["reasons"][0]["rule"] == "peer.billing_peer"
        status, _, cfg = client.get("/.well-known/authzen-configuration", {"Host": "pdp.local"})
        assert cfg["policy_decision_point"] == "https://pdp.local"
        client.close()
        stranger = ssl.create_default_context(cafile=str(certs.ca))
        stranger.load_cert_chain(str(certs.other_client_cert), str(certs.other_client_key))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            client = Client(port, stranger)
            client.post(EVALUATION, body)
        client.close()


def test_decisions_are_logged_and_counted(tmp_path):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    metrics = Metrics()
    try:
        with serving(pdp.load(CONFORMANCE / "search"), ServerOptions(decision_log=log, metrics=metrics)) as (_, port):
            client = Client(port)
            client.post(EVALUATION, GOOD, {"X-Request-ID": "r-1"})
            client.post(EVALUATION, {}, {"X-Request-ID": "r-2"})
            client.post(EVALUATIONS, {**GOOD, "evaluations": [{}, {"action": {"name": "delete"},
                                                                   "resource": {"type": "record", "id": "102"}}]})
            client.close()
        assert log.flush(WAIT)
    finally:
        log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["api"], x["request_id"], x["decision"]) for x in lines] == [
        ("authzen", "r-1", "ALLOW"), ("authzen", "r-2", None), ("authzen", "", "ALLOW"), ("authzen", "", "DENY")]
    value = metrics.registry.get_sample_value
    assert value("pdp_decisions_total", {"api": "authzen", "decision": "ALLOW"}) == 2
    assert value("pdp_request_errors_total", {"api": "authzen", "code": "INVALID_ARGUMENT"}) == 1


def test_searches_are_logged_and_counted_one_line_each_without_tokens(tmp_path):
    from pdp.audit.replay import replay

    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    metrics = Metrics()
    engine = pdp.load(CONFORMANCE / "search")
    views = {"subject": {"type": "user", "id": "alice"}, "action": {"name": "view"}, "resource": {"type": "record"}}
    try:
        with serving(engine, ServerOptions(decision_log=log, metrics=metrics)) as (_, port):
            client = Client(port)
            first = client.post(SEARCH + "resource", {**views, "page": {"limit": 3}}, {"X-Request-ID": "s-1"})[2]
            token = first["page"]["next_token"]
            assert len(first["results"]) == 3 and token
            second = client.post(SEARCH + "resource", {**views, "page": {"limit": 3, "token": token}})[2]
            assert len(second["results"]) == 3
            status, _, body = client.post(SEARCH + "subject", {"subject": {"type": "user"}, "action": {"name": "edit"},
                                                               "resource": {"type": "record", "id": "999"}})
            assert status == 200 and body["results"] == []
            status, _, body = client.post(SEARCH + "action", {"subject": {"type": "user", "id": "erin"},
                                                              "resource": {"type": "record", "id": "105"}},
                                          {"X-Request-ID": "s-4"})
            assert status == 200 and len(body["results"]) == 3
            status, _, _ = client.post(SEARCH + "subject", {**views, "subject": {"type": "robot"},
                                                            "resource": {"type": "record", "id": "101"}})
            assert status == 400
            client.close()
        assert log.flush(WAIT)
    finally:
        log.close()
    text = path.read_text()
    assert token not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(x["request_id"], x.get("search"), x.get("revision")) for x in lines] == [
        ("s-1", {"kind": "resource", "results": 3, "more": True}, engine.revision),
        ("", {"kind": "resource", "results": 3, "more": True}, engine.revision),
        ("", {"kind": "subject", "results": 0, "more": False}, engine.revision),
        ("s-4", {"kind": "action", "results": 3, "more": False}, engine.revision),
        ("", None, None),
    ]
    assert all(x["api"] == "authzen" and "input" not in x and isinstance(x["latency_us"], float) for x in lines[:4])
    assert all("decision" not in x and "reasons" not in x for x in lines[:4])
    assert (lines[0]["identity"], lines[0]["action"], lines[0]["resource"]) == (
        {"type": "user", "id": "alice"}, "view", {"type": "record", "id": None})
    assert (lines[2]["identity"], lines[2]["resource"]) == ({"type": "user", "id": None}, {"type": "record", "id": "999"})
    assert (lines[3]["identity"], lines[3]["action"]) == ({"type": "user", "id": "erin"}, None)
    assert lines[4]["decision"] is None and "subject.type" in lines[4]["error"]
    value = metrics.registry.get_sample_value
    assert value("pdp_searches_total", {"kind": "resource", "outcome": "found"}) == 2
    assert value("pdp_searches_total", {"kind": "subject", "outcome": "empty"}) == 1
    assert value("pdp_searches_total", {"kind": "action", "outcome": "found"}) == 1
    assert value("pdp_searches_total", {"kind": "subject", "outcome": "invalid"}) == 1
    assert value("pdp_search_seconds_count", {"kind": "resource"}) == 2
    assert value("pdp_decisions_total", {"api": "authzen", "decision": "ALLOW"}) is None  # no decision per candidate
    # replay and review pass over search lines: only the refused search is a skipped request
    replayed = replay([str(path)], engine)
    assert (replayed.decisions, replayed.skipped) == (0, 1)


def test_with_a_shadow_candidate_a_search_is_logged_once_and_not_shadowed(tmp_path):
    from pdp.server.shadow import ShadowLog

    path = tmp_path / "decisions.jsonl"
    engine = pdp.load(CONFORMANCE / "search")
    shadow = ShadowLog(EngineHolder(engine), DecisionLog(str(path)))
    try:
        with serving(engine, ServerOptions(decision_log=shadow)) as (_, port):
            client = Client(port)
            status, _, body = client.post(SEARCH + "action", {"subject": {"type": "user", "id": "erin"},
                                                              "resource": {"type": "record", "id": "105"}})
            assert status == 200 and len(body["results"]) == 3
            client.close()
        assert shadow.flush(WAIT)
    finally:
        shadow.close()
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["search"] == {"kind": "action", "results": 3, "more": False} and "shadow" not in line
    assert shadow.outcomes == {"agree": 0, "allow_to_deny": 0, "deny_to_allow": 0}


# ---- pdp serve --http-addr ----------------------------------------------------------------------


def test_pdp_serve_http_addr_serves_and_reloads(tmp_path):
    root = tmp_path / "policies"
    for f in (CONFORMANCE / "search").iterdir():
        (root / f.name).parent.mkdir(parents=True, exist_ok=True)
        (root / f.name).write_bytes(f.read_bytes())
    with ServeProcess(str(root), "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--workers", "1") as proc:
        proc.wait_ready()
        port = int(proc.wait_for(r"AuthZEN over HTTP on http://127\.0\.0\.1:(\d+)").group(1))
        client = Client(port)
        status, _, body = client.post(EVALUATION, {**GOOD, "action": {"name": "delete"}})
        assert status == 200 and body["decision"] is True
        first = body["context"]["revision"]
        policy = (root / "records.pdl").read_text().replace('action.name == "delete" and owns', "false")
        (root / "records.pdl").write_text(policy)
        proc.signal(signal.SIGHUP)
        proc.wait_for("reload")
        status, _, body = client.post(EVALUATION, {**GOOD, "action": {"name": "delete"}})
        assert body["decision"] is False and body["context"]["revision"] != first
        client.close()
        assert proc.stop() == 0


def test_pdp_serve_http_addr_with_workers(tmp_path):
    root = tmp_path / "policies"
    root.mkdir()
    for f in (CONFORMANCE / "search").iterdir():
        (root / f.name).write_bytes(f.read_bytes())
    with ServeProcess(str(root), "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--workers", "2",
                      "--skip-tests") as proc:
        proc.wait_ready()
        port = int(proc.wait_for(r"AuthZEN over HTTP on http://127\.0\.0\.1:(\d+)").group(1))
        for _ in range(4):  # new connections: the kernel spreads them over the workers
            client = Client(port)
            assert client.post(EVALUATION, GOOD)[2]["decision"] is True
            client.close()
        assert proc.stop() == 0


def test_pdp_serve_workers_log_and_count_searches(tmp_path):
    root = tmp_path / "policies"
    root.mkdir()
    for f in (CONFORMANCE / "search").iterdir():
        (root / f.name).write_bytes(f.read_bytes())
    log_path = tmp_path / "decisions.jsonl"
    search = {"subject": {"type": "user", "id": "alice"}, "action": {"name": "delete"}, "resource": {"type": "record"}}
    with ServeProcess(str(root), "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--workers", "2",
                      "--skip-tests", "--metrics-addr", "127.0.0.1:0", "--decision-log", str(log_path)) as proc:
        metrics_port = int(proc.wait_for(r"metrics of 2 workers on http://127\.0\.0\.1:(\d+)/metrics").group(1))
        port = int(proc.wait_for(r"AuthZEN over HTTP on http://127\.0\.0\.1:(\d+)").group(1))
        for i in range(4):  # new connections: the kernel spreads them over the workers
            client = Client(port)
            status, _, body = client.post(SEARCH + "resource", search, {"X-Request-ID": f"w-{i}"})
            assert status == 200 and [r["id"] for r in body["results"]] == ["101", "107", "113", "119"]
            assert client.post(SEARCH + "action", {"subject": {"type": "user"}})[0] == 400
            assert client.post(EVALUATION, GOOD, {"X-Request-ID": f"e-{i}"})[2]["decision"] is True
            client.close()
        scrape_until(metrics_port, r'pdp_decisions_total\{api="authzen",decision="ALLOW"\} 4\.0')
        scrape_until(metrics_port, r'pdp_searches_total\{kind="resource",outcome="found"\} 4\.0')
        page = scrape_until(metrics_port, r'pdp_searches_total\{kind="action",outcome="invalid"\} 4\.0')
        assert 'pdp_search_seconds_count{kind="resource"} 4.0' in page
        assert proc.stop() == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    searches = sorted(x["request_id"] for x in lines if x.get("search") == {"kind": "resource", "results": 4,
                                                                             "more": False})
    assert searches == ["w-0", "w-1", "w-2", "w-3"]
    assert sum(1 for x in lines if x.get("error")) == 4
    assert sorted(x["request_id"] for x in lines if x.get("decision") == "ALLOW") == ["e-0", "e-1", "e-2", "e-3"]


def _raw_exchange(port: int, payload: bytes) -> bytes:
    """Send ``payload`` on a new connection; everything the server sends until it closes."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(payload)
        received = b""
        for _ in range(1000):  # bounded: the server closes after its answer
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


@pytest.mark.parametrize("workers", ["1", "2"])
def test_bytes_that_are_not_http_get_a_json_400_and_no_traceback(tmp_path, workers):
    root = tmp_path / "policies"
    root.mkdir()
    for f in (CONFORMANCE / "search").iterdir():
        (root / f.name).write_bytes(f.read_bytes())
    payloads = [b"\x00\xff\xfe garbage \x01\x02\r\n\r\n",                     # not a request line
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),   # a TLS ClientHello
                b"GET /.well-known/authzen-configuration HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                b"POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n",
                b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"]           # a request line too long
    with ServeProcess(str(root), "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--workers", workers,
                      "--skip-tests") as proc:
        port = int(proc.wait_for(r"AuthZEN over HTTP on http://127\.0\.0\.1:(\d+)").group(1))
        for payload in payloads:
            head, _, body = _raw_exchange(port, payload).partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
            assert status_line.split()[1] == "400", (payload[:40], head)
            assert headers["content-type"].startswith("application/json")
            assert json.loads(body)["error"].startswith("malformed HTTP request: "), body
            proc.wait_for(r"INFO AuthZEN over HTTP: malformed HTTP request: .* \(from 127\.0\.0\.1\)")
        client = Client(port)  # still serving
        assert client.post(EVALUATION, GOOD)[:3:2] == (200, client.post(EVALUATION, GOOD)[2])
        client.close()
        assert proc.stop() == 0
        proc.wait_for(r"stopped")
    assert not [line for line in proc.lines if "Traceback" in line or "Error handling request" in line]


def test_pdp_serve_http_addr_with_mtls_options(tmp_path):
    certs = make_certs(tmp_path / "certs")
    root = write_policies(tmp_path / "p", PEER_POLICY, None)
    body = {"subject": {"type": "workload", "id": "w"}, "action": {"name": "a"}, "resource": {"type": "r", "id": "1"}}
    with ServeProcess(str(root), "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--workers", "1",
                      "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                      "--client-ca", str(certs.ca)) as proc:
        port = int(proc.wait_for(r"AuthZEN over HTTP on https://127\.0\.0\.1:(\d+)").group(1))
        context = ssl.create_default_context(cafile=str(certs.ca))
        context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
        client = Client(port, context)
        status, _, answer = client.post(EVALUATION, body)
        assert status == 200 and answer["context"]["reasons"][0]["rule"] == "peer.billing_peer"
        client.close()
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):  # no client certificate
            client = Client(port, ssl.create_default_context(cafile=str(certs.ca)))
            client.post(EVALUATION, body)
        client.close()
        assert proc.stop() == 0


def test_pdp_serve_workers_reload_the_http_answers_together(tmp_path):
    root = tmp_path / "policies"
    root.mkdir()
    for f in (CONFORMANCE / "search").iterdir():
        (root / f.name).write_bytes(f.read_bytes())
    delete = {**GOOD, "action": {"name": "delete"}}
    with ServeProcess(str(root), "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--workers", "2",
                      "--skip-tests", "--watch") as proc:
        port = int(proc.wait_for(r"AuthZEN over HTTP on http://127\.0\.0\.1:(\d+)").group(1))
        client = Client(port)
        first = client.post(EVALUATION, delete)[2]["context"]["revision"]
        client.close()
        policy = (root / "records.pdl").read_text().replace('action.name == "delete" and owns', "false")
        (root / "records.pdl").write_text(policy)
        revision = proc.wait_for(r"reloaded: serving revision (\w+)").group(1)
        assert revision != first
        for _ in range(6):  # new connections, spread over both workers: each serves the new revision
            client = Client(port)
            status, _, body = client.post(EVALUATION, delete)
            assert status == 200 and body["decision"] is False and body["context"]["revision"].startswith(revision)
            status, _, body = client.post(SEARCH + "action", {"subject": GOOD["subject"], "resource": GOOD["resource"]})
            assert sorted(r["name"] for r in body["results"]) == ["edit", "view"]  # delete is gone
            client.close()
        assert proc.stop() == 0


def test_pdp_serve_http_addr_that_cannot_be_bound_exits_1(tmp_path):
    import socket

    root = write_policies(tmp_path / "p", PEER_POLICY, None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with ServeProcess(str(root), "--addr", "127.0.0.1:0", "--http-addr", f"127.0.0.1:{port}",
                          "--workers", "1") as proc:
            proc.wait_for("cannot listen on")
            assert proc.proc.wait(WAIT) == 1


def test_http_addr_is_checked_like_addr(tmp_path, capsys):
    from pdp.cli import main

    root = write_policies(tmp_path / "p", PEER_POLICY, None)
    assert main(["serve", str(root), "--http-addr", "nowhere"]) == 2
    assert "--http-addr" in capsys.readouterr().err


def test_holder_swap_is_seen_by_the_next_request(tmp_path):
    a = pdp.load(write_policies(tmp_path / "a", 'policy p { permit all when action.name == "x" }', None))
    b = pdp.load(write_policies(tmp_path / "b", 'policy p { forbid none when action.name == "x" }', None))
    holder = EngineHolder(a)
    body = {"subject": {"type": "u", "id": "1"}, "action": {"name": "x"}, "resource": {"type": "r", "id": "1"}}
    with serving(holder) as (_, port):
        client = Client(port)
        assert client.post(EVALUATION, body)[2]["decision"] is True
        holder.swap(b)
        assert client.post(EVALUATION, body)[2] == {
            "decision": False, "context": {"reasons": [{"rule": "p.none", "effect": "forbid", "message": ""}],
                                           "revision": b.revision}}
        client.close()


def test_tls_certificate_rotation_is_served_to_new_connections(tmp_path):
    import os

    first, second = make_certs(tmp_path / "first"), make_certs(tmp_path / "second")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "server.crt", live / "server.key"
    cert.write_bytes(first.server_cert.read_bytes())
    key.write_bytes(first.server_key.read_bytes())
    engine = pdp.load(write_policies(tmp_path / "p", PEER_POLICY, None))
    body = {"subject": {"type": "workload", "id": "w"}, "action": {"name": "a"}, "resource": {"type": "r", "id": "1"}}

    def answers(ca) -> bool:
        client = Client(port, ssl.create_default_context(cafile=str(ca)))
        try:
            return client.post(EVALUATION, body)[0] == 200
        except ssl.SSLError:
            return False
        finally:
            client.close()

    with serving(engine, ServerOptions(tls=TLSConfig(cert, key))) as (_, port):
        assert answers(first.ca) and not answers(second.ca)
        # an agent rewrites the files (new certificate from another CA); a later mtime on both
        cert.write_bytes(second.server_cert.read_bytes())
        key.write_bytes(second.server_key.read_bytes())
        for path in (cert, key):
            os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        assert answers(second.ca) and not answers(first.ca)
        # a half-written key (not the certificate's) is not served: the second certificate stays
        key.write_bytes(first.server_key.read_bytes())
        os.utime(key, ns=(key.stat().st_atime_ns, key.stat().st_mtime_ns + 2 * 10**9))
        assert answers(second.ca)
