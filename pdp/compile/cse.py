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
    MATCH_GLOB, NOT, NOW, AND, OR, PATH

#: Opcodes cheaper to recompute than to cache: constants, and attribute paths (a couple of
#: dict look-ups cost less than the cache's own look-up and insert; measured with callgrind).
_NEVER_CACHED = (CONST, CIDR, ERROR, NOW, PATH)


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
    return node


def count_uses(roots: list[tuple]) -> dict[int, int]:
    """How many times each node (by id) would be evaluated from ``roots`` if every node used
    more than once were cached: once per parent that uses it, a parent counted once."""
    uses: dict[int, int] = {}
    stack = list(roots)
    while stack:
        node = stack.pop()
        key = id(node)
        seen = key in uses
        uses[key] = uses.get(key, 0) + 1
        if not seen:
            stack.extend(children(node))
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
        if self.uses.get(key, 0) >= 2 and node[0] not in _NEVER_CACHED:
            new = (CACHED, self.slots, new)
            self.slots += 1
        self._rebuilt[key] = new
        return new
