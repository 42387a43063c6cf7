"""Atoms of rule conditions fixed by one request path: for the compiled evaluator's flat
evaluation of the boolean skeleton (pdp/runtime/_ceval.pyx, ``_Skeleton``).

A rule's target, ``when`` and ``unless`` are trees of and/or/not over atoms (comparisons,
memberships, globs, ``defined``, truth tests). An atom that reads one request path, and
otherwise only constants and data, has a value fixed by that path's value: the evaluator
keeps the values of all such atoms of one path per value met (``identity.env == "prod"``,
``identity.env in [...]``, ``identity.env matches "p*"`` share one look-up per request), so
a request on values met before costs a look-up per path instead of an evaluation per atom.
Atoms of two such paths (``context.env in identity.scopes``) are kept per pair of the two
paths' values the same way.
"""

from __future__ import annotations

from ..builtins import BUILTINS
from .cse import children
from .ir import AND, CACHED, CALL, COMPARE, DEFINED, EQ_STR, IN_STRS, MATCH_GLOB, NOT, NOW, OR, PATH, TOKEN_ROOT

#: Operators of the boolean skeleton; any other node is an atom.
LOGIC = (AND, OR, NOT)

#: Atoms worth keeping per path value: tests. A bare path or a constant costs less to read
#: again than a look-up.
_TESTS = (COMPARE, EQ_STR, IN_STRS, MATCH_GLOB, DEFINED, CALL)

#: A path's kept values pay from this many atoms on it (one costs about what a look-up does).
MIN_ATOMS = 2


def logic(node: tuple) -> tuple | None:
    """The and/or/not node ``node`` is (through a CACHED slot), or None for an atom."""
    inner = node[2] if node[0] == CACHED else node
    return inner if inner[0] in LOGIC else None


def request_path(atom: tuple) -> tuple | None:
    """The PATH node (or its CACHED slot) of the one request path ``atom`` reads, when nothing else it reads
    varies per request (no time, no token, no built-in that reads the clock); else None."""
    found = request_paths(atom, 1)
    return found[0] if found else None


def request_paths(atom: tuple, most: int) -> list[tuple] | None:
    """The PATH nodes (or their CACHED slots) of the request paths ``atom`` reads, in the order
    met, when they are at most ``most`` and nothing else it reads varies per request (as
    request_path); else None."""
    inner = atom[2] if atom[0] == CACHED else atom
    if inner[0] not in _TESTS:
        return None
    found: dict[tuple, tuple] = {}
    seen: set[int] = set()
    stack = [atom]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        op = node[0]
        if op == NOW or (op == CALL and BUILTINS[node[1]].reads_now):
            return None
        path = node[2] if op == CACHED and node[2][0] == PATH else node if op == PATH else None
        if path is not None:
            if path[1] == TOKEN_ROOT:  # verified per request, and may be absent
                return None
            # The path as the atom reads it: through its CACHED slot, shared with other readers.
            found.setdefault(path_key(path), node)
            if len(found) > most:
                return None
            continue
        stack.extend(reversed(children(node)))
    return list(found.values()) if found else None


def path_key(path: tuple) -> tuple:
    """``(root, keys)`` of a PATH node or its CACHED slot."""
    inner = path[2] if path[0] == CACHED else path
    return (inner[1], tuple(inner[2]))


def path_groups(atoms: list[tuple]) -> list[tuple[tuple, list[int]]]:
    """``(path node, indexes in atoms)`` for each request path read alone by at least
    MIN_ATOMS of ``atoms``, in the order of their first atom."""
    groups: dict[tuple, tuple[tuple, list[int]]] = {}
    for i, atom in enumerate(atoms):
        path = request_path(atom)
        if path is not None:
            groups.setdefault(path_key(path), (path, []))[1].append(i)
    return [g for g in groups.values() if len(g[1]) >= MIN_ATOMS]


def pair_groups(atoms: list[tuple], grouped: list[tuple]) -> list[tuple[int, int, list[int]]]:
    """``(first, second, indexes in atoms)`` for each two request paths read together by atoms
    of ``atoms`` (``context.env in identity.scopes``), both among the paths ``grouped`` (PATH
    nodes, read per request anyway), by their places there; in the order of their first atom.
    Their values' rows are known: the pair's values are kept per pair of rows."""
    place = {path_key(p): i for i, p in enumerate(grouped)}
    pairs: dict[tuple[int, int], list[int]] = {}
    for i, atom in enumerate(atoms):
        found = request_paths(atom, 2)
        if found is not None and len(found) == 2:
            a, b = place.get(path_key(found[0])), place.get(path_key(found[1]))
            if a is not None and b is not None:  # (either order: the rows make the key)
                pairs.setdefault((min(a, b), max(a, b)), []).append(i)
    return [(a, b, members) for (a, b), members in pairs.items()]
