"""Reading YAML and JSON with JSON types only: values, positions of errors and marks."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from pdp import yamlio
from pdp.errors import PolicyError
from pdp.source import SourceFile
from pdp.yamlio import (
    MAX_DEPTH,
    MarkedList,
    MarkedMap,
    decode_text,
    load_json,
    load_yaml,
    load_yaml_marked,
)

PARSERS = [pytest.param(yaml.SafeLoader, id="pure")]
if getattr(yaml, "CSafeLoader", None) is not None:
    PARSERS.append(pytest.param(yaml.CSafeLoader, id="libyaml"))


@pytest.fixture(params=PARSERS)
def parser(request, monkeypatch):
    """Run a YAML test with the pure-Python parser and with libyaml's: both must agree."""
    monkeypatch.setattr(yamlio, "_Parser", request.param)


def y(text: str) -> object:
    text = textwrap.dedent(text)
    return load_yaml(text, SourceFile("f.yaml", text))


def ym(text: str) -> object:
    text = textwrap.dedent(text)
    return load_yaml_marked(text, SourceFile("f.yaml", text))


def j(text: str) -> object:
    return load_json(text, SourceFile("f.json", text))


def yaml_error(text: str) -> PolicyError:
    text = textwrap.dedent(text)
    with pytest.raises(PolicyError) as info:
        load_yaml(text, SourceFile("f.yaml", text))
    assert info.value.code == "yaml_error"
    return info.value


def json_error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        j(text)
    assert info.value.code == "json_error"
    return info.value


def at(err: PolicyError) -> tuple[int, int]:
    return err.line, err.column


# ---------------------------------------------------------------------------------------------
# Scalars: YAML 1.2 core schema, JSON types only


@pytest.mark.usefixtures("parser")
class TestScalars:
    @pytest.mark.parametrize("word", ["no", "No", "NO", "yes", "on", "off", "y", "n", "Y", "N"])
    def test_yaml11_booleans_stay_strings(self, word):
        assert y(f"v: {word}") == {"v": word}

    @pytest.mark.parametrize(
        "word, value",
        [("true", True), ("True", True), ("TRUE", True),
         ("false", False), ("False", False), ("FALSE", False)],
    )
    def test_booleans(self, word, value):
        assert y(f"v: {word}")["v"] is value

    @pytest.mark.parametrize("word", ["~", "null", "Null", "NULL", ""])
    def test_nulls(self, word):
        assert y(f"v: {word}") == {"v": None}

    @pytest.mark.parametrize(
        "word", ["2026-11-27", "2026-11-27T10:00:00Z", "2026-11-27 10:00:00", "10:00:00"]
    )
    def test_timestamps_stay_strings(self, word):
        assert y(f"v: {word}") == {"v": word}

    @pytest.mark.parametrize(
        "word, value",
        [("42", 42), ("-7", -7), ("+3", 3), ("0", 0), ("007", 7), ("0x1F", 31), ("0xff", 255), ("0o17", 15),
         ("123456789012345678901234567890", 123456789012345678901234567890)],
    )
    def test_integers(self, word, value):
        got = y(f"v: {word}")["v"]
        assert type(got) is int and got == value

    @pytest.mark.parametrize(
        "word, value",
        [("1.5", 1.5), ("-0.5", -0.5), (".5", 0.5), ("1.", 1.0), ("1e3", 1000.0), ("1.5E-2", 0.015),
         ("+2.0", 2.0), ("1.0", 1.0)],
    )
    def test_floats(self, word, value):
        got = y(f"v: {word}")["v"]
        assert type(got) is float and got == value

    @pytest.mark.parametrize(
        "word",
        [".inf", "-.inf", ".Inf", ".nan", ".NaN", "1_000", "1:30", "190:20:30", "0b101", "-0x1F",
         "0x", "0o8", "1.2.3", "+", ".", "e3", "1e", "12abc"],
    )
    def test_non_json_numbers_stay_strings(self, word):
        assert y(f"v: {word}") == {"v": word}

    @pytest.mark.parametrize("word", ['"true"', "'42'", '"null"', "'no'", '""'])
    def test_quoted_scalars_are_strings(self, word):
        assert y(f"v: {word}") == {"v": word[1:-1]}

    def test_block_scalars_are_strings(self):
        assert y("a: |\n  42\nb: >\n  true\n") == {"a": "42\n", "b": "true\n"}

    def test_explicit_standard_tags(self):
        doc = y(
            """\
            a: !!str 12
            b: !!int "12"
            c: !!float 1
            d: !!bool "true"
            e: !!null ""
            f: ! 12
            g: !!int 0x10
            h: !!seq [1]
            i: !!map {k: v}
            """
        )
        assert doc == {
            "a": "12", "b": 12, "c": 1.0, "d": True, "e": None, "f": "12", "g": 16, "h": [1], "i": {"k": "v"},
        }
        assert type(doc["c"]) is float

    def test_invalid_value_for_explicit_tag(self):
        err = yaml_error("a: 1\nb: !!int abc\n")
        assert at(err) == (2, 4)
        assert "'abc' is not a valid !!int" in err.message
        assert at(yaml_error("b: !!bool yes\n")) == (1, 4)
        assert at(yaml_error("b: !!float .inf\n")) == (1, 4)

    def test_float_overflow_is_an_error(self):
        err = yaml_error("x: 1\ny: 1e400\n")
        assert at(err) == (2, 4)
        assert "out of range" in err.message

    def test_integer_beyond_digit_limit_is_an_error(self):
        err = yaml_error("x: " + "9" * 5000 + "\n")
        assert at(err) == (1, 4)
        assert "too long" in err.message

    def test_load_yaml_returns_plain_types(self):
        doc = y("a: {b: [1, {c: d}]}\n")
        assert type(doc) is dict and type(doc["a"]) is dict and type(doc["a"]["b"]) is list
        assert type(doc["a"]["b"][1]) is dict

    @pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "--- ~\n", "null\n"])
    def test_empty_document_is_none(self, text):
        assert y(text) is None

    def test_scalar_document(self):
        assert y("hello\n") == "hello"
        assert y("--- 3\n...\n") == 3


# ---------------------------------------------------------------------------------------------
# Mappings: string keys, no duplicates


@pytest.mark.usefixtures("parser")
class TestKeys:
    def test_duplicate_key_at_second_occurrence(self):
        err = yaml_error(
            """\
            a: 1
            b:
              x: 1
              y: 2
              x: 3
            """
        )
        assert at(err) == (5, 3)
        assert err.message.startswith("duplicate key 'x'")
        assert "line 3, column 3" in err.message

    def test_duplicate_key_in_flow_mapping(self):
        err = yaml_error("m: {a: 1, b: 2, a: 3}\n")
        assert at(err) == (1, 17)
        assert "duplicate key 'a'" in err.message

    def test_duplicate_quoted_and_plain_key(self):
        assert at(yaml_error('a: 1\n"a": 2\n')) == (2, 1)

    def test_same_key_in_sibling_mappings_is_fine(self):
        assert y("- {a: 1}\n- {a: 2}\n") == [{"a": 1}, {"a": 2}]

    @pytest.mark.parametrize(
        "text, pos, kind",
        [
            ("a: 1\n1: x\n", (2, 1), "an integer"),
            ("a: 1\n  \ntrue: x\n", (3, 1), "a boolean"),
            ("a: 1\n~: x\n", (2, 1), "null"),
            ("a: 1\n1.5: x\n", (2, 1), "a number"),
            ("a: 1\n[x, y]: z\n", (2, 1), "a list"),
            ("a: 1\n? {x: 1}\n: z\n", (2, 3), "a mapping"),
        ],
    )
    def test_non_string_key_is_an_error_at_the_key(self, text, pos, kind):
        err = yaml_error(text)
        assert at(err) == pos
        assert f"mapping keys must be strings, not {kind}" in err.message

    def test_quoted_number_keys_are_strings(self):
        assert y('"1": a\n\'true\': b\n') == {"1": "a", "true": "b"}

    def test_yaml11_boolean_words_are_string_keys(self):
        assert y("on: 1\nno: 2\n") == {"on": 1, "no": 2}

    def test_merge_key_is_rejected_quoted_is_a_string(self):
        err = yaml_error("base: &b {x: 1}\nother:\n  <<: *b\n")
        assert at(err) == (3, 3)
        assert "merge keys" in err.message
        assert y('"<<": 1\n') == {"<<": 1}


# ---------------------------------------------------------------------------------------------
# Tags


@pytest.mark.usefixtures("parser")
class TestTags:
    @pytest.mark.parametrize(
        "text, pos, shown",
        [
            ("a: 1\nb: !!binary aGVsbG8=\n", (2, 4), "!!binary"),
            ("a: !!python/object:os.system x\n", (1, 4), "!!python/object:os.system"),
            ("!!python/object/apply:os.system [ls]\n", (1, 1), "!!python/object/apply:os.system"),
            ("a: !!timestamp 2026-11-27\n", (1, 4), "!!timestamp"),
            ("a: !!set {x, y}\n", (1, 4), "!!set"),
            ("a: !!omap [x: 1]\n", (1, 4), "!!omap"),
            ("a:\n  - !custom x\n", (2, 5), "!custom"),
            ("a: !<tag:example.com,2026:thing> x\n", (1, 4), "tag:example.com,2026:thing"),
        ],
    )
    def test_non_json_tags_are_rejected(self, text, pos, shown):
        err = yaml_error(text)
        assert at(err) == pos
        assert f"unsupported tag {shown}" in err.message

    def test_collection_tag_on_the_wrong_kind(self):
        err = yaml_error("a: !!seq {x: 1}\n")
        assert at(err) == (1, 4)
        assert "tag !!seq cannot be used on a mapping" in err.message
        assert "cannot be used on a scalar" in yaml_error("a: !!map x\n").message
        assert "cannot be used on a list" in yaml_error("a: !!str [x]\n").message

    def test_tag_after_anchor_is_placed_at_the_anchor(self):
        assert at(yaml_error("a: &x !!binary aGk=\n")) == (1, 4)


# ---------------------------------------------------------------------------------------------
# Syntax, documents, characters


@pytest.mark.usefixtures("parser")
class TestSyntax:
    def test_syntax_error_positioned(self):
        err = yaml_error("a: b: c\n")
        assert at(err) == (1, 5)
        assert "mapping values are not allowed" in err.message

    def test_unclosed_flow_sequence_names_its_start(self):
        err = yaml_error("a: [1, 2\nb: 3\n")
        assert err.line == 2
        assert "flow sequence started at line 1, column 4" in err.message

    def test_unterminated_quote(self):
        err = yaml_error("a: 1\nb: 'x\n")
        assert err.line == 3
        assert "quoted scalar started at line 2, column 4" in err.message

    def test_tab_indentation_hint(self):
        err = yaml_error("a:\n\t- b\n")
        assert at(err) == (2, 1)
        assert "tabs" in err.message

    def test_columns_count_characters_not_bytes(self):
        err = yaml_error("é😀: ü: x\n")
        assert at(err) == (1, 6)

    def test_bad_indentation(self):
        err = yaml_error("a:\n  b: 1\n c: 2\n")
        assert err.line == 3

    def test_multi_document_stream_is_an_error(self):
        err = yaml_error("a: 1\n---\nb: 2\n")
        assert at(err) == (2, 1)
        assert "expected a single YAML document" in err.message

    def test_explicit_documents_twice(self):
        err = yaml_error("--- 1\n--- 2\n")
        assert at(err) == (2, 1)

    def test_document_end_marker_then_another_document(self):
        err = yaml_error("a: 1\n...\nb: 2\n")
        assert at(err) == (3, 1)

    def test_single_explicit_document_is_fine(self):
        assert y("%YAML 1.2\n---\na: 1\n...\n") == {"a": 1}

    def test_control_character_is_rejected_at_its_position(self):
        err = yaml_error("a: 1\nb: é\x07\n")
        assert at(err) == (2, 5)
        assert "U+0007" in err.message

    def test_lone_surrogate_is_rejected(self):
        err = yaml_error("a: \ud800\n")
        assert at(err) == (1, 4)

    def test_bom_in_text_is_skipped_and_columns_ignore_it(self):
        text = "\ufeffa: 1\nb: c: d\n"
        assert load_yaml("\ufeffa: 1\n", SourceFile("f.yaml", "\ufeffa: 1\n")) == {"a": 1}
        with pytest.raises(PolicyError) as info:
            load_yaml(text, SourceFile("f.yaml", text))
        assert at(info.value) == (2, 5)
        text = "\ufeffa: b: c\n"
        with pytest.raises(PolicyError) as info:
            load_yaml(text, SourceFile("f.yaml", text))
        assert at(info.value) == (1, 5)

    def test_str_of_error_has_file_line_column_and_caret(self):
        err = yaml_error("a: 1\na: 2\n")
        rendered = str(err)
        assert rendered.startswith("f.yaml:2:1: duplicate key 'a'")
        assert rendered.splitlines()[1:] == ["a: 2", "^"]

    def test_crlf_line_endings(self):
        text = "a: 1\r\nb: 2\r\na: 3\r\n"
        with pytest.raises(PolicyError) as info:
            load_yaml(text, SourceFile("f.yaml", text))
        assert at(info.value) == (3, 1)
        assert str(info.value).splitlines()[1] == "a: 3"


# ---------------------------------------------------------------------------------------------
# Anchors and aliases


@pytest.mark.usefixtures("parser")
class TestAliases:
    def test_aliases_expand_to_independent_copies(self):
        doc = y("base: &b {x: [1, 2]}\nother: *b\nname: &n hello\nagain: *n\n")
        assert doc == {"base": {"x": [1, 2]}, "other": {"x": [1, 2]}, "name": "hello", "again": "hello"}
        doc["other"]["x"].append(3)
        assert doc["base"]["x"] == [1, 2]

    def test_alias_as_key(self):
        assert y("- &k name\n- {*k : 1}\n") == ["name", {"name": 1}]

    def test_undefined_alias(self):
        err = yaml_error("a: 1\nb: *nope\n")
        assert at(err) == (2, 4)
        assert "undefined alias '*nope'" in err.message

    def test_recursive_alias(self):
        err = yaml_error("a: &x\n  - 1\n  - *x\n")
        assert at(err) == (3, 5)
        assert "contains it" in err.message

    def test_billion_laughs_is_stopped(self):
        lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for i in range(1, 10):
            name, prev = chr(ord("a") + i), chr(ord("a") + i - 1)
            lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        err = yaml_error("\n".join(lines) + "\n")
        assert "aliases expand to more than 1,000,000 nodes" in err.message
        assert err.line <= 10 and err.line >= 2
        assert err.diagnostics[0].source_line[err.column - 1] == "*"

    def test_alias_budget_counts_expanded_nodes(self, monkeypatch):
        monkeypatch.setattr(yamlio, "MAX_ALIAS_NODES", 10)
        assert y("a: &a [1, 2, 3]\nb: *a\nc: *a\n")["c"] == [1, 2, 3]  # 4 + 4 nodes
        err = yaml_error("a: &a [1, 2, 3]\nb: *a\nc: *a\nd: *a\n")
        assert at(err) == (4, 4)

    def test_alias_depth_counts(self, monkeypatch):
        monkeypatch.setattr(yamlio, "MAX_DEPTH", 3)
        assert y("a: &a [[1]]\n") == {"a": [[1]]}
        err = yaml_error("a: &a [[1]]\nb: [*a]\n")
        assert at(err) == (2, 5)


@pytest.mark.usefixtures("parser")
class TestDepth:
    def test_deep_nesting_is_an_error(self):
        depth = MAX_DEPTH + 1
        err = yaml_error("[" * depth + "]" * depth)
        assert at(err) == (1, depth)
        assert "nested deeper" in err.message

    def test_nesting_at_the_limit_is_fine(self):
        doc = y("[" * MAX_DEPTH + "]" * MAX_DEPTH)
        for _ in range(MAX_DEPTH - 1):
            doc = doc[0]
        assert doc == []


# ---------------------------------------------------------------------------------------------
# Marks


@pytest.mark.usefixtures("parser")
class TestMarks:
    TEXT = """\
        suite: payments
        fixtures:
          identities:
            billing: {type: workload, id: billing}
        tests:
          - name: first
            expect: allow
          - name: second
            reasons: [a.b, "c.d"]
        """

    def test_map_and_key_and_value_marks(self):
        doc = ym(self.TEXT)
        assert isinstance(doc, MarkedMap) and isinstance(doc, dict)
        assert (doc.line, doc.column) == (1, 1)
        assert doc.key_marks == {"suite": (1, 1), "fixtures": (2, 1), "tests": (5, 1)}
        assert doc.value_marks["suite"] == (1, 8)
        assert doc.value_marks["fixtures"] == (3, 3)
        identities = doc["fixtures"]["identities"]
        assert (identities.line, identities.column) == (4, 5)
        billing = identities["billing"]
        assert (billing.line, billing.column) == (4, 14)
        assert billing.key_marks == {"type": (4, 15), "id": (4, 31)}
        assert billing.value_marks == {"type": (4, 21), "id": (4, 35)}

    def test_list_and_item_marks(self):
        doc = ym(self.TEXT)
        tests = doc["tests"]
        assert isinstance(tests, MarkedList) and isinstance(tests, list)
        assert (tests.line, tests.column) == (6, 3)
        assert tests.item_marks == [(6, 5), (8, 5)]
        reasons = tests[1]["reasons"]
        assert (reasons.line, reasons.column) == (9, 14)
        assert reasons.item_marks == [(9, 15), (9, 20)]
        assert tests[1].key_marks["reasons"] == (9, 5)

    def test_marked_equals_plain(self):
        assert ym(self.TEXT) == y(self.TEXT)

    def test_scalar_document_stays_plain(self):
        assert ym("x\n") == "x"

    def test_alias_value_mark_is_where_the_alias_stands(self):
        doc = ym("a: &x {k: 1}\nb: *x\n")
        assert doc.value_marks == {"a": (1, 4), "b": (2, 4)}
        copy = doc["b"]
        assert isinstance(copy, MarkedMap) and copy is not doc["a"]
        assert copy.key_marks == {"k": (1, 8)}

    def test_marks_follow_a_bom(self):
        text = "\ufeffa:\n  - x\n"
        doc = load_yaml_marked(text, SourceFile("f.yaml", text))
        assert doc.key_marks == {"a": (1, 1)}
        assert doc["a"].item_marks == [(2, 5)]


# ---------------------------------------------------------------------------------------------
# JSON


class TestJson:
    def test_ints_and_floats_kept_apart(self):
        doc = j('{"a": 1, "b": 1.0, "c": [1e3, -0, 0.5], "d": 12345678901234567890}')
        assert doc == {"a": 1, "b": 1.0, "c": [1000.0, 0, 0.5], "d": 12345678901234567890}
        assert type(doc["a"]) is int and type(doc["b"]) is float
        assert type(doc["c"][0]) is float and type(doc["c"][1]) is int

    def test_json_types(self):
        assert j('[true, false, null, "s"]') == [True, False, None, "s"]

    def test_duplicate_key_at_second_occurrence(self):
        err = json_error('{"a": 1,\n "b": {"c": 1, "c": 2}}')
        assert at(err) == (2, 16)
        assert err.message.startswith("duplicate key 'c'")
        assert "line 2, column 8" in err.message

    def test_first_duplicate_in_text_order(self):
        # json.loads meets the inner duplicate first (objects close inside out); the
        # diagnostic is the first in the text, like YAML's.
        err = json_error('{"a": 1, "a": 2, "x": {"c": 1, "c": 2}}')
        assert at(err) == (1, 10)

    def test_escaped_duplicate_key(self):
        assert at(json_error('{"a": 1, "\\u0061": 2}')) == (1, 10)

    def test_same_key_in_sibling_objects_is_fine(self):
        assert j('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]

    def test_key_like_string_values_are_not_keys(self):
        assert j('{"a": "a", "b": ["a", "a"]}') == {"a": "a", "b": ["a", "a"]}

    @pytest.mark.parametrize(
        "text, pos, word",
        [('{"a": [1,\n  NaN]}', (2, 3), "NaN"), ('{"a": Infinity}', (1, 7), "Infinity"),
         ('{"a": -Infinity}', (1, 7), "-Infinity")],
    )
    def test_non_finite_constants_rejected(self, text, pos, word):
        err = json_error(text)
        assert at(err) == pos
        assert err.message == f"{word} is not a JSON value"

    def test_float_overflow_rejected(self):
        err = json_error('{"s": "1e400", "a": 1e400}')
        assert at(err) == (1, 21)
        assert "out of range" in err.message

    def test_huge_integer_rejected(self):
        err = json_error('{"a": ' + "1" * 5000 + "}")
        assert at(err) == (1, 7)
        assert "too long" in err.message

    def test_syntax_error_position(self):
        err = json_error('{"a": 1,\n "b" 2}')
        assert at(err) == (2, 6)
        assert err.message == "expecting ':' delimiter"
        assert str(err).startswith("f.json:2:6: expecting ':' delimiter\n")

    def test_trailing_comma(self):
        assert at(json_error('{"a": 1,}')) == (1, 9)

    def test_empty_text_is_an_error(self):
        assert at(json_error("")) == (1, 1)

    def test_deep_nesting(self):
        depth = MAX_DEPTH + 1
        err = json_error("[" * depth + "]" * depth)
        assert at(err) == (1, depth)
        err = json_error("[" * 100_000 + "]" * 100_000)  # beyond the C decoder's recursion limit
        assert at(err) == (1, depth)

    def test_bom_in_text_is_skipped(self):
        text = '\ufeff{"a": x}'
        assert load_json('\ufeff{"a": 1}', SourceFile("f.json", '\ufeff{"a": 1}')) == {"a": 1}
        with pytest.raises(PolicyError) as info:
            load_json(text, SourceFile("f.json", text))
        assert at(info.value) == (1, 7)


# ---------------------------------------------------------------------------------------------
# Bytes ⇒ text


class TestDecodeText:
    def test_valid_utf8(self):
        assert decode_text("a: é😀\n".encode(), "f.yaml") == "a: é😀\n"

    def test_bom_stripped(self):
        assert decode_text(b"\xef\xbb\xbfa: 1\n", "f.yaml") == "a: 1\n"

    def test_invalid_byte_position_counts_characters(self):
        with pytest.raises(PolicyError) as info:
            decode_text(b"ok: 1\nv: \xc3\xa9\xffz\n", "f.yaml")
        err = info.value
        assert (err.code, err.line, err.column) == ("encoding_error", 2, 5)
        assert err.message == "file is not valid UTF-8: invalid start byte (byte 0xff)"
        assert str(err).startswith("f.yaml:2:5: file is not valid UTF-8")

    def test_invalid_byte_after_bom(self):
        with pytest.raises(PolicyError) as info:
            decode_text(b"\xef\xbb\xbfab\x80", "f.yaml")
        assert (info.value.line, info.value.column) == (1, 3)

    def test_truncated_sequence_at_end(self):
        with pytest.raises(PolicyError) as info:
            decode_text(b"abc\xe2\x82", "f.yaml")
        assert (info.value.line, info.value.column) == (1, 4)
        assert "unexpected end of data" in info.value.message

    def test_encoded_surrogate_rejected(self):
        with pytest.raises(PolicyError) as info:
            decode_text(b"a\xed\xa0\x80", "f.yaml")
        assert (info.value.line, info.value.column) == (1, 2)

    def test_utf16_named(self):
        with pytest.raises(PolicyError) as info:
            decode_text("a: 1\n".encode("utf-16"), "f.yaml")
        assert "UTF-16" in info.value.message
        assert (info.value.line, info.value.column) == (1, 1)


# ---- value_error: where a value stands, for checks made after loading ------------------------


@pytest.mark.parametrize("text, keys, position", [
    ('{"a": {}, "b": [[], {"c": 1}], "d": "x"}', ["b", 1, "c"], (1, 27)),
    ('{"a": {}, "b": [[], {"c": 1}], "d": "x"}', ["d"], (1, 37)),
    ('{"a": {}, "b": [[], {"c": 1}], "d": "x"}', [], (1, 1)),
    ('{\n  "k\\"ey": [\n    1,\n    2\n  ]\n}', ['k"ey', 1], (4, 5)),
    ('\ufeff[{"x": 1}, {"y": [true, {"z": "}]"}]}]', [1, "y", 1, "z"], (1, 31)),
])
def test_value_error_finds_a_json_value(text, keys, position):
    err = yamlio.value_error(text, SourceFile("d.data.json", text), keys, "bad", "data_value", is_json=True)
    assert (err.line, err.column, err.message, err.code) == (*position, "bad", "data_value")


@pytest.mark.parametrize("keys", [["nope"], ["a", "x"], ["b", 5], ["b", "c"], ["d", 0]])
def test_value_error_is_file_level_when_the_keys_lead_nowhere(keys):
    text = '{"a": {}, "b": [[], {"c": 1}], "d": "x"}'
    for is_json in (True, False):
        err = yamlio.value_error(text, SourceFile("d.data.json", text), keys, "bad", "data_value", is_json=is_json)
        assert (err.line, err.column) == (0, 0)


def test_value_error_finds_a_yaml_value():
    text = "a: {}\nb:\n  - []\n  - c: 1\nd: x\n"
    err = yamlio.value_error(text, SourceFile("d.data.yaml", text), ["b", 1, "c"], "bad", "data_value", is_json=False)
    assert (err.line, err.column) == (4, 8)
