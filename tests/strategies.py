"""Hypothesis strategies: statically valid PDL policy sets (as source text) and requests.

Everything here speaks one small attribute vocabulary, so generated policies and generated
requests meet often enough to produce every outcome (ALLOW, DENY by a forbid, DENY by
default, fail-closed forbids, permit errors):

- ``identity.type/id/env/scopes/level``, ``action.name``, ``resource.type/id/env/owner/tags``,
  ``context.source_ip/time``, and ``data.x`` (the fixed :data:`DATA` below, written next to
  the policies by :func:`write_policy_set`).

Policies use every operator and built-in (the time functions in IANA zones among them),
literals of every kind (strings with escapes, ints, floats, durations, lists, ``cidr(...)``),
``let``s, targets, annotations and reasons with ``{expr}`` interpolation. Expressions are generated *typed*, mirroring the static
checker (SPEC §1.1): where a static type is known it is one the operator accepts, so every
generated program loads. Runtime errors are generated on purpose through attributes, whose
type is only known per request: missing attributes, wrong types, bad times and IPs, missing
map keys, list indexes out of range, non-boolean conditions, ``***`` globs from request data.

Public strategies (all reusable by other test modules, e.g. a differential test of another
evaluator):

- :func:`policy_sets` ⇒ ``list[str]``, the text of each ``.pdl`` file, in load order.
- :func:`policy_set_models` ⇒ :class:`PolicySetModel`, the same with its structure (policy
  names, rule ids, annotations, reasons), for properties that need to know what was generated.
- :func:`conditions` / :func:`expressions` ⇒ the text of one expression (no ``let`` names).
- :func:`requests` ⇒ a valid request dict (SPEC §3); optional attributes are sometimes
  missing, ``null``, of the wrong type, ints or floats.

Helpers: :func:`write_policy_set` and :func:`load_policy_set` turn file texts into files
(``f00.pdl``, ``f01.pdl``, … and ``x.data.json``) and a loaded ``pdp.Engine``.
"""

from __future__ import annotations

import collections
import enum
import itertools
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

# ---- the vocabulary ------------------------------------------------------------------------

#: Reference data, loaded as ``data.x`` next to every generated policy set.
DATA: dict = {
    "x": {
        "admins": ["alice"],
        "roles": {"alice": "admin", "bob": "editor", "billing": "service"},
        "limit": 2,
        "ratio": 0.5,
        "nets": ["10.0.0.0/8", "fd00::/8"],
        "envs": ["prod", "staging"],
        "flag": True,
        "levels": {"alice": 3, "bob": 1.5},
        # index_by(...) tables: entries found by another field than their key
        "people": {"p1": {"login": "alice", "team": "pay"}, "p2": {"login": "bob", "team": "ops"},
                   "p3": {"team": "pay"}, "p4": {"login": 7}},
        "hosts": [{"name": "web", "ip": "10.1.2.3"}, {"name": "db", "ip": "fd00::1"}, "junk"],
    }
}

# Static types, as the checker names them (pdp/builtins.py).
BOOL, STR, NUM, LIST, MAP, CIDR, ANY = "bool", "string", "number", "list", "map", "cidr set", "any"
VALUE_TYPES = (BOOL, STR, NUM, LIST, MAP, CIDR)

#: Values of each domain, as the request generator produces them and as policy literals.
DOMAINS: dict[str, list] = {
    "env": ["prod", "dev", "staging"],
    "who": ["alice", "bob", "billing"],
    "action": ["read", "write", "charge", "delete"],
    "rtype": ["doc", "payment", "todo"],
    "itype": ["workload", "user"],
    "level": [0, 1, 2, 3, 2.5],
    "scope": ["payments:write", "payments:read", "admin"],
    "tag": ["public", "pii", "finance"],
    "ip": ["10.1.2.3", "192.168.1.1", "fd00::1", "::ffff:10.1.2.3", "2001:db8::1"],
    "team": ["pay", "ops"],
    "host": ["web", "db"],
}

#: Attributes that expressions read: text ⇒ (domain, the type a well-formed request gives it).
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "identity.type": ("itype", STR),
    "identity.id": ("who", STR),
    "identity.env": ("env", STR),
    "identity.scopes": ("scope", LIST),
    "identity.level": ("level", NUM),
    "action.name": ("action", STR),
    "resource.type": ("rtype", STR),
    "resource.id": ("who", STR),
    "resource.env": ("env", STR),
    "resource.owner": ("who", STR),
    "resource.tags": ("tag", LIST),
    "context.source_ip": ("ip", STR),
    "data.x.admins": ("who", LIST),
    "data.x.envs": ("env", LIST),
    "data.x.limit": ("level", NUM),
    "data.x.ratio": ("level", NUM),
    "data.x.roles[identity.id]": ("who", STR),
    "data.x.levels[identity.id]": ("level", NUM),
    'identity["env"]': ("env", STR),
    'data.x["envs"]': ("env", LIST),
    "token.scopes": ("scope", LIST),
    "token.sub": ("who", STR),
    "token.claims.env": ("env", STR),
    'index_by(data.x.people,"login")[identity.id].team': ("team", STR),
    'index_by(data.x.hosts,"ip")[context.source_ip].name': ("host", STR),
}

#: Attribute paths that are usually (or always) missing, or of a surprising type.
ODD_ATTRIBUTES = [
    "identity.policy",  # a keyword as an attribute name; never in a request
    "resource.missing",
    "context.time",
    "data.x.roles[resource.type]",  # a data key missing at run time (data.x.nope would not load)
    "data.x.flag",
    "data.x.nets",
    "data.x.roles",
    "data.x.admins[0]",
    "data.x.admins[identity.level]",
    "identity.scopes[0]",
    'resource["owner"]',
    "data.x.roles.alice",
    "token.bound",
    "token.claims.level",
    'index_by(resource.tags,"name")[identity.id]',  # a collection known per request
    'index_by(data.x.people,identity.env)[identity.id]',  # a field known per request
]

STRING_POOL = sorted({v for d in DOMAINS.values() for v in d if isinstance(v, str)}) + [
    "", "é", "a\"b", "back\\slash", "x{y}z", "𝄞",
]
GLOBS = ["*", "**", "a*", "*e", "al?ce", "?ob", "p*d", "*:write", "payments:*", "a/**/b", "**/x", "b*b*"]
DURATIONS = ["500ms", "90s", "15m", "1h", "7d", "1h30m", "2d12h", "0s"]
NUMBERS = ["0", "1", "2", "3", "-1", "2.5", "3.0", "1e3", "-0.5", "9223372036854775807"]
TIMES = ["2026-11-27T10:00:00Z", "2026-01-01T00:00:00+02:00", "2026-11-27T10:05:00.5Z", "not a time"]
#: Time zones of hour(t, zone) and the other time functions: whole, half and quarter hour
#: offsets, summer time on either hemisphere.
ZONES = ["UTC", "Europe/Paris", "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham", "Australia/Sydney"]
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
NETWORKS = ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8", "10.1.2.3", "2001:db8::/32", "0.0.0.0/0",
            "::/0", "172.16.0.0/12"]
ANNOTATION_KEYS = ["owner", "control", "severity", "ticket"]
ANNOTATION_VALUES = ["payments-security", "OWASP-NHI7", "high", "é\"quoted\"", "", "PDP-1"]

#: Request time used when a request must not depend on the server clock.
FIXED_TIMES = ["2026-11-27T10:05:00Z", "2026-11-27T11:05:00+01:00", 1795773900, 1795773900.25]
#: Request times that make every use of ``now`` an evaluation error.
BAD_TIMES = ["yesterday", "2026-13-01T00:00:00Z", True, ["2026-11-27T10:05:00Z"]]


def json_text(value: object) -> str:
    """A literal as policy source writes it: strings with JSON escapes, numbers as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


# ---- expressions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    """A generated expression: source text, static type, and precedence level.

    ``prec`` is the grammar level of the text as written (SPEC §1 table): 1 ``or``,
    2 ``and``, 3 ``not``, 4 comparison, 5 postfix or atom.
    """

    text: str
    type: str
    prec: int = 5


_INTEGERS: dict[int, st.SearchStrategy[int]] = {}


class _ExprGen:
    """Draws typed expressions. ``lets`` maps the let names visible here to their static type.

    A ``careful`` generator writes what a careful author would: conditions are booleans, only
    attributes of the vocabulary are read, comparisons are sensible and often guarded by
    ``defined(...)``; errors then come mostly from requests that lack an attribute.
    """

    def __init__(self, draw: Callable, lets: dict[str, str] | None = None, careful: bool = False):
        self.draw = draw
        self.lets = dict(lets or {})
        self.careful = careful

    # -- small helpers --

    def pick(self, options: Sequence):
        options = tuple(options)
        return options[self.below(len(options))]

    def below(self, n: int) -> int:
        """An integer in ``[0, n)``; strategies are cached because drawing is the hot path."""
        strategy = _INTEGERS.get(n)
        if strategy is None:
            strategy = _INTEGERS[n] = st.integers(0, n - 1)
        return self.draw(strategy)

    def weighted(self, options: Sequence[tuple[int, object]]):
        """One of ``options`` (weight, value); shrinks towards the first."""
        total = sum(w for w, _ in options)
        n = self.below(total)
        for weight, value in options:
            if n < weight:
                return value
            n -= weight
        raise AssertionError("unreachable")

    def some(self, options: Sequence, low: int, high: int, unique: bool = False) -> list:
        """Between ``low`` and ``high`` picks from ``options`` (all different when ``unique``)."""
        pool = list(options)
        out = []
        for _ in range(low + self.below(high - low + 1)):
            if not pool:
                break
            item = self.pick(pool)
            if unique:
                pool.remove(item)
            out.append(item)
        return out

    def coin(self, p_true_in: int = 2) -> bool:
        """True with probability 1/p_true_in."""
        return self.below(p_true_in) == 0

    def at_least(self, e: Expr, prec: int) -> str:
        """``e``'s text, parenthesized when its level is below ``prec`` (and now and then anyway)."""
        if e.prec < prec or (e.prec < 5 and self.coin(6)):
            return f"({e.text})"
        return e.text

    def lets_of(self, *types: str) -> list[str]:
        return sorted(name for name, t in self.lets.items() if t in types)

    # -- entry points --

    def slot(self, allowed: Sequence[str], depth: int) -> Expr:
        """An expression the checker accepts where ``allowed`` static types (or any) are expected."""
        choices = list(allowed) + [ANY]
        return self.of(self.pick(choices), depth)

    def condition(self, depth: int) -> Expr:
        """A target/when/unless/and/or/not operand: a boolean, or an attribute (maybe not one)."""
        return self.weighted([(10, lambda: self.of(BOOL, depth)),
                              (0 if self.careful else 1, lambda: self.of(ANY, depth))])()

    def of(self, kind: str, depth: int) -> Expr:
        lets = self.lets_of(kind)
        if lets and self.coin(5):
            return Expr(self.pick(lets), kind)
        return {
            BOOL: self.boolean, STR: self.string, NUM: self.number, LIST: self.list_,
            MAP: self.map_, CIDR: self.cidr, ANY: self.any_,
        }[kind](depth)

    # -- one generator per static type --

    def boolean(self, depth: int) -> Expr:
        if depth <= 0:
            return self.weighted([
                (3, lambda: self.sensible_compare(0)),
                (1, lambda: Expr(self.pick(["true", "false"]), BOOL)),
                (1, lambda: Expr(f"defined({self.attribute_text()})", BOOL)),
            ])()
        return self.weighted([
            (6, lambda: self.sensible_compare(depth)),
            (1, lambda: self.calendar_compare(depth - 1)),
            (8 if self.careful else 2, lambda: self.guarded_compare(depth)),
            (0 if self.careful else 2, lambda: self.any_compare(depth)),
            (1, lambda: Expr(self.pick(["true", "false"]), BOOL)),
            (2, lambda: self.junction(depth)),
            (1, lambda: self.negation(depth)),
            (1, lambda: Expr(f"defined({self.of(self.pick(VALUE_TYPES + (ANY,)), depth - 1).text})", BOOL)),
        ])()

    def junction(self, depth: int) -> Expr:
        word = self.pick(["and", "or"])
        need = 3 if word == "and" else 2
        n = 2 + self.below(2)
        parts = [self.at_least(self.condition(depth - 1), need) for _ in range(n)]
        return Expr(f" {word} ".join(parts), BOOL, 2 if word == "and" else 1)

    def negation(self, depth: int) -> Expr:
        operand = self.condition(depth - 1)
        return Expr(f"not {self.at_least(operand, 3)}", BOOL, 3)

    def string(self, depth: int) -> Expr:
        if depth > 0 and self.coin(4):
            return self.weighted([
                (4, lambda: Expr(f"{self.pick(['lower', 'upper'])}({self.slot([STR], depth - 1).text})", STR)),
                (2, lambda: self.calendar(self.pick(["weekday", "date"]), depth - 1)),
                (1, lambda: Expr(f"duration({self.slot([NUM], depth - 1).text})", STR)),
            ])()
        return Expr(json_text(self.pick(STRING_POOL)), STR)

    def calendar(self, func: str, depth: int) -> Expr:
        """``hour``/``minute``/``weekday``/``date`` of a time in a zone (now and then one known
        only per request, which may be no zone at all)."""
        zone = self.weighted([(6, lambda: json_text(self.pick(ZONES))),  # a literal must be a zone (a load error)
                              (1, lambda: self.pick(["identity.env", "resource.owner", 'lower("UTC")',
                                                     'upper("utc")', "data.x.roles[identity.id]"]))])()
        time = Expr("now", NUM) if self.coin(2) else self.time_arg(depth)
        return Expr(f"{func}({time.text}, {zone})", NUM if func in ("hour", "minute") else STR)

    def number(self, depth: int) -> Expr:
        options: list = [
            (3, lambda: Expr(self.pick(NUMBERS), NUM)),
            (2, lambda: Expr(self.pick(DURATIONS), NUM)),
            (1, lambda: Expr("now", NUM)),
        ]
        if depth > 0:
            options += [
                (1, lambda: Expr(f"len({self.slot([STR, LIST, MAP], depth - 1).text})", NUM)),
                (1, lambda: Expr(f"time({self.time_arg(depth - 1).text})", NUM)),
                (1, lambda: Expr(f"age({self.time_arg(depth - 1).text})", NUM)),
                (1, lambda: self.calendar(self.pick(["hour", "minute"]), depth - 1)),
            ]
        return self.weighted(options)()

    def time_arg(self, depth: int) -> Expr:
        return self.weighted([
            (2, lambda: Expr(json_text(self.pick(TIMES)), STR)),
            (2, lambda: Expr("context.time", ANY)),
            (1, lambda: self.slot([STR, NUM], depth)),
        ])()

    def list_(self, depth: int) -> Expr:
        if depth <= 0 or self.coin(2):
            domain = self.pick(sorted(DOMAINS))
            values = self.some(DOMAINS[domain], 0, 3)
            return Expr(self.list_text([json_text(v) for v in values]), LIST)
        n = self.below(4)
        items = [self.of(self.pick(VALUE_TYPES + (ANY,)), depth - 1).text for _ in range(n)]
        return Expr(self.list_text(items), LIST)

    def list_text(self, items: list[str]) -> str:
        trailing = "," if items and self.coin(8) else ""
        return "[" + ", ".join(items) + trailing + "]"

    def map_(self, depth: int) -> Expr:
        return Expr(self.pick(["identity", "action", "resource", "context", "token", "data"]), MAP)

    def cidr(self, depth: int) -> Expr:
        form = self.weighted([(3, "strings"), (1, "list"), (1, "dynamic")])
        nets = self.some(NETWORKS, 1, 3)
        if form == "strings":
            args = ", ".join(json_text(n) for n in nets)
        elif form == "list":
            args = self.list_text([json_text(n) for n in nets])
        else:  # known only per request: may fail (not a network, not a string)
            args = self.pick(["data.x.nets", "identity.env", "resource.tags", "context.source_ip"])
        return Expr(f"cidr({args})", CIDR)

    def attribute_text(self) -> str:
        return self.weighted([(8, lambda: self.pick(sorted(ATTRIBUTES))),
                              (0 if self.careful else 1, lambda: self.pick(ODD_ATTRIBUTES))])()

    def any_(self, depth: int) -> Expr:
        """An expression whose type only a request decides: an attribute, an index, a map let's field."""
        options: list = [(6, lambda: Expr(self.attribute_text(), ANY))]
        map_lets = self.lets_of(MAP)
        if map_lets:
            options.append((1, lambda: Expr(f"{self.pick(map_lets)}.{self.pick(['env', 'id', 'x', 'name'])}", ANY)))
        if depth > 0:
            options += [
                (1, lambda: Expr(f"data.x.roles[{self.roles_key(depth - 1)}]", ANY)),
                (1, lambda: Expr(f"{self.at_least(self.list_(depth - 1), 5)}[{self.slot([NUM, STR], depth - 1).text}]", ANY)),
                (1, lambda: Expr(f"{self.pick(['identity', 'resource', 'context', 'token'])}[{self.key(depth - 1).text}]", ANY)),
            ]
        return self.weighted(options)()

    def roles_key(self, depth: int) -> str:
        """An index into data.x.roles: a key it has when the index is a literal (a literal one
        it lacks is a load error, SPEC 1.1), else anything a request decides."""
        text = self.slot([STR], depth).text
        try:
            literal = json.loads(text.strip("() "))
        except ValueError:
            return text
        return json_text(self.pick(sorted(DATA["x"]["roles"]))) if isinstance(literal, str) else text

    def key(self, depth: int) -> Expr:
        """A map key: mostly an attribute name of the vocabulary, sometimes any string."""
        if self.coin(4):
            return self.slot([STR], depth)
        return Expr(json_text(self.pick(["env", "id", "type", "owner", "source_ip"])), STR)

    # -- comparisons --

    def sensible_compare(self, depth: int) -> Expr:
        """A comparison a policy author would write: an attribute against values of its domain."""
        attr = self.pick(sorted(ATTRIBUTES))
        domain, kind = ATTRIBUTES[attr]
        values = DOMAINS[domain]
        lit = lambda: json_text(self.pick(values))
        lits = lambda: self.list_text([json_text(v) for v in self.some(values, 1, 3, unique=True)])
        same_domain = [a for a, (d, _) in ATTRIBUTES.items() if d == domain and a != attr]
        if domain == "ip":
            return Expr(f"{attr} {self.pick(['in', 'not in'])} {self.cidr(depth).text}", BOOL, 4)
        if kind == STR:
            op = self.pick(["==", "!=", "in", "not in", "matches", "startswith", "endswith", "<", ">="])
            if op in ("==", "!="):
                right = self.pick(same_domain) if same_domain and self.coin(3) else lit()
            elif op in ("in", "not in"):
                list_attrs = [a for a, (d, k) in ATTRIBUTES.items() if d == domain and k == LIST]
                right = self.pick(list_attrs) if list_attrs and self.coin(3) else lits()
            elif op == "matches":
                right = json_text(self.pick(GLOBS + [str(self.pick(values))]))
            elif op in ("startswith", "endswith"):
                word = str(self.pick(values))
                right = json_text(word[:2] if op == "startswith" else word[-2:])
            else:
                right = lit()
            return Expr(f"{attr} {op} {right}", BOOL, 4)
        if kind == NUM:
            op = self.pick(["==", "!=", "<", "<=", ">", ">="])
            right = self.pick([lit(), lit(), "data.x.limit", self.pick(NUMBERS)])
            return Expr(f"{attr} {op} {right}", BOOL, 4)
        # a list attribute
        op = self.pick(["contains", "contains_any", "contains_all", "==", "!="])
        right = lit() if op == "contains" else lits()
        if op == "contains" and self.coin(4):
            return Expr(f"{lit()} in {attr}", BOOL, 4)
        return Expr(f"{attr} {op} {right}", BOOL, 4)

    def calendar_compare(self, depth: int) -> Expr:
        """Business hours and days, as policies write them."""
        func = self.pick(["hour", "minute", "weekday", "date"])
        call = self.calendar(func, depth)
        if func == "weekday":
            if self.coin(2):
                days = self.some(WEEKDAYS, 1, 3, unique=True)
                return Expr(f"{call.text} {self.pick(['in', 'not in'])} {self.list_text([json_text(d) for d in days])}",
                            BOOL, 4)
            return Expr(f"{call.text} {self.pick(['==', '!='])} {json_text(self.pick(WEEKDAYS))}", BOOL, 4)
        if func == "date":
            return Expr(f"{call.text} {self.pick(['==', '<', '>='])} {json_text(self.pick(['2026-11-27', '2026-11-28']))}",
                        BOOL, 4)
        bound = self.pick(["0", "9", "10", "17", "30", "59"])
        return Expr(f"{call.text} {self.pick(['<', '>=', '==', '!='])} {bound}", BOOL, 4)

    def guarded_compare(self, depth: int) -> Expr:
        """``defined(a) and a ...`` (or ``not defined(a) or a ...``): how authors avoid errors."""
        compare = self.sensible_compare(depth)
        attr = compare.text.split(" ")[0]
        if attr not in ATTRIBUTES:
            return compare
        if self.coin(2):
            return Expr(f"defined({attr}) and {compare.text}", BOOL, 2)
        return Expr(f"not defined({attr}) or {compare.text}", BOOL, 1)

    def any_compare(self, depth: int) -> Expr:
        """Any operator on operands of any static type the checker lets through."""
        op = self.pick(["==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "contains_any",
                        "contains_all", "matches", "startswith", "endswith"])
        d = depth - 1
        if op in ("==", "!="):
            left, right = (self.of(self.pick(VALUE_TYPES + (ANY,)), d) for _ in range(2))
        elif op in ("<", "<=", ">", ">="):
            kind = self.pick([NUM, STR])
            left, right = self.slot([kind], d), self.slot([kind], d)
        elif op in ("in", "not in"):
            if self.coin(3):
                left, right = self.slot([STR], d), self.cidr(d)
            else:
                left, right = self.of(self.pick(VALUE_TYPES + (ANY,)), d), self.slot([LIST], d)
        elif op == "contains":
            if self.coin(2):
                left, right = self.slot([STR], d), self.slot([STR], d)
            else:
                left, right = self.slot([LIST], d), self.of(self.pick(VALUE_TYPES + (ANY,)), d)
        elif op in ("contains_any", "contains_all"):
            left, right = self.slot([LIST], d), self.slot([LIST], d)
        elif op == "matches":
            left = self.slot([STR], d)
            right = self.weighted([(3, Expr(json_text(self.pick(GLOBS)), STR)),
                                   (1, Expr(self.pick(["resource.owner", "identity.env", 'lower("A***")']), ANY))])
        else:
            left, right = self.slot([STR], d), self.slot([STR], d)
        return Expr(f"{self.at_least(left, 5)} {op} {self.at_least(right, 5)}", BOOL, 4)


@st.composite
def expressions(draw, kind: str = ANY, depth: int = 3) -> str:
    """The text of one expression of static type ``kind`` (``any``: an attribute or index)."""
    return _ExprGen(draw).of(kind, depth).text


@st.composite
def conditions(draw, depth: int = 3) -> str:
    """The text of a condition: what ``when``, ``unless``, ``target``, ``and``, ``or``, ``not`` accept.

    Mostly booleans; sometimes an attribute, which is an evaluation error unless it holds one.
    """
    return _ExprGen(draw).condition(depth).text


# ---- policies ------------------------------------------------------------------------------

#: Reason text pieces: (as written between the quotes, as the message shows it).
REASON_LITERALS = [
    ("denied", "denied"), ("ok", "ok"), (" ", " "), (": ", ": "), ("{{", "{"), ("}}", "}"),
    ('\\"', '"'), ("\\\\", "\\"), ("\\n", "\n"), ("\\u00e9", "é"), ("é", "é"), ("#no comment", "#no comment"),
]


@dataclass(frozen=True)
class ReasonModel:
    """A reason template: literal pieces ``(raw, shown)`` and interpolated expressions."""

    parts: tuple  # of tuple[str, str] | Expr

    def text(self) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, Expr):
                out.append("{" + json.dumps(part.text, ensure_ascii=False)[1:-1] + "}")
            else:
                out.append(part[0])
        return '"' + "".join(out) + '"'

    @property
    def literal(self) -> str | None:
        """The message when there is no interpolation, else None."""
        if any(isinstance(p, Expr) for p in self.parts):
            return None
        return "".join(p[1] for p in self.parts)


def _clause_text(clause, head: str, with_reasons: bool) -> str:
    """A rule's or limit's text: its annotations, ``head``, then when/unless/reason lines."""
    lines = [f'  @{k}({json_text(v)})' for k, v in clause.annotations]
    if clause.when is not None:
        head += f"\n    when {clause.when}"
    if clause.unless is not None:
        head += f"\n    unless {clause.unless}"
    if clause.reason is not None and with_reasons:
        head += f"\n    reason {clause.reason.text()}"
    lines.append(head)
    return "\n".join(lines)


@dataclass(frozen=True)
class RuleModel:
    effect: str
    name: str
    annotations: tuple[tuple[str, str], ...] = ()
    when: str | None = None
    unless: str | None = None
    reason: ReasonModel | None = None

    def text(self, with_reasons: bool = True) -> str:
        return _clause_text(self, f"  {self.effect} {self.name}", with_reasons)


#: Budgets and periods of generated limit rules.
LIMIT_COUNTS = ["1", "2", "3", "50"]
LIMIT_PERIODS = ["1s", "1m", "1h", "1h30m", "7d", "500ms"]


@dataclass(frozen=True)
class LimitModel:
    """``limit NAME COUNT per PERIOD by KEY, ... [when ...] [unless ...] [reason "..."]``."""

    name: str
    count: str
    period: str
    keys: tuple[str, ...]
    annotations: tuple[tuple[str, str], ...] = ()
    when: str | None = None
    unless: str | None = None
    reason: ReasonModel | None = None

    def text(self, with_reasons: bool = True) -> str:
        head = f"  limit {self.name} {self.count} per {self.period} by {', '.join(self.keys)}"
        return _clause_text(self, head, with_reasons)


@dataclass(frozen=True)
class PolicyModel:
    """One ``policy`` block; ``items`` in source order: ``("target", text)``, ``("let", name, text)``,
    ``("comment", text)`` or a :class:`RuleModel`."""

    name: str
    annotations: tuple[tuple[str, str], ...] = ()
    items: tuple = ()

    @property
    def rules(self) -> list[RuleModel]:
        return [i for i in self.items if isinstance(i, RuleModel)]

    def rule_annotations(self, rule: RuleModel) -> dict[str, str]:
        """What SPEC §1 says a reason of ``rule`` carries: the policy's annotations, the rule's win."""
        return {**dict(self.annotations), **dict(rule.annotations)}

    def text(self, with_reasons: bool = True) -> str:
        lines = [f"@{k}({json_text(v)})" for k, v in self.annotations]
        lines.append(f"policy {self.name} {{")
        for item in self.items:
            if isinstance(item, (RuleModel, LimitModel)):
                lines.append(item.text(with_reasons))
            elif item[0] == "target":
                lines.append(f"  target {item[1]}")
            elif item[0] == "let":
                lines.append(f"  let {item[1]} = {item[2]}")
            else:
                lines.append(f"  # {item[1]}")
        lines.append("}")
        return "\n".join(lines)

    def with_items(self, items) -> PolicyModel:
        return PolicyModel(self.name, self.annotations, tuple(items))


@dataclass(frozen=True)
class PolicySetModel:
    """Policies grouped into files (each file a list of policies), in load order."""

    files: tuple[tuple[PolicyModel, ...], ...]

    @property
    def policies(self) -> list[PolicyModel]:
        return [p for f in self.files for p in f]

    def texts(self, with_reasons: bool = True) -> list[str]:
        return ["\n\n".join(p.text(with_reasons) for p in f) + "\n" for f in self.files]

    def rule_ids(self) -> list[str]:
        """Every rule id, in source (load) order."""
        return [f"{p.name}.{r.name}" for p in self.policies for r in p.rules]

    def annotations_by_rule(self) -> dict[str, dict[str, str]]:
        return {f"{p.name}.{r.name}": p.rule_annotations(r) for p in self.policies for r in p.rules}


def _annotations(gen: _ExprGen) -> tuple[tuple[str, str], ...]:
    keys = gen.some(ANNOTATION_KEYS, 0, 2, unique=True)
    return tuple((k, gen.pick(ANNOTATION_VALUES)) for k in keys)


def _reason(gen: _ExprGen, depth: int) -> ReasonModel:
    n = 1 + gen.below(4)
    parts: list = []
    for _ in range(n):
        if gen.coin(3):
            parts.append(gen.of(gen.pick(VALUE_TYPES + (ANY, ANY)), depth))
        else:
            parts.append(gen.pick(REASON_LITERALS))
    return ReasonModel(tuple(parts))


def _limit(gen: _ExprGen, name: str, depth: int) -> LimitModel:
    """A limit rule: keys of every kind (lists and maps are evaluation errors), conditions as rules'."""
    keys = tuple(gen.of(gen.pick((STR, STR, NUM, BOOL, ANY, ANY)), depth).text for _ in range(1 + gen.below(2)))
    when = gen.condition(depth).text if gen.coin(2) else None
    unless = gen.condition(depth - 1).text if gen.coin(4) else None
    reason = None
    if gen.coin(2):
        reason = ReasonModel(tuple(gen.pick(REASON_LITERALS) for _ in range(1 + gen.below(3))))
    return LimitModel(name, gen.pick(LIMIT_COUNTS), gen.pick(LIMIT_PERIODS), keys, _annotations(gen), when, unless,
                      reason)


@st.composite
def policy_models(draw, name: str = "p0", effects: Sequence[str] = ("permit", "forbid"),
                  max_rules: int = 4, max_lets: int = 2, depth: int = 2, careful: bool | None = None,
                  max_limits: int = 0) -> PolicyModel:
    """One policy named ``name`` whose rules have effects among ``effects``; ``careful`` as in
    ``_ExprGen`` (drawn when None)."""
    gen = _ExprGen(draw, careful=draw(st.booleans()) if careful is None else careful)
    n_rules = draw(st.integers(0 if max_rules == 0 else 1, max_rules))
    n_lets = draw(st.integers(0, max_lets))
    has_target = gen.coin(2)
    # Item kinds in source order: lets may come between rules; a target anywhere.
    n_limits = draw(st.integers(0, max_limits)) if max_limits else 0
    kinds = ["rule"] * n_rules + ["let"] * n_lets + (["target"] if has_target else []) + ["limit"] * n_limits
    kinds = draw(st.permutations(kinds)) if kinds else []
    if gen.coin(5):
        kinds.insert(draw(st.integers(0, len(kinds))), "comment")
    items: list = []
    rule_names = draw(st.lists(st.sampled_from([f"r{i}" for i in range(12)]), min_size=n_rules,
                               max_size=n_rules, unique=True))
    let_index = 0
    limit_index = 0
    for kind in kinds:
        if kind == "limit":
            items.append(_limit(gen, f"k{limit_index}", depth))
            limit_index += 1
        elif kind == "target":
            items.append(("target", gen.condition(depth).text))
        elif kind == "comment":
            items.append(("comment", "permit and forbid in a comment { are ignored"))
        elif kind == "let":
            let_type = gen.pick(VALUE_TYPES + (ANY,))
            let_name = f"l{let_index}"
            let_index += 1
            items.append(("let", let_name, gen.of(let_type, depth).text))
            gen.lets[let_name] = let_type
        else:
            when = gen.condition(depth).text if gen.weighted([(3, True), (1, False)]) else None
            unless = gen.condition(depth - 1).text if gen.coin(3) else None
            reason = _reason(gen, depth - 1) if gen.weighted([(2, True), (1, False)]) else None
            # Permits twice as often as forbids: a forbid that fails closed denies the whole request.
            effect = gen.pick([e for e in effects for _ in range(2 if e == "permit" else 1)])
            items.append(RuleModel(effect, rule_names.pop(0), _annotations(gen), when, unless, reason))
    return PolicyModel(name, _annotations(gen), tuple(items))


@st.composite
def policy_set_models(draw, min_policies: int = 1, max_policies: int = 4, max_files: int = 3,
                      effects: Sequence[str] = ("permit", "forbid"), max_rules: int = 4,
                      depth: int = 2, careful: bool | None = None, max_limits: int = 0) -> PolicySetModel:
    """Policies ``p0``, ``p1``, … (unique names) spread over 1..``max_files`` files, in order.

    ``careful`` (drawn once per set when None) chooses policies that rarely fail to evaluate;
    about half the sets are careful, so ALLOW decisions are common enough to test.
    """
    careful = draw(st.booleans()) if careful is None else careful
    n = draw(st.integers(min_policies, max_policies))
    policies = [draw(policy_models(f"p{i}", effects=effects, max_rules=max_rules, depth=depth, careful=careful,
                                   max_limits=max_limits))
                for i in range(n)]
    n_files = draw(st.integers(1, max(1, min(max_files, n))))
    # Cut points split the policies, in order, into n_files non-empty files.
    cuts = sorted(draw(st.lists(st.integers(1, max(1, n - 1)), min_size=n_files - 1, max_size=n_files - 1,
                                unique=True))) if n > 1 else []
    bounds = [0] + cuts + [n]
    files = tuple(tuple(policies[a:b]) for a, b in itertools.pairwise(bounds) if b > a)
    return PolicySetModel(files)


def policy_sets(**options) -> st.SearchStrategy[list[str]]:
    """The text of each policy file of a generated policy set; options as :func:`policy_set_models`."""
    return policy_set_models(**options).map(lambda model: model.texts())


# ---- requests ------------------------------------------------------------------------------

_ABSENT = object()


def _optional(values: st.SearchStrategy, odd: st.SearchStrategy | None = None) -> st.SearchStrategy:
    """Mostly a value of the domain; sometimes absent, ``null``, or an odd value."""
    options = [(values, 10), (st.just(_ABSENT), 2), (st.none(), 1)]
    if odd is not None:
        options.append((odd, 1))
    return st.one_of(*[s for s, weight in options for _ in range(weight)])


def _domain(name: str) -> st.SearchStrategy:
    return st.sampled_from(DOMAINS[name])


_ODD_SCALARS = st.sampled_from([1, 2.0, -3, True, False, "", "***", "a/b/c", "ALICE", 2**63 - 1, 1e300, ["prod"], {"k": "v"}])


def _attrs(**fields: st.SearchStrategy) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not _ABSENT})


_IDENTITY = _attrs(
    type=_domain("itype"),
    id=_domain("who"),
    env=_optional(_domain("env"), _ODD_SCALARS),
    scopes=_optional(st.lists(_domain("scope"), max_size=3, unique=True),
                     st.sampled_from(["payments:write", [1, "admin"], [], [["admin"]]])),
    level=_optional(_domain("level"), st.sampled_from([3.0, 1.0, "3", True, -1, 2**63 - 1, 0.1])),
    extra=st.one_of(st.just(_ABSENT), st.just({"nested": {"deep": [1, {"k": None}]}, "n": None})),
)
_ACTION = _domain("action").flatmap(
    lambda name: st.sampled_from([name, {"name": name}, {"name": name, "verb": "GET"}]))
_RESOURCE = _attrs(
    type=_domain("rtype"),
    id=st.one_of(_domain("who"), _domain("who"), st.just("r-1"), st.just(_ABSENT)),
    env=_optional(_domain("env"), _ODD_SCALARS),
    owner=_optional(_domain("who"), _ODD_SCALARS),
    tags=_optional(st.lists(_domain("tag"), max_size=3), st.sampled_from(["public", [1, 2.0], [True]])),
)
_SOURCE_IP = _optional(_domain("ip"), st.sampled_from(["nope", "10.1.2", "010.1.2.3", 42, "fe80::1%eth0"]))
_CONTEXT = {
    True: _attrs(source_ip=_SOURCE_IP, time=st.one_of(st.sampled_from(FIXED_TIMES), st.sampled_from(FIXED_TIMES),
                                                       st.sampled_from(BAD_TIMES))),
    False: _attrs(source_ip=_SOURCE_IP, time=_optional(st.sampled_from(FIXED_TIMES), st.sampled_from(BAD_TIMES))),
}


def _present(**fields: st.SearchStrategy) -> st.SearchStrategy[dict]:
    """``_attrs`` without nulls: a verified token's view holds JSON values only."""
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items()
                                                        if v is not _ABSENT and v is not None})


#: The root ``token`` (SPEC §8): absent (no token) or the view of a verified token, as the
#: token gate makes it (pdp/tokens/verify.py ``token_view``); its claims are the issuer's, of
#: any JSON type.
TOKEN_VIEWS = st.one_of(st.none(), _present(
    iss=st.just("https://sts.example"),
    sub=_optional(_domain("who")),
    aud=st.lists(st.sampled_from(["api", "other"]), max_size=2),
    scopes=st.lists(_domain("scope"), max_size=3, unique=True),
    bound=st.booleans(),
    claims=_present(env=_optional(_domain("env"), _ODD_SCALARS), level=_optional(_domain("level"), _ODD_SCALARS)),
))


@st.composite
def requests(draw, fixed_time: bool = True, python_values: bool = False) -> dict:
    """A valid request (SPEC §3) over the vocabulary.

    With ``fixed_time`` the request always carries a ``context.time`` (sometimes a malformed
    one), so its decision does not depend on the server clock and two evaluations of it agree.
    With ``python_values`` some values and keys are instances of subclasses of their JSON
    type, as Python callers pass them (see :func:`dressed`).
    """
    request = {"identity": draw(_IDENTITY), "action": draw(_ACTION), "resource": draw(_RESOURCE)}
    context = draw(_CONTEXT[fixed_time])
    if context or fixed_time or draw(st.booleans()):
        request["context"] = context
    elif draw(st.booleans()):
        request["context"] = None  # null counts as absent
    return draw(dressed(request)) if python_values else request


# ---- Python values: subclasses of the JSON types (SPEC §1.1) ---------------------------------


class Text(str):
    """A str subclass whose str() and repr() are not its value: only the characters count."""

    def __str__(self) -> str:
        return "Text!"

    __repr__ = __str__


class Whole(int):
    def __str__(self) -> str:
        return "Whole!"

    __repr__ = __str__


class Real(float):
    def __str__(self) -> str:
        return "Real!"

    __repr__ = __str__


class Map(dict):
    pass


class Items(list):
    pass


def _str_enum(text: str) -> str:
    """A member whose value is ``text``: of an ``enum.StrEnum`` or of a ``(str, Enum)`` (whose
    str() is ``"E.A"``, not the value)."""
    return enum.StrEnum("Env", {"A": text}).A


def _mixed_str_enum(text: str) -> str:
    return enum.Enum("Env", {"A": text}, type=str).A


def _int_enum(n: int) -> int:
    return enum.IntEnum("Level", {"A": n}).A


def _mixed_int_enum(n: int) -> int:
    return enum.Enum("Mixed", {"V": n}, type=int).V  # renders "Mixed.V" if taken for itself


_STR_DRESS = (_str_enum, _mixed_str_enum, Text)
_INT_DRESS = (_int_enum, _mixed_int_enum, Whole)


@st.composite
def dressed(draw, value: object) -> object:
    """``value`` with some of its strings, numbers, keys, maps and lists (at any depth) replaced
    by an equal instance of a subclass: an ``enum.StrEnum`` or ``IntEnum`` member, a ``(str,
    Enum)`` member, a subclass with its own ``__str__``, an ``OrderedDict``, a list subclass.
    By SPEC §1.1 it is the same request as ``value`` on every backend."""
    def maybe(convert):
        return convert if draw(st.integers(0, 2)) == 0 else None

    t = type(value)
    if t is str:
        convert = maybe(draw(st.sampled_from(_STR_DRESS)))
        return value if convert is None else convert(value)
    if t is int:
        convert = maybe(draw(st.sampled_from(_INT_DRESS)))
        return value if convert is None else convert(value)
    if t is float:
        return Real(value) if maybe(Real) else value
    if t is list:
        items = [draw(dressed(x)) for x in value]
        return Items(items) if maybe(Items) else items
    if t is dict:
        pairs = [(draw(dressed(k)) if k not in ("identity", "action", "resource", "context") else k,
                  draw(dressed(v))) for k, v in value.items()]
        kind = draw(st.sampled_from([dict, dict, collections.OrderedDict, Map]))
        return kind(pairs)
    return value  # bool (not subclassable), None


# ---- files and engines ---------------------------------------------------------------------


def write_policy_set(root: Path, texts: Sequence[str], data: dict | None = DATA) -> Path:
    """Write ``texts`` as ``f00.pdl``, ``f01.pdl``, … (load order) and each ``data`` entry as
    ``NAME.data.json`` under ``root``; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        (root / f"f{i:02d}.pdl").write_text(text, encoding="utf-8")
    for name, value in (data or {}).items():
        (root / f"{name}.data.json").write_text(json.dumps(value), encoding="utf-8")
    return root


def load_policy_set(texts: Sequence[str], data: dict | None = DATA):
    """Load ``texts`` (and ``data``) from a fresh temporary folder; returns the ``pdp.Engine``."""
    import pdp

    with tempfile.TemporaryDirectory(prefix="pdp-gen-") as tmp:
        return pdp.load(write_policy_set(Path(tmp) / "set", texts, data))


__all__ = [
    "ANY", "ATTRIBUTES", "BOOL", "CIDR", "DATA", "DOMAINS", "LIST", "MAP", "NUM", "STR",
    "Expr", "PolicyModel", "PolicySetModel", "ReasonModel", "RuleModel",
    "conditions", "dressed", "expressions", "load_policy_set", "policy_models", "policy_set_models", "policy_sets",
    "requests", "write_policy_set",
]
