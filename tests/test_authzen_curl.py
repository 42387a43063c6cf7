"""The ``curl`` examples of AuthZEN over HTTP (README.md and docs/authzen.md) run against a
real ``pdp serve --http-addr``: each ``$ curl`` line is sent as curl would send it, and its
answer must be what the page shows (``...`` matches anything, as in tests/doctools.py)."""

from __future__ import annotations

import http.client
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from authzenkit import TIMEOUT
from doctools import blocks, output_matches
from serverkit import ServeProcess

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "docs" / "authzen.md"]


@dataclass
class Command:
    argv: list[str]
    expected: str  # what the page shows it printing


def transcript(text: str) -> list[Command]:
    """A console block's commands (a quoted argument may span lines) and their outputs."""
    commands: list[Command] = []
    lines = text.rstrip("\n").split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            raise AssertionError(f"output before any command: {lines[i]!r}")
        source = lines[i][2:]
        i += 1
        while True:
            try:
                argv = shlex.split(source)
                break
            except ValueError:  # an open quote: the command goes on
                source += "\n" + lines[i]
                i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        commands.append(Command(argv, "\n".join(output)))
    return commands


def curl_transcripts() -> list[tuple[str, list[Command]]]:
    found = []
    for page in PAGES:
        for block in blocks(page):
            if block.lang == "console" and "$ curl " in block.text:
                found.append((block.where, transcript(block.text)))
    return found


TRANSCRIPTS = curl_transcripts()


def test_the_readme_and_the_reference_show_curl_examples():
    assert {where.split(":")[0] for where, _ in TRANSCRIPTS} == {"README.md", "authzen.md"}


def curl(argv: list[str], port: int) -> str:
    """What ``curl -s`` prints for ``argv`` (the options the examples use), sent to ``port``."""
    assert argv[0] == "curl"
    headers: dict[str, str] = {}
    body = None
    method = None
    url = None
    args = iter(argv[1:])
    for arg in args:
        if arg == "-s":
            continue
        if arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            body = next(args).encode()
        elif arg == "-X":
            method = next(args)
        elif arg.startswith("-"):
            raise AssertionError(f"the test does not know curl's {arg}: teach it, or keep the example simple")
        else:
            url = arg
    assert url is not None
    host, _, path = url.removeprefix("http://").partition("/")
    if body is not None:  # what curl -d sends
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.putrequest(method or ("POST" if body is not None else "GET"), "/" + path, skip_host=True)
        connection.putheader("Host", host)  # as curl: the well-known document is built from it
        for name, value in headers.items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        return connection.getresponse().read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize("where, commands", TRANSCRIPTS, ids=[where for where, _ in TRANSCRIPTS])
def test_curl_examples_answer_what_the_page_shows(where, commands):
    serve, *calls = commands
    assert serve.argv[:2] == ["pdp", "serve"] and serve.argv[-1] == "&", f"{where}: starts with `pdp serve ... &`"
    args = serve.argv[2:-1]
    at = args.index("--http-addr")
    args[at + 1] = "127.0.0.1:0"  # a free port, not the page's
    with ServeProcess(*args, "--addr", "127.0.0.1:0", cwd=REPO) as server:
        port = int(server.wait_for(r"AuthZEN over HTTP on http://127\.0\.0\.1:(\d+)").group(1))
        for call in calls:
            got = curl(call.argv, port)
            assert output_matches(call.expected, got), f"{where}: {shlex.join(call.argv)}\nprints {got}"
        assert server.stop() == 0
