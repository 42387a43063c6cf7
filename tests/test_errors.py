"""Load-time errors (SPEC §1 static checks, §2 error shape, §4 PolicyError).

Golden files: every ``tests/fixtures/errors/NAME.pdl`` must fail to load with exactly the text
of ``NAME.err`` as ``str(PolicyError)`` (file names relative: the fixture is loaded from its own
folder). After an intended change of a message, rewrite the golden files with

    PDP_UPDATE_GOLDEN=1 python -m pytest tests/test_errors.py

and review the diff like code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pdp
from pdp.errors import (MAX_RENDERED_DIAGNOSTICS, MAX_WIRE_TEXT, Diagnostic, PolicyError, RequestError, printable,
                        printable_request_error)
from pdp.syntax.parser import MAX_SYNTAX_ERRORS

FIXTURES = Path(__file__).parent / "fixtures" / "errors"
UPDATE = os.environ.get("PDP_UPDATE_GOLDEN") == "1"

#: NAME ⇒ (line, column, number of diagnostics, code) of the first diagnostic.
EXPECTED = {
    "annotation_not_a_string": (1, 8, 1, "pdl_syntax"),
    "annotation_reserved": (2, 3, 1, "pdl_reserved"),
    "data_unknown_name": (2, 20, 3, "pdl_unknown_data"),
    "duplicate_annotation": (2, 1, 2, "pdl_duplicate"),
    "duplicate_policy": (5, 8, 1, "pdl_duplicate"),
    "duplicate_rule": (4, 10, 1, "pdl_duplicate"),
    "duration_fraction": (3, 47, 1, "pdl_syntax"),
    "duration_repeated_unit": (3, 47, 1, "pdl_syntax"),
    "duration_unit_order": (3, 47, 1, "pdl_syntax"),
    "function_used_as_name": (3, 10, 1, "pdl_unknown_name"),
    "glob_three_stars": (3, 37, 1, "pdl_glob"),
    "integer_too_large": (3, 28, 1, "pdl_syntax"),
    "let_before_definition": (3, 10, 1, "pdl_unknown_name"),
    "limit_budget_too_fine": (3, 15, 1, "pdl_syntax"),
    "limit_duplicate_name": (3, 9, 1, "pdl_duplicate"),
    "limit_period_too_long": (3, 21, 1, "pdl_syntax"),
    "limit_fraction_budget": (3, 15, 1, "pdl_syntax"),
    "limit_list_key": (3, 44, 1, "pdl_type"),
    "limit_reason_interpolates": (4, 14, 1, "pdl_limit"),
    "limit_without_key": (4, 1, 1, "pdl_syntax"),
    "limit_zero_budget": (3, 15, 1, "pdl_syntax"),
    "limit_zero_period": (3, 21, 1, "pdl_syntax"),
    "let_in_another_policy": (7, 17, 1, "pdl_unknown_name"),
    "let_shadows_function": (2, 3, 1, "pdl_shadow"),
    "let_shadows_let": (3, 3, 1, "pdl_duplicate"),
    "let_shadows_root": (2, 3, 1, "pdl_shadow"),
    "let_uses_later_let": (2, 17, 1, "pdl_unknown_name"),
    "reason_empty_braces": (3, 25, 1, "pdl_syntax"),
    "reason_position_after_escapes": (2, 36, 4, "pdl_unknown_name"),
    "reason_static_error": (3, 25, 2, "pdl_unknown_name"),
    "reason_syntax_error": (3, 39, 1, "pdl_syntax"),
    "reason_type_error": (3, 20, 1, "pdl_type"),
    "reason_unclosed_brace": (3, 24, 1, "pdl_syntax"),
    "reason_unmatched_brace": (3, 20, 1, "pdl_syntax"),
    "second_target": (4, 3, 1, "pdl_duplicate"),
    "several_errors": (2, 13, 12, "pdl_duplicate"),
    "string_bad_escape": (3, 25, 1, "pdl_syntax"),
    "string_bad_unicode_escape": (3, 25, 1, "pdl_syntax"),
    "string_control_character": (3, 25, 1, "pdl_syntax"),
    "string_lone_surrogate": (3, 25, 1, "pdl_syntax"),
    "syntax_bang": (3, 10, 1, "pdl_syntax"),
    "syntax_chained_comparison": (3, 30, 1, "pdl_syntax"),
    "syntax_double_ampersand": (3, 38, 1, "pdl_syntax"),
    "syntax_double_pipe": (3, 34, 1, "pdl_syntax"),
    "syntax_missing_policy_name": (1, 8, 1, "pdl_syntax"),
    "syntax_rule_outside_policy": (1, 1, 1, "pdl_syntax"),
    "syntax_several_policies": (3, 36, 3, "pdl_syntax"),
    "syntax_single_equals": (3, 22, 1, "pdl_syntax"),
    "syntax_single_quotes": (3, 25, 1, "pdl_syntax"),
    "syntax_stray_closing_brace": (4, 1, 1, "pdl_syntax"),
    "syntax_unclosed_brace": (4, 32, 1, "pdl_syntax"),
    "syntax_unclosed_list": (4, 1, 1, "pdl_syntax"),
    "syntax_unexpected_eof": (3, 9, 1, "pdl_syntax"),
    "syntax_unexpected_token": (4, 35, 1, "pdl_syntax"),
    "syntax_unterminated_string": (3, 25, 1, "pdl_syntax"),
    "type_and_number": (3, 10, 1, "pdl_type"),
    "type_cidr_host_bits": (3, 50, 1, "pdl_cidr"),
    "type_cidr_not_a_network": (3, 36, 1, "pdl_cidr"),
    "type_function_argument": (3, 16, 1, "pdl_type"),
    "type_in_string": (3, 25, 1, "pdl_type"),
    "type_let_bound": (4, 10, 2, "pdl_type"),
    "type_matches_number": (3, 37, 1, "pdl_type"),
    "type_not_number": (3, 14, 1, "pdl_type"),
    "type_or_list": (3, 32, 1, "pdl_type"),
    "type_ordering_string_number": (3, 10, 1, "pdl_type"),
    "type_target_number": (2, 10, 1, "pdl_type"),
    "type_when_string": (3, 10, 1, "pdl_type"),
    "unknown_function": (3, 10, 1, "pdl_unknown_function"),
    "unknown_let": (4, 20, 1, "pdl_unknown_name"),
    "unknown_root": (3, 10, 1, "pdl_unknown_name"),
    "wrong_arity": (3, 10, 3, "pdl_arity"),
}

# What a policy author must never read: Lark terminal and rule names, Lark/Python internals.
JARGON = re.compile(
    r"__ANON|\$END|\b(?:[A-Z][A-Z0-9]*_)+[A-Z0-9]+\b|\b(?:RPAR|LPAR|LSQB|RSQB|LBRACE|RBRACE|COMMA|DOT|EQUAL|"
    r"MORETHAN|LESSTHAN|NAME|STRING|NUMBER|DURATION|COLON|AT|BANG|VBAR|AMPERSAND|QUOTE)\b"
    r"|Token\(|Tree\(|Traceback|expected one of: |\bcompare_op\b|\bor_expr\b|\bnot_expr\b|\bpostfix\b"
    r"|\\\\"  # a Python repr of a backslash
)


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.pdl"))


def load_fixture(name: str, monkeypatch) -> PolicyError:
    monkeypatch.chdir(FIXTURES)
    with pytest.raises(PolicyError) as info:
        pdp.load(f"{name}.pdl")
    return info.value


def test_every_fixture_is_listed_and_has_a_golden_file():
    assert fixture_names() == sorted(EXPECTED)
    if not UPDATE:
        assert sorted(p.stem for p in FIXTURES.glob("*.err")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", fixture_names())
def test_golden_message(name, monkeypatch):
    err = load_fixture(name, monkeypatch)
    golden = FIXTURES / f"{name}.err"
    if UPDATE:
        golden.write_text(str(err) + "\n", encoding="utf-8")
    assert str(err) + "\n" == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", fixture_names())
def test_fields_of_the_first_error(name, monkeypatch):
    err = load_fixture(name, monkeypatch)
    line, column, count, code = EXPECTED[name]
    assert (err.file, err.line, err.column, len(err.diagnostics), err.code) == (f"{name}.pdl", line, column, count, code)
    first = err.diagnostics[0]
    assert (first.file, first.line, first.column, first.message) == (err.file, err.line, err.column, err.message)


@pytest.mark.parametrize("name", fixture_names())
def test_diagnostics_are_sorted_and_point_into_the_file(name, monkeypatch):
    err = load_fixture(name, monkeypatch)
    lines = (FIXTURES / f"{name}.pdl").read_text(encoding="utf-8").split("\n")
    positions = [(d.line, d.column) for d in err.diagnostics]
    assert positions == sorted(positions)
    for d in err.diagnostics:
        assert d.file == f"{name}.pdl"
        assert 1 <= d.line <= len(lines)
        assert d.source_line == lines[d.line - 1]
        assert 1 <= d.column <= len(d.source_line) + 1
        # Rendered as file:line:column: message, the source line, and a caret under the column.
        head, source_line, caret = d.render().split("\n")
        assert head == f"{d.file}:{d.line}:{d.column}: {d.message}"
        assert source_line == d.source_line
        assert caret == " " * (d.column - 1) + "^"


@pytest.mark.parametrize("name", fixture_names())
def test_messages_are_in_a_policy_authors_words(name, monkeypatch):
    err = load_fixture(name, monkeypatch)
    for d in err.diagnostics:
        assert not JARGON.search(d.message), d.message
        assert d.message[:1].islower() or d.message[:1] in "'<@", d.message


def test_several_errors_are_all_reported_in_position_order(monkeypatch):
    err = load_fixture("several_errors", monkeypatch)
    # Reported out of order by the checker (a rule's annotations after its conditions, a let's
    # shadowing after its expression); the error sorts them.
    assert [(d.line, d.column) for d in err.diagnostics] == [
        (2, 13), (4, 3), (4, 13), (5, 17), (7, 10), (7, 36), (8, 10), (9, 36), (10, 14), (11, 10),
        (14, 8), (15, 49)]
    assert str(err).count("several_errors.pdl:") == 12 + 2  # two messages name the first definition


def test_positions_inside_a_reason_count_escapes_as_written(monkeypatch):
    err = load_fixture("reason_position_after_escapes", monkeypatch)
    for d in err.diagnostics:
        assert d.source_line[d.column - 1 : d.column + 3] == "nope"


def test_syntax_errors_inside_a_reason_after_escapes_point_at_the_token(tmp_path):
    (tmp_path / "r.pdl").write_text('policy p {\n  permit e reason "x {identity[\\"a\\"] \\"b\\"}"\n}\n')
    with pytest.raises(PolicyError) as info:
        pdp.load(tmp_path / "r.pdl")
    d = info.value.diagnostics[0]
    assert d.message.startswith('unexpected string "b"; expected one of')
    assert d.source_line[d.column - 1 :] == '\\"b\\"}"'


def test_syntax_errors_of_several_policies_are_all_reported(monkeypatch):
    err = load_fixture("syntax_several_policies", monkeypatch)
    assert [(d.line, d.column) for d in err.diagnostics] == [(3, 36), (12, 23), (16, 30)]
    assert {d.code for d in err.diagnostics} == {"pdl_syntax"}


def test_file_names_are_shown_as_given(tmp_path):
    """An absolute argument shows absolute paths; the golden text is the same after the prefix."""
    shutil.copy(FIXTURES / "several_errors.pdl", tmp_path)
    with pytest.raises(PolicyError) as info:
        pdp.load(tmp_path / "several_errors.pdl")
    assert info.value.file == str(tmp_path / "several_errors.pdl")
    expected = (FIXTURES / "several_errors.err").read_text(encoding="utf-8")
    assert str(info.value).replace(f"{tmp_path}{os.sep}", "") + "\n" == expected


def test_a_folder_argument_shows_folder_and_relative_path(tmp_path, monkeypatch):
    (tmp_path / "policies" / "team").mkdir(parents=True)
    shutil.copy(FIXTURES / "unknown_root.pdl", tmp_path / "policies" / "team")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PolicyError) as info:
        pdp.load("policies")
    shown = os.path.join("policies", "team", "unknown_root.pdl")
    assert info.value.file == shown
    assert str(info.value).startswith(f"{shown}:3:10: unknown name 'subject'")


# ---- several files -----------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_duplicate_policy_across_files_names_the_first_file(tmp_path, monkeypatch):
    write(tmp_path, {"a.pdl": "policy p {\n  permit r\n}\n", "b.pdl": "\n\npolicy p {\n  permit s\n}\n"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PolicyError) as info:
        pdp.load(".")
    assert str(info.value) == (
        "b.pdl:3:8: duplicate policy 'p'; first defined at a.pdl:1:8\n"
        "policy p {\n"
        "       ^"
    )


def test_errors_of_every_file_are_reported_in_load_order(tmp_path, monkeypatch):
    write(tmp_path, {
        "b.pdl": "policy b {\n  permit r when nope\n}\n",
        "a.pdl": "policy a {\n  permit r when true &&\n}\n",
        "c/z.pdl": "policy z {\n  permit r when 1 < 2 < 3\n}\n",
        "c/y.pdl": "policy y {\n  permit r when lenn(1)\n}\n",
    })
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PolicyError) as info:
        pdp.load(".")
    err = info.value
    assert [(d.file, d.line, d.column) for d in err.diagnostics] == [
        ("a.pdl", 2, 22), ("b.pdl", 2, 17), (os.path.join("c", "y.pdl"), 2, 17), (os.path.join("c", "z.pdl"), 2, 23)]
    assert (err.file, err.line, err.column) == ("a.pdl", 2, 22)
    # Arguments in the order given: the second argument's errors come after the first's.
    with pytest.raises(PolicyError) as info:
        pdp.load("c", "b.pdl", "a.pdl")
    assert [d.file for d in info.value.diagnostics] == [
        os.path.join("c", "y.pdl"), os.path.join("c", "z.pdl"), "b.pdl", "a.pdl"]


def test_a_file_with_a_syntax_error_still_lets_the_others_be_checked(tmp_path):
    write(tmp_path, {"a.pdl": "policy a {\n  permit r when\n", "b.pdl": "policy b {\n  permit r when nope\n}\n"})
    with pytest.raises(PolicyError) as info:
        pdp.load(tmp_path)
    messages = [d.message for d in info.value.diagnostics]
    assert messages[0].startswith("unexpected end of file")
    assert any(m.startswith("unknown name 'nope'") for m in messages)


def test_many_errors_are_all_kept_but_the_message_is_bounded(tmp_path):
    count = MAX_RENDERED_DIAGNOSTICS + 10
    rules = "".join(f"  permit r{i} when x{i}\n" for i in range(count))
    write(tmp_path, {"p.pdl": f"policy p {{\n{rules}}}\n"})
    with pytest.raises(PolicyError) as info:
        pdp.load(tmp_path / "p.pdl")
    err = info.value
    assert len(err.diagnostics) == count
    assert [d.line for d in err.diagnostics] == list(range(2, count + 2))
    text = str(err)
    assert text.count("unknown name") == MAX_RENDERED_DIAGNOSTICS
    assert text.endswith("\n... and 10 more errors")


def test_syntax_errors_of_one_file_are_capped(tmp_path):
    policies = "".join(f"policy p{i} {{\n  permit r when true &&\n}}\n" for i in range(MAX_SYNTAX_ERRORS + 5))
    write(tmp_path, {"p.pdl": policies})
    with pytest.raises(PolicyError) as info:
        pdp.load(tmp_path / "p.pdl")
    assert len(info.value.diagnostics) == MAX_SYNTAX_ERRORS
    assert [d.line for d in info.value.diagnostics] == [2 + 3 * i for i in range(MAX_SYNTAX_ERRORS)]


# ---- the error objects -------------------------------------------------------------------


def test_policy_error_api():
    assert issubclass(pdp.PolicyError, Exception)
    d1 = Diagnostic("a.pdl", 2, 5, "first", "pdl_syntax", "  permit x")
    d2 = Diagnostic("a.pdl", 4, 1, "second")
    err = PolicyError([d1, d2])
    assert (err.file, err.line, err.column, err.message, err.code) == ("a.pdl", 2, 5, "first", "pdl_syntax")
    assert err.diagnostics == (d1, d2)
    assert str(err) == "a.pdl:2:5: first\n  permit x\n    ^\na.pdl:4:1: second"
    assert str(PolicyError(d2)) == "a.pdl:4:1: second"
    with pytest.raises(ValueError):
        PolicyError([])


def test_an_error_without_a_position_renders_as_file_colon_message():
    err = PolicyError(Diagnostic("policies/missing", 0, 0, "no such file or directory"))
    assert (err.line, err.column) == (0, 0)
    assert str(err) == "policies/missing: no such file or directory"


def test_the_caret_keeps_tabs_so_it_lines_up(tmp_path):
    (tmp_path / "t.pdl").write_text("policy p {\n\tpermit r when\tnope\n}\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        pdp.load(tmp_path / "t.pdl")
    assert str(info.value).split("\n")[1:] == ["\tpermit r when\tnope", "\t" + " " * len("permit r when") + "\t^"]


def test_crlf_line_endings_do_not_show_in_the_source_line(tmp_path):
    (tmp_path / "t.pdl").write_bytes(b"policy p {\r\n  permit r when nope\r\n}\r\n")
    with pytest.raises(PolicyError) as info:
        pdp.load(tmp_path / "t.pdl")
    assert (info.value.line, info.value.column) == (2, 17)
    assert str(info.value).split("\n")[1] == "  permit r when nope"


# ---- every broken variant of a real policy speaks the author's language ----------------------

SPEC_EXAMPLE = """\
@owner("payments-security")
policy payments {
  target resource.type == "payment"

  let fresh = age(identity.credential.issued_at) < 1h

  @control("OWASP-NHI7")
  forbid long_lived_credential
    unless fresh
    reason "credential issued {age(identity.credential.issued_at)}s ago; the limit is 1h"

  forbid cross_environment
    when identity.env != resource.env
    reason "a {identity.env} identity may not act on {resource.env} resources"

  permit billing_may_charge
    when identity.spiffe_id matches "spiffe://acme.prod/ns/billing/sa/*"
     and action.name in ["charge", "refund"]
     and identity.scopes contains "payments:write"
    reason "billing workload charges with a fresh, scoped credential"
}
"""

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9a-z]*|==|!=|<=|>=|\S')


def _mutants():
    tokens = [m for m in _TOKEN.finditer(SPEC_EXAMPLE)]
    for i, m in enumerate(tokens):
        before, after = SPEC_EXAMPLE[: m.start()], SPEC_EXAMPLE[m.end():]
        yield f"drop {i}", before + after
        yield f"double {i}", before + m.group() + " " + m.group() + after
        for other in ("&&", "=", ")", "}", "policy", '"x"', "[", ",", "in", "1.5h", "@"):
            yield f"replace {i} by {other}", before + other + after


def test_spec_example_loads(tmp_path):
    (tmp_path / "payments.pdl").write_text(SPEC_EXAMPLE, encoding="utf-8")
    engine = pdp.load(tmp_path / "payments.pdl")
    assert engine.rule_ids == ["payments.long_lived_credential", "payments.cross_environment",
                               "payments.billing_may_charge"]


def test_broken_variants_give_positioned_messages_without_parser_jargon(tmp_path):
    path = tmp_path / "payments.pdl"
    seen = 0
    for label, text in _mutants():
        path.write_text(text, encoding="utf-8")
        try:
            pdp.load(path)
        except PolicyError as err:
            seen += 1
            lines = text.split("\n")
            for d in err.diagnostics:
                assert not JARGON.search(d.message), (label, d.message)
                assert 1 <= d.line <= len(lines), label
                assert d.source_line == lines[d.line - 1], label
                assert 1 <= d.column <= len(d.source_line) + 1, (label, d)
    assert seen > 500


def test_a_long_source_line_is_shown_around_the_column():
    line = "".join(f"{i:05d} " for i in range(5000))  # minified JSON is one line
    column = line.index("02500") + 1
    lines = Diagnostic("d.data.json", 1, column, "bad", source_line=line).render().split("\n")
    assert lines[0] == f"d.data.json:1:{column}: bad"
    assert len(lines[1]) <= 170 and lines[1].startswith("...") and lines[1].endswith("...")
    assert lines[1][len(lines[2]) - 1:].startswith("02500")  # the caret under the column
    # Near either end: cut on one side only.
    first = Diagnostic("d", 1, 3, "bad", source_line=line).render().split("\n")
    assert first[1] == line[:160] + "..." and first[2] == "  ^"
    last = Diagnostic("d", 1, len(line), "bad", source_line=line).render().split("\n")
    assert last[1] == "..." + line[-160:] and len(last[2]) == len(last[1])


# ---- error text for gRPC callers (pdp.errors.printable) ---------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000) | st.text(min_size=1000, max_size=3000).map(lambda t: t * 40),
       st.integers(8, 2000))
def test_printable_is_printable_ascii_within_the_limit(text, limit):
    shown = printable(text, limit)
    assert len(shown) <= limit and shown.isascii() and shown.isprintable()
    if len(text) <= limit and text.isascii() and text.isprintable():
        assert shown == text  # nothing to do: the same text
    elif len(shown) < limit and not {"\\", '"', "."} & set(text):  # not cut: each character there, JSON-escaped
        assert json.loads(f'"{shown}"') == text


def test_printable_escapes_and_cuts_the_middle():
    assert printable("a\x01\ufeff\u00e9\U0001F600") == "a\\u0001\\ufeff\\u00e9\\ud83d\\ude00"
    cut = printable("start" + "x" * 5000 + "the end")
    assert len(cut) == MAX_WIRE_TEXT and cut.startswith("startxx") and cut.endswith("xxthe end") and "..." in cut
    err = printable_request_error(RequestError("context." + "k" * 5000, "null is not allowed inside a list"))
    assert len(str(err)) <= MAX_WIRE_TEXT and len(err.path) <= MAX_WIRE_TEXT // 2
    assert str(err).endswith(": null is not allowed inside a list")
