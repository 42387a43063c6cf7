"""Test suites and velocity limits (SPEC §6, §9): a test sets the units left in a budget
(``limits:``), every test starts with full budgets, coverage counts limit rules, and mistakes
in ``limits:`` are positioned errors. Also through the pytest plugin."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pdp
from pdp.testing.runner import Tester

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "velocity"


def pdp_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pdp", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_example_suite_passes_with_full_coverage():
    out = pdp_cli("test", str(EXAMPLE), "--coverage")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 passed, 0 failed" in out.stdout
    assert "velocity      3        3          3    100.0%" in out.stdout


@pytest.fixture
def copy(tmp_path):
    folder = tmp_path / "velocity"
    shutil.copytree(EXAMPLE, folder)
    return folder


def run(folder: Path):
    tester = Tester.load([folder])
    return tester.run(tester.load_suites())


def test_limits_decide_the_outcome(copy):
    suite = copy / "velocity_test.yaml"
    text = suite.read_text()
    # The test that expects a deny, with a unit left, fails: the budget was really consulted.
    suite.write_text(text.replace("limits: {velocity.charges_per_identity: 0}",
                                  "limits: {velocity.charges_per_identity: 1}"))
    result = run(copy)
    assert [r.case.name for r in result.failures] == ["the 51st charge of the hour is denied"]
    assert result.failures[0].problems[0] == "expected DENY, got ALLOW"


def test_each_test_starts_with_full_budgets(tmp_path):
    (tmp_path / "p.pdl").write_text('policy p {\n  permit any\n  limit once 1 per 1h by identity.id\n}\n')
    test = "  - {name: N, identity: {type: w, id: a}, action: x, resource: {type: r, id: r}, expect: allow}\n"
    (tmp_path / "p_test.yaml").write_text("tests:\n" + "".join(test.replace("N", f"t{i}") for i in range(3)))
    result = run(tmp_path)
    assert result.failed == 0 and result.passed == 3


def test_a_limit_the_request_does_not_meet_is_a_failure(copy):
    suite = copy / "velocity_test.yaml"
    suite.write_text(suite.read_text().replace(
        "    resource: invoice\n    expect: allow",
        "    resource: invoice\n    limits: {velocity.charges_per_identity: 0}\n    expect: allow"))
    result = run(copy)
    assert [r.case.name for r in result.failures] == [
        "reads are not limited, even when the identity has no charge left"]
    assert result.failures[0].problems[0].startswith("limits: the request does not meet velocity.charges_per_identity")


@pytest.mark.parametrize("value, message", [
    ("{velocity.charge_per_identity: 0}", "unknown limit rule 'velocity.charge_per_identity' in limits; did you "
                                          "mean 'velocity.charges_per_identity'?"),
    ("{velocity.charges_per_identity: -1}", "the units left in 'velocity.charges_per_identity' must be a whole "
                                            "number of at least 0, got -1"),
    ("[1]", "'limits' must map limit rule ids to the units left"),
])
def test_mistakes_in_limits_are_positioned_errors(copy, value, message):
    suite = copy / "velocity_test.yaml"
    suite.write_text(suite.read_text().replace("limits: {velocity.charges_per_identity: 0}", f"limits: {value}"))
    with pytest.raises(pdp.PolicyError) as caught:
        Tester.load([copy]).load_suites()
    err = caught.value
    assert message in str(err)
    assert err.line == 30


def test_coverage_counts_limit_rules(tmp_path):
    (tmp_path / "p.pdl").write_text('policy p {\n  permit any\n  limit never 1 per 1h by identity.id when false\n}\n')
    (tmp_path / "p_test.yaml").write_text(
        "tests:\n  - {name: t, identity: {type: w, id: a}, action: x, resource: {type: r, id: r}, expect: allow}\n")
    out = pdp_cli("test", str(tmp_path), "--coverage")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "p.never" in out.stdout  # listed among the rules no test exercised


def test_the_pytest_plugin_runs_limit_suites(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    shutil.copytree(EXAMPLE, pytester.path / "velocity")
    result = pytester.runpytest("-p", "pdp.testing.pytest_plugin", "-p", "no:cacheprovider", "--pdp-suites",
                                "velocity", "-v")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["velocity/velocity_test.yaml::the 51st charge of the hour is denied PASSED*"])
