"""Indexing: rules with their leading equality guards ⇒ a decision tree that dispatches by hash
lookup, so a request only visits the rules that can apply to it.

A *guard* is a conjunct ``path == "s"`` or ``path in ["a", "b"]`` on a request attribute path,
standing at the start of a rule's evaluation order (its policy's target, then its ``when``).
Skipping a rule because a guard is false must not hide an error the rule would have met
first, so only a rule's *usable* guards count: those preceded only by guards on paths every
valid request has (``resource.type``, ``action.name``, ``identity.type``, ``identity.id``),
which never fail. When a path fails to resolve, the ``error`` branch keeps every rule that
would have evaluated it, so the rule reports its error as the reference evaluator does.

Tree nodes (plain data):
- ``("leaf", rule_indices, facts)`` — indices into the program's rules, in source order, and
  what the branches taken to reach the leaf proved: ``((path, value), ...)``, each path known
  to hold that string (``specialize`` folds them into the rules' conditions);
- ``("switch", path, branches, default, error)`` — ``branches`` maps a string value of
  ``path`` to a subtree; ``default`` is taken for any other value (or a non-string);
  ``error`` when ``path`` fails to resolve (``None`` for paths that cannot fail).

Choices are deterministic: the path that the most rules can use, ties by first appearance.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import AND, EQ_STR, IN_STRS, PATH, REQUIRED_PATHS

MAX_DEPTH = 6
#: Fewer rules than this are simply evaluated in turn.
MIN_RULES_TO_SPLIT = 3


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
    """The leading guards of a rule, given its clauses in evaluation order (target, when)."""
    found: list[Guard] = []
    for clause in clauses:
        if clause is None:
            continue
        conjuncts = list(clause[1]) if clause[0] == AND else [clause]
        for c in conjuncts:
            guard = _as_guard(c)
            if guard is None:
                return tuple(found)
            found.append(guard)
    return tuple(found)


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
    default = build(unconstrained, depth + 1, facts)
    error = None if required else build(on_error, depth + 1, facts)
    return ("switch", path, branches, default, error)


def _merged(a: list[Candidate], b: list[Candidate]) -> list[Candidate]:
    return sorted(a + b, key=lambda c: c.rule)


def _leaf(candidates: list[Candidate], facts: tuple) -> tuple:
    return ("leaf", tuple(sorted(c.rule for c in candidates)), facts)


def flat(candidates: list[Candidate]) -> tuple:
    """The unindexed tree: every rule, in source order (the oracle for the index)."""
    return _leaf(candidates, ())
