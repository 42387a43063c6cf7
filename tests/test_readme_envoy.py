"""The README's Envoy example ("Trying an Envoy request") is the shipped files and the real
output of the command it shows."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pdp.cli import main

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "$ pdp eval examples/envoy/ --envoy examples/envoy/check_request.json"
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```\n", re.S | re.M)
EVAL_NS = re.compile(r'"eval_ns": \d+')


def section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("### Trying an Envoy request: `pdp eval --envoy`")
    return readme[start:readme.index("\n### ", start + 1)]


def blocks() -> list[str]:
    return FENCE.findall(section())


@pytest.mark.parametrize("name", ["inventory.pdl", "check_request.json"])
def test_the_readme_shows_the_shipped_file(name):
    assert (ROOT / "examples" / "envoy" / name).read_text(encoding="utf-8") in blocks()


def test_the_readme_shows_the_commands_real_output(capsys, monkeypatch):
    shown = next(block for block in blocks() if block.startswith(COMMAND + "\n"))
    expected = shown[len(COMMAND) + 1:]
    monkeypatch.chdir(ROOT)
    assert main(shlex.split(COMMAND[2:])[1:]) == 0
    out = capsys.readouterr().out
    assert EVAL_NS.sub('"eval_ns": N', out) == EVAL_NS.sub('"eval_ns": N', expected)
    assert '"decision": "ALLOW"' in out  # the example shows an allowed call


def test_the_readme_closest_permits_example_is_the_real_trace_start():
    import json

    from envoy.service.auth.v3 import external_auth_pb2 as ext
    from google.protobuf import json_format

    import pdp
    from pdp.server.envoy_authz import envoy_to_request

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = next(block for block in FENCE.findall(readme) if block.startswith("DENY  (revision "))
    document = json.loads((ROOT / "examples" / "envoy" / "check_request.json").read_text())
    document["attributes"]["request"]["http"]["method"] = "DELETE"
    request = envoy_to_request(json_format.ParseDict(document, ext.CheckRequest()))
    assert pdp.load(ROOT / "examples" / "envoy").explain(request).render().startswith(shown)
