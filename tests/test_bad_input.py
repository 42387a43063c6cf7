"""Malformed and hostile policy files: each gives a ``PolicyError`` (or loads), never another
exception, a hang or a crash of the interpreter; plus property tests over arbitrary text."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from conftest import request
from pdp import loader
from pdp.decision import MAX_REASON_CHARS, REASON_CUT
from pdp.syntax.parser import MAX_NESTING

DEEP = 10_000


@pytest.fixture
def load_text(tmp_path):
    """Write bytes or text to a .pdl file and load it: returns the Engine or the PolicyError."""
    counter = iter(range(1_000_000))

    def load(content: str | bytes, name: str | None = None):
        path = tmp_path / (name or f"f{next(counter)}.pdl")
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        try:
            return pdp.load(path)
        except pdp.PolicyError as err:
            return err

    return load


def error_of(result) -> pdp.PolicyError:
    assert isinstance(result, pdp.PolicyError), f"expected a PolicyError, got {result!r}"
    return result


def rule(when: str) -> str:
    return f"policy p {{\n  permit r when {when}\n}}\n"


# ---- encodings -----------------------------------------------------------------------------


def test_invalid_utf8_is_reported_at_the_bad_byte(load_text):
    err = error_of(load_text(b'policy p {\n  permit r when identity.id == "caf\xe9"\n}\n', "latin1.pdl"))
    column = len('  permit r when identity.id == "caf') + 1
    assert (err.line, err.column, err.code) == (2, column, "encoding_error")
    assert err.message == "file is not valid UTF-8: invalid continuation byte (byte 0xe9)"
    assert str(err).split("\n")[1:] == ['  permit r when identity.id == "caf\ufffd"', " " * (column - 1) + "^"]


def test_invalid_utf8_column_counts_characters_not_bytes(load_text):
    err = error_of(load_text('policy p {\n  permit r when "żółw" == "'.encode() + b"\xff" + b'"\n}\n'))
    assert (err.line, err.column) == (2, len('  permit r when "żółw" == "') + 1)
    assert err.message == "file is not valid UTF-8: invalid start byte (byte 0xff)"


def test_a_truncated_multibyte_character_at_the_end(load_text):
    err = error_of(load_text("policy p {}\n# ż".encode()[:-1]))
    assert (err.line, err.column) == (2, 3)
    assert err.message.startswith("file is not valid UTF-8")


def test_a_utf8_bom_is_ignored_and_positions_do_not_count_it(load_text):
    engine = load_text(b"\xef\xbb\xbfpolicy p {\n  permit r\n}\n")
    assert isinstance(engine, pdp.Engine) and engine.rule_ids == ["p.r"]
    err = error_of(load_text(b"\xef\xbb\xbfpolicy p { permit r when nope }\n"))
    assert (err.line, err.column) == (1, len("policy p { permit r when ") + 1)
    assert str(err).split("\n")[1] == "policy p { permit r when nope }"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_files_are_refused_with_a_hint(load_text, encoding):
    content = "policy p {\n  permit r\n}\n".encode(encoding)
    if encoding != "utf-16":
        content = ("\ufeff" + "policy p {}\n").encode(encoding)
    err = error_of(load_text(content))
    assert err.message == "file is not valid UTF-8: it starts with a UTF-16 byte order mark; save it as UTF-8"
    assert str(err) == f"{err.file}:1:1: {err.message}"


def test_nul_bytes(load_text):
    err = error_of(load_text(b"policy p {\n  permit r when\x00true\n}\n"))
    assert (err.line, err.column) == (2, 16)
    assert err.message == "unexpected character U+0000"
    err = error_of(load_text(b'policy p {\n  permit r reason "a\x00b"\n}\n'))
    assert err.message == "control character U+0000 in string; write it as \\u0000"
    err = error_of(load_text(b"\x00" * 1000))
    assert (err.line, err.column) == (1, 1)


def test_a_no_break_space_pasted_from_a_web_page(load_text):
    err = error_of(load_text("policy p {\n  permit r when\u00a0true\n}\n"))
    assert err.message == "unexpected character U+00A0 (no-break space)"


@pytest.mark.parametrize("seed", range(20))
def test_binary_garbage(load_text, seed):
    data = random.Random(seed).randbytes(random.Random(seed).randint(1, 5000))
    error_of(load_text(data))


@pytest.mark.parametrize("seed", range(10))
def test_garbage_that_is_valid_utf8(load_text, seed):
    rng = random.Random(seed)
    text = "".join(chr(rng.choice([rng.randint(1, 0x7F), rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
                   for _ in range(rng.randint(1, 3000)))
    result = load_text(text)
    assert isinstance(result, (pdp.Engine, pdp.PolicyError))


# ---- empty and trivial files -----------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n\n\n", b"   \t  ", b"# only a comment", b"# one\n# two\n",
                                     b"\xef\xbb\xbf", b"\r\n\r\n"])
def test_an_empty_file_is_valid_and_has_no_policies(load_text, content):
    engine = load_text(content)
    assert isinstance(engine, pdp.Engine)
    assert engine.rule_ids == []
    assert engine.decide(request()).decision == "DENY"


def test_an_empty_policy_is_valid(load_text):
    engine = load_text("policy p {}\n")
    assert isinstance(engine, pdp.Engine) and engine.rule_ids == []


# ---- size ----------------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused(load_text, monkeypatch):
    monkeypatch.setattr(loader, "MAX_POLICY_BYTES", 1000)
    content = rule("true") + "#" * 2000 + "\n"
    err = error_of(load_text(content, "huge.pdl"))
    assert (err.line, err.column) == (0, 0)
    assert str(err) == f"{err.file}: file is {len(content)} bytes; the limit is 1000 bytes"
    # At the limit exactly, it loads.
    exact = rule("true")
    monkeypatch.setattr(loader, "MAX_POLICY_BYTES", len(exact))
    assert isinstance(load_text(exact), pdp.Engine)


def test_the_default_size_limit_is_a_few_mebibytes():
    assert 1024 * 1024 <= loader.MAX_POLICY_BYTES <= 64 * 1024 * 1024


def test_a_very_long_line_loads(load_text):
    long_string = "x" * 1_000_000
    engine = load_text(rule(f'identity.id == "{long_string}"'))
    assert isinstance(engine, pdp.Engine)
    assert engine.decide(request(identity={"id": long_string})).allowed
    assert not engine.decide(request()).allowed


def test_an_error_at_the_end_of_a_very_long_line(load_text):
    err = error_of(load_text(rule(" or ".join(["true"] * 50_000) + " &&")))
    assert err.line == 2
    assert err.column == len("  permit r when ") + len(" or ".join(["true"] * 50_000)) + 2
    assert err.message == "unexpected character '&'; use 'and' to combine conditions"


def test_many_policies_and_rules(load_text):
    text = "".join(f"policy p{i} {{\n" + "".join(f"  permit r{j} when identity.id == \"{i}.{j}\"\n"
                                               for j in range(10)) + "}\n" for i in range(300))
    engine = load_text(text)
    assert len(engine.rule_ids) == 3000
    assert [r.rule for r in engine.decide(request(identity={"id": "299.9"})).reasons] == ["p299.r9"]


# ---- nesting -------------------------------------------------------------------------------

TOO_DEEP = [
    ("not", rule("not " * DEEP + "true")),
    ("lists", rule("identity.id in " + "[" * DEEP + '"a"' + "]" * DEEP)),
    ("calls", rule("lower(" * DEEP + '"a"' + ")" * DEEP + ' == "a"')),
    ("attributes", rule("identity" + ".a" * DEEP + " == 1")),
    ("indexes", rule("identity" + '["a"]' * DEEP + " == 1")),
    ("mixed", rule("not (" * DEEP + "true" + ")" * DEEP)),
    ("in a let", "policy p {\n  let x = " + "not " * DEEP + "true\n  permit r when x\n}\n"),
    ("in a target", "policy p {\n  target " + "not " * DEEP + "true\n}\n"),
    ("in a reason", 'policy p {\n  permit r reason "{' + "not " * DEEP + 'true}"\n}\n'),
]


@pytest.mark.parametrize("name, text", TOO_DEEP, ids=[name for name, _ in TOO_DEEP])
def test_deeply_nested_expressions_are_refused(load_text, name, text):
    started = time.perf_counter()
    err = error_of(load_text(text))
    assert time.perf_counter() - started < 10
    assert err.code == "pdl_nesting"
    assert err.message == f"expression nested too deeply (more than {MAX_NESTING} levels)"
    assert err.line == 2 and err.column > 1
    assert len(err.diagnostics) == 1


def test_deep_parentheses_load_because_they_add_no_nesting(load_text):
    engine = load_text(rule("(" * DEEP + "true" + ")" * DEEP))
    assert isinstance(engine, pdp.Engine)
    assert engine.decide(request()).allowed
    assert "permit p.r: APPLIED" in engine.explain(request()).render()


def test_unbalanced_deep_parentheses(load_text):
    err = error_of(load_text(rule("(" * DEEP + "true" + ")" * (DEEP - 1))))
    assert err.code == "pdl_syntax"
    err = error_of(load_text(rule("(" * (DEEP - 1) + "true" + ")" * DEEP)))
    assert err.code == "pdl_syntax"


def test_nesting_below_the_limit_loads_and_evaluates(load_text):
    depth = MAX_NESTING // 2
    engine = load_text(rule("not " * depth + "true"))
    assert isinstance(engine, pdp.Engine)
    assert engine.decide(request()).allowed is (depth % 2 == 0)
    engine = load_text(rule("lower(" * depth + "identity.id" + ")" * depth + ' == "svc"'))
    assert engine.decide(request(identity={"id": "SVC"})).allowed
    explanation = engine.explain(request(identity={"id": "SVC"}))
    assert explanation.decision.allowed


@pytest.mark.parametrize("op", ["or", "and"])
def test_long_flat_and_or_chains_load_and_evaluate(load_text, op):
    terms = [f'identity.id == "{i}"' if op == "or" else f'identity.id != "{i}"' for i in range(5000)]
    started = time.perf_counter()
    engine = load_text(rule(f" {op} ".join(terms)))
    assert isinstance(engine, pdp.Engine), engine
    assert time.perf_counter() - started < 30
    if op == "or":
        assert engine.decide(request(identity={"id": "4999"})).allowed
        assert not engine.decide(request(identity={"id": "5000"})).allowed
    else:
        assert engine.decide(request(identity={"id": "5000"})).allowed
        assert not engine.decide(request(identity={"id": "4999"})).allowed
    assert engine.explain(request(identity={"id": "4999"})).render()


def test_a_long_chain_mixing_and_and_or_loads(load_text):
    terms = " or ".join(f'(identity.id == "{i}" and action.name == "read")' for i in range(2000))
    engine = load_text(rule(terms))
    assert engine.decide(request(identity={"id": "1999"})).allowed


def test_a_huge_list_literal_loads(load_text):
    items = ", ".join(f'"{i}"' for i in range(20_000))
    engine = load_text(rule(f"identity.id in [{items}]"))
    assert engine.decide(request(identity={"id": "19999"})).allowed


# ---- reasons -------------------------------------------------------------------------------


def test_a_reason_with_a_thousand_interpolations(load_text):
    engine = load_text('policy p {\n  permit r reason "' + "{identity.id}-" * 1000 + '"\n}\n')
    assert isinstance(engine, pdp.Engine)
    assert engine.decide(request(identity={"id": "x"})).reasons[0].message == "x-" * 1000


def test_a_reason_with_a_thousand_failing_interpolations(load_text):
    engine = load_text('policy p {\n  permit r reason "' + "{identity.nope}" * 1000 + '"\n}\n')
    assert engine.decide(request()).reasons[0].message == "{?}" * 1000


def test_a_reason_with_a_thousand_static_errors_reports_them_all(load_text):
    err = error_of(load_text('policy p {\n  permit r reason "' + "{nope}" * 1000 + '"\n}\n'))
    assert len(err.diagnostics) == 1000
    assert [d.column for d in err.diagnostics[:3]] == [21, 27, 33]
    assert str(err).endswith("... and 950 more errors")


def test_a_reason_with_many_braces(load_text):
    engine = load_text('policy p {\n  permit r reason "' + "{{}}" * 5000 + '"\n}\n')
    message = engine.decide(request()).reasons[0].message  # cut at MAX_REASON_CHARS (tests/test_limits.py)
    assert message == ("{}" * 5000)[:MAX_REASON_CHARS - len(REASON_CUT)] + REASON_CUT
    engine = load_text('policy p {\n  permit r reason "' + "{" * 5000 + '"\n}\n')  # 2,500 times '{{'
    assert engine.decide(request()).reasons[0].message == "{" * 2500
    err = error_of(load_text('policy p {\n  permit r reason "' + "{" * 5001 + '"\n}\n'))
    assert err.message == "unclosed '{' in reason; write '{{' for a literal brace"


# ---- many errors ---------------------------------------------------------------------------


def test_ten_thousand_broken_lines(load_text):
    started = time.perf_counter()
    err = error_of(load_text("".join(f"policy p{i} {{ permit r when && }}\n" for i in range(10_000))))
    assert time.perf_counter() - started < 30
    assert err.line == 1 and err.code == "pdl_syntax"


def test_ten_thousand_static_errors(load_text):
    text = "policy p {\n" + "".join(f"  permit r{i} when nope{i}\n" for i in range(10_000)) + "}\n"
    err = error_of(load_text(text))
    assert len(err.diagnostics) == 10_000
    assert len(str(err).split("\n")) == 50 * 3 + 1


# ---- property tests: anything given to pdp.load loads or raises PolicyError -----------------

PDL_TOKENS = [
    "policy", "p", "q", "{", "}", "target", "let", "x", "=", "permit", "forbid", "r", "when", "unless", "reason",
    "@", "owner", "(", ")", "[", "]", ",", ".", "identity", "action", "resource", "context", "data", "now",
    "id", "type", "name", "or", "and", "not", "==", "!=", "<", "<=", ">", ">=", "in", "contains",
    "contains_any", "contains_all", "matches", "startswith", "endswith", "defined", "len", "lower", "upper",
    "time", "age", "cidr", "true", "false", "0", "-1", "42", "1.5", "1e3", "99999999999999999999", "1h30m",
    "500ms", "1.5h", "30m1h", "7d", '"a"', '"*"', '"***"', '"a/**/b"', '"10.0.0.0/8"', '"10.1.0.0/8"',
    '"::ffff:10.1.2.3"', '"nope"', '"{identity.id}"', '"{{}}"', '"{"', '"}"', '"\\q"', '"\\u00e9"', '"\\ud800"',
    '"2026-11-27T10:00:00Z"', "#", "\n", " ", "\t", "&&", "||", "!", "'", '"', "\\", "\x00", "\u00a0", "é",
]

TEMPLATE = """\
@owner("{a}")
policy {p} {{
  target {e1}
  let {x} = {e2}
  @control("c")
  forbid f when {e3} unless {e4} reason "{r}"
  permit g when {e5}
}}
"""

EXPR_TOKENS = [t for t in PDL_TOKENS if t not in ("\n", "#")]

_SETTINGS = settings(deadline=1000, max_examples=300, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.pdl"
    load_never_crashes(path, b"policy p {\n  permit r when true\n}\n")  # build the parser before timing
    return path


def load_never_crashes(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    started = time.perf_counter()
    try:
        engine = pdp.load(path)
    except pdp.PolicyError as err:
        assert err.diagnostics
        str(err).encode("utf-8")  # renderable and printable
        for d in err.diagnostics:
            assert d.line >= 0 and d.column >= 0
    else:
        # Whatever loaded can decide and explain a request without raising.
        engine.decide(request())
        engine.explain(request()).render()
    assert time.perf_counter() - started < 1.0


@_SETTINGS
@given(st.text())
def test_any_text(scratch, text):
    load_never_crashes(scratch, text.encode("utf-8"))


@_SETTINGS
@given(st.binary(max_size=2000))
def test_any_bytes(scratch, data):
    load_never_crashes(scratch, data)


@_SETTINGS
@given(st.lists(st.sampled_from(PDL_TOKENS), max_size=80), st.sampled_from([" ", "", "\n"]))
def test_any_sequence_of_pdl_tokens(scratch, tokens, separator):
    load_never_crashes(scratch, separator.join(tokens).encode("utf-8"))


@_SETTINGS
@given(st.lists(st.sampled_from(PDL_TOKENS), max_size=60))
def test_pdl_tokens_inside_a_policy(scratch, tokens):
    load_never_crashes(scratch, ("policy p {\n  permit r when " + " ".join(tokens) + "\n}\n").encode("utf-8"))


_expr = st.lists(st.sampled_from(EXPR_TOKENS), min_size=1, max_size=12).map(" ".join)


@_SETTINGS
@given(p=st.sampled_from(["p", "q", "policy", "when"]), x=st.sampled_from(["x", "identity", "len", "y"]),
       a=st.text(max_size=5), r=st.text(max_size=20), e1=_expr, e2=_expr, e3=_expr, e4=_expr, e5=_expr)
def test_expressions_in_every_place_of_a_policy(scratch, p, x, a, r, e1, e2, e3, e4, e5):
    text = TEMPLATE.format(p=p, x=x, a=a.replace('"', ""), r=r.replace('"', "").replace("\n", " "),
                           e1=e1, e2=e2, e3=e3, e4=e4, e5=e5)
    load_never_crashes(scratch, text.encode("utf-8"))


_well_typed = st.recursive(
    st.sampled_from(["true", "false", 'identity.id == "a"', "identity.n < 3", 'action.name in ["a", "b"]',
                     'context.ip in cidr("10.0.0.0/8")', "defined(identity.x)", 'resource.p matches "a/*"',
                     "age(identity.t) < 1h", "x", "now > 0"]),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda t: f"({t[0]} and {t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} or {t[1]})"),
        inner.map(lambda e: f"not ({e})"),
    ),
    max_leaves=20,
)


@_SETTINGS
@given(_well_typed, _well_typed, st.integers(min_value=0, max_value=200), st.sampled_from(["", "&&", ")", "(", "==", "\x00"]))
def test_valid_policies_with_one_cut_or_insertion(scratch, when, let, cut, insert):
    text = f"policy p {{\n  let x = {let.replace('x', 'true') if 'x' in let.split() else let}\n  forbid r when {when}\n}}\n"
    cut = min(cut, len(text))
    load_never_crashes(scratch, (text[:cut] + insert + text[cut + 1:]).encode("utf-8"))
