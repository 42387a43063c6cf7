"""The command line (SPEC §5): ``pdp.cli.main([...])`` for ``--version``, ``--help``, ``check`` and
``eval``, with their output and exit codes (0 success whatever the decision, 1 a policy or
request error, 2 a usage error), and one real ``python -m pdp`` process."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pdp
from conftest import request, write_files
from pdp.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]

POLICY = """\
@owner("payments-security")
policy payments {
  target resource.type == "payment"

  forbid frozen
    when resource.frozen == true
    reason "account {resource.id} is frozen"

  permit charge
    when action.name == "charge"
    reason "{identity.id} may charge"

  permit always when true
}
"""
RULES = ["payments.frozen", "payments.charge", "payments.always"]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the command; return (exit code, stdout, stderr). argparse exits with SystemExit."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def policies(tmp_path) -> Path:
    return write_files(tmp_path / "policies", {"payments.pdl": POLICY, "limits.data.json": '{"max": 5}'})


def payment(frozen: bool = False) -> dict:
    return request(identity={"id": "billing"}, action="charge",
                   resource={"type": "payment", "id": "acct-1", "frozen": frozen})


@pytest.fixture
def request_file(tmp_path):
    def write(value, name: str = "request.json") -> str:
        path = tmp_path / name
        path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
        return str(path)

    return write


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# ---- version and help --------------------------------------------------------------------


def test_version(capsys):
    code, out, err = run(["--version"], capsys)
    assert (code, out, err) == (0, f"pdp {pdp.__version__}\n", "")


def test_top_level_help_lists_every_command(capsys):
    code, out, err = run(["--help"], capsys)
    assert code == 0 and err == ""
    assert out.startswith("usage: pdp")
    for name in commands():
        assert name in out
    assert {"check", "eval"} <= set(commands())


@pytest.mark.parametrize("command", sorted(commands()))
def test_every_command_has_help_with_an_example(command, capsys):
    code, out, err = run([command, "--help"], capsys)
    assert code == 0 and err == ""
    assert out.startswith(f"usage: pdp {command}")
    assert "example" in out.lower()
    assert f"$ pdp {command}" in out


# ---- usage errors exit 2 -----------------------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["eval", "policies"], "one of the arguments --request/-r --envoy is required"),
    (["check"], "the following arguments are required: PATH"),
    (["eval", "--request", "r.json"], "the following arguments are required: PATH"),
    (["check", "p", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_usage_errors_exit_2_with_the_usage_line(argv, words, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("usage: pdp")
    assert words in err


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, err = run([], capsys)
    assert code == 2 and out == ""
    assert "check" in err and "eval" in err


# ---- check -------------------------------------------------------------------------------


def test_check_ok(policies, capsys):
    revision = pdp.load(policies).revision
    code, out, err = run(["check", str(policies)], capsys)
    assert (code, err) == (0, "")
    assert out == f"ok: 1 policy, 3 rules, 1 data file (revision {revision})\n"


def test_check_ok_json(policies, capsys):
    code, out, err = run(["check", str(policies), "--json"], capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == {"ok": True, "policies": 1, "rules": 3, "data": 1,
                               "revision": pdp.load(policies).revision, "warnings": []}


def test_check_counts_several_files(tmp_path, capsys):
    write_files(tmp_path, {"a.pdl": "policy a {\n  permit r\n}\npolicy b {\n}\n", "b.pdl": "policy c {\n  permit r\n  forbid s\n}\n"})
    code, out, _ = run(["check", str(tmp_path / "a.pdl"), str(tmp_path / "b.pdl")], capsys)
    assert code == 0 and out.startswith("ok: 3 policies, 3 rules, 0 data files (revision ")


def test_check_errors_are_positioned_on_stderr(tmp_path, capsys, monkeypatch):
    write_files(tmp_path, {"bad.pdl": 'policy p {\n  permit r when subject.id == "x" && true\n}\n',
                           "worse.pdl": "policy q {\n  permit r when lenn(1)\n  permit r\n}\n"})
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["check", "."], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "bad.pdl:2:35: unexpected character '&'; use 'and' to combine conditions\n"
        '  permit r when subject.id == "x" && true\n'
        "                                  ^\n"
        "worse.pdl:2:17: unknown function 'lenn'; the functions are age, cidr, date, defined, duration, hour, index_by, len, lower, minute, time, upper, weekday\n"
        "  permit r when lenn(1)\n"
        "                ^\n"
        "worse.pdl:3:10: duplicate rule 'r' in policy 'q'; first defined at worse.pdl:2:10\n"
        "  permit r\n"
        "         ^\n"
        "3 errors\n"
    )


def test_check_reports_a_data_path_typo_and_a_bad_data_value(tmp_path, capsys, monkeypatch):
    """Issue 12: a typo in a literal data path printed ok and then every request failed."""
    write_files(tmp_path, {"admins.pdl": "policy admins {\n  permit a when identity.id in data.admins.ids\n}\n",
                           "admins.data.yaml": "admin:\n  ids: [ops, svc]\n"})
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["check", "."], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "admins.pdl:2:44: data.admins.ids is not in the loaded data: data.admins has no key 'ids'; "
        "its keys are 'admin'\n"
        "  permit a when identity.id in data.admins.ids\n"
        "                                           ^\n"
        "1 error\n")
    write_files(tmp_path, {"admins.pdl": "policy admins {\n  permit a when identity.id in data.admins.admin.ids\n}\n",
                           "admins.data.yaml": "admin:\n  ids: [ops, null]\n"})
    code, out, err = run(["check", "."], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("admins.data.yaml:2:14: data.admins.admin.ids[1]: null is not allowed inside a list\n")
    write_files(tmp_path, {"admins.data.yaml": "admin:\n  ids: [ops, svc]\n"})
    assert run(["check", "."], capsys)[0] == 0


def test_check_errors_json(tmp_path, capsys, monkeypatch):
    write_files(tmp_path, {"bad.pdl": "policy p {\n  permit r when nope\n}\n"})
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["check", "bad.pdl", "--json"], capsys)
    assert (code, err) == (1, "")
    assert json.loads(out) == {"ok": False, "errors": [{
        "file": "bad.pdl", "line": 2, "column": 17, "code": "pdl_unknown_name",
        "message": "unknown name 'nope'; expected identity, action, resource, context, token, data, now or a let name"}]}


def test_check_a_missing_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["check", "nowhere"], capsys)
    assert (code, out, err) == (1, "", "nowhere: no such file or directory\n1 error\n")


# ---- eval --------------------------------------------------------------------------------


def without_timing(decision: dict) -> dict:
    assert isinstance(decision.pop("eval_ns"), int)
    return decision


def test_eval_prints_the_decision_as_json(policies, request_file, capsys):
    code, out, err = run(["eval", str(policies), "--request", request_file(payment())], capsys)
    assert (code, err) == (0, "")
    printed = json.loads(out)
    expected = pdp.load(policies).decide(payment()).to_dict()
    assert without_timing(printed) == without_timing(expected)
    assert printed["decision"] == "ALLOW"
    assert [r["rule"] for r in printed["reasons"]] == ["payments.charge", "payments.always"]
    assert printed["reasons"][0] == {"rule": "payments.charge", "effect": "permit", "message": "billing may charge",
                                     "annotations": {"owner": "payments-security"}}


def test_eval_exits_0_on_deny(policies, request_file, capsys):
    code, out, err = run(["eval", str(policies), "-r", request_file(payment(frozen=True))], capsys)
    assert (code, err) == (0, "")
    printed = json.loads(out)
    assert printed["decision"] == "DENY"
    assert printed["reasons"] == [{"rule": "payments.frozen", "effect": "forbid",
                                   "message": "account acct-1 is frozen",
                                   "annotations": {"owner": "payments-security"}}]


def test_eval_default_deny(policies, request_file, capsys):
    code, out, _ = run(["eval", str(policies), "--request", request_file(request())], capsys)
    assert code == 0
    assert json.loads(out)["reasons"] == [{"rule": "default", "effect": "forbid",
                                           "message": "no permit rule matched", "annotations": {}}]


def test_eval_reads_the_request_from_stdin(policies, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(payment(frozen=True))))
    code, out, err = run(["eval", str(policies), "--request", "-"], capsys)
    assert (code, err) == (0, "")
    assert json.loads(out)["decision"] == "DENY"


def test_eval_keeps_unicode_and_big_integers(policies, request_file, capsys, tmp_path):
    write_files(tmp_path / "u", {"u.pdl": 'policy u {\n  permit r reason "{identity.id} {resource.n}"\n}\n'})
    req = request(identity={"id": "żółw"}, resource={"n": 2**64 - 1})
    code, out, _ = run(["eval", str(tmp_path / "u"), "--request", request_file(req)], capsys)
    assert code == 0
    assert '"message": "żółw 18446744073709551615"' in out


def test_eval_takes_several_paths(tmp_path, request_file, capsys):
    write_files(tmp_path, {"a/a.pdl": "policy a {\n  permit r\n}\n", "b.pdl": "policy b {\n  permit r\n}\n"})
    code, out, _ = run(["eval", str(tmp_path / "b.pdl"), str(tmp_path / "a"), "--request", request_file(request())], capsys)
    assert code == 0
    assert [r["rule"] for r in json.loads(out)["reasons"]] == ["b.r", "a.r"]


def test_eval_explain_mentions_every_rule_and_the_decision(policies, request_file, capsys):
    code, out, err = run(["eval", str(policies), "--request", request_file(payment()), "--explain"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    revision = pdp.load(policies).revision
    assert lines[0] == f"ALLOW  (revision {revision})"
    assert "  because permit payments.charge: billing may charge" in lines
    assert "  because permit payments.always" in lines
    for rule in RULES:
        assert any(rule in line and "APPLIED" in line.upper() for line in lines), rule
    assert "forbid payments.frozen: NOT APPLIED — when is false" in lines
    assert "permit payments.always: APPLIED — every condition held" in lines
    # The literal clause `when true` is traced as itself.
    always = lines.index("permit payments.always: APPLIED — every condition held")
    assert "  when true  ⇒  true" in lines[always:]


def test_eval_explain_on_deny_says_permits_were_not_evaluated(policies, request_file, capsys):
    code, out, _ = run(["eval", str(policies), "--request", request_file(payment(frozen=True)), "--explain"], capsys)
    assert code == 0
    assert out.startswith("DENY  (revision ")
    assert "  because forbid payments.frozen: account acct-1 is frozen" in out
    assert "permit payments.charge: NOT EVALUATED" in out
    assert "permit payments.always: NOT EVALUATED" in out


def test_eval_explain_json(policies, request_file, capsys):
    code, out, err = run(["eval", str(policies), "--request", request_file(payment()), "--explain", "--json"], capsys)
    assert (code, err) == (0, "")
    trace = json.loads(out)
    assert trace["decision"]["decision"] == "ALLOW"
    assert [r["rule"] for r in trace["rules"]] == RULES
    assert [r["status"] for r in trace["rules"]] == ["not applied", "applied", "applied"]
    frozen = trace["rules"][0]
    assert [c["clause"] for c in frozen["clauses"]] == ["target", "when"]
    assert frozen["clauses"][1]["expr"] == "resource.frozen == true"
    assert trace["rules"][2]["clauses"] == [{"clause": "target", "expr": 'resource.type == "payment"', "value": True,
                                             "children": [{"expr": "resource.type", "value": "payment"}]},
                                            {"clause": "when", "expr": "true", "value": True}]


def test_eval_explain_shows_errors(tmp_path, request_file, capsys):
    write_files(tmp_path, {"p.pdl": "policy p {\n  forbid missing when identity.team == \"x\"\n}\n"})
    code, out, _ = run(["eval", str(tmp_path), "--request", request_file(request()), "--explain"], capsys)
    assert code == 0
    assert out.startswith("DENY")
    assert "  because forbid p.missing: failed closed: identity.team is missing" in out
    assert "  error in p.missing: identity.team is missing" in out


# ---- eval errors exit 1 ------------------------------------------------------------------


def test_eval_with_a_policy_error(tmp_path, request_file, capsys, monkeypatch):
    write_files(tmp_path, {"bad.pdl": "policy p {\n  permit r when\n"})
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["eval", "bad.pdl", "--request", request_file(request())], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("bad.pdl:2:16: unexpected end of file; expected one of")
    assert err.endswith("  permit r when\n               ^\n")


@pytest.mark.parametrize("req, message", [
    ({"identity": {"id": "x"}, "action": "read", "resource": {"type": "doc"}},
     "identity.type: a non-empty string is required, got missing"),
    ({**request(), "subject": {}}, "subject: unknown top-level key; a request has identity, action, resource and context"),
    ([request()], "a request must be a JSON object, got a list"),
    ({**request(), "context": {"scopes": [None]}}, "context.scopes[0]: null is not allowed inside a list"),
    (request(identity={"n": 2**64}), "identity.n: integer does not fit in 64 bits"),
])
def test_eval_with_a_malformed_request(policies, request_file, capsys, req, message):
    code, out, err = run(["eval", str(policies), "--request", request_file(req)], capsys)
    assert (code, out, err) == (1, "", f"request error: {message}\n")


@pytest.mark.parametrize("text, where, message", [
    ('{"identity": {"type": "w", "id": "x"},\n "action": "read",,}', "2:19",
     "Expecting property name enclosed in double quotes"),
    ("", "1:1", "Expecting value"),
    ('{"identity": {"type": "w", "id": "x", "score": NaN}}', "1:48", "NaN is not a JSON number"),
    ('{"a": "NaN",\n "b": [1, -Infinity]}', "2:11", "-Infinity is not a JSON number"),
    ('{"identity": {}} trailing', "1:18", "Extra data"),
])
def test_eval_with_invalid_json(policies, request_file, capsys, text, where, message):
    path = request_file(text, "bad.json")
    code, out, err = run(["eval", str(policies), "--request", path], capsys)
    assert (code, out, err) == (1, "", f"request error: {path}:{where}: invalid JSON: {message}\n")


def test_eval_with_invalid_json_on_stdin(policies, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("{nope"))
    code, out, err = run(["eval", str(policies), "--request", "-"], capsys)
    assert (code, out) == (1, "")
    assert err == "request error: -:1:2: invalid JSON: Expecting property name enclosed in double quotes\n"


def test_eval_with_a_missing_request_file(policies, tmp_path, capsys):
    missing = str(tmp_path / "nope.json")
    code, out, err = run(["eval", str(policies), "--request", missing], capsys)
    assert (code, out, err) == (1, "", f"request error: cannot read {missing}: No such file or directory\n")


def test_eval_with_a_request_file_that_is_not_utf8(policies, tmp_path, capsys):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"identity": {"type": "w", "id": "é"}}'.encode("latin-1"))
    code, out, err = run(["eval", str(policies), "--request", str(path)], capsys)
    assert (code, out, err) == (1, "", f"request error: {path} is not valid UTF-8\n")


def test_eval_with_a_lone_surrogate_in_the_request_is_an_error_not_a_crash(policies, request_file, capsys):
    path = request_file('{"identity": {"type": "w", "id": "\\ud800"}, "action": "read", "resource": {"type": "doc"}}')
    code, out, err = run(["eval", str(policies), "--request", path], capsys)
    assert (code, out) == (1, "")
    assert err == "request error: identity.id: string holds a lone surrogate U+D800, which is not a character\n"


def test_eval_policy_errors_come_before_request_errors(tmp_path, capsys):
    write_files(tmp_path, {"bad.pdl": "policy p {\n"})
    code, _, err = run(["eval", str(tmp_path / "bad.pdl"), "--request", str(tmp_path / "missing.json")], capsys)
    assert code == 1
    assert "unexpected end of file" in err and "request error" not in err


# ---- a real process ----------------------------------------------------------------------


def _pdp_process(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pdp", *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def test_python_dash_m_pdp_version():
    result = _pdp_process("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"pdp {pdp.__version__}\n", "")


def test_python_dash_m_pdp_eval_from_stdin_and_exit_codes(policies):
    result = _pdp_process("eval", str(policies), "--request", "-", stdin=json.dumps(payment()))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["decision"] == "ALLOW"
    result = _pdp_process("eval", str(policies), "--request", "-", stdin="[]")
    assert (result.returncode, result.stderr) == (1, "request error: a request must be a JSON object, got a list\n")
    result = _pdp_process("nonsense")
    assert result.returncode == 2 and "invalid choice" in result.stderr
