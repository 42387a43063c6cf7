"""Envoy-shaped tests in suites: ``envoy:`` instead of identity/action/resource, mapped by the
server's own Envoy mapping; in ``pdp test``, coverage and the pytest plugin; bad entries are
positioned errors."""

from __future__ import annotations

import textwrap
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import write_files
from envoy.service.auth.v3 import external_auth_pb2 as ext
from google.protobuf import json_format

from pdp.cli import main
from pdp.server.envoy_authz import envoy_to_request
from pdp.testing.envoy_cases import to_check_request
from pdp.testing.suite import load_suite

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "envoy"
PICKER = "spiffe://acme.prod/ns/warehouse/sa/picker"

POLICY = """\
policy api {
  target resource.type == "inventory"

  forbid blocked_network
    when context.source_ip in cidr("203.0.113.0/24")
    reason "{context.source_ip} is blocked"

  forbid late
    when now > time("2026-11-28T00:00:00Z")

  permit picker_reserves
    when identity.id == "spiffe://acme.prod/ns/warehouse/sa/picker"
     and action.name == "POST"
     and resource.path matches "/v1/items/*/reservations"
     and resource.tenant == "acme"
     and identity.claims.scp contains "inventory:write"
     and context.headers["x-team"] == "warehouse"

  permit never
    when action.name == "TRACE"
}
"""

SUITE = """\
suite: inventory
context: {time: "2026-11-27T10:05:00Z"}
envoy:                                      # under every Envoy test
  host: inventory.acme.internal
  principal: spiffe://acme.prod/ns/warehouse/sa/picker
  source_address: 10.9.9.9
  context_extensions: {resource_type: inventory, tenant: acme}
  jwt: {sub: picker, scp: ["inventory:write"]}
tests:
  - name: the picker reserves
    envoy:
      method: POST
      path: /v1/items/sku-1/reservations?dry_run=false
      headers: {X-Team: warehouse, ":path": /ignored}
      source_address: "10.1.2.3:41522"
    expect: allow
    reasons: [api.picker_reserves]
  - name: a blocked network is refused
    envoy:
      method: POST
      path: /v1/items/sku-1/reservations
      headers: {x-team: warehouse}
      source_address: 203.0.113.9
    expect: deny
    reasons: [api.blocked_network]
  - name: another tenant's route
    envoy:
      method: POST
      path: /v1/items/sku-1/reservations
      headers: {x-team: warehouse}
      context_extensions: {tenant: globex}
    expect: deny
    reasons: [default]
  - name: the envoy time wins over the suite's
    envoy: {method: POST, path: /v1/items/sku-1/reservations, headers: {x-team: warehouse},
            time: "2026-11-29T00:00:00Z"}
    expect: deny
    reasons: [api.late]
  - name: with changes the mapped request
    envoy: {method: POST, path: /v1/items/sku-1/reservations, headers: {x-team: warehouse}}
    with: {identity: {claims: {scp: ["inventory:read"]}}}
    expect: deny
"""


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["test", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def project(tmp_path: Path, suite: str = SUITE) -> Path:
    return write_files(tmp_path, {"api.pdl": POLICY, "api_test.yaml": suite})


def test_envoy_tests_run_and_pass(tmp_path, capsys):
    project(tmp_path)
    code, out, err = run_cli(capsys, tmp_path, "-v")
    assert code == 0, out + err
    assert "5 passed, 0 failed" in out


def test_the_request_is_the_servers_mapping_of_the_check_request(tmp_path):
    suite = load_suite(project(tmp_path) / "api_test.yaml")
    case = suite.tests[0]
    assert case.request["identity"] == {"type": "workload", "id": PICKER, "spiffe_id": PICKER,
                                        "claims": {"sub": "picker", "scp": ["inventory:write"]}}
    assert case.request["action"] == {"name": "POST"}
    assert case.request["resource"] == {"type": "inventory", "id": "/v1/items/sku-1/reservations",
                                        "path": "/v1/items/sku-1/reservations", "host": "inventory.acme.internal",
                                        "tenant": "acme"}
    assert case.request["context"] == {"headers": {"x-team": "warehouse"}, "source_ip": "10.1.2.3",
                                       "time": "2026-11-27T10:05:00Z"}
    # The same request as Envoy would send it, in proto3 JSON, maps to the same pdp request.
    sent = json_format.ParseDict({"attributes": {
        "source": {"principal": PICKER, "address": {"socketAddress": {"address": "10.1.2.3", "portValue": 41522}}},
        "request": {"time": "2026-11-27T10:05:00Z", "http": {
            "method": "POST", "path": "/v1/items/sku-1/reservations?dry_run=false", "host": "inventory.acme.internal",
            "headers": {"x-team": "warehouse", ":path": "/ignored"}}},
        "contextExtensions": {"resource_type": "inventory", "tenant": "acme"},
        "metadataContext": {"filterMetadata": {"envoy.filters.http.jwt_authn": {
            "jwt_payload": {"sub": "picker", "scp": ["inventory:write"]}}}}}}, ext.CheckRequest())
    assert envoy_to_request(sent) == case.request


def test_a_failing_envoy_test_shows_the_trace(tmp_path, capsys):
    project(tmp_path, SUITE.replace("    expect: allow\n    reasons: [api.picker_reserves]\n",
                                    "    expect: deny\n"))
    code, out, _ = run_cli(capsys, tmp_path)
    assert code == 1
    assert "FAIL inventory::the picker reserves: expected DENY, got ALLOW" in out
    assert "permit api.picker_reserves: APPLIED" in out


def test_coverage_counts_envoy_tests(tmp_path, capsys):
    project(tmp_path)
    code, out, _ = run_cli(capsys, tmp_path, "--coverage")
    assert code == 0
    assert "Evaluated but no test made them apply:\n  permit api.never " in out
    assert "picker_reserves" not in out and "blocked_network" not in out  # both applied in some test
    row = next(line for line in out.splitlines() if line.startswith("api "))
    assert row.split()[1:4] == ["4", "3", "4"]  # rules, applied, evaluated


def test_no_time_in_envoy_or_suite_leaves_context_time_out(tmp_path):
    suite = load_suite(project(tmp_path, "tests:\n  - name: t\n    envoy: {method: GET, path: /x}\n"
                                         "    expect: deny\n") / "api_test.yaml")
    assert suite.tests[0].request["context"] == {"headers": {}}
    assert suite.tests[0].request["identity"] == {"type": "anonymous", "id": "anonymous"}


def test_certificate_and_epoch_time_reach_the_check_request():
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    request = to_check_request({"method": "GET", "certificate": pem, "time": 1795773900,
                                "source_address": "[fd00::1]:443"})
    source = request.attributes.source
    assert unquote(source.certificate) == pem and " " not in source.certificate
    assert request.attributes.request.time.ToJsonString() == "2026-11-27T10:05:00Z"
    assert (source.address.socket_address.address, source.address.socket_address.port_value) == ("fd00::1", 443)
    encoded = to_check_request({"certificate": source.certificate}).attributes.source.certificate
    assert encoded == source.certificate  # already URL-encoded: kept


BROKEN = [
    # (the test's lines, line:column of the error, message)
    ("    envoy: {method: GET, pth: /x}\n", "3:26", "unknown key 'pth' in 'envoy'; expected one of: method, path"),
    ("    envoy: {method: 5}\n", "3:21", "'envoy.method' must be a string, got a number"),
    ("    envoy: {method: GET, headers: {x-n: 5}}\n", "3:41", "'envoy.headers' entry 'x-n' must be a string"),
    ("    envoy: {method: GET, context_extensions: [a]}\n", "3:46", "'envoy.context_extensions' must be a mapping"),
    ("    envoy: {method: GET, source_address: 'nope:1'}\n", "3:42", "must be an IP address, or IP:port, got 'nope:1'"),
    ("    envoy: {method: GET, time: yesterday}\n", "3:32", "'envoy.time' must be an RFC 3339 time"),
    ("    envoy: {method: GET, jwt: [a]}\n", "3:31", "'envoy.jwt' must be a mapping"),
    ("    envoy: GET /x\n", "3:12", "'envoy' must be a mapping (method, path, principal, ...), got a string"),
    ("    envoy: {path: /x}\n", "3:12", "test 't': the request is not valid: action.name"),
    ("    envoy: {method: GET}\n    identity: {type: w, id: x}\n", "4:5",
     "test 't' gives its request in 'envoy', so it cannot give 'identity' too"),
]


@pytest.mark.parametrize("lines, where, message", BROKEN)
def test_a_bad_envoy_test_is_a_positioned_error(tmp_path, capsys, lines, where, message):
    project(tmp_path, "tests:\n  - name: t\n" + lines + "    expect: deny\n")
    code, out, err = run_cli(capsys, tmp_path)
    assert code == 1 and "Traceback" not in err
    assert err.startswith(f"{tmp_path / 'api_test.yaml'}:{where}: "), err
    assert message in err.splitlines()[0]
    assert "^" in err


def test_a_bad_suite_level_envoy_entry_is_positioned_in_it(tmp_path, capsys):
    project(tmp_path, "envoy: {principal: 7}\ntests:\n  - name: t\n    envoy: {method: GET}\n    expect: deny\n"
                      "  - name: u\n    envoy: {method: PUT}\n    expect: deny\n")
    code, _, err = run_cli(capsys, tmp_path)
    assert code == 1
    assert err.startswith(f"{tmp_path / 'api_test.yaml'}:1:20: the suite's 'envoy': 'envoy.principal' must be a "
                          f"string")
    assert err.count("must be a string") == 1  # once, though both tests meet it
    project(tmp_path, "envoy: [x]\ntests: []\n")
    _, _, err = run_cli(capsys, tmp_path)
    assert err.startswith(f"{tmp_path / 'api_test.yaml'}:1:8: the suite's 'envoy' must be a mapping")


def test_the_example_suite_passes(capsys):
    code, out, err = run_cli(capsys, EXAMPLE, "--coverage")
    assert code == 0, out + err
    assert "0 failed" in out
    assert "100.0%" in out


@pytest.mark.parametrize("page", ["envoy.md", "suites.md"])
def test_the_docs_excerpt_is_the_example_suite(page):
    import yaml

    docs = (EXAMPLE.parent.parent / "docs" / page).read_text(encoding="utf-8")
    start = docs.index("```yaml\n# examples/envoy/inventory_test.yaml (excerpt)")
    excerpt = yaml.safe_load(docs[start + len("```yaml\n"):docs.index("```\n", start + 10)])
    shipped = yaml.safe_load((EXAMPLE / "inventory_test.yaml").read_text(encoding="utf-8"))
    assert excerpt["envoy"] == shipped["envoy"]
    assert all(test in shipped["tests"] for test in excerpt["tests"])


pytest_plugins = ["pytester"]


def test_the_pytest_plugin_runs_envoy_tests(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.mkdir("policies")
    (pytester.path / "policies" / "api.pdl").write_text(POLICY)
    (pytester.path / "policies" / "api_test.yaml").write_text(SUITE)
    (pytester.path / "policies" / "broken_test.yaml").write_text(textwrap.dedent("""\
        tests:
          - name: t
            envoy: {method: GET, pth: /x}
            expect: deny
        """))
    result = pytester.runpytest("-p", "pdp.testing.pytest_plugin", "-p", "no:cacheprovider", "--pdp-suites",
                                "--continue-on-collection-errors", "policies", "-v")
    result.assert_outcomes(passed=5, errors=1)
    result.stdout.fnmatch_lines(["*api_test.yaml::the picker reserves PASSED*",
                                 "policies/broken_test.yaml:3:26: test 't': unknown key 'pth' in 'envoy'*"])
