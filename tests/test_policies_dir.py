"""The shipped policy library (policies/): its suites pass, cover every rule, and every
control carries a real OWASP NHI Top 10 (2025) risk and NIST CSF 2.0 subcategory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import pdp
from pdp.cli import main
from pdp.testing.controls import NIST_CSF_2_CATEGORIES, OWASP_NHI_2025, control_ids
from pdp.testing.runner import Tester

REPO = Path(__file__).resolve().parents[1]
POLICIES = REPO / "policies"
CSF_SUBCATEGORY = re.compile(r"(GV|ID|PR|DE|RS|RC)\.[A-Z]{2}-\d{2}\Z")


@pytest.fixture(scope="module")
def run():
    tester = Tester.load([POLICIES])
    return tester, tester.run(tester.load_suites())


def test_pdp_test_policies_passes_with_full_coverage(capsys):
    code = main(["test", str(POLICIES), "--coverage", "--min-coverage", "100"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"^total\s+(\d+)\s+\1\s+\1\s+100\.0%$", out, re.M), out
    assert "Every rule applied in at least one test." in out
    assert re.fullmatch(r"\d+ passed, 0 failed", out.splitlines()[-1])


def test_every_rule_is_annotated_with_real_framework_ids(run):
    tester, _ = run
    for rule in tester.rules:
        owasp, csf = rule.annotations.get("owasp"), rule.annotations.get("nist_csf")
        assert owasp and csf, f"{rule.id} lacks @owasp or @nist_csf"
        for risk in control_ids(owasp):
            assert risk in OWASP_NHI_2025, f"{rule.id}: {risk} is not an OWASP NHI Top 10 (2025) id"
        for sub in control_ids(csf):
            assert CSF_SUBCATEGORY.match(sub), f"{rule.id}: {sub} is not a CSF 2.0 subcategory id"
            assert sub.split("-")[0] in NIST_CSF_2_CATEGORIES, f"{rule.id}: {sub} (PR.AC is CSF 1.1)"


def test_every_control_policy_has_its_suite_with_allow_and_deny_cases(run):
    tester, result = run
    suites = {s.name: s for s in result.suites}
    for policy_file in sorted((POLICIES / "controls").glob("*.pdl")):
        suite = suites.get(policy_file.stem)
        assert suite is not None, f"{policy_file.name} has no suite {policy_file.stem}_test.yaml"
        assert suite.path == policy_file.with_name(f"{policy_file.stem}_test.yaml")
        assert {c.expect for c in suite.tests} == {"ALLOW", "DENY"}, suite.name
        # each of its forbid rules is the expected reason of at least one of its own tests
        policy = policy_file.stem
        named = {r for c in suite.tests for r in c.reasons}
        for rule in tester.rules:
            if rule.policy == policy and rule.effect == "forbid":
                assert rule.id in named, f"no test of {suite.name} expects {rule.id} among the reasons"


def test_every_owasp_nhi_risk_is_addressed(run):
    tester, _ = run
    risks = {risk for r in tester.rules for risk in control_ids(r.annotations["owasp"])}
    assert risks == set(OWASP_NHI_2025)


def test_quick_start_request_is_still_allowed_by_billing():
    engine = pdp.load(POLICIES)
    decision = engine.decide(json.loads((REPO / "examples" / "charge.json").read_text()))
    assert decision.decision == "ALLOW"
    assert [r.rule for r in decision.reasons] == ["payments.billing_may_charge"]
    assert decision.errors == ()
