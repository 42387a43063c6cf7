"""The examples in docs/*.md run, and say what pdp does.

Which blocks are tested and how is described in tests/doctools.py (and, for authors, in
docs/README.md, "Tested examples"). Every operator and built-in function must have at least
one tested example, so a new one cannot land undocumented.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

import pdp
from pdp.builtins import BUILTINS
from pdp.cli import main as pdp_main
from pdp.errors import PolicyError
from pdp.syntax.parser import lark_parser

from doctools import (DEFAULT_REQUEST, DOCS, blocks, doc_pages, output_matches, marked_blocks,
                      text_matches, value_lines)

TESTED = marked_blocks()
VALUES = [line for block, files in TESTED if "values" in block.words
          for line in value_lines(block)]
FILES_AT = {id(block): files for block, files in TESTED}
TRANSCRIPTS = [(block, files) for block, files in TESTED if block.lang == "console"]


def _write(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


# ---- values: one expression, its value -------------------------------------------------------

_VALUE_POLICY = """policy doc {
  let value = [%s]
  forbid error when value == []
  permit shown reason "{value}"
}
"""


@pytest.mark.parametrize("line", VALUES, ids=[f"{v.where} {v.expr}" for v in VALUES])
def test_value(line, tmp_path):
    files = FILES_AT[id(line.block)]
    data = {name: text for name, text in files.items() if re.search(r"\.data\.(ya?ml|json)$", name)}
    request = json.loads(files["request.json"]) if "request.json" in files else DEFAULT_REQUEST
    _write(tmp_path, {**data, "doc_value.pdl": _VALUE_POLICY % line.expr})
    paths = [tmp_path / name for name in sorted(data)] + [tmp_path / "doc_value.pdl"]
    where = f"{line.where}: {line.expr}"
    if line.expected.startswith("load error:"):
        with pytest.raises(PolicyError) as caught:
            pdp.load(*paths)
        wanted = line.expected.removeprefix("load error:").strip()
        messages = [d.message for d in caught.value.diagnostics]
        assert any(text_matches(wanted, m) for m in messages), f"{where}: load errors {messages}"
        return
    decision = pdp.load(*paths).decide(request)
    (reason,) = decision.reasons
    if line.expected.startswith("error:"):
        wanted = line.expected.removeprefix("error:").strip()
        assert reason.rule == "doc.error", f"{where}: no error, the value is {reason.message}"
        message = reason.message.removeprefix("failed closed: ")
        assert text_matches(wanted, message), f"{where}: the error is {message!r}"
        return
    assert reason.rule == "doc.shown", f"{where}: {reason.message}"
    (value,) = json.loads(reason.message)
    assert output_matches(line.expected, json.dumps(value, ensure_ascii=False)), \
        f"{where}: the value is {json.dumps(value, ensure_ascii=False)}"


# ---- transcripts: pdp commands and what they print -------------------------------------------

_EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")


def _steps(text: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a transcript."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"output before the first command: {line!r}")
    return [(command, "\n".join(output)) for command, output in steps]


def _run(command: str, root) -> tuple[int, str]:
    argv = shlex.split(command)
    stdin = ""
    if "<" in argv:
        at = argv.index("<")
        stdin = (root / argv[at + 1]).read_text(encoding="utf-8")
        argv = argv[:at] + argv[at + 2:]
    if argv[0] == "cat":
        return 0, "".join((root / name).read_text(encoding="utf-8") for name in argv[1:])
    assert argv[0] == "pdp", f"transcripts run pdp or cat, not {argv[0]}"
    out = io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = pdp_main(argv[1:])
            except SystemExit as exc:  # argparse: --help, usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue()


@pytest.mark.parametrize("block,files", TRANSCRIPTS, ids=[b.where for b, _ in TRANSCRIPTS])
def test_transcript(block, files, tmp_path, monkeypatch):
    _write(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    for command, expected in _steps(block.text):
        exit_match = _EXIT.search(command)
        wanted_code = int(exit_match.group(1)) if exit_match else 0
        command = _EXIT.sub("", command)
        code, output = _run(command, tmp_path)
        assert output_matches(expected, output), \
            f"{block.where}: $ {command}\n--- expected\n{expected}\n--- got\n{output}"
        assert code == wanted_code, f"{block.where}: $ {command} exited {code}, not {wanted_code}\n{output}"


# ---- coverage of the language -------------------------------------------------------------------


def _tested_policy_text() -> str:
    """Every expression the tests run: values lines and the example policies."""
    parts = [line.expr for line in VALUES]
    for block, files in TESTED:
        parts += [text for name, text in files.items() if name.endswith(".pdl")]
    return "\n".join(parts)


def _operators() -> list[str]:
    ops = {"and", "or", "not"}
    for rule in lark_parser().rules:
        if rule.origin.name == "compare_op":
            ops.add(" ".join(lark_parser().get_terminal(t.name).pattern.value for t in rule.expansion))
    return sorted(ops)


@pytest.mark.parametrize("op", _operators())
def test_every_operator_has_a_tested_example(op):
    pattern = re.escape(op) if not op[0].isalpha() else r"\b" + r"\s+".join(op.split()) + r"\b"
    assert re.search(pattern, _tested_policy_text()), \
        f"operator {op!r} has no tested example in docs/*.md (a `pdl values` line or an example policy)"


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_has_a_tested_example(name):
    assert re.search(rf"\b{name}\(", _tested_policy_text()), \
        f"built-in {name}() has no tested example in docs/*.md (a `pdl values` line or an example policy)"


# ---- the pages themselves ------------------------------------------------------------------------


def test_the_index_links_every_page():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in doc_pages():
        if page.name != "README.md":
            assert f"({page.name}" in index, f"docs/README.md does not link {page.name}"


def _anchors(page) -> set[str]:
    """GitHub's ids of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("page", [*doc_pages(), DOCS.parent / "README.md"], ids=lambda p: str(p.relative_to(DOCS.parent)))
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        linked = (page.parent / target) if target else page
        assert linked.exists(), f"{page.name}: link to {target} does not resolve"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: no heading #{anchor} in {linked.name}"


def test_every_tested_block_is_understood():
    for page in doc_pages():
        for block in blocks(page):
            if not block.tested:
                continue
            known = "file" in block.attrs or "values" in block.words or block.lang == "console"
            assert known, f"{block.where}: a marked block that no test runs"
            assert not ("values" in block.words and block.lang != "pdl"), f"{block.where}: values blocks are pdl"


def _commands():
    from pdp.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices.items())


@pytest.mark.parametrize("name,parser", _commands(), ids=[name for name, _ in _commands()])
def test_cli_md_documents_every_command_and_flag(name, parser):
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert f"\n## pdp {name}\n" in text, f"docs/cli.md has no section '## pdp {name}'"
    section = text.split(f"\n## pdp {name}\n", 1)[1].split("\n## ", 1)[0]
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in section, f"docs/cli.md, section pdp {name}: {flag} is not documented"
