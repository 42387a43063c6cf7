"""A tiny policy model that renders to both PDL and Cedar, with hypothesis strategies.

Used by ``test_cedar_differential.py``. The model only holds what both languages share
(SPEC §1–§2 against Cedar 4):

========================================  ===============================================
PDL                                       Cedar
========================================  ===============================================
``policy P { target T  permit R ... }``   one Cedar policy per rule, ``@id("P.R")``,
                                          ``when { T }`` first (a policy has no target)
``permit R when C unless U``              ``permit (principal, action, resource)
                                          when { C } unless { U };``
``identity.a`` / ``resource.a``           ``principal.a`` / ``resource.a`` (entity
                                          attributes)
``context.a``                             ``context.a``
``action.name == "n"``                    ``action == Action::"n"``
``action.name in ["n", "m"]``             ``action in [Action::"n", Action::"m"]``
``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=``   the same (ordering on integers only)
``x in [..]`` / ``x not in [..]``         ``[..].contains(x)`` / ``!([..].contains(x))``
``x in l``                                ``l.contains(x)``
``l contains x``                          ``l.contains(x)``
``l contains_any m`` / ``contains_all``   ``l.containsAny(m)`` / ``l.containsAll(m)``
``s matches "a*b"``                       ``s like "a*b"`` (no ``/``, ``?``, ``**``)
``defined(x.a)`` / ``defined(x.a.b)``     ``x has a`` / ``(x has a && x.a has b)``
``and`` ``or`` ``not``                    ``&&`` ``||`` ``!``
========================================  ===============================================

Every sub-expression is fully parenthesised in both renderings, so precedence never differs.

Values are JSON values both engines read the same way: strings, 64-bit integers, booleans,
lists of strings (Cedar sets) and one level of records. Lists in requests and list literals
compared with ``==`` are sorted and duplicate-free: Cedar's ``==`` on sets ignores order and
duplicates, PDL's ``==`` on lists does not (a documented difference, kept out of the model).
No floats (Cedar has none), no ``null`` (PDL drops it, Cedar rejects it).

A request is one principal entity (``Identity::"p<i>"``, its attributes are the identity's
attributes, ``id`` included), one resource entity (``Resource::"r<i>"``), an action
(``Action::"<name>"``) and a context record. Entity uids are numbered per request so that a
whole batch of requests shares one Cedar entity list.
"""

from __future__ import annotations

import json
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Union

from hypothesis import strategies as st

# ---- vocabulary ----------------------------------------------------------------------------

ENV = ["prod", "dev", "staging"]
WHO = ["alice", "bob", "carol"]
TAG = ["prod", "dev", "alice", "pii", "public", "", 'q"t', "b\\s", "nl\n", "\U0001F600"]
ACTIONS = ["read", "write", "delete"]
#: characters of the strings `matches`/`like` see: never "/", "*" or "?"; quotes, backslashes,
#: control, non-ASCII and astral characters test both string-literal syntaxes
GLOB_CHARS = "ab-é\"\\\n\x00\U0001F600"
SMALL_INTS = list(range(-2, 6))
BIG_INTS = [2**63 - 1, -(2**63)]

# kinds of attribute values
STR_ENV, STR_WHO, STR_NAME, INT, BOOL, LIST, REC = "env", "who", "name", "int", "bool", "list", "rec"

#: (root, attribute) -> kind. Records ("meta") hold ``team`` (who) and ``tier`` (int).
ATTRS: dict[tuple[str, str], str] = {
    ("identity", "env"): STR_ENV,
    ("identity", "level"): INT,
    ("identity", "scopes"): LIST,
    ("identity", "name"): STR_NAME,
    ("identity", "admin"): BOOL,
    ("identity", "meta"): REC,
    ("resource", "owner"): STR_WHO,
    ("resource", "env"): STR_ENV,
    ("resource", "level"): INT,
    ("resource", "tags"): LIST,
    ("resource", "path"): STR_NAME,
    ("resource", "public"): BOOL,
    ("resource", "meta"): REC,
    ("context", "mfa"): BOOL,
    ("context", "count"): INT,
    ("context", "env"): STR_ENV,
    ("context", "labels"): LIST,
}
REC_FIELDS = {"team": STR_WHO, "tier": INT}

CEDAR_ROOT = {"identity": "principal", "resource": "resource", "context": "context"}


@dataclass(frozen=True)
class Attr:
    root: str                 # identity | resource | context
    path: tuple[str, ...]     # ("env",) or ("meta", "team"); identity.id is ("id",)
    kind: str

    def pdl(self) -> str:
        return ".".join((self.root,) + self.path)

    def cedar(self) -> str:
        return ".".join((CEDAR_ROOT[self.root],) + self.path)


#: every readable attribute path, by kind
PATHS: list[Attr] = [Attr("identity", ("id",), STR_WHO)]
for (_root, _name), _kind in ATTRS.items():
    PATHS.append(Attr(_root, (_name,), _kind))
    if _kind == REC:
        PATHS.extend(Attr(_root, (_name, f), k) for f, k in REC_FIELDS.items())
BY_KIND: dict[str, list[Attr]] = {}
for _a in PATHS:
    BY_KIND.setdefault(_a.kind, []).append(_a)
SCALAR_KINDS = [STR_ENV, STR_WHO, STR_NAME, INT, BOOL]


# ---- expressions -----------------------------------------------------------------------------

Lit = Union[str, int, bool, tuple]
Operand = Union[Attr, "LitV"]


@dataclass(frozen=True)
class LitV:
    value: Lit


def pdl_string(text: str) -> str:
    """A PDL string literal (JSON escapes). Odd-length strings are written all-ASCII, with
    ``\\uXXXX`` escapes (surrogate pairs for astral characters), even-length ones raw."""
    return json.dumps(text, ensure_ascii=len(text) % 2 == 1)


_CEDAR_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def cedar_string(text: str) -> str:
    """A Cedar string literal: Cedar's escapes (``\\u{...}`` for other control characters)."""
    out = []
    for ch in text:
        if ch in _CEDAR_ESCAPES:
            out.append(_CEDAR_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _lit_pdl(v: Lit) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_lit_pdl(x) for x in v) + "]"
    return pdl_string(v) if isinstance(v, str) else json.dumps(v)


def _lit_cedar(v: Lit) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_lit_cedar(x) for x in v) + "]"
    return cedar_string(v) if isinstance(v, str) else json.dumps(v)  # true/false and integers: as JSON


def _op_pdl(o: Operand) -> str:
    return o.pdl() if isinstance(o, Attr) else _lit_pdl(o.value)


def _op_cedar(o: Operand) -> str:
    return o.cedar() if isinstance(o, Attr) else _lit_cedar(o.value)


@dataclass(frozen=True)
class Compare:      # == != < <= > >=
    op: str
    left: Operand
    right: Operand

    def pdl(self):
        return f"({_op_pdl(self.left)} {self.op} {_op_pdl(self.right)})"

    def cedar(self):
        return f"({_op_cedar(self.left)} {self.op} {_op_cedar(self.right)})"


@dataclass(frozen=True)
class In:           # x in L / x not in L, L a list literal or a list attribute
    item: Operand
    container: Operand
    negated: bool = False

    def pdl(self):
        return f"({_op_pdl(self.item)} {'not in' if self.negated else 'in'} {_op_pdl(self.container)})"

    def cedar(self):
        text = f"({_op_cedar(self.container)}.contains({_op_cedar(self.item)}))"
        return f"(!{text})" if self.negated else text


@dataclass(frozen=True)
class Contains:     # contains / contains_any / contains_all
    op: str
    left: Operand
    right: Operand

    def pdl(self):
        return f"({_op_pdl(self.left)} {self.op} {_op_pdl(self.right)})"

    def cedar(self):
        method = {"contains": "contains", "contains_any": "containsAny", "contains_all": "containsAll"}[self.op]
        return f"({_op_cedar(self.left)}.{method}({_op_cedar(self.right)}))"


@dataclass(frozen=True)
class Matches:
    subject: Attr
    pattern: str    # "*" is the only wildcard; never "**", "/", "?"

    def pdl(self):
        return f"({self.subject.pdl()} matches {pdl_string(self.pattern)})"

    def cedar(self):
        return f"({self.subject.cedar()} like {cedar_string(self.pattern)})"  # "*" stays a wildcard


@dataclass(frozen=True)
class Defined:
    attr: Attr

    def pdl(self):
        return f"defined({self.attr.pdl()})"

    def cedar(self):
        root = CEDAR_ROOT[self.attr.root]
        parts, prefix = [], root
        for name in self.attr.path:
            parts.append(f"{prefix} has {name}")
            prefix = f"{prefix}.{name}"
        return "(" + " && ".join(parts) + ")"


@dataclass(frozen=True)
class Truth:        # a boolean attribute or literal used as a condition
    operand: Operand

    def pdl(self):
        return _op_pdl(self.operand)

    def cedar(self):
        return _op_cedar(self.operand)


@dataclass(frozen=True)
class ActionIs:     # action.name == / != "n", action.name in / not in [...]
    op: str         # "==", "!=", "in", "not in"
    names: tuple[str, ...]

    def pdl(self):
        if self.op in ("==", "!="):
            return f"(action.name {self.op} {json.dumps(self.names[0])})"
        return f"(action.name {self.op} {_lit_pdl(self.names)})"

    def cedar(self):
        uids = [f'Action::{json.dumps(n)}' for n in self.names]
        if self.op in ("==", "!="):
            return f"(action {self.op} {uids[0]})"
        text = f"(action in [{', '.join(uids)}])"
        return f"(!{text})" if self.op == "not in" else text


@dataclass(frozen=True)
class Not:
    arg: "Expr"

    def pdl(self):
        return f"(not {self.arg.pdl()})"

    def cedar(self):
        return f"(!{self.arg.cedar()})"


@dataclass(frozen=True)
class BoolOp:       # and / or, two or more operands
    op: str
    args: tuple["Expr", ...]

    def pdl(self):
        return "(" + f" {self.op} ".join(a.pdl() for a in self.args) + ")"

    def cedar(self):
        sep = " && " if self.op == "and" else " || "
        return "(" + sep.join(a.cedar() for a in self.args) + ")"


Expr = Union[Compare, In, Contains, Matches, Defined, Truth, ActionIs, Not, BoolOp]


# ---- policies ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    effect: str                 # permit | forbid
    name: str
    when: Expr | None = None
    unless: Expr | None = None


@dataclass(frozen=True)
class Policy:
    name: str
    target: Expr | None
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class PolicySet:
    policies: tuple[Policy, ...]

    def rule_ids(self) -> list[str]:
        """Rule ids in source order: the order of the Cedar policies too."""
        return [f"{p.name}.{r.name}" for p in self.policies for r in p.rules]

    def effects(self) -> dict[str, str]:
        return {f"{p.name}.{r.name}": r.effect for p in self.policies for r in p.rules}

    def pdl(self) -> str:
        out = []
        for p in self.policies:
            out.append(f"policy {p.name} {{")
            if p.target is not None:
                out.append(f"  target {p.target.pdl()}")
            for r in p.rules:
                line = f"  {r.effect} {r.name}"
                if r.when is not None:
                    line += f"\n    when {r.when.pdl()}"
                if r.unless is not None:
                    line += f"\n    unless {r.unless.pdl()}"
                out.append(line)
            out.append("}")
        return "\n".join(out) + "\n"

    def cedar(self) -> str:
        out = []
        for p in self.policies:
            for r in p.rules:
                text = f'@id("{p.name}.{r.name}")\n{r.effect} (principal, action, resource)'
                if p.target is not None:
                    text += f"\n  when {{ {p.target.cedar()} }}"
                if r.when is not None:
                    text += f"\n  when {{ {r.when.cedar()} }}"
                if r.unless is not None:
                    text += f"\n  unless {{ {r.unless.cedar()} }}"
                out.append(text + ";")
        return "\n".join(out) + "\n"


# ---- requests ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    identity_id: str
    action: str
    identity: dict = field(default_factory=dict)   # attributes besides type/id
    resource: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)
    well_typed: bool = True                          # every present attribute has its kind's type

    def pdl(self) -> dict:
        return {
            "identity": {"type": "workload", "id": self.identity_id, **self.identity},
            "action": {"name": self.action},
            "resource": {"type": "doc", **self.resource},
            "context": dict(self.context),
        }

    def cedar(self, index: int) -> tuple[dict, list[dict]]:
        """The Cedar request and its two entities (uids numbered by ``index``)."""
        principal = {"type": "Identity", "id": f"p{index}"}
        resource = {"type": "Resource", "id": f"r{index}"}
        entities = [
            {"uid": principal, "attrs": {"id": self.identity_id, **_cedar_json(self.identity)}, "parents": []},
            {"uid": resource, "attrs": _cedar_json(self.resource), "parents": []},
        ]
        req = {"principal": principal, "action": {"type": "Action", "id": self.action},
               "resource": resource, "context": _cedar_json(self.context)}
        return req, entities


def _cedar_json(value):
    """Request JSON as Cedar reads it: the same, with tuples as lists (sets)."""
    if isinstance(value, dict):
        return {k: _cedar_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cedar_json(v) for v in value]
    return value


# ---- strategies ----------------------------------------------------------------------------------

ints = st.one_of(st.sampled_from(SMALL_INTS), st.sampled_from(BIG_INTS))
glob_strings = st.text(alphabet=GLOB_CHARS, max_size=4)
tag_lists = st.lists(st.sampled_from(TAG), max_size=3, unique=True).map(lambda xs: tuple(sorted(xs)))


@lru_cache(maxsize=None)
def value_of(kind: str) -> st.SearchStrategy:
    if kind == STR_ENV:
        return st.sampled_from(ENV)
    if kind == STR_WHO:
        return st.sampled_from(WHO)
    if kind == STR_NAME:
        return glob_strings
    if kind == INT:
        return ints
    if kind == BOOL:
        return st.booleans()
    if kind == LIST:
        return tag_lists
    if kind == REC:
        return records()
    raise AssertionError(kind)


@lru_cache(maxsize=None)
def wrong_value_of(kind: str) -> st.SearchStrategy:
    """A value of another type (a string where an int is expected, …)."""
    others = {
        STR_ENV: [INT, LIST], STR_WHO: [INT, BOOL], STR_NAME: [INT, LIST], INT: [STR_ENV, BOOL],
        BOOL: [INT, STR_ENV], LIST: [STR_ENV, INT], REC: [STR_ENV, LIST],
    }[kind]
    return st.sampled_from(others).flatmap(value_of)


# An attribute is usually present and well typed; sometimes missing, sometimes of another type.
# (Rare enough that most requests meet no error in most rules: the error-free cases are what
# the differential test compares.)
_PRESENCE = ["ok"] * 36 + ["missing"] * 2 + ["wrong"]
_FIELD_PRESENCE = ["ok"] * 10 + ["missing"]
_HOW, _FIELD_HOW = st.sampled_from(_PRESENCE), st.sampled_from(_FIELD_PRESENCE)


@st.composite
def records(draw) -> dict:
    """A ``meta`` record: its fields are of their kind, each sometimes missing."""
    return {f: draw(value_of(k)) for f, k in REC_FIELDS.items() if draw(_FIELD_HOW) == "ok"}


@st.composite
def attribute_maps(draw, root: str) -> tuple[dict, bool]:
    """The attributes of one root, and whether all present ones have their kind's type."""
    out, well_typed = {}, True
    for (r, name), kind in ATTRS.items():
        if r != root:
            continue
        how = draw(_HOW)
        if how == "ok":
            out[name] = draw(value_of(kind))
        elif how == "wrong":
            out[name] = draw(wrong_value_of(kind))
            well_typed = False
    return out, well_typed


@st.composite
def requests(draw) -> Request:
    """A request over the vocabulary: see :class:`Request`."""
    identity, ok_i = draw(attribute_maps("identity"))
    resource, ok_r = draw(attribute_maps("resource"))
    context, ok_c = draw(attribute_maps("context"))
    return Request(identity_id=draw(st.sampled_from(WHO)), action=draw(st.sampled_from(ACTIONS)),
                   identity=identity, resource=resource, context=context, well_typed=ok_i and ok_r and ok_c)


@lru_cache(maxsize=None)
def _attr(kind: str) -> st.SearchStrategy:
    return st.sampled_from(BY_KIND[kind])


@lru_cache(maxsize=None)
def _operand_like(attr: Attr) -> st.SearchStrategy:
    """The other side of an `==`: a literal of the same kind, another attribute of the same
    kind, or (rarely) a literal of another type (unequal in both languages, never an error)."""
    same_lit = value_of(attr.kind).map(LitV)
    same_attr = _attr(attr.kind)
    other_lit = st.sampled_from([k for k in SCALAR_KINDS + [LIST] if k != attr.kind]).flatmap(value_of).map(LitV)
    return st.one_of(same_lit, same_lit, same_attr, other_lit)


def _ordering(t) -> Compare:
    op, left, right, swap = t
    return Compare(op, right, left) if swap else Compare(op, left, right)


def _glob(pieces: list[str]) -> str:
    """Joins pattern pieces, never leaving two stars in a row."""
    out: list[str] = []
    for p in pieces:
        if not (p == "*" and out and out[-1] == "*"):
            out.append(p)
    return "".join(out)


#: patterns over the glob alphabet and "*" (never "**")
glob_patterns = st.lists(st.sampled_from(list(GLOB_CHARS) + ["*"]), max_size=5).map(_glob)


def _in_literal(kind: str) -> st.SearchStrategy:
    return st.builds(lambda a, items, neg: In(a, LitV(tuple(items)), neg),
                     _attr(kind), st.lists(value_of(kind), max_size=3, unique=True), st.booleans())


def _action_test(names: list[str]) -> st.SearchStrategy:
    ops = ["==", "!="] if len(names) == 1 else ["in", "not in"]
    return st.sampled_from(ops).map(lambda op: ActionIs(op, tuple(names)))


_ATOM_FORMS = [
    # == / != : an attribute against a literal or attribute (see _operand_like)
    st.sampled_from([a for k in SCALAR_KINDS + [LIST] for a in BY_KIND[k]]).flatmap(
        lambda left: st.builds(Compare, st.sampled_from(["==", "!="]), st.just(left), _operand_like(left))),
    # ordering: integers only
    st.tuples(st.sampled_from(["<", "<=", ">", ">="]), _attr(INT), st.one_of(ints.map(LitV), _attr(INT)),
              st.booleans()).map(_ordering),
    # in / not in a list literal
    st.one_of(*(_in_literal(k) for k in (STR_ENV, STR_WHO, INT))),
    # in / not in a list attribute
    st.builds(In, st.one_of(_attr(STR_ENV), _attr(STR_WHO)), _attr(LIST), st.booleans()),
    # contains
    st.builds(lambda left, item: Contains("contains", left, item), _attr(LIST),
              st.one_of(st.sampled_from(TAG).map(LitV), _attr(STR_ENV), _attr(STR_WHO))),
    # contains_any / contains_all
    st.builds(Contains, st.sampled_from(["contains_any", "contains_all"]), _attr(LIST),
              st.one_of(tag_lists.map(LitV), _attr(LIST))),
    st.builds(Matches, _attr(STR_NAME), glob_patterns),
    st.builds(Defined, st.sampled_from(PATHS)),
    st.builds(Truth, st.one_of(_attr(BOOL), _attr(BOOL), st.booleans().map(LitV))),
    st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=2, unique=True).flatmap(_action_test),
]

#: one comparison, membership, `matches`, `defined`, boolean attribute or action test
atoms = st.one_of(_ATOM_FORMS[0], *_ATOM_FORMS)   # equality twice as likely as the others


@lru_cache(maxsize=None)
def conditions(max_leaves: int = 4) -> st.SearchStrategy:
    """Boolean expressions: atoms under `not`, `and`, `or`."""
    return st.recursive(
        atoms,
        lambda inner: st.one_of(
            inner.map(Not),
            st.tuples(st.sampled_from(["and", "or"]), st.lists(inner, min_size=2, max_size=3))
              .map(lambda t: BoolOp(t[0], tuple(t[1]))),
        ),
        max_leaves=max_leaves,
    )


_EFFECTS = st.sampled_from(["permit", "permit", "forbid"])
_WHEN = st.one_of(st.none(), conditions(), conditions())
_UNLESS = st.one_of(st.none(), st.none(), conditions(max_leaves=2))
_TARGET = st.one_of(st.none(), st.none(), conditions(max_leaves=2))


@st.composite
def policy_sets(draw, max_policies: int = 3, max_rules: int = 4) -> PolicySet:
    """1..max_policies policies (a target one time in three) of 1..max_rules rules each."""
    policies = []
    for i in range(draw(st.integers(1, max_policies))):
        target = draw(_TARGET)
        rules = tuple(Rule(draw(_EFFECTS), f"r{j}", draw(_WHEN), draw(_UNLESS))
                      for j in range(draw(st.integers(1, max_rules))))
        policies.append(Policy(f"p{i}", target, rules))
    return PolicySet(tuple(policies))
