"""AuthZEN Search (subject, resource, action): the entities for which the evaluation is a permit.

What can be searched is declared by the policy set, in a data file ``authzen.data.yaml`` (or
``.json``), so it is versioned, hashed into the revision and reloaded with the policies::

    search:
      subject:            # subject search: the subjects of each type
        user: users       # type "user": the keys of data.users (or the items of a list)
      resource:
        record: records   # type "record": the keys of data.records
      action: [view, edit, delete]   # optional; by default the action names the policies
                                     # compare action.name with

A search answers the candidates for which the request, with the searched entity's ``id`` or
``name`` set to the candidate, is decided ALLOW, in the declared order. Candidates that no
permit rule can apply to are dropped first, by walking the policy set's permit decision tree
(``compile.index``) with the fixed part of the request and reading the equality guards of
the rules in the leaves reached (``kept``); the rest are decided by
``Engine.allowed_candidates`` (the request validated once, one map rewritten per candidate,
no Decision built).

Pagination: ``page.limit`` results per answer; ``page.next_token`` continues, ``""`` at the
end. A page stops deciding once it has found one result more than it shows. A token is tied
to the request (every member but ``page``) and to the revision: one from another request or
another revision is refused with 400.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import weakref
from dataclasses import dataclass
from typing import Any

from ..compile.cse import children
from ..compile.ir import AND, ATTR, CACHED, COMPARE, CONST, EQ_STR, ERROR, IN_STRS, INDEX, LIST, LOOKUP, PATH
from ..engine import Engine
from .mapping import BadRequest, _object, context, entity, request_body

#: The data collection that declares what can be searched.
DECLARATION = "authzen"
SUBJECT, RESOURCE, ACTION = "subject", "resource", "action"
#: Per kind: the searched member, the pdp root and key that vary, the result's fields.
KINDS = {SUBJECT: ("identity", "id"), RESOURCE: ("resource", "id"), ACTION: ("action", "name")}


@dataclass(frozen=True)
class Query:
    """A parsed search request: ``template`` is the pdp request whose ``root[key]`` each
    candidate fills in."""

    kind: str
    template: dict
    entity_type: str  # the searched entity's type ("" for actions)
    limit: int | None
    token: str
    fingerprint: bytes  # the request (without ``page``) as it matters for tokens


def parse(kind: str, body: Any) -> Query:
    """A Search request body ⇒ Query; BadRequest names the member that is wrong."""
    body = request_body(body)
    searched = {SUBJECT: "subject", RESOURCE: "resource", ACTION: "action"}[kind]
    template: dict = {}
    for name, root in (("subject", "identity"), ("action", "action"), ("resource", "resource")):
        if name == searched:
            if kind == ACTION:
                template[root] = {}
                continue
            template[root] = entity(body, name, required=("type",))
        else:
            template[root] = entity(body, name)
    ctx = context(body)
    if ctx is not None:
        template["context"] = ctx
    limit, token = _page(body.get("page"))
    entity_type = template[KINDS[kind][0]].get("type", "")
    fingerprint = json.dumps([kind, template], sort_keys=True, separators=(",", ":")).encode()
    return Query(kind, template, entity_type, limit, token, fingerprint)


def _page(page: Any) -> tuple[int | None, str]:
    if page is None:
        return None, ""
    page = _object(page, "page")
    limit = page.get("limit")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise BadRequest("page.limit", "must be a positive integer")
    token = page.get("token", "")
    if type(token) is not str:
        raise BadRequest("page.token", "must be a string")
    return limit, token


# ---- what the policy set declares ---------------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    subjects: dict[str, tuple[str, ...]]
    resources: dict[str, tuple[str, ...]]
    actions: tuple[str, ...]

    def candidates(self, query: Query) -> tuple[str, ...]:
        if query.kind == ACTION:
            return self.actions
        table = self.subjects if query.kind == SUBJECT else self.resources
        found = table.get(query.entity_type)
        if found is None:
            declared = ", ".join(sorted(table)) or "none"
            raise BadRequest(f"{query.kind}.type", f"no {query.kind}s of type {query.entity_type!r} are declared "
                                                   f"for search (data.{DECLARATION}.search.{query.kind}; "
                                                   f"declared: {declared})")
        return found


_catalogs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def catalog(engine: Engine) -> Catalog:
    """The searchable sets of ``engine``'s policy set (computed once per engine)."""
    found = _catalogs.get(engine)
    if found is None:
        found = _catalogs[engine] = _build_catalog(engine)
    return found


def _build_catalog(engine: Engine) -> Catalog:
    data = engine.policy_set.data
    declared = data.get(DECLARATION, {})
    search = declared.get("search", {}) if isinstance(declared, dict) else {}
    if not isinstance(search, dict):
        search = {}

    def sets(kind: str) -> dict[str, tuple[str, ...]]:
        out = {}
        table = search.get(kind, {})
        for type_name, collection in (table.items() if isinstance(table, dict) else ()):
            values = data.get(collection) if isinstance(collection, str) else collection
            if isinstance(values, dict):
                out[type_name] = tuple(values)
            elif isinstance(values, list):
                out[type_name] = tuple(v for v in values if isinstance(v, str))
        return out

    actions = search.get(ACTION)
    if isinstance(actions, list):
        action_names = tuple(dict.fromkeys(a for a in actions if isinstance(a, str)))
    else:
        action_names = named_actions(engine.program)
    return Catalog(sets(SUBJECT), sets(RESOURCE), action_names)


def _is_action_name(node: tuple) -> bool:
    node = _unwrap(node)  # a path read several times per request is CACHED
    return node[0] == PATH and node[1] == "action" and tuple(node[2]) == ("name",)


def named_actions(program) -> tuple[str, ...]:
    """Every action name the policies compare ``action.name`` with (each once)."""
    names: dict[str, None] = {}
    seen: set[int] = set()

    def node(n: tuple | None) -> None:
        if n is None or id(n) in seen:
            return
        seen.add(id(n))
        op = n[0]
        if op == EQ_STR and _is_action_name(n[1]):
            names.setdefault(n[2])
        elif op == IN_STRS and _is_action_name(n[1]):
            for v in n[2]:
                names.setdefault(v)
        elif op == COMPARE and n[1] in ("==", "!=", "in", "not in"):
            for side, other in ((n[2], n[3]), (n[3], n[2])):
                if _is_action_name(side):
                    consts = [other] if other[0] == CONST else list(other[1]) if other[0] == LIST else []
                    for c in consts:
                        if c[0] == CONST and isinstance(c[1], str):
                            names.setdefault(c[1])
                        elif c[0] == CONST and isinstance(c[1], list):
                            for v in c[1]:
                                if isinstance(v, str):
                                    names.setdefault(v)
        for child in children(n):
            node(child)

    def tree(t: tuple) -> None:
        if t[0] == "leaf":
            for _rule, *clauses in t[1]:
                for c in clauses:
                    node(c)
            return
        _, path, branches, default, error = t
        if _is_action_name(path):
            for value in branches:
                names.setdefault(value)
        for sub in (*branches.values(), default, error):
            if sub is not None:
                tree(sub)

    for t in (program.forbid_tree, program.permit_tree):
        tree(t)
    return tuple(names)


# ---- pruning with the permit tree -----------------------------------------------------------------

_MISSING = object()


def _resolve(request: dict, path: tuple) -> Any:
    value: Any = request.get(path[1], _MISSING)
    for key in path[2]:
        if type(value) is not dict:
            return _MISSING
        value = value.get(key, _MISSING)
    return value


def _conjuncts(node: tuple | None) -> list[tuple]:
    """The parts of ``node`` that must all be true (an AND's items, through CACHED)."""
    if node is None:
        return []
    if node[0] == CACHED:
        return _conjuncts(node[2])
    if node[0] == AND:
        return [c for item in node[1] for c in _conjuncts(item)]
    return [node]


def _unwrap(node: tuple) -> tuple:
    return _unwrap(node[2]) if node[0] == CACHED else node


class _Unknown(Exception):
    """This walk cannot tell what the expression gives: the candidate stays."""


class _Fails(Exception):
    """The expression fails to evaluate: a permit rule that needs it cannot apply."""


def _compile(node: tuple, template: dict, root: str, key: str) -> tuple[bool, object]:
    """A value expression of a rule ⇒ (whether it depends on the candidate, a function of the
    candidate giving its value). Understands constants, request paths and ``data`` lookups
    (``data.records[resource.id].owner``); raises _Unknown for anything else."""
    op = node[0]
    if op == CACHED:
        return _compile(node[2], template, root, key)
    if op == CONST:
        value = node[1]
        return False, lambda c: value
    if op == PATH:
        if node[1] == root and tuple(node[2])[:1] == (key,):
            if len(node[2]) != 1:
                raise _Unknown
            return True, lambda c: c
        value = _resolve(template, node)
        if value is _MISSING:
            def missing(c):
                raise _Fails
            return False, missing
        if value is None:
            raise _Unknown
        return False, lambda c: value
    if op == ATTR:
        depends, obj = _compile(node[1], template, root, key)
        name = node[2]

        def attr(c):
            o = obj(c)
            if type(o) is not dict:
                raise _Unknown
            v = o.get(name, _MISSING)
            if v is _MISSING:
                raise _Fails
            return v
        return depends, attr
    if op == INDEX:
        depends_obj, obj = _compile(node[1], template, root, key)
        depends_key, index_key = _compile(node[2], template, root, key)

        def index(c):
            o, k = obj(c), index_key(c)
            if type(o) is not dict or type(k) is not str:
                raise _Unknown
            v = o.get(k, _MISSING)
            if v is _MISSING:
                raise _Fails
            return v
        return depends_obj or depends_key, index
    if op == ERROR:  # a lookup folded at load that always fails (compile/tabulate.py)
        def fails(c):
            raise _Fails
        return False, fails
    if op == LOOKUP:  # a data lookup tabulated at load: the case of the key's value, else as written
        depends_key, lookup_key = _compile(node[1], template, root, key)
        cases = {k: _compile(v, template, root, key) for k, v in node[2].items()}
        depends_default, default = _compile(node[3], template, root, key)

        def lookup(c):
            try:
                k = lookup_key(c)
            except _Fails:
                return default(c)  # it fails the same way where it reads the key
            case = cases.get(k) if type(k) is str else None
            return default(c) if case is None else case[1](c)
        return depends_key or depends_default or any(d for d, _ in cases.values()), lookup
    raise _Unknown


def _check(conjunct: tuple, template: dict, root: str, key: str):
    """A conjunct that compares strings ⇒ (depends on the candidate, ``may_hold(c)``); None when
    this walk does not understand it. ``may_hold`` is False only when the conjunct is surely
    false or fails: ``a == b`` between two different strings, ``x == "s"`` or ``x in [...]``
    with a string ``x`` that is not there, or a lookup that fails."""
    op = conjunct[0]
    try:
        if op == COMPARE and conjunct[1] == "==":
            d1, left = _compile(conjunct[2], template, root, key)
            d2, right = _compile(conjunct[3], template, root, key)

            def same(c) -> bool:
                try:
                    a, b = left(c), right(c)
                except _Fails:
                    return False
                except _Unknown:
                    return True
                return not (type(a) is str and type(b) is str and a != b)
            return d1 or d2, same
        if op in (EQ_STR, IN_STRS) and not conjunct[3]:
            depends, x = _compile(conjunct[1], template, root, key)
            values = frozenset((conjunct[2],)) if op == EQ_STR else frozenset(conjunct[2])

            def member(c) -> bool:
                try:
                    v = x(c)
                except _Fails:
                    return False
                except _Unknown:
                    return True
                return type(v) is not str or v in values
            return depends, member
    except _Unknown:
        return None
    return None


def _rule_filter(entry: tuple, template: dict, root: str, key: str) -> frozenset | None:
    """The candidate values one permit rule of a leaf could apply to, from its equality guards
    on the searched path: None for any, an empty set when the rule cannot apply at all. A
    permit applies only when each conjunct of its target and ``when`` is true (an error does
    not apply it), so a conjunct the request surely fails, whatever the candidate, rules it
    out. Conjuncts that depend on the candidate otherwise are left to the evaluator: deciding
    a candidate in C costs less than checking it here (bench/SEARCH.md)."""
    allowed: frozenset | None = None
    for clause in entry[1:3]:
        for c in _conjuncts(clause):
            if c[0] == CONST and c[1] is False:
                return frozenset()
            if c[0] in (EQ_STR, IN_STRS) and not c[3] and _unwrap(c[1])[0] == PATH:
                path = _unwrap(c[1])
                values = frozenset((c[2],)) if c[0] == EQ_STR else frozenset(c[2])
                if path[1] == root and tuple(path[2]) == (key,):
                    allowed = values if allowed is None else allowed & values
                    continue
                if not (path[1] == root and tuple(path[2])[:1] == (key,)):
                    value = _resolve(template, path)
                    if type(value) is not str or value not in values:
                        return frozenset()  # false, or an error: this permit cannot apply
                    continue
            found = _check(c, template, root, key)
            if found is not None and not found[0] and not found[1](None):
                return frozenset()
    return allowed


def reachable(permit_tree: tuple, template: dict, root: str, key: str, candidates: tuple[str, ...]) -> list[str]:
    """The candidates that some permit rule could apply to, in their order: the others
    cannot be allowed. ``template[root][key]`` is what each candidate fills in; every other
    path is the template's (see ``kept``)."""
    keep = kept(permit_tree, template, root, key, candidates)
    return [c for c in candidates if c in keep]


def kept(permit_tree: tuple, template: dict, root: str, key: str, candidates: tuple[str, ...]) -> set[str]:
    """The set of candidates that some permit rule could apply to.

    Walks the permit decision tree (``compile.index``) with the template, splitting the
    candidates at switches on the varying path; at each leaf, keeps those that one of its
    rules admits by its equality guards (``_rule_filter``). Conservative wherever dispatch is
    not certain (a path that does not resolve to a string follows both ``default`` and
    ``error``): pruning never drops an allowed candidate.
    """
    keep: set[str] = set()

    def walk(t: tuple, group: list[str]) -> None:
        if not group:
            return
        if t[0] == "leaf":
            for entry in t[1]:
                allowed = _rule_filter(entry, template, root, key)
                if allowed is None:
                    keep.update(group)  # a rule that may apply to any of them
                    return
                keep.update(c for c in group if c in allowed)
            return
        if t[0] != "switch":
            raise ValueError(f"unknown tree node {t[0]!r}")
        _, path, branches, default, error = t
        path = _unwrap(path)
        if path[0] == PATH and path[1] == root and tuple(path[2]) == (key,):
            split: dict[int, list[str]] = {}
            subtrees: dict[int, tuple] = {}
            for c in group:
                sub = branches.get(c, default)
                split.setdefault(id(sub), []).append(c)
                subtrees[id(sub)] = sub
            for k, members in split.items():
                walk(subtrees[k], members)
            return
        if path[0] == PATH and not (path[1] == root and tuple(path[2])[:1] == (key,)):
            value = _resolve(template, path)
            if type(value) is str:
                walk(branches.get(value, default), group)
                return
        walk(default, group)  # not certain: follow every way the request could go
        if error is not None:
            walk(error, group)

    walk(permit_tree, list(candidates))
    return keep


# ---- the search itself --------------------------------------------------------------------------


def allowed(engine: Engine, query: Query, candidates: tuple[str, ...], template: dict | None = None,
            start: int = 0, wanted: int = -1) -> list[int]:
    """The positions in ``candidates``, from ``start`` on, for which the evaluation is a permit,
    in order, at most ``wanted`` of them (all when negative).

    Candidates no permit rule can apply to are dropped first (``kept``); the others are
    decided by ``Engine.allowed_candidates``, which validates the request once and builds no
    Decision, and stops once ``wanted`` are found. ``template`` is the request to fill in
    (``query.template`` by default; the server passes it after adding ``context.peer``).
    Raises ``RequestError`` when the request is malformed.
    """
    template = query.template if template is None else template
    root, key = KINDS[query.kind]
    rest = candidates[start:]
    try:
        keep = kept(engine.program.permit_tree, template, root, key, rest)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):  # a tree shape this walk does not know
        keep = None
    if keep is None or len(keep) == len(rest):
        positions = range(start, len(candidates))
        survivors = rest
    else:
        positions = [i for i, c in enumerate(rest, start) if c in keep]
        survivors = [candidates[i] for i in positions]
    return [positions[j] for j in engine.allowed_candidates(template, root, key, survivors, wanted)]


def permitted(engine: Engine, query: Query, candidates: tuple[str, ...], template: dict | None = None) -> list[str]:
    """The candidates for which the evaluation is a permit, in order (every page)."""
    return [candidates[i] for i in allowed(engine, query, candidates, template)]


def answer(engine: Engine, query: Query, candidates: tuple[str, ...], template: dict | None = None) -> dict:
    """The page ``query`` asks for: its results and ``page.next_token``.

    Lazy: from the token's position, candidates are decided only until ``page.limit`` permits
    are found plus one, which says whether a next page exists (its token is the position after
    the last result shown).
    """
    revision = engine.revision
    start = min(_offset(query, revision), len(candidates)) if query.token else 0
    limit = query.limit
    found = allowed(engine, query, candidates, template, start, -1 if limit is None else limit + 1)
    shown = found if limit is None else found[:limit]
    next_token = _token(query, revision, shown[-1] + 1) if limit is not None and len(found) > limit else ""
    if query.kind == ACTION:
        results = [{"name": candidates[i]} for i in shown]
    else:
        results = [{"type": query.entity_type, "id": candidates[i]} for i in shown]
    return {"results": results, "page": {"next_token": next_token}}


#: Tokens hold a position among the candidates (format 2; format 1 held one among the results).
_TOKEN_DOMAIN = b"pdp-search-2\0"


def _digest(query: Query, revision: str, offset: bytes) -> bytes:
    return hashlib.sha256(_TOKEN_DOMAIN + offset + revision.encode() + b"\0" + query.fingerprint).digest()[:12]


def _token(query: Query, revision: str, offset: int) -> str:
    packed = struct.pack(">I", offset)
    return base64.urlsafe_b64encode(packed + _digest(query, revision, packed)).decode().rstrip("=")


def _offset(query: Query, revision: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(query.token + "=" * (-len(query.token) % 4))
    except ValueError:
        raw = b""
    if len(raw) != 16 or raw[4:] != _digest(query, revision, raw[:4]):
        raise BadRequest("page.token", "is not a token this server gave for this request and revision "
                                       "(the policies may have been reloaded since): search again without it")
    return struct.unpack(">I", raw[:4])[0]


def search(engine: Engine, kind: str, body: Any) -> dict:
    """Answer a search request body with ``engine`` (no server limits; the server's own path
    is ``parse`` ⇒ ``catalog(engine).candidates`` ⇒ ``answer``)."""
    query = parse(kind, body)
    return answer(engine, query, catalog(engine).candidates(query))
