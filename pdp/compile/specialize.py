"""Specializing: each leaf of a decision tree gets its own copy of its rules' conditions, with
what the branches above it proved folded in.

A branch of a switch on ``action.name`` is only taken when that path holds that string, so in
its leaf ``action.name == "list"`` is true, ``action.name in ["read", "list"]`` is true,
``action.name != "admin"`` is true and ``defined(action.name)`` is true, without an error in
any case. A switch's default is taken when the path resolves to none of its branches' strings:
there ``defined(path)`` is true and ``path == "s"`` false for each of them; its error branch
when the path does not resolve: there ``defined(path)`` is false (``path == "s"`` keeps its
error). So ``defined(x) and x == "s"`` folds to a constant in every leaf below a switch on x.
Folding them to constants
and simplifying ``and``/``or``/``not`` around them is exact (same value, same error, same
message); a rule whose target or first condition folds to false is dropped from the leaf, and
a target that folds to true is not evaluated at all.

A leaf entry is ``(rule, target, when, unless)``: the index of the rule in the program's rule
table and the three clauses to evaluate in that order, each ``None`` when there is nothing to
check (absent, or proved true; for ``unless``: absent or proved false).
"""

from __future__ import annotations

from .cse import children, replace_children
from .index import FAILS, Unlike
from .ir import AND, COMPARE, CONST, DEFINED, EQ_STR, IN_STRS, MATCH_GLOB, NOT, OR, PATH

TRUE = (CONST, True)
FALSE = (CONST, False)

#: Opcodes whose value is always a boolean (or an error): ``and`` of one of them is the item.
_BOOLEAN = (NOT, AND, OR, COMPARE, EQ_STR, IN_STRS, MATCH_GLOB, DEFINED)


def _is(node: tuple, value: bool) -> bool:
    return node[0] == CONST and node[1] is value


class Specializer:
    """Folds facts into nodes; rebuilt nodes are interned, so leaves that fold a node the same
    way share one copy (and the bundle stores it once)."""

    def __init__(self) -> None:
        self._interned: dict[tuple, tuple] = {}
        self._compared: dict[int, frozenset] = {}
        self._paths_of_rule: dict[int, frozenset] = {}
        self._unfolded: dict[int, tuple | None] = {}

    def entries(self, rule_indices: tuple, facts: tuple, rules: list, targets: list) -> tuple:
        """The leaf's entries (see the module doc) for rules ``rule_indices`` under ``facts``."""
        known = {id(path): value for path, value in facts}
        memo: dict[int, tuple] = {}
        out = []
        for i in rule_indices:
            rule = rules[i]
            clauses = (targets[rule.policy], rule.when, rule.unless)
            if not known or self._rule_paths(i, clauses).isdisjoint(known):
                entry = self._unfolded.get(i, False)
                if entry is False:  # made once per rule and shared by every leaf it is in
                    entry = self._unfolded[i] = _entry(i, *clauses)
            else:
                entry = _entry(i, *(None if c is None else self.fold(c, known, memo) for c in clauses))
            if entry is not None:
                out.append(entry)
        return tuple(out)

    def _rule_paths(self, i: int, clauses: tuple) -> frozenset:
        found = self._paths_of_rule.get(i)
        if found is None:
            found = self._paths_of_rule[i] = frozenset().union(
                *(self.compared_paths(c) for c in clauses if c is not None))
        return found

    def fold(self, node: tuple, known: dict[int, object], memo: dict[int, tuple]) -> tuple:
        key = id(node)
        done = memo.get(key)
        if done is None:
            if self.compared_paths(node).isdisjoint(known):
                done = node  # nothing here compares a proved path: most nodes of most leaves
            else:
                done = self._fold(node, known, memo)
            memo[key] = done
        return done

    def compared_paths(self, node: tuple) -> frozenset:
        """The ids of the paths that ``==``/``in`` string comparisons under ``node`` test."""
        key = id(node)
        found = self._compared.get(key)
        if found is None:
            if node[0] in (EQ_STR, IN_STRS, DEFINED) and node[1][0] == PATH:
                found = frozenset((id(node[1]),))
            else:
                found = frozenset().union(*(self.compared_paths(k) for k in children(node)))
            self._compared[key] = found
        return found

    def _fold(self, node: tuple, known: dict[int, object], memo: dict[int, tuple]) -> tuple:
        op = node[0]
        if op in (EQ_STR, IN_STRS, DEFINED) and node[1][0] == PATH and id(node[1]) in known:
            folded = _folded_test(node, known[id(node[1])])
            if folded is not None:
                return folded
        kids = children(node)
        if not kids:
            return node
        folded = [self.fold(k, known, memo) for k in kids]
        if op == NOT and folded[0][0] == CONST and isinstance(folded[0][1], bool):
            return FALSE if folded[0][1] else TRUE
        if op in (AND, OR):
            return self._logic(node, folded)
        if all(f is k for f, k in zip(folded, kids)):
            return node
        return self._intern(node, folded)

    def _logic(self, node: tuple, folded: list[tuple]) -> tuple:
        return fold_logic(node, folded, self._intern)

    def _intern(self, node: tuple, new_children: list[tuple]) -> tuple:
        key = (id(node), tuple(id(c) for c in new_children))
        found = self._interned.get(key)
        if found is None:
            found = self._interned[key] = (replace_children(node, new_children), node, new_children)
        return found[0]


def _folded_test(node: tuple, fact: object) -> tuple | None:
    """``==``/``in`` a string or ``defined`` of a path (``node``) given what is known of the
    path (an index.py fact), as a constant; None when the fact does not settle it (a test of
    a path that fails keeps its error)."""
    op = node[0]
    if fact is FAILS:
        return FALSE if op == DEFINED else None
    if op == DEFINED:
        return TRUE  # the path resolves here
    texts = (node[2],) if op == EQ_STR else node[2]
    if isinstance(fact, Unlike):
        if not fact.values.issuperset(texts):
            return None  # the path may hold one of the other texts
        holds = False  # the path holds none of them, or no string (equal to no string)
    else:
        holds = fact in texts
    return TRUE if holds != node[3] else FALSE


def fold_logic(node: tuple, folded: list[tuple], rebuild) -> tuple:
    """``and``/``or`` (``node``) with its items folded (``folded``), some constant: an item equal
    to the neutral value goes; the first one equal to the settling value ends the list (nothing
    after it is evaluated). ``rebuild(node, items)`` makes the node with fewer items."""
    settles = node[0] == OR  # the value that decides an `or` (True) or an `and` (False)
    items: list[tuple] = []
    for f in folded:
        if _is(f, not settles):
            continue
        items.append(f)
        if _is(f, settles):
            break
    if not items:
        return FALSE if settles else TRUE
    if _is(items[0], settles):
        return items[0]
    if len(items) == 1 and items[0][0] in _BOOLEAN:
        return items[0]
    if len(items) == len(folded) and all(f is k for f, k in zip(items, node[1])):
        return node
    return rebuild(node, items)


def _entry(rule: int, target: tuple | None, when: tuple | None, unless: tuple | None) -> tuple | None:
    """The leaf entry of folded clauses; None when the rule cannot apply there and no error
    could come first."""
    if target is not None:
        if _is(target, False):
            return None  # the target is false without an error: the rule never applies here
        if _is(target, True):
            target = None
    if when is not None:
        if _is(when, False) and target is None:
            return None
        if _is(when, True):
            when = None
    if unless is not None and _is(unless, False):
        unless = None
    if unless is not None and _is(unless, True) and target is None and when is None:
        return None  # proved not to apply, and nothing before the unless could fail
    return (rule, target, when, unless)
