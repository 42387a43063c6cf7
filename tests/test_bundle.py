"""Bundles: `pdp build` writes the compiled program; `load_bundle` starts from it and decides
exactly as the source did; a corrupt or version-mismatched bundle is a clear PolicyError."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pdp
from pdp.cli import main
from pdp.compile.program import BUNDLE_VERSION
from strategies import load_policy_set, policy_sets, requests, write_policy_set

REPO = Path(__file__).resolve().parents[1]


def _view(d):
    return d.to_dict() | {"eval_ns": 0}


# The root token of a request without one: a stale compiled build (tests/test_extension.py)
# read token.claims on context here, and said "token.claims is missing".
TOKEN_PATH_EXAMPLE = dict(
    texts=['policy p0 {\n  permit r1\n    when token.claims.env == identity.env\n    reason "{token.sub}"\n'
           '  permit r2 when token["claims"].level > 1 or defined(token.scopes)\n}\n'],
    reqs=[{"identity": {"type": "workload", "id": "alice", "env": "prod"}, "action": "read",
           "resource": {"type": "doc", "id": "d1"}, "context": {"time": "2026-11-27T10:05:00Z"}}])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(texts=policy_sets(), reqs=st.lists(requests(), min_size=1, max_size=5))
@example(**TOKEN_PATH_EXAMPLE)
def test_a_bundle_decides_exactly_as_its_sources(tmp_path, texts, reqs):
    engine = load_policy_set(texts)
    path = tmp_path / "set.bundle"
    pdp.write_bundle(engine, path)
    for backend in sorted(pdp.runtime.EVALUATORS):
        started = pdp.load_bundle(path, backend=backend)
        assert started.revision == engine.revision
        assert started.rule_ids == engine.rule_ids
        for r in reqs:
            assert _view(started.decide(r)) == _view(engine.decide(r))


@pytest.mark.parametrize("backend", sorted(pdp.runtime.EVALUATORS) + ["reference"])
def test_a_path_on_an_absent_token_is_missing_at_its_root(tmp_path, backend):
    source = pdp.load(write_policy_set(tmp_path / "set", TOKEN_PATH_EXAMPLE["texts"]), backend=backend)
    pdp.write_bundle(source, tmp_path / "set.bundle")
    for engine in (source, pdp.load_bundle(tmp_path / "set.bundle", backend=backend)):
        d = engine.decide(TOKEN_PATH_EXAMPLE["reqs"][0])
        assert d.decision == "DENY" and [r.rule for r in d.reasons] == ["default"]
        assert [(e.rule, e.message) for e in d.errors] == [("p0.r1", "token is missing"), ("p0.r2", "token is missing")]


def test_build_command_and_explain_from_a_bundle(tmp_path, capsys):
    out = tmp_path / "p.bundle"
    assert main(["build", str(REPO / "policies"), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    engine = pdp.load_bundle(out)
    request = json.loads((REPO / "examples" / "charge.json").read_text())
    source = pdp.load(REPO / "policies")
    assert engine.decide(request) == source.decide(request)
    explanation = engine.explain(request)  # parses the embedded sources on demand
    assert explanation.decision == source.decide(request)


def test_build_reports_policy_errors(tmp_path, capsys):
    (tmp_path / "bad.pdl").write_text("policy p { permit r when }")
    assert main(["build", str(tmp_path), "-o", str(tmp_path / "x.bundle")]) == 1
    assert "bad.pdl:1:" in capsys.readouterr().err
    assert not (tmp_path / "x.bundle").exists()


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b[: len(b) // 2], "not a pdp bundle"),
    (lambda b: b"garbage" * 10, "not a pdp bundle"),
    (lambda b: msgpack.packb([{"format": "other"}, {}]), "not a pdp bundle"),
    (lambda b: msgpack.packb([{"format": "pdp-bundle", "version": BUNDLE_VERSION + 1}, {}]),
     f"bundle format version {BUNDLE_VERSION + 1} is not supported"),
    (lambda b: msgpack.packb([{"format": "pdp-bundle", "version": BUNDLE_VERSION, "revision": "x"},
                              {"nodes": [[3]], "sources": []}]), "corrupt bundle"),
])
def test_corrupt_or_mismatched_bundles_are_policy_errors(tmp_path, mangle, message):
    good = tmp_path / "good.bundle"
    pdp.write_bundle(pdp.load(REPO / "policies"), good)
    bad = tmp_path / "bad.bundle"
    bad.write_bytes(mangle(good.read_bytes()))
    with pytest.raises(pdp.PolicyError) as caught:
        pdp.load_bundle(bad)
    assert message in str(caught.value)
    assert caught.value.file == str(bad)


def test_missing_bundle(tmp_path):
    with pytest.raises(pdp.PolicyError, match="cannot read the bundle"):
        pdp.load_bundle(tmp_path / "nope.bundle")
