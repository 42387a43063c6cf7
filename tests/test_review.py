"""``pdp review`` (SPEC §11): exact figures on generated traffic with known scope usage, logged
by a real server; the HTML report rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import time
import zlib
from collections import Counter

import pytest
from serverkit import running

import pdp
from pdp.audit.scopes import ScopeTest, lifetime_rules, permit_scope_tests
from pdp.cli import main
from pdp.client import Client
from pdp.server import ServerOptions
from pdp.server.decision_log import DecisionLog, _rfc3339

POLICY = """\
policy docs {
  target resource.type == "doc"
  let can_write = identity.scopes contains_all ["docs:write", "docs:read"]

  @owasp("NHI7")
  @nist_csf("PR.AA-01")
  forbid stale_credential
    unless age(identity.credential.issued_at) < 1h

  permit read when action.name == "read" and identity.scopes contains "docs:read"
  permit write when action.name == "write" and can_write
  permit admin when action.name == "admin" and identity.scopes contains_any ["docs:admin", "root"]
  permit export when action.name == "export" and not (identity.scopes contains "no-export")
  permit legacy when action.name == "legacy" unless "docs:legacy" in identity.scopes
}
"""
INVENTORY = "alice-bot: {owner: a}\nbob-bot: {owner: b}\ncarol-bot: {owner: c}\n"
HOLDS = {"alice-bot": ["docs:read", "docs:write", "docs:admin", "root"], "bob-bot": ["docs:read", "no-export"],
         "mallory": ["docs:read", "docs:write", "docs:legacy"]}
# What each permit uses of what was presented, written out by hand (the test's own model).
USES = {"read": lambda s: {"docs:read"}, "write": lambda s: {"docs:write", "docs:read"},
        "admin": lambda s: {"docs:admin", "root"} & s, "export": lambda s: set(), "legacy": lambda s: set()}


def _policies(root):
    root.mkdir()
    (root / "docs.pdl").write_text(POLICY)
    (root / "identities.data.yaml").write_text(INVENTORY)
    return root


def _traffic(n: int, seed: int = 5):
    rng = random.Random(seed)
    now = time.time()
    for i in range(n):
        who = rng.choice(list(HOLDS))
        yield {"identity": {"type": "workload", "id": who, "scopes": HOLDS[who],
                            "credential": {"kind": "jwt", "issued_at": _rfc3339(now - rng.choice([300, 300, 7200]))}},
               "action": rng.choice(["read", "write", "admin", "export", "legacy"]),
               "resource": {"type": "doc", "id": f"d{i}"}}


def test_scope_tests_are_read_from_the_permits(tmp_path):
    engine = pdp.load(str(_policies(tmp_path / "p")))
    tests = permit_scope_tests(engine.policy_set)
    assert tests == {"docs.read": (ScopeTest("identity", "one", ("docs:read",)),),
                     "docs.write": (ScopeTest("identity", "all", ("docs:write", "docs:read")),),
                     "docs.admin": (ScopeTest("identity", "any", ("docs:admin", "root")),)}
    assert lifetime_rules(engine.policy_set) == {"docs.stale_credential"}


def test_review_figures_are_exact_on_generated_traffic(tmp_path, capsys):
    policies = _policies(tmp_path / "p")
    engine = pdp.load(str(policies))
    requests = list(_traffic(400))
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    try:
        with running(engine, ServerOptions(decision_log=log)) as (_, port), Client(f"127.0.0.1:{port}") as client:
            for start in range(0, len(requests), 40):
                client.check_batch(requests[start:start + 40])
        assert log.flush(30)
    finally:
        log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(requests)

    expected: dict[str, dict] = {}
    stale: Counter = Counter()
    for line, request in zip(lines, requests):
        who = request["identity"]["id"]
        e = expected.setdefault(who, {"requests": 0, "allowed": 0, "denied": 0, "used": set(), "denials": Counter(),
                                      "times": []})
        decision = engine.decide({**request, "context": {"time": line["time"]}})
        assert decision.decision == line["decision"]
        e["requests"] += 1
        e["times"].append(line["time"])
        if decision.allowed:
            e["allowed"] += 1
            for reason in decision.reasons:
                e["used"] |= USES[reason.rule.split(".")[1]](set(HOLDS[who]))
        else:
            e["denied"] += 1
            e["denials"].update(r.rule for r in decision.reasons)
            if "docs.stale_credential" in [r.rule for r in decision.reasons]:
                stale[(who, request["identity"]["credential"]["issued_at"])] += 1

    html = tmp_path / "review.html"
    assert main(["review", str(path), "--policies", str(policies), "--json", "--html", str(html)]) == 0
    report = json.loads(capsys.readouterr().out)
    got = {v["id"]: v for v in report["identities"]}
    assert set(got) == set(expected)
    for who, e in expected.items():
        v = got[who]
        assert (v["requests"], v["allowed"], v["denied"]) == (e["requests"], e["allowed"], e["denied"])
        assert (v["first_seen"], v["last_seen"]) == (min(e["times"]), max(e["times"]))
        assert v["scopes_presented"] == sorted(HOLDS[who])
        assert v["scopes_used"] == sorted(e["used"])
        assert v["scopes_unused"] == sorted(set(HOLDS[who]) - e["used"])
        assert v["denials_by_rule"] == dict(e["denials"])
    # The known usage, spelled out: bob never uses no-export (it only blocks nothing), mallory's
    # docs:legacy is tested in an unless (not a grant).
    assert "no-export" in got["bob-bot"]["scopes_unused"] and "docs:legacy" in got["mallory"]["scopes_unused"]
    assert report["inventory"] == "identities"
    assert report["never_seen"] == ["carol-bot"] and report["not_inventoried"] == ["mallory"]
    assert {(c["identity"], c["credential"]["issued_at"]): c["requests"] for c in report["credentials"]} == stale
    assert all(c["rule"] == "docs.stale_credential" for c in report["credentials"])
    controls = report["controls"]
    assert controls["owasp"]["NHI5"]["name"] == "Overprivileged NHI"
    assert controls["owasp"]["NHI5"]["findings"] == sum(1 for v in got.values() if v["scopes_unused"])
    assert controls["owasp"]["NHI1"]["findings"] == 2  # carol never seen, mallory not inventoried
    assert controls["owasp"]["NHI7"]["findings"] >= len(stale)  # lifetime breaks, and denials by the NHI7 rule
    text = html.read_text()
    assert "<svg" in text and "carol-bot" in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")

    assert main(["review", str(path), "--policies", str(policies)]) == 0
    out = capsys.readouterr().out
    assert "Seen, not inventoried: mallory" in out and "UNUSED" in out
    assert main(["review", str(path), "--policies", str(policies), "--inventory", "nope"]) == 1
    assert "data.nope" in capsys.readouterr().err


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            channels = 4 if colour == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = line
    return width, channels, rows


def test_the_html_report_renders_its_plots_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    policies = _policies(tmp_path / "p")
    engine = pdp.load(str(policies))
    log_path = tmp_path / "d.jsonl"
    log = DecisionLog(str(log_path))
    try:
        for request in _traffic(120):
            log.record("pdp", "", request, engine.decide(request), 1000)
        assert log.flush(30)
    finally:
        log.close()
    html = tmp_path / "review.html"
    assert main(["review", str(log_path), "--policies", str(policies), "--html", str(html), "--json"]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=900,1400",
                    html.as_uri()], check=True, timeout=120, capture_output=True)
    width, channels, rows = _png_pixels(shot.read_bytes())
    pixels = Counter(row[i:i + 3] for row in rows for i in range(0, width * channels, channels))
    total = sum(pixels.values())
    white = pixels[b"\xff\xff\xff"]
    assert white < total * 0.97, "the screenshot is (almost) blank"
    # The plots' own colours are on the page: allowed (green), denied (red), a timeline line (blue).
    for colour in ("2ca02c", "d62728", "1f77b4"):
        assert pixels[bytes.fromhex(colour)] > 50, colour
