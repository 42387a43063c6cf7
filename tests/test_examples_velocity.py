"""examples/velocity/: the README walkthrough, run as written against a real redis-server and
``pdp serve`` (ports changed to free ones)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from rediskit import RedisServer, free_port
from serverkit import ServeProcess

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "velocity"
README = (EXAMPLE / "README.md").read_text(encoding="utf-8")
SERVE = "pdp serve examples/velocity --limits redis://127.0.0.1:6379/0 --http-addr 127.0.0.1:8181"
CURL = "curl -s http://127.0.0.1:8181/access/v1/evaluation"


def post(port: int, name: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/access/v1/evaluation",
                                 data=(EXAMPLE / name).read_bytes(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def shown(answer: dict) -> list:
    """What the README's jq prints: the decision and the first reason's message."""
    return [answer["decision"], answer["context"]["reasons"][0]["message"]]


def test_the_readme_shows_the_commands_run_here():
    for text in (SERVE, CURL, "-d @examples/velocity/charge.json", "-d @examples/velocity/read.json",
                 "pdp test examples/velocity --coverage", "limit charges_per_identity 50 per 1h by identity.id",
                 '[true,"a workload may charge a payment"]', '[false,"at most 50 charges an hour per identity"]',
                 "failed closed: limit store unavailable", "pdp:limit:{TAG}:velocity.charges_per_identity"):
        assert text in README, text
    assert "limit charges_per_identity 50 per 1h by identity.id" in (EXAMPLE / "velocity.pdl").read_text()


def test_the_walkthrough(tmp_path):
    import redis as redis_py

    http_port = free_port()
    redis = RedisServer(tmp_path).start()
    try:
        args = SERVE.split()[2:]
        args[args.index("redis://127.0.0.1:6379/0")] = redis.url
        args[args.index("127.0.0.1:8181")] = f"127.0.0.1:{http_port}"
        # From the checkout, as the README runs it (CI tests an installed, non-editable pdp).
        proc = ServeProcess(*args, "--addr", "127.0.0.1:0", cwd=REPO)
        with proc:
            proc.wait_ready()
            answers = [shown(post(http_port, "charge.json")) for _ in range(51)]
            assert answers == [[True, "a workload may charge a payment"]] * 50 + \
                [[False, "at most 50 charges an hour per identity"]]
            assert post(http_port, "read.json")["decision"] is True
            with redis_py.Redis.from_url(redis.url) as r:
                keys = [k.decode() for k in r.scan_iter(match="pdp:limit:*")]
                assert len(keys) == 1 and keys[0].startswith("pdp:limit:{")
                assert keys[0].endswith("}:velocity.charges_per_identity")
                assert 0 < r.pttl(keys[0]) <= 3_600_000
            redis.stop()
            started = time.monotonic()
            down = post(http_port, "charge.json")
            assert time.monotonic() - started < 0.05 + 1.0  # the default deadline, and a margin
            assert shown(down) == [False, "failed closed: limit store unavailable"]
            assert post(http_port, "read.json")["decision"] is True
            redis.start()  # empty: a fresh budget, and no restart of pdp
            deadline = time.monotonic() + 10  # the first calls may miss the 50 ms on a loaded machine
            while not post(http_port, "charge.json")["decision"]:
                assert time.monotonic() < deadline, "charges were not allowed again after Redis came back"
                time.sleep(0.1)
            assert proc.stop() == 0
    finally:
        redis.stop()


@pytest.mark.parametrize("name", ["README.md", "velocity.pdl", "velocity_test.yaml", "charge.json", "read.json"])
def test_example_files_exist(name):
    assert (EXAMPLE / name).is_file()
