"""Checking a Program's structure: everything an evaluator assumes of the program it links.

The evaluators link a program without checking each field as they go (the compiled one reads
node tuples in C, without bounds checks), so every program is checked here, once, before
it is linked: a malformed one (a bundle cut short, a bug in another writer, a Program made
by hand) is a ``PolicyError`` saying what is wrong, never a crash. The node shapes are
``ir.SHAPES``; the trees are those of ``compile.index`` after ``specialize``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..builtins import BUILTINS, cidr_set
from ..errors import Diagnostic, EvalError, PolicyError
from ..glob import glob_error
from ..limits.store import MAX_LIMIT_PERIOD
from ..operators import OPERATORS
from .ir import CACHED, NAMES, PATH, REQUIRED_PATHS, ROOTS, SHAPES
from .program import LimitCode, Program, RuleCode

#: Nodes nested deeper than this are refused: evaluation recurses once per level (in C, on
#: the thread's stack), and no policy source compiles to anything near it.
MAX_NODE_DEPTH = 5_000
#: Decision trees deeper than this are refused (``compile.index`` builds at most 6 levels).
MAX_TREE_DEPTH = 64
_EFFECTS = ("permit", "forbid")


class _Invalid(Exception):
    pass


def verify(program: object, name: str = "<program>") -> None:
    """Raise ``PolicyError`` (code ``program_error``, file ``name``) unless ``program`` is a
    well-formed Program: one that every evaluator can link and run."""
    try:
        _Verifier(program).run()
    except _Invalid as bad:
        raise PolicyError(Diagnostic(name, 0, 0, f"invalid program: {bad}", "program_error")) from None


def _cannot_fail(node: tuple) -> bool:
    """A path every valid request has (SPEC §3), perhaps kept in a CACHED slot."""
    while node[0] == CACHED:
        node = node[2]
    return node[0] == PATH and (node[1], node[2]) in REQUIRED_PATHS


def _shown(x: object) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(x: object) -> str:
    return type(x).__name__


class _Verifier:
    def __init__(self, program: object) -> None:
        if not isinstance(program, Program):
            raise _Invalid(f"expected a pdp Program, got {_kind(program)}")
        self.program = program
        self.depth: dict[int, int] = {}  # checked nodes (by id) => their depth
        self.slots: dict[int, int] = {}  # CACHED slot => the id of the one node that fills it
        self.trees: set[tuple[int, str]] = set()
        self.entries: dict[str, set[int]] = {effect: set() for effect in _EFFECTS}  # checked, by id
        self.values: set[int] = set()  # checked JSON containers, by id

    def run(self) -> None:
        p = self.program
        if type(p.revision) is not str:
            raise _Invalid(f"revision must be a string, got {_kind(p.revision)}")
        if type(p.policies) is not tuple or any(type(n) is not str for n in p.policies):
            raise _Invalid("policies must be a tuple of names")
        if type(p.slots) is not int or p.slots < 0:
            raise _Invalid(f"slots must be a count, got {_shown(p.slots)}")
        if type(p.rules) is not tuple:
            raise _Invalid(f"rules must be a tuple, got {_kind(p.rules)}")
        for i, rule in enumerate(p.rules):
            self.rule(i, rule)
        self.tree(p.forbid_tree, "forbid", 0)
        self.tree(p.permit_tree, "permit", 0)
        if type(p.limits) is not tuple:
            raise _Invalid(f"limits must be a tuple, got {_kind(p.limits)}")
        for i, limit in enumerate(p.limits):
            self.limit(i, limit)

    # -- rules and trees --

    def rule(self, i: int, rule: object) -> None:
        if not isinstance(rule, RuleCode):
            raise _Invalid(f"rule {i} must be a RuleCode, got {_kind(rule)}")
        where = f"rule {i}"
        if type(rule.id) is not str:
            raise _Invalid(f"{where}: the id must be a string, got {_kind(rule.id)}")
        where = f"rule {rule.id!r}"
        if rule.effect not in _EFFECTS:
            raise _Invalid(f"{where}: the effect must be permit or forbid, got {_shown(rule.effect)}")
        if type(rule.policy) is not int or not 0 <= rule.policy < len(self.program.policies):
            raise _Invalid(f"{where}: policy {_shown(rule.policy)} out of range")
        if not isinstance(rule.annotations, Mapping) or any(
                type(k) is not str or type(v) is not str for k, v in rule.annotations.items()):
            raise _Invalid(f"{where}: annotations must map strings to strings")
        if rule.reason is not None:
            if type(rule.reason) is not tuple:
                raise _Invalid(f"{where}: the reason must be a tuple of parts, got {_kind(rule.reason)}")
            for part in rule.reason:
                if type(part) is not str:
                    try:
                        self.node(part)
                    except _Invalid as bad:
                        raise _Invalid(f"{where}, reason: {bad}") from None

    def limit(self, i: int, limit: object) -> None:
        if not isinstance(limit, LimitCode):
            raise _Invalid(f"limit {i} must be a LimitCode, got {_kind(limit)}")
        if type(limit.id) is not str or type(limit.message) is not str:
            raise _Invalid(f"limit {i}: the id and the message must be strings")
        where = f"limit {limit.id!r}"
        if type(limit.policy) is not int or not 0 <= limit.policy < len(self.program.policies):
            raise _Invalid(f"{where}: policy {_shown(limit.policy)} out of range")
        if type(limit.count) is not int or limit.count < 1:
            raise _Invalid(f"{where}: the budget must be a whole number of at least 1, got {_shown(limit.count)}")
        if type(limit.period) not in (int, float) or not (math.isfinite(limit.period) and limit.period > 0):
            raise _Invalid(f"{where}: the period must be a positive number of seconds, got {_shown(limit.period)}")
        if limit.period > MAX_LIMIT_PERIOD:
            raise _Invalid(f"{where}: the period is longer than 36500d")
        if limit.count > round(limit.period * 1_000_000):
            raise _Invalid(f"{where}: the budget is more than one request per microsecond of the period")
        if not isinstance(limit.annotations, Mapping) or any(
                type(k) is not str or type(v) is not str for k, v in limit.annotations.items()):
            raise _Invalid(f"{where}: annotations must map strings to strings")
        if type(limit.keys) is not tuple or not limit.keys:
            raise _Invalid(f"{where}: the keys must be a non-empty tuple of nodes")
        for name, clause in (("target", limit.target), ("when", limit.when), ("unless", limit.unless),
                             *(("key", k) for k in limit.keys)):
            if clause is not None or name == "key":
                try:
                    self.node(clause)
                except _Invalid as bad:
                    raise _Invalid(f"{where}, {name}: {bad}") from None

    def tree(self, tree: object, effect: str, depth: int) -> None:
        if (id(tree), effect) in self.trees:
            return
        if depth > MAX_TREE_DEPTH:
            raise _Invalid(f"{effect} tree: deeper than {MAX_TREE_DEPTH} levels")
        if type(tree) is not tuple or not tree or tree[0] not in ("leaf", "switch"):
            raise _Invalid(f"{effect} tree, level {depth}: expected a ('leaf', ...) or ('switch', ...) tuple, "
                           f"got {_shown(tree)}")
        if tree[0] == "leaf":
            if len(tree) != 2 or type(tree[1]) is not tuple:
                raise _Invalid(f"{effect} tree, level {depth}: a leaf is ('leaf', entries), got {_shown(tree)}")
            for entry in tree[1]:
                self.entry(entry, effect, depth)
        else:
            where = f"{effect} tree, level {depth}"
            if len(tree) != 5:
                raise _Invalid(f"{where}: a switch is ('switch', path, branches, default, error), got {_shown(tree)}")
            _, path, branches, default, error = tree
            try:
                self.node(path)
            except _Invalid as bad:
                raise _Invalid(f"{where}, switch: {bad}") from None
            if not isinstance(branches, dict) or any(type(k) is not str for k in branches):
                raise _Invalid(f"{where}: branches must map strings to trees, got {_shown(branches)}")
            for sub in branches.values():
                self.tree(sub, effect, depth + 1)
            self.tree(default, effect, depth + 1)
            if error is not None:
                self.tree(error, effect, depth + 1)
            elif not _cannot_fail(path):
                raise _Invalid(f"{where}: a switch on a path that may fail to resolve needs an error branch")
        self.trees.add((id(tree), effect))

    def entry(self, entry: object, effect: str, depth: int) -> None:
        entries = self.entries[effect]
        if id(entry) in entries:
            return
        if type(entry) is not tuple or len(entry) != 4:
            raise _Invalid(f"{effect} tree, level {depth}: a leaf entry is (rule, target, when, unless), "
                           f"got {_shown(entry)}")
        rule = entry[0]
        if type(rule) is not int or not 0 <= rule < len(self.program.rules):
            raise _Invalid(f"{effect} tree, level {depth}: rule {_shown(rule)} out of range")
        code = self.program.rules[rule]
        if code.effect != effect:
            raise _Invalid(f"{effect} tree, level {depth}: rule {code.id!r} is a {code.effect}, in the {effect} tree")
        checked = self.depth
        for clause in entry[1:]:
            if clause is not None and id(clause) not in checked:
                try:
                    self.node(clause)
                except _Invalid as bad:
                    name = ("target", "when", "unless")[entry.index(clause) - 1]
                    raise _Invalid(f"{effect} tree, level {depth}, rule {code.id!r}, {name}: {bad}") from None
        entries.add(id(entry))

    # -- nodes --

    def node(self, root: object) -> None:
        """Check ``root`` and every node under it (each once), iteratively: depth, shape, cycles."""
        if id(root) in self.depth:
            return
        stack: list[tuple[object, bool]] = [(root, False)]
        open_: set[int] = set()  # nodes whose children are being checked: a cycle comes back to one
        kids_of: dict[int, list] = {}
        while stack:
            node, finished = stack.pop()
            key = id(node)
            if finished:
                open_.discard(key)
                depth = 1 + max((self.depth[id(k)] for k in kids_of.pop(key)), default=0)
                if depth > MAX_NODE_DEPTH:
                    raise _Invalid(f"nodes nested deeper than {MAX_NODE_DEPTH} levels")
                self.depth[key] = depth
                continue
            if key in self.depth:
                continue
            if key in open_:
                raise _Invalid("a node contains itself")
            kids = self.shape(node)
            open_.add(key)
            kids_of[key] = kids
            stack.append((node, True))
            stack.extend((k, False) for k in kids)

    def shape(self, node: object) -> list:
        """Check one node's own fields against ``ir.SHAPES``; return its child nodes."""
        if type(node) is not tuple or not node:
            raise _Invalid(f"a node must be a non-empty tuple, got {_shown(node)}")
        op = node[0]
        if type(op) is not int or op not in SHAPES:
            raise _Invalid(f"unknown opcode {_shown(op)}")
        kinds = SHAPES[op]
        name = NAMES[op]
        if len(node) != len(kinds) + 1:
            raise _Invalid(f"a {name} node has {len(kinds)} field{'s' if len(kinds) != 1 else ''}, got "
                           f"{len(node) - 1}: {_shown(node)}")
        kids: list = []
        for kind, field in zip(kinds, node[1:]):
            problem = self.field(kind, field, kids)
            if problem:
                raise _Invalid(f"a {name} node's {kind} field {problem}: {_shown(node)}")
        if name == "PATH" and len(node[3]) != len(node[2]) + 1:
            raise _Invalid(f"a PATH node needs one text more than keys: {_shown(node)}")
        if name == "CALL":
            builtin = BUILTINS[node[1]]
            n = len(node[2])
            if n < builtin.min_args or (builtin.max_args is not None and n > builtin.max_args):
                raise _Invalid(f"{node[1]} takes {builtin.arity_text()}, got {n}: {_shown(node)}")
        if name == "CACHED" and self.slots.setdefault(node[1], id(node)) != id(node):
            raise _Invalid(f"two different nodes share CACHED slot {node[1]}")
        return kids

    def field(self, kind: str, x: object, kids: list) -> str | None:
        """What is wrong with field ``x`` of kind ``kind`` (None: nothing); child nodes go to ``kids``."""
        if kind == "node":
            kids.append(x)
        elif kind in ("nodes", "args"):
            if type(x) is not tuple:
                return f"must be a tuple of nodes, got {_kind(x)}"
            kids.extend(x)
        elif kind == "node_map":
            if not isinstance(x, dict) or any(type(k) is not str for k in x):
                return "must map strings to nodes"
            kids.extend(x.values())
        elif kind in ("str", "glob"):
            if type(x) is not str:
                return f"must be a string, got {_kind(x)}"
            if kind == "glob" and glob_error(x) is not None:
                return f"is not a valid glob ({glob_error(x)})"
        elif kind in ("strs", "path_keys", "path_texts", "networks"):
            if type(x) is not tuple or any(type(s) is not str for s in x):
                return "must be a tuple of strings"
            if kind == "networks":
                try:
                    cidr_set(x)
                except EvalError as err:
                    return f"is not a list of networks ({err.message})"
        elif kind == "bool":
            if type(x) is not bool:
                return f"must be true or false, got {_kind(x)}"
        elif kind == "root":
            if x not in ROOTS or type(x) is not str:
                return f"must be one of {', '.join(ROOTS)}"
        elif kind == "operator":
            if type(x) is not str or x not in OPERATORS:
                return "is not an operator"
        elif kind == "builtin":
            if type(x) is not str or x not in BUILTINS or BUILTINS[x].impl is None:
                return "is not a built-in function"
        elif kind == "slot":
            if type(x) is not int or not 0 <= x < self.program.slots:
                return f"is not a slot below {self.program.slots}"
        elif kind == "value":
            return self.json_value(x)
        else:  # pragma: no cover - a kind ir.SHAPES uses and this does not know
            raise AssertionError(f"unknown field kind {kind}")
        return None

    def json_value(self, value: object) -> str | None:
        stack = [value]
        while stack:
            x = stack.pop()
            t = type(x)
            if t is str or t is bool or t is int:
                continue
            if t is float:
                if not math.isfinite(x):  # type: ignore[arg-type]
                    return "holds a number that is not finite"
                continue
            if t is not list and t is not dict:
                return f"holds {t.__name__}, which is not a JSON value"
            if id(x) in self.values:
                continue
            self.values.add(id(x))
            if t is dict:
                if any(type(k) is not str for k in x):  # type: ignore[union-attr]
                    return "holds a map with a key that is not a string"
                stack.extend(x.values())  # type: ignore[union-attr]
            else:
                stack.extend(x)  # type: ignore[arg-type]
        return None
