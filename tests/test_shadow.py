"""``pdp serve PATH... --shadow CANDIDATE...`` (SPEC §11): answers are the live set's, every
request is decided by the candidate too (log line ``shadow``, metric
``pdp_shadow_decisions_total{outcome}``), and the candidate reloads like the live set. Against
a real ``pdp serve`` on loopback ports."""

from __future__ import annotations

import json
import re
import signal
import threading
import urllib.request
from collections import Counter

from serverkit import WAIT, ServeProcess
from test_replay import CANDIDATE, LIVE, _policies, _traffic

import pdp
from pdp.client import Client
from pdp.server.decision_log import DecisionLog
from pdp.server.holder import EngineHolder
from pdp.server.shadow import ShadowLog, outcome


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT).read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^pdp_shadow_decisions_total\{outcome="(\w+)"\} (\S+)$', text, re.M)}


def _expected(live, candidate, requests) -> Counter:
    return Counter(outcome(live.decide(r).decision, candidate.decide(r).decision) for r in requests)


def test_shadow_answers_are_the_live_sets_and_its_figures_exact(tmp_path):
    live_dir = _policies(tmp_path / "live", LIVE)
    candidate_dir = _policies(tmp_path / "candidate", CANDIDATE)
    live, candidate = pdp.load(str(live_dir)), pdp.load(str(candidate_dir))
    path = tmp_path / "decisions.jsonl"
    requests = _traffic(300, seed=11)
    with ServeProcess(str(live_dir), "--addr", "127.0.0.1:0", "--workers", "1", "--decision-log", str(path),
                      "--metrics-addr", "127.0.0.1:0", "--shadow", str(candidate_dir)) as server:
        port = server.wait_ready()
        metrics_port = int(server.wait_for(r"metrics on http://127.0.0.1:(\d+)/").group(1))
        with Client(f"127.0.0.1:{port}") as client:
            answers = [client.check(r) for r in requests[:100]] + client.check_batch(requests[100:])
        for request, answer in zip(requests, answers):
            want = live.decide(request)
            assert (answer.decision, [r.rule for r in answer.reasons]) == (want.decision,
                                                                           [r.rule for r in want.reasons])
            assert answer.revision == live.revision
        expected = _expected(live, candidate, requests)
        assert expected["agree"] and expected["allow_to_deny"] and expected["deny_to_allow"]
        for _ in range(int(WAIT / 0.1)):  # the shadow thread catches up
            figures = _metrics(metrics_port)
            if sum(figures.values()) >= len(requests):
                break
            threading.Event().wait(0.1)
        assert figures == {k: float(v) for k, v in expected.items()}

        # Hot reload applies to the candidate too: it becomes the live set, and all agree.
        (candidate_dir / "policy.pdl").write_text(LIVE)
        server.signal(signal.SIGHUP)
        server.wait_for(r"shadow: the candidate is now revision " + live.revision)
        with Client(f"127.0.0.1:{port}") as client:
            client.check_batch(requests[:50])
        for _ in range(int(WAIT / 0.1)):
            if _metrics(metrics_port)["agree"] >= expected["agree"] + 50:
                break
            threading.Event().wait(0.1)
        assert _metrics(metrics_port) == {**{k: float(v) for k, v in expected.items()},
                                          "agree": float(expected["agree"] + 50)}
        assert server.stop() == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(requests) + 50
    for line in lines[:len(requests)]:
        # The candidate decided the input at the time of the live decision.
        request = line["input"]
        at = {**request, "context": {**request.get("context", {})}}
        at["context"].setdefault("time", line["time"])
        want = candidate.decide(at)
        assert line["shadow"] == {"decision": want.decision, "revision": candidate.revision,
                                  "reasons": [r.rule for r in want.reasons]}
    assert all(line["shadow"]["revision"] == live.revision for line in lines[len(requests):])


def test_a_full_shadow_queue_drops_and_counts_and_still_logs(tmp_path):
    engine = pdp.load(str(_policies(tmp_path / "p", LIVE)))
    release, deciding = threading.Event(), threading.Event()

    class SlowEngine:
        revision = "slow"

        def decide_at(self, request, server_time):
            deciding.set()
            assert release.wait(WAIT)
            return engine.decide_at(request, server_time)

    path = tmp_path / "d.jsonl"
    inner = DecisionLog(str(path))
    shadow = ShadowLog(EngineHolder(SlowEngine()), inner, max_queue=2)
    requests = _traffic(10)
    shadow.record("pdp", "", requests[0], engine.decide(requests[0]), 1000)
    assert deciding.wait(WAIT)
    for request in requests[1:]:  # never blocks: the first is being decided, 2 wait, 7 are dropped
        shadow.record("pdp", "", request, engine.decide(request), 1000)
    assert shadow.dropped == 7
    release.set()
    assert shadow.flush(WAIT)
    shadow.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 10 and sum("shadow" in line for line in lines) == 3
