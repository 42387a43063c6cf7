"""Tabulating: sub-expressions that read the request only as keys into constant data (a table
of ``data`` indexed by a request attribute) ⇒ their value for every key, computed at load.

``cidr(data.networks.environments[identity.env])`` parsed its networks on every request;
``defined(data.identities[identity.id].networks)`` made three look-ups. A node qualifies when
every request path it reads is the key of an index into a constant map (directly, or once an
outer key is known: ``data.api[resource.type][action.name]``), it does not read the time, and
is not a constant already. The largest such node becomes ``(LOOKUP, path, cases, default)``:
``cases`` maps each key of the tables ``path`` indexes to the node with ``path`` known to hold
that key, folded (to a constant or an error, or to a node to tabulate on the next key);
``default`` is the node unchanged, evaluated as before when the attribute holds anything else
or cannot be read (so it meets its error where it always did).

Folding evaluates a node only when all its operands are constants, with the shared evaluator
(``pyeval.constant_value``), so values and error messages are those of run time by
construction; ``and``/``or`` with constant items fold as in ``specialize``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..builtins import BUILTINS
from ..errors import EvalError
from ..values import CidrSet
from .cse import children, replace_children
from .ir import AND, CALL, CIDR, COMPARE, CONST, ERROR, INDEX, LOOKUP, NOW, OR, PATH
from .lower import ConstKeys, specialized_compare
from .specialize import fold_logic

#: Tables with more keys are looked up at run time: their rows would make loads and bundles
#: grow with the data rather than with the policies.
MAX_KEYS = 4096

_GROUND = (CONST, CIDR, ERROR)


@dataclass(frozen=True)
class _Reads:
    """What a node reads of the request: path ids, the path ids used as index keys, whether it
    reads the time, and the first path (in evaluation order) that indexes a constant map."""
    paths: frozenset
    keys: frozenset
    timed: bool
    table_key: tuple | None


_NOTHING = _Reads(frozenset(), frozenset(), False, None)


class Tabulator:
    def __init__(self) -> None:
        self._reads: dict[int, tuple[tuple, _Reads]] = {}
        self._done: dict[int, tuple[tuple, tuple]] = {}  # id ⇒ (node, rewritten): keeps ids unique
        self._grounds: dict[tuple, tuple] = {}
        self._const_keys = ConstKeys()

    def rewrite(self, node: tuple | None) -> tuple | None:
        """``node`` with its largest qualifying sub-expressions tabulated."""
        if node is None:
            return None
        found = self._done.get(id(node))
        if found is not None:
            return found[1]
        new = self._tabulated(node) if self._qualifies(node) else None
        if new is None:
            kids = children(node)
            rewritten = [self.rewrite(k) for k in kids]
            new = node if all(a is b for a, b in zip(rewritten, kids)) else replace_children(node, rewritten)
        self._done[id(node)] = (node, new)
        return new

    # ---- what qualifies ----

    def reads(self, node: tuple) -> _Reads:
        found = self._reads.get(id(node))
        if found is not None:
            return found[1]
        op = node[0]
        if op == PATH:
            reads = _Reads(frozenset((id(node),)), frozenset(), False, None)
        elif op == NOW:
            reads = _Reads(frozenset(), frozenset(), True, None)
        else:
            kids = [self.reads(k) for k in children(node)]
            paths = frozenset().union(*(k.paths for k in kids))
            keys = frozenset().union(*(k.keys for k in kids))
            timed = any(k.timed for k in kids) or (op == CALL and BUILTINS[node[1]].reads_now)
            table_key = next((k.table_key for k in kids if k.table_key is not None), None)
            if op == INDEX and node[2][0] == PATH:
                keys |= {id(node[2])}
                if node[1][0] == CONST and isinstance(node[1][1], dict) and kids[0].table_key is None:
                    table_key = node[2]
            reads = _NOTHING if not kids else _Reads(paths, keys, timed, table_key)
        self._reads[id(node)] = (node, reads)
        return reads

    def _qualifies(self, node: tuple) -> bool:
        if node[0] in _GROUND or node[0] in (PATH, NOW):
            return False
        reads = self.reads(node)
        return bool(reads.paths) and reads.table_key is not None and not reads.timed and reads.paths <= reads.keys

    # ---- tabulating ----

    def _tabulated(self, node: tuple) -> tuple | None:
        path = self.reads(node).table_key
        keys: dict[str, None] = {}
        for table in self._tables(node, path, {}):
            keys.update(dict.fromkeys(table))
            if len(keys) > MAX_KEYS:
                return None
        cases = {}
        for key in keys:
            folded = self._fold(node, path, key, {})
            cases[key] = folded if folded[0] in _GROUND else self.rewrite(folded)
        return (LOOKUP, path, cases, node)

    def case(self, lookup: tuple, key: str) -> tuple:
        """The node a LOOKUP stands for where its key path holds ``key`` (one of its cases or
        not): its ``default`` folded with the path known, as its cases are made."""
        folded = self._fold(lookup[3], lookup[1], key, {})
        return folded if folded[0] in _GROUND else self.rewrite(folded)

    def evaluated(self, node: tuple) -> tuple:
        """``node``, whose operands are constants, as the constant (or error) it gives."""
        return self._evaluated(node)

    def _tables(self, node: tuple, path: tuple, seen: dict):
        """The constant maps that ``path`` indexes under ``node``."""
        if id(node) in seen:
            return
        seen[id(node)] = node
        if node[0] == INDEX and node[2] is path and node[1][0] == CONST and isinstance(node[1][1], dict):
            yield node[1][1]
        for k in children(node):
            yield from self._tables(k, path, seen)

    def _fold(self, node: tuple, path: tuple, key: str, memo: dict) -> tuple:
        """``node`` with ``path`` known to hold ``key``, folded where its operands are constant."""
        if node is path:
            return self._ground(key)
        done = memo.get(id(node))
        if done is not None:
            return done
        kids = children(node)
        folded = [self._fold(k, path, key, memo) for k in kids]
        if all(a is b for a, b in zip(folded, kids)):
            new = node
        elif node[0] in (AND, OR):
            new = fold_logic(node, folded, lambda n, items: replace_children(n, items))
        else:
            new = replace_children(node, folded)
            if all(f[0] in _GROUND for f in folded):
                new = self._evaluated(new)
            elif new[0] == COMPARE:  # an operand now constant: the operator the lowering would make
                new = specialized_compare(new[1], new[2], new[3]) or new
        memo[id(node)] = new
        return new

    def _evaluated(self, node: tuple) -> tuple:
        from ..runtime.pyeval import constant_value  # the runtime imports the compiler's IR

        try:
            value = constant_value(node)
        except EvalError as err:
            return self._intern((ERROR, err.message), (ERROR, err.message))
        if isinstance(value, CidrSet):
            texts = tuple(value.strings())
            return self._intern((CIDR, texts), (CIDR, texts))
        if not _plain(value):
            return node  # a list holding a cidr set: kept as it is
        return self._ground(value)

    def _ground(self, value: object) -> tuple:
        return self._intern((CONST, self._const_keys(value)), (CONST, value))

    def _intern(self, key: tuple, node: tuple) -> tuple:
        return self._grounds.setdefault(key, node)


def _plain(value: object) -> bool:
    """A JSON value (what a CONST node holds)."""
    if isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, list):
        return all(map(_plain, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
