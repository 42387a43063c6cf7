"""The data-driven language corpus: every case in ``tests/cases/<topic>/*.yaml`` is one test.

A case file is a YAML list of cases::

    - note: what the case shows (unique within its file; part of the test id)
      policies: |            # PDL source, or a list of sources = p0.pdl, p1.pdl, ... loaded in order
        policy p { permit a }
      data: {NAME: value}    # optional: each entry becomes NAME.data.json
      request: {...}         # the request dict given to Engine.decide, as is
      want:                  # the decision; every key but `decision` is optional and exact
        decision: ALLOW | DENY
        reasons: [rule ids, in order]
        messages: [reason messages, in order]
        effects: [reason effects, in order]
        annotations: [reason annotations, in order]
        errors: [{rule: id, message: text}, ...]   # exact, order included; absent means none

or, instead of ``request``/``want``: ``want_error: "p0.pdl:3:10: message"`` (the policy set must
fail to load; the first line of the rendered PolicyError is compared exactly), or
``want_request_error: "identity.type: ..."`` (``decide`` must raise RequestError with exactly
this text; ``policies`` may then be omitted).

Policies are written to a fresh folder that is also the working directory, and loaded as
``pdp.load(".")``, so messages name files as ``p0.pdl``. Every case runs on every evaluator
(the reference evaluator, which defines the semantics, and each runtime backend that is
available); each decision is also checked against ``Engine.explain``.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
import yaml

import pdp
from pdp import runtime

CASES = Path(__file__).parent / "cases"
CASE_KEYS = {"note", "policies", "data", "request", "want", "want_error", "want_request_error"}
WANT_KEYS = {"decision", "reasons", "messages", "effects", "annotations", "errors"}
DEFAULT_POLICIES = "policy any { permit everything }"
BACKENDS = ["reference", *sorted(runtime.EVALUATORS)]


class CaseFileError(Exception):
    pass


def _json_only(value: object, where: str) -> None:
    """YAML 1.1 turns unquoted timestamps into datetimes: refuse them (quote the time)."""
    if isinstance(value, (datetime.date, datetime.datetime, bytes, set)):
        raise CaseFileError(f"{where}: {value!r} is not a JSON value; quote it")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CaseFileError(f"{where}: map key {key!r} is not a string; quote it")
            _json_only(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _json_only(item, f"{where}[{i}]")


def _validate(case: object, where: str) -> dict:
    if not isinstance(case, dict):
        raise CaseFileError(f"{where}: a case must be a map")
    unknown = set(case) - CASE_KEYS
    if unknown:
        raise CaseFileError(f"{where}: unknown keys {sorted(unknown)}")
    if not isinstance(case.get("note"), str) or not case["note"].strip():
        raise CaseFileError(f"{where}: a case needs a non-empty note")
    outcomes = [k for k in ("want", "want_error", "want_request_error") if k in case]
    if len(outcomes) != 1:
        raise CaseFileError(f"{where}: a case needs exactly one of want, want_error, want_request_error")
    if outcomes[0] == "want_error":
        if "request" in case:
            raise CaseFileError(f"{where}: a want_error case has no request")
    elif "request" not in case:
        raise CaseFileError(f"{where}: a case with {outcomes[0]} needs a request")
    if "policies" not in case and outcomes[0] != "want_request_error":
        raise CaseFileError(f"{where}: a case needs policies")
    policies = case.get("policies", DEFAULT_POLICIES)
    if isinstance(policies, str):
        policies = [policies]
    if not (isinstance(policies, list) and policies and all(isinstance(p, str) for p in policies)):
        raise CaseFileError(f"{where}: policies must be a string or a non-empty list of strings")
    data = case.get("data", {})
    if not isinstance(data, dict):
        raise CaseFileError(f"{where}: data must be a map of NAME to value")
    want = case.get("want")
    if want is not None:
        if not isinstance(want, dict) or want.get("decision") not in ("ALLOW", "DENY"):
            raise CaseFileError(f"{where}: want needs decision: ALLOW or DENY")
        unknown = set(want) - WANT_KEYS
        if unknown:
            raise CaseFileError(f"{where}: unknown keys in want {sorted(unknown)}")
        for error in want.get("errors", []):
            if not isinstance(error, dict) or set(error) != {"rule", "message"}:
                raise CaseFileError(f"{where}: each want.errors entry is {{rule, message}}")
    for key in ("want_error", "want_request_error"):
        if key in case and not isinstance(case[key], str):
            raise CaseFileError(f"{where}: {key} must be a string")
    _json_only(data, f"{where}.data")
    _json_only(case.get("request"), f"{where}.request")
    return {**case, "policies": policies, "data": data}


def _collect() -> list:
    params = []
    files = sorted(CASES.glob("*/*.yaml"))
    assert files, f"no case files under {CASES}"
    for path in files:
        rel = path.relative_to(CASES).with_suffix("").as_posix()
        cases = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(cases, list) or not cases:
            raise CaseFileError(f"{rel}: a case file is a non-empty list of cases")
        notes: set[str] = set()
        for i, raw in enumerate(cases):
            case = _validate(raw, f"{rel}[{i}]")
            if case["note"] in notes:
                raise CaseFileError(f"{rel}[{i}]: duplicate note {case['note']!r}")
            notes.add(case["note"])
            params.append(pytest.param(case, id=f"{rel}::{case['note']}"))
    return params


def _write(case: dict, folder: Path) -> None:
    for i, source in enumerate(case["policies"]):
        (folder / f"p{i}.pdl").write_text(source, encoding="utf-8")
    for name, value in case["data"].items():
        (folder / f"{name}.data.json").write_text(json.dumps(value), encoding="utf-8")


def _check_decision(engine: pdp.Engine, case: dict) -> pdp.Decision:
    decision = engine.decide(case["request"])
    want = case["want"]
    got = decision.to_dict()
    assert got["decision"] == want["decision"], got
    reasons = got["reasons"]
    for key, field in (("reasons", "rule"), ("messages", "message"), ("effects", "effect"),
                       ("annotations", "annotations")):
        if key in want:
            assert [r[field] for r in reasons] == want[key], got
    assert got["errors"] == want.get("errors", []), got
    return decision


@pytest.mark.parametrize("case", _collect())
def test_case(case: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(case, tmp_path)
    if "want_error" in case:
        with pytest.raises(pdp.PolicyError) as caught:
            pdp.load(".")
        error = caught.value
        assert str(error).splitlines()[0] == case["want_error"]
        # The fields name the first error's position, as the rendered text does.
        assert case["want_error"].startswith(f"{error.file}:{error.line}:{error.column}: ")
        return
    for backend in BACKENDS:
        engine = pdp.load(".", backend=backend)
        assert engine.backend == backend
        if "want_request_error" in case:
            with pytest.raises(pdp.RequestError) as caught:
                engine.decide(case["request"])
            assert str(caught.value) == case["want_request_error"], backend
            continue
        try:
            decision = _check_decision(engine, case)
        except AssertionError as failure:
            raise AssertionError(f"backend {backend}: {failure}") from None
        if backend == "reference":
            assert engine.explain(case["request"]).decision == decision
