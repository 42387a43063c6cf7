"""Common sub-expressions: interned nodes one request can reach more than once ⇒ wrapped in a
CACHED slot.

After lowering, equal sub-expressions (and each ``let``) are one node object. A node used by
two parents, two rules, or a rule and the index on the way to one leaf is evaluated once per
request and kept; a node shared by rules that never meet in one request (the same condition
in policies on different resource types) is not cached: keeping it would cost more than it
saves.
"""

from __future__ import annotations

from .ir import ATTR, CACHED, CALL, CIDR, COMPARE, CONST, DEFINED, EQ_STR, ERROR, IN_STRS, INDEX, LIST, \
    LOOKUP, MATCH_GLOB, NOT, NOW, AND, OR, PATH

#: Opcodes cheaper to recompute than to cache.
_NEVER_CACHED = (CONST, CIDR, ERROR, NOW)


def _uses_worth_a_slot(node: tuple) -> int:
    """Per-request uses from which caching ``node`` pays: a one-key path (one dict look-up,
    about what a slot costs to fill) from three, anything else from two (callgrind)."""
    return 3 if node[0] == PATH and len(node[2]) == 1 else 2


def children(node: tuple) -> list[tuple]:
    """The child nodes of a node, in evaluation order."""
    op = node[0]
    if op in (ATTR, NOT, DEFINED, EQ_STR, IN_STRS, MATCH_GLOB):
        return [node[1]]
    if op == INDEX:
        return [node[1], node[2]]
    if op in (LIST, AND, OR):
        return list(node[1])
    if op == COMPARE:
        return [node[2], node[3]]
    if op == CALL:
        return list(node[2])
    if op == CACHED:
        return [node[2]]
    if op == LOOKUP:
        return [node[1], *node[2].values(), node[3]]
    return []


def replace_children(node: tuple, new: list[tuple]) -> tuple:
    op = node[0]
    if op in (ATTR, NOT, DEFINED, EQ_STR, IN_STRS, MATCH_GLOB):
        return (op, new[0]) + node[2:]
    if op == INDEX:
        return (op, new[0], new[1], node[3])
    if op in (LIST, AND, OR):
        return (op, tuple(new))
    if op == COMPARE:
        return (op, node[1], new[0], new[1])
    if op == CALL:
        return (op, node[1], tuple(new))
    if op == CACHED:
        return (op, node[1], new[0])
    if op == LOOKUP:
        return (op, new[0], dict(zip(node[2], new[1:-1])), new[-1])
    return node


def count_uses(roots: list[tuple], follow=None) -> dict[int, int]:
    """How many times each node (by id) would be evaluated from ``roots`` if every node used
    more than once were cached: once per parent that uses it, a parent counted once.
    Constants and paths, which are never cached, are left out; with ``follow``, so are the
    nodes it refuses (and what is only under them)."""
    uses: dict[int, int] = {}
    stack = [r for r in roots if r[0] not in _NEVER_CACHED]
    while stack:
        node = stack.pop()
        key = id(node)
        if key in uses:
            uses[key] += 1
        else:
            uses[key] = 1
            stack.extend(k for k in children(node) if k[0] not in _NEVER_CACHED and (follow is None or follow(k)))
    return uses


def per_request_uses(trees: list[list[list[tuple]]]) -> dict[int, int]:
    """The most times one request can evaluate each node (by id), given for each tree (the
    forbid and the permit phase) the roots each of its leaves evaluates: a request walks one
    leaf of each tree, so it is the most uses in one leaf of the first plus in one of the
    second. Only what can reach two matters, so leaves are only walked where it can: below a
    node that has two parents, or appears twice, somewhere in the tree (most nodes have one
    parent, and many leaves repeat the same rules: counting every leaf in full cost seconds on
    large sets)."""
    uses: dict[int, int] = {}
    for leaves in trees:
        unique: dict[int, tuple] = {}
        repeated: set[int] = set()
        for roots in leaves:
            seen: set[int] = set()
            for r in roots:
                if id(r) in seen:
                    repeated.add(id(r))
                seen.add(id(r))
                unique[id(r)] = r
        overall = count_uses(list(unique.values()))  # each distinct root once
        shared = {k for k, n in overall.items() if n >= 2} | repeated
        leads: dict[int, bool] = {}  # node id -> some node under it (itself included) is shared

        def leads_to_shared(node: tuple) -> bool:
            key = id(node)
            found = leads.get(key)
            if found is None:
                found = key in shared or any(leads_to_shared(k) for k in children(node))
                leads[key] = found
            return found

        most: dict[int, int] = {}
        for roots in leaves:
            for key, n in count_uses([r for r in roots if leads_to_shared(r)], leads_to_shared).items():
                if key in shared and n > most.get(key, 0):
                    most[key] = n
        for key in overall:  # reached in this tree: at least once in some leaf
            uses[key] = uses.get(key, 0) + most.get(key, 1)
    return uses


class CommonSubexpressions:
    """Rebuild nodes with those evaluated more than once per request wrapped in CACHED slots;
    ``uses``: the most times one request can evaluate each node (by id)."""

    def __init__(self, uses: dict[int, int]) -> None:
        self.uses = uses
        self._rebuilt: dict[int, tuple] = {}
        self.slots = 0

    def rebuild(self, node: tuple) -> tuple:
        key = id(node)
        done = self._rebuilt.get(key)
        if done is not None:
            return done
        kids = children(node)
        new = replace_children(node, [self.rebuild(k) for k in kids]) if kids else node
        if node[0] not in _NEVER_CACHED and self.uses.get(key, 0) >= _uses_worth_a_slot(node):
            new = (CACHED, self.slots, new)
            self.slots += 1
        self._rebuilt[key] = new
        return new
