"""Policy test suites (SPEC §6): the suite format, the runner, coverage, and `pdp test`."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET

import pytest

import pdp
from pdp.cli import main
from pdp.testing.runner import Tester
from pdp.testing.suite import load_suite

from conftest import write_files

POLICY = """\
policy payments {
  target resource.type == "payment"

  forbid long_lived_credential
    unless age(identity.credential.issued_at) < 1h
    reason "credential issued {age(identity.credential.issued_at)}s ago"

  forbid cross_environment
    when identity.env != resource.env
    reason "a {identity.env} identity may not act on {resource.env} resources"

  permit billing_may_charge
    when identity.id in data.billers and action.name in ["charge", "refund"]
    reason "billing charges"
}

policy archive {
  target resource.type == "archive"
  permit never_reached when true
}
"""

DATA = "[billing]\n"

SUITE = """\
suite: payments
context: {time: "2026-11-27T10:05:00Z"}
fixtures:
  identities:
    billing: {type: workload, id: billing, env: prod, credential: {issued_at: "2026-11-27T10:00:00Z"}}
  resources:
    pay1: {type: payment, id: pay-1, env: prod}
tests:
  - name: fresh billing credential may charge
    identity: billing
    action: charge
    resource: pay1
    expect: allow
    reasons: [payments.billing_may_charge]
  - name: an old credential is refused
    identity: billing
    action: charge
    resource: pay1
    with: {identity: {credential: {issued_at: "2026-11-27T08:00:00Z"}}}
    expect: deny
    reasons: [payments.long_lived_credential]
"""


def project(tmp_path, suite: str = SUITE, **files: str):
    return write_files(tmp_path, {"payments.pdl": POLICY, "billers.data.yaml": DATA,
                                  "payments_test.yaml": suite, **files})


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["test", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


# ---- the format ------------------------------------------------------------------------------


def test_fixtures_inline_maps_context_and_with_build_the_request(tmp_path):
    suite_text = """\
    suite: s
    context: {time: "2026-11-27T10:05:00Z", source_ip: "10.0.0.1"}
    fixtures:
      identities:
        bot: {type: workload, id: bot, scopes: [a, b], credential: {kind: jwt, id: t1}}
      actions:
        pay: {name: charge, method: POST}
      contexts:
        office: {source_ip: "10.50.0.1", headers: {x: "1"}}
    tests:
      - name: fixture names
        identity: bot
        action: pay
        resource: {type: payment, id: p}
        context: office
        with: {identity: {credential: {id: null, kind: api_key}}, context: {headers: {y: "2"}}}
        expect: deny
      - name: a bare action name and no context of its own
        identity: {type: workload, id: inline}
        action: refund
        resource: {type: payment, id: p}
        expect: ALLOW
    """
    path = write_files(tmp_path, {"s_test.yaml": textwrap.dedent(suite_text)}) / "s_test.yaml"
    suite = load_suite(path)
    first, second = suite.tests
    assert first.request == {
        "identity": {"type": "workload", "id": "bot", "scopes": ["a", "b"], "credential": {"kind": "api_key"}},
        "action": {"name": "charge", "method": "POST"},
        "resource": {"type": "payment", "id": "p"},
        "context": {"time": "2026-11-27T10:05:00Z", "source_ip": "10.50.0.1", "headers": {"x": "1", "y": "2"}},
    }
    assert first.expect == "DENY" and first.id == "s::fixture names"
    assert second.request["action"] == {"name": "refund"}
    assert second.request["context"] == {"time": "2026-11-27T10:05:00Z", "source_ip": "10.0.0.1"}
    assert second.expect == "ALLOW"
    assert (first.line, first.column) == (11, 5)


def test_suite_name_defaults_to_the_file_name(tmp_path):
    text = "tests:\n  - {name: t, identity: {type: w, id: x}, action: a, resource: {type: r}, expect: deny}\n"
    path = write_files(tmp_path, {"billing_rules_test.yaml": text}) / "billing_rules_test.yaml"
    assert load_suite(path).tests[0].id == "billing_rules::t"


def test_matrix_expands_to_one_test_per_cell(tmp_path):
    text = """\
    suite: review
    fixtures:
      identities:
        a: {type: workload, id: a}
        b: {type: workload, id: b}
      resources:
        r1: {type: payment, id: "1"}
        r2: {type: payment, id: "2"}
    matrix:
      - name: access
        identities: [a, b]
        actions: [read, write]
        resources: [r1, r2]
        expect:
          a: {r1: [allow, deny], r2: deny}
          b: allow
      - name: one resource
        identities: [a]
        actions: [read, write]
        resources: [r1]
        expect:
          a: [deny, allow]
    """
    path = write_files(tmp_path, {"review_test.yaml": textwrap.dedent(text)}) / "review_test.yaml"
    cells = {(c.name, c.expect) for c in load_suite(path).tests}
    assert cells == {
        ("access [a read r1]", "ALLOW"), ("access [a write r1]", "DENY"),
        ("access [a read r2]", "DENY"), ("access [a write r2]", "DENY"),
        ("access [b read r1]", "ALLOW"), ("access [b write r1]", "ALLOW"),
        ("access [b read r2]", "ALLOW"), ("access [b write r2]", "ALLOW"),
        ("one resource [a read r1]", "DENY"), ("one resource [a write r1]", "ALLOW"),
    }
    cell = next(c for c in load_suite(path).tests if c.name == "access [a write r1]")
    assert cell.request["identity"] == {"type": "workload", "id": "a"}
    assert cell.request["action"] == {"name": "write"}
    assert (cell.line, cell.column) == (15, 23)  # the cell itself


BROKEN = [
    ("tests: [\n", "2:1", "did not find expected node content", None),
    ("tests:\n  - name: t\n    identity: ghost\n    action: a\n    resource: {type: r}\n    expect: deny\n",
     "3:15", "unknown identity fixture 'ghost' (known: none are defined)", None),
    ("tests:\n  - name: t\n    identity: {type: w, id: x}\n    action: a\n    expect: deny\n",
     "2:5", "test 't' is missing the required key 'resource'", None),
    ("tests:\n  - name: t\n    identity: {type: w, id: x}\n    action: a\n    resource: {type: r}\n"
     "    expect: deny\n    reason: [x.y]\n", "7:5", "unknown key 'reason' in a test", None),
    ("tests:\n  - name: t\n    identity: {type: w, id: x}\n    action: a\n    resource: {type: r}\n"
     "    expect: permit\n", "6:13", "expected 'allow' or 'deny', got 'permit'", None),
    ("tests:\n  - name: t\n    identity: {type: w}\n    action: a\n    resource: {type: r}\n    expect: deny\n",
     "3:15", "test 't': the request is not valid: identity.id: a non-empty string is required", None),
    ("tests:\n  - {name: t, identity: {type: w, id: x}, action: a, resource: {type: r}, expect: deny}\n"
     "  - {name: t, identity: {type: w, id: x}, action: a, resource: {type: r}, expect: deny}\n",
     "3:5", "duplicate test name 't' (first at line 2, column 5)", None),
    ("suit: x\ntests: []\n", "1:1", "unknown key 'suit' in the suite", None),
    ("- just a list\n", "1:1", "a test suite is a mapping with 'tests' or 'matrix', got a list", None),
    ("fixtures:\n  identities: {a: {type: w, id: a}}\nmatrix:\n  - name: m\n    identities: [a]\n"
     "    actions: [x, y]\n    resources: [{type: r}]\n    expect: {a: deny}\n",
     "7:16", "'resources' of a matrix must be a non-empty list of fixture names", None),
    ("fixtures:\n  identities: {a: {type: w, id: a}, b: {type: w, id: b}}\n  resources: {r: {type: r}}\n"
     "matrix:\n  - name: m\n    identities: [a, b]\n    actions: [x, y]\n    resources: [r]\n"
     "    expect:\n      a: [deny]\n", "10:7", "matrix 'm': the expectations table has no row for identity 'b'",
     "10:10: row 'a' has 1 entries but the matrix has 2 actions (x, y)"),
    ("tests:\n  - {name: t, identity: {type: w, id: x}, action: a, resource: {type: r}, expect: deny,\n"
     "     reasons: [payments.billing_may_charg]}\n", "3:16",
     "unknown rule 'payments.billing_may_charg' in reasons; did you mean 'payments.billing_may_charge'?", None),
]


@pytest.mark.parametrize("text, where, message, also", BROKEN)
def test_a_broken_suite_is_a_positioned_error_never_a_traceback(tmp_path, capsys, text, where, message, also):
    project(tmp_path, suite=text)
    code, out, err = run_cli(capsys, tmp_path)
    assert code == 1
    assert "Traceback" not in err
    assert err.startswith(f"{tmp_path / 'payments_test.yaml'}:{where}: {message}")
    assert "^" in err  # the source line and a caret
    if also:
        assert also in err


def test_bad_data_override_is_positioned(tmp_path, capsys):
    suite = SUITE.replace("suite: payments\n", "suite: payments\ndata: {billers: 3, \"a/b\": 1}\n")
    project(tmp_path, suite=suite)
    code, _, err = run_cli(capsys, tmp_path)
    assert code == 1
    assert err.startswith(f"{tmp_path / 'payments_test.yaml'}:2:7: 'a/b' cannot be a data name")


def test_a_broken_policy_stops_the_run_with_its_error(tmp_path, capsys):
    project(tmp_path, **{"payments.pdl": "policy p { permit x when }"})
    code, out, err = run_cli(capsys, tmp_path)
    assert code == 1 and out == ""
    assert err.startswith(f"{tmp_path / 'payments.pdl'}:1:")


# ---- running ----------------------------------------------------------------------------------


def test_passing_suite_prints_the_summary_and_exits_0(tmp_path, capsys):
    project(tmp_path)
    code, out, err = run_cli(capsys, tmp_path)
    assert (code, out, err) == (0, "2 passed, 0 failed\n", "")
    code, out, _ = run_cli(capsys, tmp_path, "-v")
    assert out.splitlines() == ["PASS payments::fresh billing credential may charge",
                                "PASS payments::an old credential is refused", "2 passed, 0 failed"]


def test_a_failure_shows_expected_actual_reasons_and_the_trace(tmp_path, capsys):
    suite = SUITE + """\
  - name: refund is allowed too
    identity: billing
    action: refund
    resource: {type: payment, id: p, env: staging}
    expect: allow
  - name: read is allowed
    identity: billing
    action: read
    resource: pay1
    expect: allow
  - name: the reason is the wrong one
    identity: billing
    action: charge
    resource: pay1
    expect: allow
    reasons: [payments.never_reached, archive.never_reached]
"""
    project(tmp_path, suite=suite.replace("payments.never_reached", "payments.cross_environment"))
    code, out, _ = run_cli(capsys, tmp_path)
    assert code == 1
    assert out.splitlines()[-1] == "2 passed, 3 failed"
    blocks = out.split("\n\n")
    refund = blocks[0]
    assert refund.startswith("FAIL payments::refund is allowed too: expected ALLOW, got DENY\n"
                             f"  at {tmp_path / 'payments_test.yaml'}:22:5\n"
                             "  expected: ALLOW\n  actual:   DENY\n"
                             "    because forbid payments.cross_environment: a prod identity may not act on "
                             "staging resources\n  trace:\n"
                             "    forbid payments.cross_environment: APPLIED — every condition held\n")
    assert 'when identity.env != resource.env  ⇒  true' in refund
    assert "long_lived_credential" not in refund  # only the rules that decided
    read = blocks[1]
    assert "because no permit rule matched (default deny)" in read
    # nothing permitted: the permits that were evaluated show why they did not apply
    assert "permit payments.billing_may_charge: NOT APPLIED — when is false" in read
    assert 'action.name in ["charge", "refund"]  ⇒  false' in read
    assert "archive.never_reached" not in read  # its policy's target was false: not worth showing
    wrong = blocks[2]
    assert wrong.startswith("FAIL payments::the reason is the wrong one: expected among the reasons: "
                            "payments.cross_environment, archive.never_reached; the reasons were: "
                            "payments.billing_may_charge\n")
    assert "  expected: ALLOW with payments.cross_environment, archive.never_reached among the reasons" in wrong
    assert "forbid payments.cross_environment: NOT APPLIED — when is false" in wrong
    assert "permit archive.never_reached: NOT APPLIED — the policy's target is false" in wrong


def test_k_selects_tests_by_suite_and_name(tmp_path, capsys):
    project(tmp_path)
    code, out, _ = run_cli(capsys, tmp_path, "-k", "OLD CREDENTIAL", "-v")
    assert code == 0 and out.splitlines() == ["PASS payments::an old credential is refused", "1 passed, 0 failed"]
    code, out, _ = run_cli(capsys, tmp_path, "-k", "payments::", "-k", "nothing")
    assert out == "2 passed, 0 failed\n"
    code, out, err = run_cli(capsys, tmp_path, "-k", "nothing")
    assert code == 1 and "no test matches -k nothing" in err


def test_no_suites_is_an_error(tmp_path, capsys):
    write_files(tmp_path, {"payments.pdl": POLICY, "billers.data.yaml": DATA})
    code, out, err = run_cli(capsys, tmp_path)
    assert code == 1 and "no test suites (*_test.yaml)" in err


def test_junit_xml(tmp_path, capsys):
    suite = SUITE.replace("expect: deny", "expect: allow")
    project(tmp_path / "p", suite=suite)
    target = tmp_path / "out.xml"
    code, _, _ = run_cli(capsys, tmp_path / "p", "--junit", target)
    assert code == 1
    root = ET.parse(target).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    (suite_el,) = root.findall("testsuite")
    assert suite_el.get("name") == "payments" and suite_el.get("failures") == "1"
    cases = suite_el.findall("testcase")
    assert [c.get("name") for c in cases] == ["fresh billing credential may charge", "an old credential is refused"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure.get("message") == "expected ALLOW, got DENY"
    assert "because forbid payments.long_lived_credential" in failure.text
    assert cases[1].get("classname") == "payments" and cases[1].get("line") == "15"


def test_data_override_applies_to_its_suite_only(tmp_path, capsys):
    other = SUITE.replace("suite: payments", "suite: nobody_bills\ndata: {billers: []}").replace(
        "expect: allow", "expect: deny").replace("reasons: [payments.billing_may_charge]", "reasons: [default]")
    project(tmp_path, **{"other_test.yaml": other})
    code, out, _ = run_cli(capsys, tmp_path, "-v")
    assert code == 0, out
    assert "PASS nobody_bills::fresh billing credential may charge" in out
    assert "PASS payments::fresh billing credential may charge" in out


def test_without_context_time_a_test_runs_on_the_wall_clock(tmp_path, capsys):
    suite = SUITE.replace('context: {time: "2026-11-27T10:05:00Z"}\n', "")
    project(tmp_path, suite=suite)
    code, out, _ = run_cli(capsys, tmp_path)
    # Both credentials are years old on the wall clock (issued in 2026 ... or not yet issued);
    # the point is that the run decides with now = the clock, not that a time is required.
    assert "passed" in out and code in (0, 1)
    tester = Tester.load([tmp_path])
    (suite_obj,) = tester.load_suites()
    assert "context" not in suite_obj.tests[0].request


# ---- coverage ----------------------------------------------------------------------------------


def test_coverage_table_lists_rules_never_applied_and_never_evaluated(tmp_path, capsys):
    project(tmp_path)
    code, out, _ = run_cli(capsys, tmp_path, "--coverage")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Rule coverage (a rule is covered when it applied in at least one test):"
    assert lines[1].split() == ["policy", "rules", "applied", "evaluated", "coverage"]
    assert lines[2].split() == ["payments", "3", "2", "3", "66.7%"]
    assert lines[3].split() == ["archive", "1", "0", "0", "0.0%"]
    assert lines[5].split() == ["total", "4", "2", "3", "50.0%"]
    assert "Evaluated but no test made them apply:" in out
    assert f"  forbid payments.cross_environment  ({tmp_path / 'payments.pdl'}:8; evaluated in 2 tests)" in out
    assert "Never evaluated (no test reached them):" in out
    assert f"  permit archive.never_reached  ({tmp_path / 'payments.pdl'}:19)" in out
    assert lines[-1] == "2 passed, 0 failed"


def test_min_coverage_fails_below_the_threshold(tmp_path, capsys):
    project(tmp_path)
    code, out, _ = run_cli(capsys, tmp_path, "--min-coverage", "60")
    assert code == 1
    assert "coverage 50.0% is below the minimum of 60%" in out and out.endswith("2 passed, 0 failed\n")
    code, out, _ = run_cli(capsys, tmp_path, "--min-coverage", "50%")
    assert code == 0 and "Rule coverage" in out
    with pytest.raises(SystemExit) as exc:
        main(["test", str(tmp_path), "--min-coverage", "150"])
    assert exc.value.code == 2


def test_coverage_semantics(tmp_path):
    """Covered = applied (a forbid that failed closed applies); evaluated = the rule itself was
    reached: not behind a false target, and not a permit skipped because a forbid applied."""
    policy = """\
    policy p {
      target resource.type == "doc"
      forbid broken when resource.missing == 1
      permit open when true
    }
    policy q {
      target resource.type == "other"
      permit other when true
    }
    """
    suite = """\
    tests:
      - {name: doc, identity: {type: w, id: x}, action: read, resource: {type: doc}, expect: deny}
    """
    write_files(tmp_path, {"p.pdl": textwrap.dedent(policy), "s_test.yaml": textwrap.dedent(suite)})
    tester = Tester.load([tmp_path])
    run = tester.run(tester.load_suites())
    assert run.passed == 1
    by_rule = {r.rule.id: r for r in run.coverage.rules}
    assert by_rule["p.broken"].applied_in == ["s::doc"]  # failed closed: it applied
    assert by_rule["p.open"].evaluated_in == []  # a forbid decided first
    assert by_rule["q.other"].evaluated_in == []  # its target was false


def test_decide_and_explain_disagreeing_fails_the_test(tmp_path, monkeypatch):
    project(tmp_path)
    tester = Tester.load([tmp_path])
    (suite,) = tester.load_suites()
    real = tester.engine.decide
    allow = real(suite.tests[0].request)
    monkeypatch.setattr(tester.engine, "decide", lambda request: allow)
    result = tester.run_case(suite.tests[1], suite)
    assert not result.passed
    backend = tester.engine.backend
    assert any(f"engine.decide ({backend}) and engine.explain (the reference) disagree: ALLOW "
               "['payments.billing_may_charge'] vs DENY ['payments.long_lived_credential']" in p
               for p in result.problems)


def test_suites_under_several_paths_test_the_whole_set(tmp_path, capsys):
    write_files(tmp_path, {"a/payments.pdl": POLICY, "b/billers.data.yaml": DATA, "b/payments_test.yaml": SUITE})
    code, out, _ = run_cli(capsys, tmp_path / "a", tmp_path / "b")
    assert (code, out) == (0, "2 passed, 0 failed\n")


def test_engine_api_is_unchanged_by_data_overrides(tmp_path):
    project(tmp_path, **{"x_test.yaml": SUITE.replace("suite: payments", "suite: x\ndata: {billers: [other]}")})
    tester = Tester.load([tmp_path])
    suites = {s.name: s for s in tester.load_suites()}
    assert tester.engine_for(suites["payments"]) is tester.engine
    overridden = tester.engine_for(suites["x"])
    assert isinstance(overridden, pdp.Engine) and overridden is not tester.engine
    assert tester.engine_for(suites["x"]) is overridden  # cached
    assert overridden.rule_ids == tester.engine.rule_ids


def test_a_matrix_row_problem_is_reported_once_not_once_per_resource(tmp_path, capsys):
    project(tmp_path, suite=(
        "fixtures:\n  identities: {a: {type: w, id: a}}\n  resources: {r: {type: r}, s: {type: s}}\n"
        "matrix:\n  - name: m\n    identities: [a]\n    actions: [x, y]\n    resources: [r, s]\n"
        "    expect:\n      a: [deny, deny]\n"))
    code, out, err = run_cli(capsys, tmp_path)
    assert code == 1
    assert err.count("with several resources, row 'a' must be") == 1, err
