"""``pdp eval --envoy FILE``: an Envoy CheckRequest in proto3 JSON ⇒ the mapped request, the
decision and the CheckResponse — the same answer a running ``pdp serve`` sends."""

from __future__ import annotations

import io
import json
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as ext
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc
from google.protobuf import json_format
from serverkit import WAIT, running

import pdp
from pdp.cli import main
from pdp.cli.evaluate_envoy import response_summary
from pdp.server import ServerOptions

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "envoy"
PICKER = "spiffe://acme.prod/ns/warehouse/sa/picker"


def run(argv: list[str], capsys, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        code = main(argv)
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    out, err = capsys.readouterr()
    return code, out, err


def example_request(**http) -> dict:
    """The shipped CheckRequest, with fields of ``attributes.request.http`` replaced."""
    document = json.loads((EXAMPLE / "check_request.json").read_text())
    document["attributes"]["request"]["http"].update(http)
    return document


def write(tmp_path: Path, document: object, name: str = "check.json") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def test_the_example_is_mapped_decided_and_answered(capsys):
    code, out, err = run(["eval", str(EXAMPLE), "--envoy", str(EXAMPLE / "check_request.json")], capsys)
    assert code == 0, err
    shown = json.loads(out)
    assert list(shown) == ["request", "decision", "envoy"]
    request = shown["request"]
    assert request["identity"]["id"] == request["identity"]["spiffe_id"] == PICKER
    assert request["identity"]["claims"]["scp"] == ["inventory:read", "inventory:write"]
    assert request["action"] == {"name": "POST"}
    assert request["resource"] == {"type": "inventory", "id": "/v1/items/sku-1042/reservations",
                                   "path": "/v1/items/sku-1042/reservations", "host": "inventory.acme.internal",
                                   "tenant": "acme"}
    assert request["context"]["source_ip"] == "10.1.2.3" and request["context"]["time"] == "2026-11-27T10:05:00Z"
    assert ":path" not in request["context"]["headers"]
    revision = pdp.load(EXAMPLE).revision
    assert shown["decision"]["decision"] == "ALLOW"
    assert [r["rule"] for r in shown["decision"]["reasons"]] == ["inventory_api.reserve_items"]
    assert shown["envoy"] == {"status": "OK", "code": 0, "headers": {"x-pdp-revision": revision}}


def test_the_answer_is_the_one_pdp_serve_sends(tmp_path, capsys):
    """The same CheckRequest, through eval and through a running server's Envoy service."""
    engine = pdp.load(EXAMPLE)
    cases = [example_request(),  # ALLOW
             example_request(method="DELETE"),  # default DENY
             example_request(method="")]  # cannot be decided: action.name is empty
    bodies = []
    with running(engine, ServerOptions(envoy_deny_body="rules")) as (_, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ext_grpc.AuthorizationStub(channel)
            for i, document in enumerate(cases):
                served = stub.Check(json_format.ParseDict(document, ext.CheckRequest()), timeout=WAIT)
                code, out, err = run(["eval", str(EXAMPLE), "--envoy", write(tmp_path, document, f"{i}.json"),
                                      "--envoy-deny-body", "rules"], capsys)
                assert code == 0, err
                assert json.loads(out)["envoy"] == response_summary(served)
                bodies.append(served.denied_response.body)
    assert bodies[0] == ""
    assert [json.loads(b)["reasons"] for b in bodies[1:]] == [[{"rule": "default"}], [{"rule": "pdp.invalid_request"}]]


def test_a_denial_shows_the_403_its_headers_and_the_body_deny_body_chooses(tmp_path, capsys):
    path = write(tmp_path, example_request(method="DELETE"))
    code, out, _ = run(["eval", str(EXAMPLE), "--envoy", path], capsys)
    assert code == 0
    shown = json.loads(out)
    assert shown["decision"]["reasons"][0]["rule"] == "default"
    envoy = shown["envoy"]
    assert (envoy["status"], envoy["code"], envoy["http_status"]) == ("PERMISSION_DENIED", 7, 403)
    assert envoy["headers"] == {"x-pdp-revision": shown["decision"]["revision"], "content-type": "application/json"}
    assert json.loads(envoy["body"])["reasons"] == [{"rule": "default", "message": "no permit rule matched"}]
    _, out, _ = run(["eval", str(EXAMPLE), "--envoy", path, "--envoy-deny-body", "rules"], capsys)
    assert json.loads(json.loads(out)["envoy"]["body"])["reasons"] == [{"rule": "default"}]
    _, out, _ = run(["eval", str(EXAMPLE), "--envoy", path, "--envoy-deny-body", "none"], capsys)
    envoy = json.loads(out)["envoy"]
    assert envoy["body"] == "" and envoy["headers"] == {"x-pdp-revision": shown["decision"]["revision"]}


def test_an_unmappable_request_shows_the_servers_deny(tmp_path, capsys):
    document = {"attributes": {"request": {"http": {"path": "/v1/items/x"}}}}  # no method
    code, out, err = run(["eval", str(EXAMPLE), "--envoy", write(tmp_path, document)], capsys)
    assert code == 0 and err == ""
    shown = json.loads(out)
    assert shown["request"]["action"] == {"name": ""}  # what the mapping made of it
    reason = shown["decision"]["reasons"][0]
    assert shown["decision"]["decision"] == "DENY" and reason["rule"] == "pdp.invalid_request"
    assert "action.name" in reason["message"]
    assert shown["envoy"]["http_status"] == 403
    assert json.loads(shown["envoy"]["body"])["reasons"][0]["rule"] == "pdp.invalid_request"


def test_standard_input(capsys, monkeypatch):
    text = (EXAMPLE / "check_request.json").read_text()
    code, out, _ = run(["eval", str(EXAMPLE), "--envoy", "-"], capsys, stdin=text, monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out)["decision"]["decision"] == "ALLOW"


@pytest.mark.parametrize("text, words", [
    ('{"attributes": ', ["check.json:1:16", "invalid JSON"]),
    ('{"attributes": {"request": {"http": {"method": NaN}}}}', ["NaN is not a JSON number"]),
    ('{"atributes": {}}', ["not an Envoy CheckRequest", '"atributes"']),
    ('{"attributes": {"request": {"time": "yesterday"}}}', ["not an Envoy CheckRequest", "time"]),
    ('{"attributes": {"contextExtensions": {"tenant": 5}}}', ["contextExtensions"]),
    ('[{"attributes": {}}]', ["is a JSON object", "got a list"]),
    ('{"attributes": ' + "[" * 100_000 + "]" * 100_000 + "}", ["nested too deeply"]),
    ('{"attributes": {"metadataContext": {"filterMetadata": {"envoy.filters.http.jwt_authn": {"p": '
     + '{"a": ' * 500 + "1" + "}" * 500 + "}}}}}", ["too deep"]),
], ids=["truncated", "nan", "unknown field", "bad time", "number extension", "list", "deep JSON", "deep struct"])
def test_input_that_is_not_a_check_request_exits_2_with_a_clear_message(tmp_path, capsys, text, words):
    code, out, err = run(["eval", str(EXAMPLE), "--envoy", write(tmp_path, text)], capsys)
    assert code == 2 and out == ""
    assert "Traceback" not in err and err.startswith("error: ")
    for word in words:
        assert word in err


def test_a_missing_file_exits_2(tmp_path, capsys):
    code, _, err = run(["eval", str(EXAMPLE), "--envoy", str(tmp_path / "nope.json")], capsys)
    assert code == 2 and "cannot read" in err


def test_request_and_envoy_are_exclusive(capsys):
    code, _, err = run(["eval", str(EXAMPLE), "--envoy", "a.json", "--request", "b.json"], capsys)
    assert code == 2 and "not allowed with" in err


def test_explain_shows_the_mapped_request_the_trace_and_the_answer(tmp_path, capsys):
    path = write(tmp_path, example_request(method="DELETE"))
    code, out, _ = run(["eval", str(EXAMPLE), "--envoy", path, "--explain"], capsys)
    assert code == 0
    assert out.startswith("request (mapped from the Envoy CheckRequest):\n")
    assert '"name": "DELETE"' in out
    assert "permit inventory_api.reserve_items: NOT APPLIED" in out
    assert "envoy answer: PERMISSION_DENIED (7), HTTP 403" in out
    assert out.index("request (mapped") < out.index("DENY  (revision") < out.index("envoy answer")


def test_explain_json_carries_the_trace_too(capsys):
    code, out, _ = run(["eval", str(EXAMPLE), "--envoy", str(EXAMPLE / "check_request.json"), "--explain",
                        "--json"], capsys)
    assert code == 0
    shown = json.loads(out)
    assert list(shown) == ["request", "explanation", "decision", "envoy"]
    assert shown["explanation"]["decision"]["decision"] == shown["decision"]["decision"] == "ALLOW"
    assert {r["rule"] for r in shown["explanation"]["rules"]} >= {"inventory_api.read_items",
                                                                  "inventory_api.reserve_items"}


def test_explain_of_an_unmappable_request_shows_the_refusal(tmp_path, capsys):
    document = {"attributes": {"request": {"http": {"path": "/v1/items/x"}}}}
    code, out, _ = run(["eval", str(EXAMPLE), "--envoy", write(tmp_path, document), "--explain"], capsys)
    assert code == 0
    assert "because forbid pdp.invalid_request: the request cannot be decided: action.name" in out
    assert "envoy answer: PERMISSION_DENIED (7), HTTP 403" in out


def test_context_time_is_taken_as_given(tmp_path, capsys):
    """Like pdp eval, --envoy does not compare request.time with the clock (SPEC §1)."""
    document = example_request()
    document["attributes"]["request"]["time"] = "2001-01-01T00:00:00Z"
    code, out, _ = run(["eval", str(EXAMPLE), "--envoy", write(tmp_path, document)], capsys)
    assert code == 0
    shown = json.loads(out)
    assert shown["request"]["context"]["time"] == "2001-01-01T00:00:00Z"
    assert shown["decision"]["decision"] == "ALLOW"


def test_the_docs_error_example_is_real(capsys, monkeypatch):
    docs = (EXAMPLE.parent.parent / "docs" / "envoy.md").read_text(encoding="utf-8")
    block = docs[docs.index("```console\n$ echo '{\"atributes\""):]
    block = block[len("```console\n"):block.index("```\n", 10)]
    command, expected = block.split("\n", 1)
    stdin = command[len("$ echo '"):command.index("' |")]
    argv = command[command.index("| pdp ") + len("| pdp "):].split()
    monkeypatch.chdir(EXAMPLE.parent.parent)
    code, out, err = run(argv, capsys, stdin=stdin + "\n", monkeypatch=monkeypatch)
    assert code == 2 and out == "" and err == expected
