"""`pdp report`: controls (annotations) ⇒ the rules that enforce them ⇒ the tests that cover them."""

from __future__ import annotations

import json
from pathlib import Path

from pdp.cli import main

from conftest import write_files

POLICY = """\
@owasp("NHI7")
@nist_csf("PR.AA-01")
policy creds {
  forbid too_old
    unless age(identity.credential.issued_at) < 1h

  @owasp("NHI2")
  @nist_csf("RS.MI-01, PR.AA-01")
  @soc2("CC6.1")
  forbid revoked
    when identity.credential.id in ["leaked"]

  @owasp("NHI7")
  forbid never_tested
    when identity.id == "nobody"
}

policy grants {
  permit anyone when true
}
"""

SUITE = """\
suite: creds
context: {time: "2026-11-27T10:05:00Z"}
fixtures:
  identities:
    bot: {type: workload, id: bot, credential: {id: ok, issued_at: "2026-11-27T10:00:00Z"}}
tests:
  - name: fresh
    identity: bot
    action: read
    resource: {type: doc}
    expect: allow
  - name: old
    identity: bot
    action: read
    resource: {type: doc}
    with: {identity: {credential: {issued_at: "2026-11-27T08:00:00Z"}}}
    expect: deny
  - name: leaked
    identity: bot
    action: read
    resource: {type: doc}
    with: {identity: {credential: {id: leaked}}}
    expect: allow
"""


def report(tmp_path, capsys, *args: str) -> tuple[int, str, str]:
    write_files(tmp_path, {"creds.pdl": POLICY, "creds_test.yaml": SUITE})
    code = main(["report", str(tmp_path), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_maps_controls_to_rules_and_tests(tmp_path, capsys):
    code, out, err = report(tmp_path, capsys, "--format", "json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["summary"] == {"rules": 4, "tests": 3, "passed": 2, "failed": 1, "rule_coverage": 75.0}
    owasp, csf = data["frameworks"]
    assert owasp["key"] == "owasp" and owasp["title"] == "OWASP Non-Human Identities Top 10 (2025)"
    controls = {c["id"]: c for c in owasp["controls"]}
    assert list(controls) == [f"NHI{i}" for i in range(1, 11)]  # every risk, in order, gaps included
    assert controls["NHI1"] == {"id": "NHI1", "name": "Improper Offboarding", "status": "not addressed", "rules": []}
    nhi7 = controls["NHI7"]
    assert nhi7["name"] == "Long-Lived Secrets" and nhi7["status"] == "partly covered"
    assert [(r["rule"], [t["id"] for t in r["tests"]]) for r in nhi7["rules"]] == [
        ("creds.too_old", ["creds::old"]), ("creds.never_tested", [])]
    assert nhi7["rules"][0]["file"] == str(tmp_path / "creds.pdl") and nhi7["rules"][0]["line"] == 4
    nhi2 = controls["NHI2"]
    assert nhi2["status"] == "covered"
    assert nhi2["rules"][0]["tests"] == [{"id": "creds::leaked", "passed": False, "file": str(tmp_path / "creds_test.yaml"),
                                          "line": 18}]
    csf_controls = {c["id"]: c for c in csf["controls"]}
    assert list(csf_controls) == ["PR.AA-01", "RS.MI-01"]  # only what rules name
    assert csf_controls["PR.AA-01"]["name"] == "Identity Management, Authentication, and Access Control"
    assert [r["rule"] for r in csf_controls["PR.AA-01"]["rules"]] == ["creds.too_old", "creds.revoked",
                                                                        "creds.never_tested"]
    assert data["unannotated"] == [{"rule": "grants.anyone", "effect": "permit",
                                    "file": str(tmp_path / "creds.pdl"), "line": 19}]


def test_text_report(tmp_path, capsys):
    code, out, _ = report(tmp_path, capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Control report — revision ")
    assert lines[0].endswith(": 4 rules, 3 tests (2 passed, 1 failed), rule coverage 75.0%")
    assert "OWASP Non-Human Identities Top 10 (2025)  (annotation @owasp)" in lines
    assert "  NHI1  Improper Offboarding  [not addressed]" in lines
    assert "  NHI2  Secret Leakage  [covered]" in lines
    assert "      tested by creds::leaked  (FAILING)" in lines
    assert "  NHI7  Long-Lived Secrets  [partly covered]" in lines
    assert "      no test makes it apply" in lines
    assert "Rules with no @owasp or @nist_csf annotation:" in lines
    assert f"  permit grants.anyone  ({tmp_path / 'creds.pdl'}:19)" in lines


def test_markdown_report(tmp_path, capsys):
    code, out, _ = report(tmp_path, capsys, "--format", "markdown")
    assert code == 0
    assert out.startswith("# Control report\n\nRevision ")
    assert "## OWASP Non-Human Identities Top 10 (2025)" in out
    assert "| Control | Name | Rules | Tests | Status |" in out
    assert "| NHI7 | Long-Lived Secrets | 2 | 1 | partly covered |" in out
    assert "| NHI1 | Improper Offboarding | 0 | 0 | not addressed |" in out
    assert "### NHI2 Secret Leakage" in out
    assert "- `forbid creds.revoked`" in out and "  - creds::leaked — **failing**" in out
    assert "  - **no test makes it apply**" in out
    assert "## Rules without a control annotation" in out


def test_any_annotation_key_can_be_a_framework(tmp_path, capsys):
    code, out, _ = report(tmp_path, capsys, "--format", "json", "--framework", "soc2")
    data = json.loads(out)
    (soc2,) = data["frameworks"]
    assert soc2["title"] == "@soc2"
    assert [(c["id"], c["status"], [r["rule"] for r in c["rules"]]) for c in soc2["controls"]] == [
        ("CC6.1", "covered", ["creds.revoked"])]
    assert [r["rule"] for r in data["unannotated"]] == ["creds.too_old", "creds.never_tested", "grants.anyone"]


def test_a_broken_suite_is_an_error(tmp_path, capsys):
    write_files(tmp_path, {"creds.pdl": POLICY, "creds_test.yaml": "tests: 3\n"})
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path / 'creds_test.yaml'}:1:8: 'tests' must be a list")


def test_shipped_library_covers_every_owasp_risk(capsys):
    policies = Path(__file__).resolve().parents[1] / "policies"
    assert main(["report", str(policies), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["failed"] == 0 and data["summary"]["rule_coverage"] == 100.0
    owasp = data["frameworks"][0]
    assert {c["id"]: c["status"] for c in owasp["controls"]} == {f"NHI{i}": "covered" for i in range(1, 11)}
    assert data["unannotated"] == []
