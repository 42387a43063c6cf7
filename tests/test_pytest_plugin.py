"""The pytest plugin: `pytest policies/` collects the *_test.yaml suites as pytest items."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "pdp.testing.pytest_plugin"

POLICY = """\
policy payments {
  target resource.type == "payment"
  forbid long_lived_credential
    unless age(identity.credential.issued_at) < 1h
    reason "credential issued {age(identity.credential.issued_at)}s ago"
  permit billing_may_charge
    when identity.id == "billing" and action.name == "charge"
}
"""

SUITE = """\
suite: payments
context: {time: "2026-11-27T10:05:00Z"}
fixtures:
  identities:
    billing: {type: workload, id: billing, credential: {issued_at: "2026-11-27T10:00:00Z"}}
  resources:
    pay1: {type: payment, id: pay-1}
tests:
  - name: fresh credential may charge
    identity: billing
    action: charge
    resource: pay1
    expect: allow
  - name: old credential may charge
    identity: billing
    action: charge
    resource: pay1
    with: {identity: {credential: {issued_at: "2026-11-27T08:00:00Z"}}}
    expect: allow
matrix:
  - name: review
    identities: [billing]
    actions: [charge, refund]
    resources: [pay1]
    expect: {billing: [allow, deny]}
"""


def run(pytester, *args: str):
    # Whether or not pdp is installed (with its entry point), load the plugin by name alone:
    # other installed plugins are not needed here, and each would slow every inner run.
    return pytester.runpytest("-p", PLUGIN, "-p", "no:cacheprovider", *args)


@pytest.fixture
def project(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.mkdir("policies")
    (pytester.path / "policies" / "payments.pdl").write_text(POLICY)
    (pytester.path / "policies" / "payments_test.yaml").write_text(SUITE)
    return pytester


def test_suites_are_collected_and_run_as_items(project):
    result = run(project, "policies", "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        "policies/payments_test.yaml::fresh credential may charge PASSED*",
        "policies/payments_test.yaml::old credential may charge FAILED*",
        "policies/payments_test.yaml::review ?billing charge pay1? PASSED*",
        "policies/payments_test.yaml::review ?billing refund pay1? PASSED*",
    ])
    # the failure reads like `pdp test`: expected, actual with reasons, and the trace
    result.stdout.fnmatch_lines([
        "*_ payments::old credential may charge _*",
        "expected ALLOW, got DENY",
        "  at policies/payments_test.yaml:14:5",
        "  expected: ALLOW",
        "  actual:   DENY",
        "    because forbid payments.long_lived_credential: credential issued 7500s ago",
        "  trace:",
        "    forbid payments.long_lived_credential: APPLIED*",
    ])
    assert "Traceback" not in result.stdout.str()


def test_k_and_junitxml_work_on_policy_tests(project):
    result = run(project, "policies", "-k", "fresh", "--junitxml", "out.xml")
    result.assert_outcomes(passed=1, deselected=3)
    assert 'name="fresh credential may charge"' in (project.path / "out.xml").read_text()


def test_a_broken_suite_is_a_positioned_collection_error(project):
    (project.path / "policies" / "broken_test.yaml").write_text(
        "tests:\n  - name: t\n    identity: ghost\n    action: a\n    resource: {type: r}\n    expect: deny\n")
    result = run(project, "policies")
    assert result.ret != 0
    result.stdout.fnmatch_lines([
        "*ERROR collecting policies/broken_test.yaml*",
        "policies/broken_test.yaml:3:15: unknown identity fixture 'ghost' (known: none are defined)",
        "    identity: ghost",
        "              ^",
    ])
    assert "Traceback" not in result.stdout.str()


def test_a_broken_policy_is_a_collection_error_of_each_suite(project):
    (project.path / "policies" / "payments.pdl").write_text("policy p { permit x when }")
    result = run(project, "policies")
    result.stdout.fnmatch_lines(["*ERROR collecting policies/payments_test.yaml*", "policies/payments.pdl:1:*"])


def test_suites_in_subfolders_test_the_policies_of_the_argument_folder(project):
    sub = project.path / "policies" / "suites"
    sub.mkdir()
    (project.path / "policies" / "payments_test.yaml").rename(sub / "payments_test.yaml")
    run(project, "policies").assert_outcomes(passed=3, failed=1)


def test_pdp_paths_ini_option_names_the_policies(project):
    elsewhere = project.path / "tests_of_policies"
    elsewhere.mkdir()
    (project.path / "policies" / "payments_test.yaml").rename(elsewhere / "payments_test.yaml")
    project.makeini("[pytest]\npdp_paths = policies\n")
    run(project, "tests_of_policies").assert_outcomes(passed=3, failed=1)


def test_entry_point_is_declared():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"pdp": PLUGIN}
