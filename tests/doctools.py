"""Reading the tested examples out of ``docs/*.md`` (used by tests/test_docs.py).

A fenced block takes part in the tests when its info string says so; the first word stays
the language, so the page renders as usual. The words after it:

- ``file=NAME example=ID``: the block is the file NAME of the example ID (a policy, a data
  file, a request, a suite). A later block with the same NAME replaces it from there on.
- ``values`` (language ``pdl``, optional ``example=ID``): one expression per line, each
  followed by ``# RESULT``, evaluated by the engine against the example's ``request.json``
  (or :data:`DEFAULT_REQUEST`) with the example's data files loaded. RESULT is a JSON value,
  ``error: MESSAGE`` (an evaluation error) or ``load error: MESSAGE`` (a static check).
- ``example=ID`` on a ``console`` block: a transcript. Each ``$ pdp ...`` (or ``$ cat FILE``)
  line runs in a folder holding the example's files so far; the lines up to the next ``$``
  are what it prints (stdout and stderr). ``# exit N`` at the end of the command line is
  its exit code (0 when absent). ``< FILE`` feeds FILE to standard input.

Expected output: ``...`` matches any text. When the output is JSON the comparison is by
value: ``...`` as a value matches any value, as a list's last item any further items, as
an object member any further members, inside a string any text; ``eval_ns`` (a measured time) is never compared.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pdp.syntax.formatter import comment_start

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: The request of a ``values`` block whose example has no ``request.json``.
DEFAULT_REQUEST = {
    "identity": {"type": "workload", "id": "billing"},
    "action": {"name": "read"},
    "resource": {"type": "doc", "id": "d1"},
    "context": {"time": "2026-11-27T10:05:00Z"},
}

_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    words: frozenset[str]
    attrs: dict[str, str]
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def tested(self) -> bool:
        return bool(self.attrs) or "values" in self.words


@dataclass
class Example:
    """The files of one example, as they stand at a given block of its page."""

    files: dict[str, str] = field(default_factory=dict)


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with their info strings parsed."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info = match.group(1), match.group(2).split()
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not (lines[i].startswith(fence[0] * len(fence)) and not lines[i].strip(fence[0]).strip()):
            body.append(lines[i])
            i += 1
        i += 1
        lang = info[0] if info else ""
        words = frozenset(w for w in info[1:] if "=" not in w)
        attrs = dict(w.split("=", 1) for w in info[1:] if "=" in w)
        found.append(Block(path, start + 1, lang, words, attrs, "\n".join(body) + "\n"))
    return found


def doc_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def marked_blocks() -> list[tuple[Block, dict[str, str]]]:
    """Every tested block of every page, with the files of its example as they stand there."""
    result: list[tuple[Block, dict[str, str]]] = []
    for page in doc_pages():
        examples: dict[str, dict[str, str]] = {}
        for block in blocks(page):
            if not block.tested:
                continue
            example = examples.setdefault(block.attrs.get("example", ""), {})
            if "file" in block.attrs:
                if "example" not in block.attrs:
                    raise ValueError(f"{block.where}: a file= block needs example=ID")
                example[block.attrs["file"]] = block.text
            result.append((block, dict(example)))
    return result


# ---- values lines ------------------------------------------------------------------------------


@dataclass
class ValueLine:
    block: Block
    line: int
    expr: str
    expected: str

    @property
    def where(self) -> str:
        return f"{self.block.path.name}:{self.line}"


def value_lines(block: Block) -> list[ValueLine]:
    found: list[ValueLine] = []
    for offset, raw in enumerate(block.text.split("\n")):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cut = comment_start(line)
        if cut is None:
            raise ValueError(f"{block.path.name}:{block.line + 1 + offset}: a values line needs '# RESULT'")
        found.append(ValueLine(block, block.line + 1 + offset, line[:cut].strip(), line[cut + 1:].strip()))
    return found


# ---- comparing output --------------------------------------------------------------------------

_ANY = "\u0000any"
_REST = "\u0000rest"


def text_matches(expected: str, actual: str) -> bool:
    """``expected`` equals ``actual`` where each ``...`` stands for any text."""
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual, re.S) is not None


def output_matches(expected: str, actual: str) -> bool:
    expected = "\n".join(line.rstrip() for line in expected.strip("\n").split("\n"))
    actual = "\n".join(line.rstrip() for line in actual.strip("\n").split("\n"))
    if expected[:1] in "{[" and expected:
        try:
            want, got = parse_loose_json(expected), json.loads(actual)
        except ValueError:
            pass
        else:
            return json_matches(want, got)
    return text_matches(expected, actual)


def parse_loose_json(text: str):
    """JSON where a bare ``...`` is a wildcard (see the module docstring)."""
    out: list[str] = []
    stack: list[str] = []
    last = ""  # the last significant character outside strings
    i = 0
    while i < len(text):
        char = text[i]
        if char == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i:end + 1])
            last = '"'
            i = end + 1
            continue
        if text.startswith("...", i):
            member = stack and stack[-1] == "{" and last in "{,"
            out.append(json.dumps(_REST) + ": 0" if member else json.dumps(_ANY))
            last = "."
            i += 3
            continue
        if char in "{[":
            stack.append(char)
        elif char in "}]":
            stack.pop()
        if not char.isspace():
            last = char
        out.append(char)
        i += 1
    return json.loads("".join(out))


def json_matches(want, got) -> bool:
    if want == _ANY:
        return True
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return False
        rest = _REST in want
        keys = set(want) - {_REST, "eval_ns"}
        got_keys = set(got) - {"eval_ns"}
        if not keys <= got_keys or (not rest and keys != got_keys):
            return False
        return all(json_matches(want[k], got[k]) for k in keys)
    if isinstance(want, list):
        if not isinstance(got, list):
            return False
        if want and want[-1] == _ANY:
            return len(got) >= len(want) - 1 and all(json_matches(w, g) for w, g in zip(want[:-1], got))
        return len(want) == len(got) and all(json_matches(w, g) for w, g in zip(want, got))
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    if isinstance(want, str) and isinstance(got, str) and "..." in want:
        return text_matches(want, got)
    return want == got
