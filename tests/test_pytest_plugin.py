"""The pytest plugin: with `pdp_suites = true` (or --pdp-suites), `pytest policies/` collects
the *_test.yaml suites as pytest items; without it, nothing of pdp is collected."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
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


def run(pytester, *args: str, opt_in: tuple[str, ...] = ("--pdp-suites",)):
    # Whether or not pdp is installed (with its entry point), load the plugin by name alone:
    # other installed plugins are not needed here, and each would slow every inner run.
    return pytester.runpytest("-p", PLUGIN, "-p", "no:cacheprovider", *opt_in, *args)


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


def test_suites_are_not_collected_without_opting_in(project):
    result = run(project, "policies", "-v", opt_in=())
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "payments_test.yaml" not in result.stdout.str()


def test_the_ini_option_opts_in(project):
    project.makeini("[pytest]\npdp_suites = true\n")
    run(project, "policies", opt_in=()).assert_outcomes(passed=3, failed=1)
    project.makeini("[pytest]\npdp_suites = false\n")
    assert run(project, "policies", opt_in=()).ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_the_installed_plugin_leaves_other_projects_alone(tmp_path):
    """The bug this guards against: with pdp installed, every pytest run in the environment
    collected any *_test.yaml. Here pytest loads its plugins the usual way (entry points)."""
    assert any(ep.name == "pdp" and ep.value == PLUGIN for ep in metadata.entry_points(group="pytest11"))
    folder = tmp_path / "other_project"
    folder.mkdir()
    (folder / "payments.pdl").write_text(POLICY)
    (folder / "payments_test.yaml").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}

    def pytest_in(folder, *args):
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=folder,
                              env=env, capture_output=True, text=True, timeout=120)

    plain = pytest_in(folder)
    assert plain.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, plain.stdout + plain.stderr
    opted = pytest_in(folder, "-o", "pdp_suites=true")
    assert opted.returncode == pytest.ExitCode.TESTS_FAILED, opted.stdout + opted.stderr
    assert "3 passed, 1 failed" in opted.stdout or "1 failed, 3 passed" in opted.stdout


def test_entry_point_is_declared():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"pdp": PLUGIN}
