"""``pdp replay``: logged inputs decided again with a candidate set, at their logged time
(SPEC §11). The logs come from real servers on loopback ports; the expected figures from
deciding the same requests in process with both sets."""

from __future__ import annotations

import gzip
import json
import random
import time
from collections import Counter

from serverkit import running

import pdp
from pdp.cli import main
from pdp.client import Client
from pdp.server import ServerOptions
from pdp.server.decision_log import DecisionLog, _rfc3339

LIVE = """\
policy payments {
  target resource.type == "payment"

  forbid stale_credential
    unless age(identity.credential.issued_at) < 1h
    reason "stale"

  forbid cross_environment
    when identity.env != resource.env

  permit billing_may_charge
    when identity.id == "billing" and action.name in ["charge", "refund"]

  permit reporting_may_read
    when identity.id == "reporting" and action.name == "read"
}
"""

# The candidate: refunds need the payments:refund scope, reporting may also export, and
# credentials must be under 30 minutes old.
CANDIDATE = """\
policy payments {
  target resource.type == "payment"

  forbid stale_credential
    unless age(identity.credential.issued_at) < 30m
    reason "stale"

  forbid cross_environment
    when identity.env != resource.env

  forbid refund_needs_scope
    when action.name == "refund"
    unless identity.scopes contains "payments:refund"

  permit billing_may_charge
    when identity.id == "billing" and action.name in ["charge", "refund"]

  permit reporting_may_read
    when identity.id == "reporting" and action.name in ["read", "export"]
}
"""


def _policies(root, text):
    root.mkdir(parents=True, exist_ok=True)
    (root / "policy.pdl").write_text(text)
    return root


def _traffic(n: int, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    now = time.time()
    out = []
    for i in range(n):
        request = {
            "identity": {"type": "workload", "id": rng.choice(["billing", "reporting", "other"]),
                         "env": rng.choice(["prod", "prod", "dev"]),
                         "scopes": rng.choice([[], ["payments:refund"], ["payments:read"]]),
                         # far from both limits (30m, 1h), so seconds of test time change nothing
                         "credential": {"issued_at": _rfc3339(now - rng.choice([300, 2700, 7200]))}},
            "action": rng.choice(["charge", "refund", "read", "export"]),
            "resource": {"type": "payment", "id": f"p{i}", "env": "prod"},
        }
        if i % 4 == 0:
            request["context"] = {"time": _rfc3339(now)}
        out.append(request)
    return out


def _serve_and_log(tmp_path, engine, requests, name="decisions.jsonl", include_input=True):
    path = tmp_path / name
    log = DecisionLog(str(path), include_input=include_input)
    try:
        with running(engine, ServerOptions(decision_log=log)) as (_, port), Client(f"127.0.0.1:{port}") as client:
            for start in range(0, len(requests), 50):
                client.check_batch(requests[start:start + 50])
            client.check_batch([{"identity": {"type": "workload"}}], return_errors=True)  # an error line
        assert log.flush(30)
    finally:
        log.close()
    return path


def _replay_json(capsys, *args) -> tuple[int, dict]:
    code = main(["replay", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_replay_figures_equal_deciding_the_same_requests_with_both_sets(tmp_path, capsys):
    live = pdp.load(str(_policies(tmp_path / "live", LIVE)))
    candidate_dir = _policies(tmp_path / "candidate", CANDIDATE)
    candidate = pdp.load(str(candidate_dir))
    requests = _traffic(400)
    with_input = _serve_and_log(tmp_path, live, requests)
    without_input = _serve_and_log(tmp_path, live, requests[:30], "old.jsonl", include_input=False)

    expected = Counter()
    rules = {}
    for request in requests:
        was, now = live.decide(request).decision, candidate.decide(request)
        if was != now.decision:
            direction = "allow_to_deny" if was == "ALLOW" else "deny_to_allow"
            expected[direction] += 1
            for reason in now.reasons:
                rules.setdefault(reason.rule, Counter())[direction] += 1
    assert expected["allow_to_deny"] and expected["deny_to_allow"]  # the traffic exercises both

    code, report = _replay_json(capsys, str(with_input), str(without_input), "--against", str(candidate_dir))
    assert code == 0
    assert report["decisions"] == len(requests)
    assert report["allow_to_deny"] == expected["allow_to_deny"]
    assert report["deny_to_allow"] == expected["deny_to_allow"]
    assert report["changed"] == expected["allow_to_deny"] + expected["deny_to_allow"]
    assert report["skipped"] == 30 + 2  # lines without input, and the two error lines
    assert report["revision"] == candidate.revision
    assert report["logged_revisions"] == {live.revision: len(requests)}
    assert {r["rule"]: Counter({k: v for k, v in r.items() if k != "rule" and v}) for r in report["rules"]} == rules
    assert len(report["examples"]) == min(10, report["changed"])
    example = report["examples"][0]
    assert example["logged"]["decision"] != example["candidate"]["decision"]
    assert candidate.decide(example["input"]).decision == example["candidate"]["decision"]

    assert main(["replay", str(with_input), "--against", str(candidate_dir), "--fail-on-change"]) == 1
    text = capsys.readouterr().out
    assert f"Replayed {len(requests)} decisions" in text and "allow_to_deny" in text
    # Against the live set itself nothing changes: the gate passes.
    assert main(["replay", str(with_input), "--against", str(tmp_path / "live"), "--fail-on-change"]) == 0


def test_replay_decides_at_the_logged_time(tmp_path, capsys):
    policies = _policies(tmp_path / "p", LIVE)
    engine = pdp.load(str(policies))
    logged_at = time.time() - 3 * 86400  # three days ago
    request = {"identity": {"type": "workload", "id": "billing", "env": "prod",
                            "credential": {"issued_at": _rfc3339(logged_at - 600)}},
               "action": "charge", "resource": {"type": "payment", "id": "p1", "env": "prod"}}
    decided = engine.decide({**request, "context": {"time": logged_at}})
    assert decided.decision == "ALLOW" and engine.decide(request).decision == "DENY"  # stale today
    log = DecisionLog.__new__(DecisionLog)
    log.include_input = True
    line = log.format((logged_at, "pdp", "r1", request, decided, 1000, None, None))
    path = tmp_path / "d.jsonl.gz"  # a rotated, compressed log
    path.write_bytes(gzip.compress(line + b"{not json\n"))
    code, report = _replay_json(capsys, str(path), "--against", str(policies))
    assert code == 0
    assert (report["decisions"], report["changed"], report["unreadable"]) == (1, 0, 1)


def test_replay_errors_are_clear(tmp_path, capsys):
    policies = _policies(tmp_path / "p", LIVE)
    assert main(["replay", str(tmp_path / "missing.jsonl"), "--against", str(policies)]) == 1
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.pdl").write_text("policy {")
    (tmp_path / "log.jsonl").write_text("")
    assert main(["replay", str(tmp_path / "log.jsonl"), "--against", str(tmp_path / "bad")]) == 1
    assert "x.pdl:1" in capsys.readouterr().err
