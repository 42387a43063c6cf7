"""The one registry of built-in functions: names, arity, argument and result types, behaviour.

Read by the checker (arity, static types), by every evaluator (behaviour) and by the docs, so
they can never disagree on the function set. ``defined`` is a special form: it evaluates its
argument itself, so it has no implementation here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from . import times
from .errors import EvalError
from .values import CidrSet, parse_time, quote_key, type_name

# Static types the checker knows; "any" is a value only known at request time.
STRING, NUMBER, BOOL, LIST, MAP, CIDR, ANY = "string", "number", "bool", "list", "map", "cidr set", "any"


@dataclass(frozen=True)
class Builtin:
    name: str
    min_args: int
    max_args: int | None  # None: any number
    arg_types: tuple[str, ...]  # static types each argument may have (checked when known)
    result: str
    impl: Callable | None  # (now, *args) -> value; raises EvalError
    doc: str
    reads_now: bool = False  # the value depends on the request time, not only on the arguments
    #: Static types by position, where they differ between arguments (else ``arg_types``).
    positional: tuple[tuple[str, ...], ...] = ()

    def types_of(self, position: int) -> tuple[str, ...]:
        """The static types argument ``position`` may have."""
        return self.positional[position] if position < len(self.positional) else self.arg_types

    def arity_text(self) -> str:
        if self.max_args is None:
            return f"at least {self.min_args} argument{'s' if self.min_args != 1 else ''}"
        return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"


def _len(now, x):
    if isinstance(x, (str, list, dict)):
        return len(x)
    raise EvalError(f"len expects a string, list or map, got {type_name(x)}")


def _case(name: str, convert: Callable[[str], str]):
    def impl(now, x):
        if isinstance(x, str):
            return convert(x)
        raise EvalError(f"{name} expects a string, got {type_name(x)}")

    return impl


def _time(now, x):
    return parse_time(x)


def _age(now, x):
    return now() - parse_time(x)


def _cidr(now, *args):
    texts: list[str] = []
    for arg in args:
        items = arg if isinstance(arg, list) else [arg]
        for item in items:
            if not isinstance(item, str):
                raise EvalError(f"cidr expects strings or lists of strings, got {type_name(item)}")
            texts.append(item)
    return cidr_set(tuple(texts))


def _index_by(now, collection, field):
    return index_by(collection, field)


#: Indexes kept once built, by (collection, field): `index_by(data.identities, "spiffe_id")` is
#: folded at load by the compiler, but the reference evaluator (and a collection known only per
#: request) calls it per request. Each entry holds its collection, so its id cannot be reused.
_INDEXES: dict[tuple[int, str], tuple[object, dict]] = {}
_MAX_INDEXES = 64


def index_by(collection: object, field: object) -> dict:
    """The built-in ``index_by``: the entries of ``collection`` (a map's values, a list's items)
    keyed by their ``field``, a string. Entries that are not maps, or whose ``field`` is absent
    or not a string, are left out; two entries with one value are an error."""
    if not isinstance(field, str):
        raise EvalError(f"index_by expects a field name (a string) as its second argument, got {type_name(field)}")
    key = (id(collection), field)
    cached = _INDEXES.get(key)
    if cached is not None and cached[0] is collection:
        return cached[1]
    if isinstance(collection, dict):
        entries = collection.items()
    elif isinstance(collection, list):
        entries = enumerate(collection)
    else:
        raise EvalError(f"index_by expects a map or a list of entries, got {type_name(collection)}")
    index: dict = {}
    origins: dict = {}  # value ⇒ the key or position of its entry, for the message
    where = quote_key if isinstance(collection, dict) else (lambda i: f"[{i}]")
    for at, entry in entries:
        if type(entry) is dict:
            value = entry.get(field)
            if type(value) is str:
                if value in index:
                    raise EvalError(f"index_by: the entries {where(origins[value])} and {where(at)} both have {field} "
                                    f"{quote_key(value)}; an index needs unique values")
                index[value] = entry
                origins[value] = at
    if len(_INDEXES) >= _MAX_INDEXES:
        _INDEXES.clear()  # a crude bound: the indexes that matter are rebuilt once
    _INDEXES[key] = (collection, index)
    return index


#: Sets of at most this many networks are kept once parsed: `cidr(data.networks[...])` sees
#: the same few lists on every request (parsing one network costs ~10 µs); a bound keeps
#: request data from filling the cache with large entries.
CACHED_CIDR_NETWORKS = 256


def cidr_set(texts: tuple[str, ...]) -> CidrSet:
    if len(texts) <= CACHED_CIDR_NETWORKS:
        return _cached_cidr_set(texts)
    return _parse_cidr_set(texts)


def _parse_cidr_set(texts: tuple[str, ...]) -> CidrSet:
    try:
        return CidrSet.from_strings(texts)
    except ValueError as exc:
        raise EvalError(str(exc)) from None


@functools.lru_cache(maxsize=1024)
def _cached_cidr_set(texts: tuple[str, ...]) -> CidrSet:
    return _parse_cidr_set(texts)  # an EvalError is raised, not cached


#: A time (RFC 3339 string or epoch number), then an IANA time zone name.
_ZONED_ARGS = ((STRING, NUMBER), (STRING,))

BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin("defined", 1, 1, (ANY,), BOOL, None,
                "true when the argument evaluates without error to a present value; never errors"),
        Builtin("len", 1, 1, (STRING, LIST, MAP), NUMBER, _len,
                "length of a string (code points), list or map"),
        Builtin("lower", 1, 1, (STRING,), STRING, _case("lower", str.lower), "lower-case a string"),
        Builtin("upper", 1, 1, (STRING,), STRING, _case("upper", str.upper), "upper-case a string"),
        Builtin("time", 1, 1, (STRING, NUMBER), NUMBER, _time,
                "RFC 3339 string or epoch number ⇒ epoch seconds"),
        Builtin("age", 1, 1, (STRING, NUMBER), NUMBER, _age, "now - time(x), in seconds", reads_now=True),
        Builtin("cidr", 1, None, (STRING, LIST), CIDR, _cidr,
                "a set of IPv4/IPv6 networks, for `ip in cidr(...)`; arguments are strings or lists of strings"),
        Builtin("hour", 2, 2, (STRING, NUMBER), NUMBER, times.IMPLEMENTATIONS["hour"],
                "the hour (0 to 23) of a time in an IANA time zone: hour(now, \"Europe/Paris\")",
                positional=_ZONED_ARGS),
        Builtin("minute", 2, 2, (STRING, NUMBER), NUMBER, times.IMPLEMENTATIONS["minute"],
                "the minute (0 to 59) of a time in an IANA time zone", positional=_ZONED_ARGS),
        Builtin("weekday", 2, 2, (STRING, NUMBER), STRING, times.IMPLEMENTATIONS["weekday"],
                "the day of the week of a time in an IANA time zone: \"Mon\", \"Tue\", ... \"Sun\"",
                positional=_ZONED_ARGS),
        Builtin("date", 2, 2, (STRING, NUMBER), STRING, times.IMPLEMENTATIONS["date"],
                "the calendar date of a time in an IANA time zone, as \"YYYY-MM-DD\"", positional=_ZONED_ARGS),
        Builtin("index_by", 2, 2, (MAP, LIST), MAP, _index_by,
                "the entries of a map or list keyed by one of their fields: "
                "index_by(data.identities, \"spiffe_id\")[identity.spiffe_id]",
                positional=((MAP, LIST), (STRING,))),
        Builtin("duration", 1, 1, (NUMBER,), STRING, times.duration_of,
                "a number of seconds as people read a duration: duration(522994) is \"6d1h16m\""),
    )
}

#: Functions whose second argument names an IANA time zone (a literal one is checked at load).
ZONED = ("hour", "minute", "weekday", "date")
