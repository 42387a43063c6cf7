"""The compiled program: plain data that both evaluators accept, and its bundle encoding.

A bundle is msgpack: a header (format name and version, pdp version, revision) and the
program with its expression DAG flattened into a node table, children by index, so shared
nodes stay shared and nothing needs parsing on start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import msgpack

from .. import __version__
from ..errors import Diagnostic, PolicyError
from ..loader import Source
from .cse import children, replace_children
from .ir import AND, CALL, CIDR, IN_STRS, LIST, LOOKUP, OR, PATH

BUNDLE_FORMAT = "pdp-bundle"
BUNDLE_VERSION = 4  # 2: leaves carry their specialized clauses; rules only reasons. 3: LOOKUP nodes. 4: limits


@dataclass(frozen=True)
class RuleCode:
    id: str
    effect: str  # "permit" | "forbid"
    policy: int  # index into Program.policies
    reason: tuple | None  # parts: str or node
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class LimitCode:
    """A limit rule (SPEC §9): which requests meet it (its policy's target, ``when``, ``unless``)
    and the key nodes whose values name a budget of ``count`` units per ``period`` seconds."""

    id: str
    policy: int  # index into Program.policies
    count: int
    period: float
    message: str  # the reason of a denial for want of a unit
    annotations: Mapping[str, str]
    target: tuple | None
    when: tuple | None
    unless: tuple | None
    keys: tuple  # nodes


@dataclass(frozen=True)
class Program:
    """Everything an evaluator needs; immutable, plain data.

    The trees (``compile.index``) end in leaves ``("leaf", entries)``; an entry is ``(rule,
    target, when, unless)``: an index into ``rules`` and the nodes to evaluate for that rule
    in that leaf (``compile.specialize``).
    """

    revision: str
    policies: tuple[str, ...]  # names
    rules: tuple[RuleCode, ...]  # in source order
    forbid_tree: tuple
    permit_tree: tuple
    slots: int  # CACHED slots
    limits: tuple[LimitCode, ...] = ()  # in source order; evaluated only for requests that are ALLOW


# ---- bundles ---------------------------------------------------------------------------------


class _NodeTable:
    def __init__(self) -> None:
        self.rows: list = []
        self.index: dict[int, int] = {}

    def ref(self, node: tuple | None) -> int:
        if node is None:
            return -1
        key = id(node)
        found = self.index.get(key)
        if found is not None:
            return found
        kids = [self.ref(k) for k in children(node)]
        row = list(replace_children(node, kids)) if kids else list(node)
        self.index[key] = len(self.rows)
        self.rows.append(row)
        return self.index[key]


def _encode_tree(tree: tuple, table: _NodeTable) -> list:
    if tree[0] == "leaf":
        return ["leaf", [[rule, *(table.ref(c) for c in clauses)] for rule, *clauses in tree[1]]]
    _, path, branches, default, error = tree
    return ["switch", table.ref(path), {k: _encode_tree(v, table) for k, v in branches.items()},
            _encode_tree(default, table), None if error is None else _encode_tree(error, table)]


def encode(program: Program, sources: tuple[Source, ...] = ()) -> bytes:
    """Program (and the sources it came from, for ``explain``) ⇒ bundle bytes."""
    table = _NodeTable()
    rules = [[r.id, r.effect, r.policy,
              None if r.reason is None else [p if isinstance(p, str) else {"node": table.ref(p)} for p in r.reason],
              dict(r.annotations)] for r in program.rules]
    body = {
        "policies": list(program.policies), "rules": rules,
        "forbid_tree": _encode_tree(program.forbid_tree, table),
        "permit_tree": _encode_tree(program.permit_tree, table),
        "slots": program.slots,
        "limits": [[c.id, c.policy, c.count, c.period, c.message, dict(c.annotations),
                    table.ref(c.target), table.ref(c.when), table.ref(c.unless), [table.ref(k) for k in c.keys]]
                   for c in program.limits],
        "nodes": table.rows,
        "sources": [[s.display, s.relative, s.kind, s.content] for s in sources],
    }
    header = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "pdp": __version__, "revision": program.revision}
    return msgpack.packb([header, body], use_bin_type=True)


def decode(data: bytes, name: str = "<bundle>") -> tuple[Program, list[Source]]:
    """Bundle bytes ⇒ (Program, sources); a corrupt or version-mismatched bundle is a PolicyError."""
    def fail(message: str) -> PolicyError:
        return PolicyError(Diagnostic(name, 0, 0, message, "bundle_error"))

    try:
        header, body = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # noqa: BLE001 - any unpacking failure means "not a bundle"
        raise fail(f"not a pdp bundle (cannot decode: {exc})") from None
    if not isinstance(header, dict) or header.get("format") != BUNDLE_FORMAT:
        raise fail("not a pdp bundle")
    if header.get("version") != BUNDLE_VERSION:
        raise fail(f"bundle format version {header.get('version')} is not supported "
                   f"(this pdp reads version {BUNDLE_VERSION}); rebuild it with 'pdp build'")
    try:
        sources = [Source(str(d), str(r), str(k), bytes(c)) for d, r, k, c in body["sources"]]
        return _decode_body(header, body), sources
    except Exception as exc:  # noqa: BLE001 - whatever the shape, a body that does not decode is corrupt
        raise fail(f"corrupt bundle ({type(exc).__name__}: {exc})") from None


def _decode_body(header: dict, body: dict) -> Program:
    nodes: list[tuple] = []
    for row in body["nodes"]:
        shell = _tupled(row)
        kid_refs = children(shell)
        if any(type(i) is not int or not 0 <= i < len(nodes) for i in kid_refs):  # earlier rows only
            raise IndexError(f"node {len(nodes)} refers to a node out of range")
        node = replace_children(shell, [nodes[i] for i in kid_refs]) if kid_refs else shell
        nodes.append(node)

    def node(ref: int) -> tuple | None:
        if ref == -1:
            return None
        if not 0 <= ref < len(nodes):
            raise IndexError(f"node {ref} out of range")
        return nodes[ref]

    def tree(t: list) -> tuple:
        if t[0] == "leaf":
            return ("leaf", tuple((rule_ref(rule), node(target), node(when), node(unless))
                                  for rule, target, when, unless in t[1]))
        _, path, branches, default, error = t
        return ("switch", node(path), {k: tree(v) for k, v in branches.items()}, tree(default),
                None if error is None else tree(error))

    policies = tuple(str(name) for name in body["policies"])
    rules = tuple(
        RuleCode(rid, effect, int(policy),
                 None if reason is None else tuple(p if isinstance(p, str) else node(p["node"]) for p in reason),
                 dict(annotations))
        for rid, effect, policy, reason, annotations in body["rules"])

    def rule_ref(ref: int) -> int:
        if not 0 <= ref < len(rules):
            raise IndexError(f"rule {ref} out of range")
        return int(ref)

    limits = tuple(
        LimitCode(lid, int(policy), count, period, message, dict(annotations), node(target), node(when),
                  node(unless), tuple(node(k) for k in keys))
        for lid, policy, count, period, message, annotations, target, when, unless, keys in body["limits"])
    return Program(header["revision"], policies, rules, tree(body["forbid_tree"]), tree(body["permit_tree"]),
                   int(body["slots"]), limits)


def _tupled(row: list) -> tuple:
    """A decoded row back to the node's tuple shape (msgpack gives lists)."""
    op = row[0]
    if op == PATH:
        return (op, row[1], tuple(row[2]), tuple(row[3]))
    if op == IN_STRS:
        return (op, row[1], tuple(row[2]), row[3])
    if op == CIDR:
        return (op, tuple(row[1]))
    if op in (AND, OR, LIST):
        return (op, tuple(row[1]))
    if op == CALL:
        return (op, row[1], tuple(row[2]))
    if op == LOOKUP:
        return (op, row[1], dict(row[2]), row[3])
    return tuple(row)
