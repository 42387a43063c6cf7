"""Splitting leaves on the keys of their tables: a leaf whose rules look up data by the same
request attribute (``data.identities[identity.id]`` in several controls) becomes a switch on
that attribute, each branch with the lookups folded to the key's row.

``(LOOKUP, path, cases, default)`` (``tabulate.py``) is ``cases[v]`` when ``path`` holds a
string ``v`` among the keys of ``cases``, else the value of ``default``. So below a branch taken
for the string ``v`` it is the node the tabulator makes for ``v`` (its case, or ``default``
folded with ``path`` known to hold ``v``), and below a default or error branch (another
string, no string, or no value), where ``v`` is none of its keys, it is ``default``. The same
holds under the index's switches (``index.py`` facts). Each clause is thus replaced by one that
gives the same value or error in every request reaching the leaf; constants are folded into
``and``/``or``/``not`` and operators of constants evaluated, so a rule whose clause folds to
false (or whose ``unless`` folds to true) leaves the branch (``specialize._entry``). The rules
keep their order: reasons and errors come out as before.

Tree shapes are those of ``index.py`` after specializing (leaves ``("leaf", entries)``); a new
switch's error branch is its default leaf (``None`` on paths every request has).
"""

from __future__ import annotations

from ..builtins import BUILTINS
from .cse import children, replace_children
from .index import FAILS, Unlike
from .lower import specialized_compare
from .ir import AND, CALL, CIDR, COMPARE, CONST, ERROR, LOOKUP, NOT, OR, REQUIRED_PATHS
from .specialize import FALSE, TRUE, _entry, fold_logic
from .tabulate import Tabulator

#: Leaves with fewer rules looking up the same attribute stay as they are.
MIN_RULES = 2
#: Attributes with more keys are not split on (a branch per identity of a large inventory
#: would make the tree grow with the data); nor deeper than this.
MAX_KEYS = 256
MAX_DEPTH = 3
#: Leaves the splits of one tree may add in all: beyond, leaves stay as they are.
MAX_NEW_LEAVES = 2048

_GROUND = (CONST, CIDR, ERROR)


class Splitter:
    def __init__(self, tabulator: Tabulator) -> None:
        self.tabulator = tabulator
        self._keys: dict[int, dict[int, tuple]] = {}
        self._cases: dict[tuple[int, str], tuple] = {}
        self._budget = 0

    def tree(self, tree: tuple, known: dict | None = None) -> tuple:
        """``tree`` with the lookups its switches settle folded, and its leaves split."""
        if known is None:
            known, self._budget = {}, MAX_NEW_LEAVES
        if tree[0] == "leaf":
            return self.leaf(tree[1], known, 0)
        _, path, branches, default, error = tree
        values = frozenset(branches)
        return ("switch", path,
                {k: self.tree(v, {**known, id(path): k}) for k, v in branches.items()},
                self.tree(default, {**known, id(path): Unlike(values)}),
                None if error is None else self.tree(error, {**known, id(path): FAILS}))

    def leaf(self, entries: tuple, known: dict, depth: int) -> tuple:
        if known:
            entries = self._settled(entries, known)
        if depth >= MAX_DEPTH:
            return ("leaf", entries)
        path = self._best_path(entries)
        if path is None:
            return ("leaf", entries)
        keys: dict[str, None] = {}
        for lookup in self._lookups_on(entries, path):
            keys.update(dict.fromkeys(lookup[2]))
        if len(keys) > MAX_KEYS or len(keys) > self._budget:
            return ("leaf", entries)
        self._budget -= len(keys)  # a leaf per key, the default replacing this one
        branches = {k: self.leaf(entries, {id(path): k}, depth + 1) for k in sorted(keys)}
        default = self.leaf(entries, {id(path): FAILS}, depth + 1)  # every lookup gives its default
        required = (path[1], path[2]) in REQUIRED_PATHS
        return ("switch", path, branches, default, None if required else default)

    # ---- which attribute ----

    def _lookup_keys(self, node: tuple) -> dict[int, tuple]:
        """The key paths (by id) of the lookups ``node`` evaluates first-hand (not those inside
        another lookup's rows, which only a split on its key brings up)."""
        found = self._keys.get(id(node))
        if found is None:
            if node[0] == LOOKUP:
                found = {id(node[1]): node[1]}
            else:
                found = {}
                for k in children(node):
                    found.update(self._lookup_keys(k))
            self._keys[id(node)] = found
        return found

    def _best_path(self, entries: tuple) -> tuple | None:
        counts: dict[int, int] = {}
        first: dict[int, tuple] = {}
        for _, *clauses in entries:
            paths: dict[int, tuple] = {}
            for c in clauses:
                if c is not None:
                    paths.update(self._lookup_keys(c))
            for key, path in paths.items():
                counts[key] = counts.get(key, 0) + 1
                first.setdefault(key, path)
        if not counts or max(counts.values()) < MIN_RULES:
            return None
        return first[max(first, key=lambda k: counts[k])]  # max keeps the first of equals

    def _lookups_on(self, entries: tuple, path: tuple):
        seen: set[int] = set()
        stack = [c for _, *clauses in entries for c in clauses if c is not None]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node[0] == LOOKUP:
                if node[1] is path:
                    yield node
                continue
            stack.extend(children(node))

    # ---- folding what is known ----

    def _settled(self, entries: tuple, known: dict) -> tuple:
        memo: dict[int, tuple] = {}
        out = []
        for entry in entries:
            rule, *clauses = entry
            folded = [None if c is None else self._fold(c, known, memo) for c in clauses]
            if all(f is c for f, c in zip(folded, clauses)):
                out.append(entry)  # unchanged: shared with the other leaves
                continue
            new = _entry(rule, *folded)
            if new is not None:
                out.append(new)
        return tuple(out)

    def _fold(self, node: tuple, known: dict, memo: dict) -> tuple:
        done = memo.get(id(node))
        if done is not None:
            return done
        op = node[0]
        if op == LOOKUP and id(node[1]) in known:
            done = self._case(node, known[id(node[1])])
        elif op == LOOKUP or not self._lookup_keys(node).keys() & known.keys():
            done = node  # nothing settled below (rows of other lookups hold no settled key)
        else:
            kids = children(node)
            folded = [self._fold(k, known, memo) for k in kids]
            if all(f is k for f, k in zip(folded, kids)):
                done = node
            elif op in (AND, OR):
                done = fold_logic(node, folded, lambda n, items: replace_children(n, items))
            elif op == NOT and folded[0][0] == CONST and isinstance(folded[0][1], bool):
                done = FALSE if folded[0][1] else TRUE
            else:
                done = replace_children(node, folded)
                if all(f[0] in _GROUND for f in folded) and not (op == CALL and BUILTINS[node[1]].reads_now):
                    done = self.tabulator.evaluated(done)
                elif op == COMPARE:  # an operand now constant: the operator the lowering would make
                    done = specialized_compare(done[1], done[2], done[3]) or done
        memo[id(node)] = done
        return done

    def _case(self, lookup: tuple, fact: object) -> tuple:
        """The node ``lookup`` is where its key is known by ``fact``."""
        if isinstance(fact, str):
            key = (id(lookup), fact)
            found = self._cases.get(key)
            if found is None:
                found = self._cases[key] = lookup[2].get(fact) or self.tabulator.case(lookup, fact)
            return found
        if fact is FAILS or (isinstance(fact, Unlike) and fact.values.issuperset(lookup[2])):
            return lookup[3]
        return lookup  # another string may be among its keys

