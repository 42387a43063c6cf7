"""Indexing: rules with their leading equality guards ⇒ a decision tree that dispatches by hash
lookup, so a request only visits the rules that can apply to it.

A *guard* is a conjunct ``path == "s"`` or ``path in ["a", "b"]`` on a request attribute path,
standing at the start of a rule's evaluation order (its policy's target, then its ``when``;
``and``s nested in them, such as a ``let`` bound to one, count as their items), or preceded
there only by *safe* conjuncts: booleans that no request can make fail (``defined(...)``,
guards on the paths every request has, ``not``/``and``/``or`` of those). A false guard then
makes the rule's condition false with no error whatever the conjuncts before it gave, as
when it stands first (``defined(x.kind) and x.kind == "api_key"`` is a guard on ``x.kind``).
Skipping a rule because a guard is false must not hide an error the rule would have met
first, so only a rule's *usable* guards count: those preceded only by guards on paths every
valid request has (``resource.type``, ``action.name``, ``identity.type``, ``identity.id``),
which never fail. When a path fails to resolve, the ``error`` branch keeps every rule that
would have evaluated it, so the rule reports its error as the reference evaluator does.

Tree nodes (plain data):
- ``("leaf", rule_indices, facts)`` — indices into the program's rules, in source order, and
  what the branches taken to reach the leaf proved: ``((path, fact), ...)``, where a fact is
  the string the path holds (a branch), ``Unlike(values)``: the path resolves, to none of
  those strings (a default), or ``FAILS``: the path does not resolve (an error branch);
  ``specialize`` folds them into the rules' conditions;
- ``("switch", path, branches, default, error)`` — ``branches`` maps a string value of
  ``path`` to a subtree; ``default`` is taken for any other value (or a non-string);
  ``error`` when ``path`` fails to resolve (``None`` for paths that cannot fail).

Choices are deterministic: the path that the most rules can use, ties by first appearance.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import AND, CONST, DEFINED, EQ_STR, IN_STRS, NOT, OR, PATH, REQUIRED_PATHS

MAX_DEPTH = 6
#: Fewer rules than this are simply evaluated in turn.
MIN_RULES_TO_SPLIT = 3


@dataclass(frozen=True)
class Unlike:
    """A fact of a switch's default: its path resolves, to a value that is none of ``values``
    (another string, or not a string)."""
    values: frozenset


#: The fact of a switch's error branch: its path does not resolve.
FAILS = None


@dataclass(frozen=True)
class Guard:
    path: tuple  # the PATH node
    values: frozenset
    required: bool  # the path is one every valid request has


@dataclass(frozen=True)
class Candidate:
    rule: int
    guards: tuple[Guard, ...]  # in evaluation order


def guards_of(clauses: list[tuple | None]) -> tuple[Guard, ...]:
    """The leading guards of a rule, given its clauses in evaluation order (target, when):
    safe conjuncts that are no guard are passed over (see the module doc)."""
    found: list[Guard] = []
    for clause in clauses:
        if clause is None:
            continue
        for c in _conjuncts(clause):
            guard = _as_guard(c)
            if guard is not None:
                found.append(guard)
            elif not _safe(c):
                return tuple(found)
    return tuple(found)


def _conjuncts(node: tuple):
    """The items of an ``and``, nested ``and``s flattened, in evaluation order."""
    if node[0] == AND:
        for item in node[1]:
            yield from _conjuncts(item)
    else:
        yield node


def _safe(node: tuple) -> bool:
    """``node`` gives a boolean, never an error, whatever the request."""
    op = node[0]
    if op == DEFINED:
        return True
    if op == CONST:
        return isinstance(node[1], bool)
    if op in (EQ_STR, IN_STRS):
        return node[1][0] == PATH and (node[1][1], node[1][2]) in REQUIRED_PATHS
    if op == NOT:
        return _safe(node[1])
    if op in (AND, OR):
        return all(_safe(item) for item in node[1])
    return False


def _as_guard(node: tuple) -> Guard | None:
    if node[0] == EQ_STR and not node[3] and node[1][0] == PATH:
        values = frozenset((node[2],))
    elif node[0] == IN_STRS and not node[3] and node[1][0] == PATH:
        values = frozenset(node[2])
    else:
        return None
    path = node[1]
    return Guard(path, values, (path[1], path[2]) in REQUIRED_PATHS)


def usable(guards: tuple[Guard, ...]) -> tuple[Guard, ...]:
    """Guards that may prune: each preceded only by guards that cannot fail."""
    out = []
    for g in guards:
        out.append(g)
        if not g.required:
            break
    return tuple(out)


def build(candidates: list[Candidate], depth: int = 0, facts: tuple = ()) -> tuple:
    if depth >= MAX_DEPTH or len(candidates) < MIN_RULES_TO_SPLIT:
        return _leaf(candidates, facts)
    counts: dict[int, int] = {}
    first_seen: dict[int, tuple] = {}
    for c in candidates:
        for path_id in {id(g.path) for g in usable(c.guards)}:
            counts[path_id] = counts.get(path_id, 0) + 1
        for g in usable(c.guards):
            first_seen.setdefault(id(g.path), g.path)
    if not counts or max(counts.values()) < 2:
        return _leaf(candidates, facts)
    best = max(first_seen, key=lambda pid: counts[pid])  # max keeps the first of equals
    path = first_seen[best]

    by_value: dict[str, list[Candidate]] = {}
    unconstrained: list[Candidate] = []
    on_error: list[Candidate] = []
    required = False
    for c in candidates:
        position = next((i for i, g in enumerate(usable(c.guards)) if id(g.path) == best), None)
        if position is None:
            unconstrained.append(c)
            on_error.append(c)
            continue
        guard = c.guards[position]
        required = guard.required
        rest = c.guards[:position] + c.guards[position + 1:]
        for value in sorted(guard.values):
            by_value.setdefault(value, []).append(Candidate(c.rule, rest))
        # If the path fails, the rule fails at this guard: later guards are never reached.
        on_error.append(Candidate(c.rule, c.guards[:position]))

    branches = {value: build(_merged(rules, unconstrained), depth + 1, facts + ((path, value),))
                for value, rules in sorted(by_value.items())}
    default = build(unconstrained, depth + 1, facts + ((path, Unlike(frozenset(by_value))),))
    error = None if required else build(on_error, depth + 1, facts + ((path, FAILS),))
    return ("switch", path, branches, default, error)


def _merged(a: list[Candidate], b: list[Candidate]) -> list[Candidate]:
    return sorted(a + b, key=lambda c: c.rule)


def _leaf(candidates: list[Candidate], facts: tuple) -> tuple:
    return ("leaf", tuple(sorted(c.rule for c in candidates)), facts)


def flat(candidates: list[Candidate]) -> tuple:
    """The unindexed tree: every rule, in source order (the oracle for the index)."""
    return _leaf(candidates, ())
