"""Replayable decision logs (SPEC §11): every decided request is logged with its ``input``,
``--decision-log-input off`` leaves it out, the log follows logrotate, and a drain loses
nothing. Against real servers on loopback ports."""

from __future__ import annotations

import json
import os
import signal
import time

from serverkit import ALLOWED, DENIED, WAIT, ServeProcess, engine, running, write_policies

import pdp
from pdp.client import Client
from pdp.server import ServerOptions
from pdp.server.decision_log import DecisionLog

CREDENTIALED = {"identity": {"type": "workload", "id": "billing", "env": "prod", "scopes": ["payments:write"],
                             "credential": {"kind": "jwt", "issued_at": "2026-11-27T10:00:00Z",
                                            "secret": "s3cr3t"}},
                "action": {"name": "refund"}, "resource": {"type": "payment", "id": "p9", "env": "prod",
                                                           "note": None},
                "context": {"time": "2026-11-27T10:05:00Z", "headers": {"authorization": "Bearer abc"}}}


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_request_is_logged_with_its_input_as_decided(tmp_path):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    requests = [ALLOWED, DENIED, CREDENTIALED] + [
        {"identity": {"type": "workload", "id": f"w{i}", "env": "prod"}, "action": "charge",
         "resource": {"type": "payment", "id": f"p{i}", "env": "dev" if i % 2 else "prod"}} for i in range(20)]
    try:
        with running(engine(tmp_path), ServerOptions(decision_log=log)) as (holder, port):
            with Client(f"127.0.0.1:{port}") as client:
                answers = [client.check(r, request_id=f"one-{i}") for i, r in enumerate(requests[:3])]
                answers += client.check_batch(requests[3:])
        assert log.flush(WAIT)
    finally:
        log.close()
    lines = _lines(path)
    assert len(lines) == len(requests)
    for line, request, answer in zip(lines, requests, answers):
        assert line["decision"] == answer.decision
        # The input decides as the request did, with the same engine.
        assert holder.engine.decide(line["input"]).decision == answer.decision
        assert set(line["input"]) <= {"identity", "action", "resource", "context"}
        assert isinstance(line["input"]["action"], dict)
    first = lines[0]["input"]
    assert first == {"identity": ALLOWED["identity"], "action": {"name": "charge"}, "resource": ALLOWED["resource"]}
    credentialed = lines[2]["input"]
    # What the credential says about itself stays (lifetime rules replay); secrets do not.
    assert credentialed["identity"]["credential"] == {"kind": "jwt", "issued_at": "2026-11-27T10:00:00Z",
                                                      "secret": "[REDACTED]"}
    assert credentialed["context"]["headers"] == {"authorization": "[REDACTED]"}
    assert "note" not in credentialed["resource"]  # null: absent, as decided
    assert credentialed["context"]["time"] == "2026-11-27T10:05:00Z"
    assert "s3cr3t" not in path.read_text() and "Bearer" not in path.read_text()


def test_input_can_be_left_out(tmp_path):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path), include_input=False)
    try:
        with running(engine(tmp_path), ServerOptions(decision_log=log)) as (_, port):
            with Client(f"127.0.0.1:{port}") as client:
                client.check(ALLOWED)
        assert log.flush(WAIT)
    finally:
        log.close()
    (line,) = _lines(path)
    assert line["decision"] == "ALLOW" and "input" not in line


def test_the_log_follows_a_rotation_and_loses_nothing(tmp_path):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    try:
        with running(engine(tmp_path), ServerOptions(decision_log=log)) as (_, port):
            with Client(f"127.0.0.1:{port}") as client:
                for i in range(5):
                    client.check(ALLOWED, request_id=f"before-{i}")
                assert log.flush(WAIT)
                os.rename(path, tmp_path / "decisions.jsonl.1")  # what logrotate does (no copytruncate)
                for i in range(5):
                    client.check(ALLOWED, request_id=f"after-{i}")
                assert log.flush(WAIT)
                os.rename(path, tmp_path / "decisions.jsonl.2")
                log.reopen()  # SIGHUP's way: also when the move is not seen (a new file at once)
                path.write_bytes(b"")
                client.check(DENIED, request_id="last")
        assert log.flush(WAIT)
    finally:
        log.close()
    assert [x["request_id"] for x in _lines(tmp_path / "decisions.jsonl.1")] == [f"before-{i}" for i in range(5)]
    assert [x["request_id"] for x in _lines(tmp_path / "decisions.jsonl.2")] == [f"after-{i}" for i in range(5)]
    assert [x["request_id"] for x in _lines(path)] == ["last"]


def test_pdp_serve_logs_every_request_with_input_through_rotation_and_drain(tmp_path):
    policies = write_policies(tmp_path / "policies")
    path = tmp_path / "decisions.jsonl"
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1", "--decision-log", str(path)) as server:
        port = server.wait_ready()
        sent = 0
        with Client(f"127.0.0.1:{port}") as client:
            for i in range(50):
                client.check(ALLOWED if i % 3 else DENIED, request_id=f"a-{i}")
                sent += 1
            deadline = time.monotonic() + WAIT
            while (not path.exists() or len(path.read_text().splitlines()) < 50) and time.monotonic() < deadline:
                time.sleep(0.05)
            os.rename(path, tmp_path / "decisions.jsonl.1")
            server.signal(signal.SIGHUP)  # logrotate's postrotate
            server.wait_for("decision log: reopened|reload")
            client.check_batch([ALLOWED] * 200)
            sent += 200
        assert server.stop() == 0  # drain: everything queued is written
    lines = _lines(tmp_path / "decisions.jsonl.1") + _lines(path)
    assert len(lines) == sent
    engine_ = pdp.load(str(policies))
    assert all(engine_.decide(x["input"]).decision == x["decision"] for x in lines)


def test_pdp_serve_decision_log_input_off(tmp_path):
    policies = write_policies(tmp_path / "policies")
    path = tmp_path / "decisions.jsonl"
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1", "--decision-log", str(path),
                      "--decision-log-input", "off") as server:
        port = server.wait_ready()
        with Client(f"127.0.0.1:{port}") as client:
            client.check(ALLOWED)
        assert server.stop() == 0
    (line,) = _lines(path)
    assert line["decision"] == "ALLOW" and "input" not in line
