"""The installed package is complete: it carries the grammar, and the console script works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pdp
from pdp.syntax.parser import grammar_text

REPO = Path(__file__).resolve().parents[1]


def installed_outside_checkout() -> bool:
    return REPO not in Path(pdp.__file__).resolve().parents


def test_grammar_in_use_is_the_one_grammar():
    assert grammar_text() == (REPO / "grammar" / "pdl.lark").read_text(encoding="utf-8")


def test_installed_package_carries_the_grammar():
    packaged = Path(pdp.__file__).parent / "pdl.lark"
    if installed_outside_checkout():
        assert packaged.is_file(), "a non-editable install must contain pdp/pdl.lark"
    else:
        # Running from the checkout, the parser falls back to grammar/; nothing packaged to see.
        assert not packaged.exists() or packaged.read_text() == grammar_text()


def test_module_entry_point_runs():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-m", "pdp", "--version"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0
    assert out.stdout.strip() == f"pdp {pdp.__version__}"


def test_shipped_policies_load_and_decide_the_example():
    import json

    engine = pdp.load(REPO / "policies")
    request = json.loads((REPO / "examples" / "charge.json").read_text())
    decision = engine.decide(request)
    assert decision.decision == "ALLOW"
    assert [r.rule for r in decision.reasons] == ["payments.billing_may_charge"]


def test_spec_example_decides_as_the_spec_says():
    import json

    engine = pdp.load(REPO / "examples" / "payments")
    request = json.loads((REPO / "examples" / "charge.json").read_text())
    decision = engine.decide(request)
    assert decision.decision == "ALLOW"
    assert [(r.rule, r.message, dict(r.annotations)) for r in decision.reasons] == [
        ("payments.billing_may_charge", "billing workload charges with a fresh, scoped credential",
         {"owner": "payments-security"})]
    stale = dict(request, identity={**request["identity"], "credential": {"issued_at": "2026-11-27T08:00:00Z"}})
    denied = engine.decide(stale)
    assert denied.decision == "DENY"
    assert [r.message for r in denied.reasons] == ["credential issued 2h5m ago; the limit is 1h"]


def test_ci_has_the_compiled_evaluator():
    """CI sets PDP_REQUIRE_EXTENSION=1: there the Cython evaluator must be the one in use."""
    if os.environ.get("PDP_REQUIRE_EXTENSION") != "1":
        pytest.skip("only where PDP_REQUIRE_EXTENSION=1 (CI) promises the extension is built")
    from pdp import runtime

    assert runtime.BACKEND == "compiled"
    assert pdp.load(REPO / "examples" / "payments").backend == "compiled"


def test_spec_suite_example_passes(capsys):
    """SPEC §6's suite, shipped beside SPEC §1's policy, passes under `pdp test`."""
    from pdp.cli import main

    assert main(["test", str(REPO / "examples" / "payments")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "1 passed, 0 failed"
