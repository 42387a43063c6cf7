"""Reading data files: YAML or JSON text ⇒ plain JSON-typed Python values, with positioned errors."""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Sequence

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from .errors import Diagnostic, PolicyError
from .source import SourceFile

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MarkedList",
    "MarkedMap",
    "decode_text",
    "load_json",
    "load_yaml",
    "load_yaml_marked",
    "value_error",
]

#: Containers may nest this deep. Real data is shallow; the bound keeps every later stage
#: (which may walk values recursively) clear of Python's recursion limit.
MAX_DEPTH = 256

#: Aliases are allowed (plain YAML, handy for shared fixtures) but each one is expanded into a
#: copy, so a few lines of nested aliases could describe billions of nodes ("billion laughs").
#: The nodes that aliases add are counted and capped here; nodes written out in the text are
#: bounded by the text itself and are not counted.
MAX_ALIAS_NODES = 1_000_000

# Only PyYAML's parser is used (text ⇒ events); values are built from the events below, not
# by SafeConstructor, because SafeLoader's YAML 1.1 resolvers and constructors are exactly
# what must not happen (yes/no booleans, timestamps, !!binary, silent duplicate keys), and
# its composer forgets where an alias stood. libyaml's parser reports the same marks
# (character offsets) as the pure-Python one and is ~20x faster on large data files; the
# tests run both.
_Parser = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader

_YAML_CODE = "yaml_error"
_JSON_CODE = "json_error"

_TAG_PREFIX = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _SEQ, _MAP = (
    _TAG_PREFIX + name for name in ("str", "int", "float", "bool", "null", "seq", "map")
)

# YAML 1.2 core schema, restricted to JSON types. Everything else a plain scalar can look
# like in YAML 1.1 (yes/no/on/off, .inf/.nan, 1_000, 1:30, timestamps, 0b101) stays a string.
_NULLS = {"": None, "~": None, "null": None, "Null": None, "NULL": None}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_CONSTANTS = {**_NULLS, **_BOOLS}
_INT_DEC = re.compile(r"[-+]?[0-9]+\Z")
_INT_OCT = re.compile(r"0o[0-7]+\Z")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_NUMBER_START = frozenset("0123456789+-.")

# Characters YAML forbids anywhere in a stream (PyYAML's own list). Checked up front so that
# both parsers report them by character position (libyaml reports a byte offset).
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE

_BOM = "\ufeff"


class MarkedMap(dict):
    """A mapping from ``load_yaml_marked``: a ``dict`` that also knows where it and its entries stand.

    ``line``/``column`` are the 1-based start of the mapping; ``key_marks[key]`` and
    ``value_marks[key]`` are the 1-based ``(line, column)`` of each key and of its value.
    """

    __slots__ = ("line", "column", "key_marks", "value_marks")

    def __init__(self, line: int = 0, column: int = 0):
        super().__init__()
        self.line = line
        self.column = column
        self.key_marks: dict[str, tuple[int, int]] = {}
        self.value_marks: dict[str, tuple[int, int]] = {}


class MarkedList(list):
    """A sequence from ``load_yaml_marked``: a ``list`` that also knows where it and its items stand.

    ``line``/``column`` are the 1-based start of the sequence; ``item_marks[i]`` is the
    1-based ``(line, column)`` of item ``i``.
    """

    __slots__ = ("line", "column", "item_marks")

    def __init__(self, line: int = 0, column: int = 0):
        super().__init__()
        self.line = line
        self.column = column
        self.item_marks: list[tuple[int, int]] = []


# ---------------------------------------------------------------------------------------------
# Text


def decode_text(data: bytes, name: str) -> str:
    """Decode a file's bytes as strict UTF-8, dropping a leading BOM.

    Invalid bytes raise ``PolicyError`` (code ``encoding_error``) at the line and column of
    the first bad byte; columns count characters, like every other diagnostic.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
        line_start = data.rfind(b"\n", 0, start) + 1
        line_end = data.find(b"\n", start)
        line = data.count(b"\n", 0, start) + 1
        # Everything before the first bad byte decodes, so the column counts characters.
        column = len(data[line_start:start].decode("utf-8")) + 1
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            detail = "it starts with a UTF-16 byte order mark; save it as UTF-8"
            shown_text = None  # UTF-16 text shown as UTF-8 is noise
        else:
            detail = f"{exc.reason} (byte 0x{data[start]:02x})"
            shown = data[line_start : len(data) if line_end < 0 else line_end]
            shown_text = shown.decode("utf-8", "replace").rstrip("\r")
        message = f"file is not valid UTF-8: {detail}"
        raise PolicyError(Diagnostic(name, line, column, message, "encoding_error", shown_text)) from None


def _prepare(text: str, source: SourceFile) -> tuple[str, SourceFile]:
    """Drop a leading BOM and return the SourceFile whose offsets match the parsed text."""
    if text.startswith(_BOM):
        # Positions are counted after the BOM, as an editor shows them.
        text = text[1:]
    if source.text is text or source.text == text:
        return text, source
    return text, SourceFile(source.name, text)


def _error(source: SourceFile, offset: int | None, message: str, code: str) -> PolicyError:
    if offset is None:
        return PolicyError(Diagnostic(source.name, 0, 0, message, code))
    line, column = source.position(offset)
    return PolicyError(source.diagnostic(line, column, message, code))


# ---------------------------------------------------------------------------------------------
# YAML


class _ValueProblem(Exception):
    """A scalar that cannot become a JSON value; the builder adds the position."""


def _int(text: str, base: int) -> int:
    try:
        return int(text, base)
    except ValueError:
        # Only Python's limit on decimal digits gets here; the patterns already matched.
        raise _ValueProblem(f"integer with {len(text.lstrip('+-'))} digits is too long") from None


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _ValueProblem(f"number {text} is out of range")
    return value


def _resolve_plain(text: str) -> object:
    """The JSON value of an untagged plain scalar (YAML 1.2 core schema, JSON types only)."""
    if text in _CONSTANTS:
        return _CONSTANTS[text]
    if text[0] in _NUMBER_START:  # a cheap test first: most strings are not numbers
        if _INT_DEC.match(text):
            return _int(text, 10)
        if _FLOAT_RE.match(text):
            return _float(text)
        if _INT_OCT.match(text):
            return int(text[2:], 8)
        if _INT_HEX.match(text):
            return int(text[2:], 16)
    return text


def _explicit_int(text: str) -> int:
    if _INT_DEC.match(text):
        return _int(text, 10)
    if _INT_OCT.match(text):
        return int(text[2:], 8)
    if _INT_HEX.match(text):
        return int(text[2:], 16)
    raise _ValueProblem(f"{text!r} is not a valid !!int")


def _explicit_float(text: str) -> float:
    if _FLOAT_RE.match(text):
        return _float(text)
    raise _ValueProblem(f"{text!r} is not a valid !!float")


def _explicit_from(table: dict, tag: str):
    def convert(text: str) -> object:
        if text in table:
            return table[text]
        raise _ValueProblem(f"{text!r} is not a valid {tag}")

    return convert


_EXPLICIT_SCALARS = {
    _STR: str,
    _INT: _explicit_int,
    _FLOAT: _explicit_float,
    _BOOL: _explicit_from(_BOOLS, "!!bool"),
    _NULL: _explicit_from(_NULLS, "!!null"),
}


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG_PREFIX) :] if tag.startswith(_TAG_PREFIX) else tag


def _tag_problem(tag: str, what: str) -> str:
    if tag in _EXPLICIT_SCALARS or tag in (_SEQ, _MAP):
        return f"tag {_short_tag(tag)} cannot be used on {what}"
    return (
        f"unsupported tag {_short_tag(tag)}: only JSON types are allowed "
        "(string, number, boolean, null, list, mapping)"
    )


def _scalar_value(event: ScalarEvent) -> object:
    tag = event.tag
    if tag is None:
        # implicit[0] is set for plain scalars only; quoted and block scalars are strings.
        return _resolve_plain(event.value) if event.implicit[0] else event.value
    if tag == "!":
        # The non-specific tag makes a scalar a string (PyYAML would resolve it as plain).
        return event.value
    convert = _EXPLICIT_SCALARS.get(tag)
    if convert is None:
        raise _ValueProblem(_tag_problem(tag, "a scalar"))
    return convert(event.value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, dict):
        return "a mapping"
    return "a list"


def _copy(value: object) -> object:
    """A deep copy of a built value, marks included (aliases must not share mutable values)."""
    if isinstance(value, MarkedMap):
        new_map = MarkedMap(value.line, value.column)
        new_map.update((k, _copy(v)) for k, v in value.items())
        new_map.key_marks = dict(value.key_marks)
        new_map.value_marks = dict(value.value_marks)
        return new_map
    if isinstance(value, MarkedList):
        new_list = MarkedList(value.line, value.column)
        new_list.extend(_copy(v) for v in value)
        new_list.item_marks = list(value.item_marks)
        return new_list
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class _Frame:
    """A mapping or sequence being built."""

    __slots__ = ("value", "is_map", "anchor", "index", "nodes", "height", "key", "keys", "marks")

    def __init__(self, value, is_map: bool, anchor: str | None, index: int):
        self.value = value
        self.is_map = is_map
        self.anchor = anchor
        self.index = index  # offset of the node's start
        self.nodes = 1  # nodes in this subtree, alias expansions included
        self.height = 1  # levels of containers in this subtree
        self.key: str | None = None  # the key waiting for its value (maps)
        self.keys: dict[str, int] = {}  # key ⇒ offset, to place duplicates and key marks
        self.marks: list[int] = []  # value / item offsets (marked mode)


class _Builder:
    """Builds one document's value from parser events, iteratively (no recursion limit)."""

    def __init__(self, text: str, source: SourceFile, marked: bool):
        self.text = text
        self.source = source
        self.marked = marked

    def fail(self, index: int, message: str) -> PolicyError:
        return _error(self.source, index, message, _YAML_CODE)

    def build(self, parser) -> object:
        get_event = parser.get_event
        get_event()  # StreamStartEvent
        if type(get_event()) is StreamEndEvent:
            return None  # an empty stream, or comments only
        marked = self.marked
        frames: list[_Frame] = []
        anchors: dict[str, tuple[object, int, int]] = {}  # name ⇒ (value, nodes, height)
        expanded = 0
        while True:
            event = get_event()
            kind = type(event)
            index = event.start_mark.index
            if kind is ScalarEvent:
                try:
                    value = _scalar_value(event)
                except _ValueProblem as problem:
                    raise self.fail(index, str(problem)) from None
                nodes, height = 1, 0
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1, 0)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                is_map = kind is MappingStartEvent
                if len(frames) >= MAX_DEPTH:
                    raise self.fail(index, f"data nested deeper than {MAX_DEPTH} levels")
                tag = event.tag
                if tag is not None and tag != "!" and tag != (_MAP if is_map else _SEQ):
                    raise self.fail(index, _tag_problem(tag, "a mapping" if is_map else "a list"))
                if marked:
                    line, column = self.source.position(index)
                    container = MarkedMap(line, column) if is_map else MarkedList(line, column)
                else:
                    container = {} if is_map else []
                frames.append(_Frame(container, is_map, event.anchor, index))
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                frame = frames.pop()
                value, nodes, height, index = frame.value, frame.nodes, frame.height, frame.index
                if marked:
                    self._set_marks(frame)
                if frame.anchor is not None:
                    anchors[frame.anchor] = (value, nodes, height)
            elif kind is AliasEvent:
                name = event.anchor
                if any(frame.anchor == name for frame in frames):
                    raise self.fail(index, f"alias '*{name}' refers to a node that contains it")
                if name not in anchors:
                    raise self.fail(index, f"undefined alias '*{name}'")
                value, nodes, height = anchors[name]
                expanded += nodes
                if expanded > MAX_ALIAS_NODES:
                    raise self.fail(
                        index,
                        f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes (at '*{name}'); "
                        "write the data out instead",
                    )
                if len(frames) + height > MAX_DEPTH:
                    raise self.fail(index, f"data nested deeper than {MAX_DEPTH} levels")
                if height:
                    value = _copy(value)
            else:  # pragma: no cover - the parser emits nothing else inside a document
                raise self.fail(index, f"unexpected {kind.__name__}")

            if not frames:
                root = value
                break
            frame = frames[-1]
            frame.nodes += nodes
            if height >= frame.height:
                frame.height = height + 1
            if not frame.is_map:
                frame.value.append(value)
                if marked:
                    frame.marks.append(index)
            elif frame.key is None:
                self._check_key(frame, value, event, index)
                frame.key = value
                frame.keys[value] = index
            else:
                frame.value[frame.key] = value
                frame.key = None
                if marked:
                    frame.marks.append(index)

        get_event()  # DocumentEndEvent
        event = get_event()
        if type(event) is DocumentStartEvent:
            raise self.fail(event.start_mark.index, "expected a single YAML document, found a second one")
        return root

    def _check_key(self, frame: _Frame, key: object, event, index: int) -> None:
        if type(key) is not str:
            message = f"mapping keys must be strings, not {_kind(key)}"
            if type(event) is ScalarEvent and event.value:
                message += f' (quote it: "{event.value}")'
            raise self.fail(index, message)
        if key == "<<" and type(event) is ScalarEvent and event.tag is None and event.implicit[0]:
            # YAML 1.1 merge keys are not part of YAML 1.2; a silent "<<" key would surprise.
            raise self.fail(index, "merge keys ('<<') are not supported; write the keys out")
        if key in frame.keys:
            first_line, first_column = self.source.position(frame.keys[key])
            raise self.fail(
                index, f"duplicate key {key!r} (first at line {first_line}, column {first_column})"
            )

    def _set_marks(self, frame: _Frame) -> None:
        position = self.source.position
        container = frame.value
        if frame.is_map:
            container.key_marks = {key: position(i) for key, i in frame.keys.items()}
            container.value_marks = {key: position(i) for key, i in zip(frame.keys, frame.marks)}
        else:
            container.item_marks = [position(i) for i in frame.marks]

    def syntax_error(self, exc: yaml.MarkedYAMLError) -> PolicyError:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            if exc.context_mark.index != mark.index:
                line, column = self.source.position(exc.context_mark.index)
                message += f" ({exc.context} started at line {line}, column {column})"
        if mark is None:
            return _error(self.source, None, message, _YAML_CODE)
        if self.text[mark.index : mark.index + 1] == "\t":
            message += "; YAML does not allow tabs for indentation"
        return self.fail(mark.index, message)


def _load_yaml(text: str, source: SourceFile, marked: bool) -> object:
    text, source = _prepare(text, source)
    builder = _Builder(text, source, marked)
    bad = _NON_PRINTABLE.search(text)
    if bad:
        raise builder.fail(
            bad.start(), f"character U+{ord(bad.group()):04X} is not allowed in YAML (a control character)"
        )
    try:
        parser = _Parser(text)
        try:
            return builder.build(parser)
        finally:
            parser.dispose()
    except yaml.MarkedYAMLError as exc:
        raise builder.syntax_error(exc) from None
    except yaml.YAMLError as exc:  # a ReaderError the check above did not foresee
        raise _error(source, None, f"invalid YAML: {exc}", _YAML_CODE) from None


def load_yaml(text: str, source: SourceFile) -> object:
    """Load one YAML document as plain JSON-typed values; any problem raises a positioned ``PolicyError``.

    ``source`` is the file ``text`` came from (its name and lines are used in diagnostics).
    An empty document loads as ``None``.
    """
    return _load_yaml(text, source, marked=False)


def load_yaml_marked(text: str, source: SourceFile) -> object:
    """Like ``load_yaml``, but mappings are ``MarkedMap`` and sequences ``MarkedList``, carrying positions."""
    return _load_yaml(text, source, marked=True)


# ---------------------------------------------------------------------------------------------
# JSON


class _JsonReject(Exception):
    """Valid JSON syntax that is not an acceptable value; located afterwards by ``_locate_json``."""


def _json_object(pairs: list[tuple[str, object]]) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise _JsonReject("duplicate key")
    return value


def _json_constant(name: str) -> object:
    raise _JsonReject(f"{name} is not a JSON value")


def _json_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _JsonReject(f"number {text} is out of range")
    return value


def _too_deep(value: object) -> bool:
    """Whether containers nest deeper than MAX_DEPTH (iteratively: the input may be deep)."""
    if type(value) is not dict and type(value) is not list:
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


_JSON_TOKEN = re.compile(
    r"""(?P<ws>[ \t\n\r]+)
      | (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<const>NaN|-?Infinity)
      | (?P<num>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)
      | (?P<word>true|false|null)
      | (?P<punct>[{}\[\]:,])""",
    re.X | re.S,
)


def _locate_json(text: str, source: SourceFile) -> tuple[int, str] | None:
    """The offset and message of the first value problem in JSON text (error path only).

    json.loads does not say where a hook rejected a value, so the text is tokenized again to
    find the first duplicate key, non-finite or oversized number, or too-deep nesting.
    """
    stack: list[dict[str, int] | None] = []  # per open container: key ⇒ offset (objects)
    expect_key = False
    pos = 0
    while pos < len(text):
        match = _JSON_TOKEN.match(text, pos)
        if match is None:
            return None
        group, token, start = match.lastgroup, match.group(), pos
        pos = match.end()
        if group == "punct":
            if token in "{[":
                stack.append({} if token == "{" else None)
                expect_key = token == "{"
                if len(stack) > MAX_DEPTH:
                    return start, f"data nested deeper than {MAX_DEPTH} levels"
            elif token in "}]":
                stack.pop()
                expect_key = False
            elif token == ",":
                expect_key = bool(stack) and stack[-1] is not None
        elif group == "str" and expect_key:
            key = json.loads(token)
            keys = stack[-1]
            if key in keys:
                line, column = source.position(keys[key])
                return start, f"duplicate key {key!r} (first at line {line}, column {column})"
            keys[key] = start
            expect_key = False
        elif group == "const":
            return start, f"{token} is not a JSON value"
        elif group == "num":
            try:
                value = float(token) if any(c in token for c in ".eE") else int(token)
            except ValueError:
                return start, f"integer with {len(token.lstrip('-'))} digits is too long"
            if isinstance(value, float) and math.isinf(value):
                return start, f"number {token} is out of range"
    return None


def load_json(text: str, source: SourceFile) -> object:
    """Load JSON text as plain values (ints and floats apart); problems raise a positioned ``PolicyError``.

    NaN and Infinity, numbers that overflow, duplicate keys and nesting deeper than
    MAX_DEPTH are rejected, like in YAML.
    """
    text, source = _prepare(text, source)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_json_object,
            parse_constant=_json_constant,
            parse_float=_json_float,
        )
    except json.JSONDecodeError as exc:
        message = exc.msg[:1].lower() + exc.msg[1:]
        raise _error(source, exc.pos, message, _JSON_CODE) from None
    except (_JsonReject, ValueError, RecursionError) as exc:
        # ValueError: an integer beyond Python's digit limit; RecursionError: deep nesting.
        found = _locate_json(text, source)
        if found is None:
            raise _error(source, None, str(exc) or "invalid JSON", _JSON_CODE) from None
        raise _error(source, found[0], found[1], _JSON_CODE) from None
    if _too_deep(value):
        found = _locate_json(text, source)
        message = f"data nested deeper than {MAX_DEPTH} levels"
        raise _error(source, found[0] if found else None, message, _JSON_CODE)
    return value


# ---------------------------------------------------------------------------------------------
# Where a value stands (for checks made after loading)


def value_error(text: str, source: SourceFile, keys: Sequence[str | int], message: str, code: str, *,
                is_json: bool) -> PolicyError:
    """A ``PolicyError`` at the value that ``keys`` (map keys and list indexes, from the root)
    lead to in ``text``, which loaded without error; file-level when the keys lead nowhere.

    For checks made on the loaded value (pdp's value rules); reads the text again, so it is for
    the error path only.
    """
    text, source = _prepare(text, source)
    if is_json:
        offset = _json_value_offset(text, keys)
        where = None if offset is None else source.position(offset)
    else:
        where = _marked_position(load_yaml_marked(text, source), keys)
    if where is None:
        return PolicyError(Diagnostic(source.name, 0, 0, message, code))
    return PolicyError(source.diagnostic(where[0], where[1], message, code))


def _marked_position(node: object, keys: Sequence[str | int]) -> tuple[int, int] | None:
    where = (node.line, node.column) if isinstance(node, (MarkedMap, MarkedList)) else (1, 1)
    for key in keys:
        if isinstance(node, MarkedMap) and key in node.value_marks:
            where = node.value_marks[key]
        elif isinstance(node, MarkedList) and type(key) is int and 0 <= key < len(node):
            where = node.item_marks[key]
        else:
            return None
        node = node[key]
    return where


def _json_value_offset(text: str, keys: Sequence[str | int]) -> int | None:
    """The offset where the value at ``keys`` starts in JSON text that loaded without error.

    Walks down the keys only, stepping over the values before each one with the json
    module's C scanner, so a bad value at the end of a large file is found quickly.
    """
    pos = _skip_ws(text, 0)
    try:
        for key in keys:
            opener = text[pos]
            pos = _skip_ws(text, pos + 1)
            if opener == "{" and type(key) is str:
                while True:
                    if text[pos] != '"':
                        return None
                    name, pos = _scan_string(text, pos + 1)
                    pos = _skip_ws(text, _skip_ws(text, pos) + 1)  # past the colon
                    if name == key:
                        break
                    pos = _next_item(text, pos)
            elif opener == "[" and type(key) is int:
                for _ in range(key):
                    pos = _next_item(text, pos)
            else:
                return None
            if text[pos] in "}]":
                return None
    except (IndexError, ValueError, _NoItem):
        return None
    return pos


class _NoItem(Exception):
    """The container ended before the key or index sought."""


def _next_item(text: str, pos: int) -> int:
    """From the start of a value inside a container to the start of the next item."""
    pos = _skip_ws(text, _raw_decode(text, pos)[1])
    if text[pos] != ",":
        raise _NoItem
    return _skip_ws(text, pos + 1)


def _skip_ws(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()


_WS = re.compile(r"[ \t\n\r]*")
_raw_decode = json.JSONDecoder().raw_decode
_scan_string = json.decoder.scanstring
