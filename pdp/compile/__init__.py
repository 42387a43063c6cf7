"""Compiling: checked policy set ⇒ Program (plain data: expression DAG, rule table, decision trees).

The stages run in this order; each is a pure function of the previous one's output.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..check import CheckedPolicySet
from . import index
from .cse import CommonSubexpressions, count_uses, per_request_uses
from .lower import Lowerer
from .program import LimitCode, Program, RuleCode
from .specialize import Specializer
from .split import Splitter
from .tabulate import Tabulator

STAGES = (
    "lower",  # AST ⇒ interned nodes: paths, folded data and constants, specialised operators
    "guards",  # the leading equality guards of each rule (must run on the lowered, un-cached nodes)
    "index",  # guards ⇒ decision trees for the forbid and the permit phase
    "specialize",  # each leaf's rule conditions with what its branches proved folded in
    "tabulate",  # data lookups keyed by request attributes ⇒ their values per key, made now
    "split",  # leaves whose rules look up tables by one attribute ⇒ a switch on it, rows folded in
    "cse",  # nodes one request can evaluate twice ⇒ CACHED slots; rebuilds every node
)


@dataclass(frozen=True)
class _Lowered:
    """A rule before the index: its clauses as lowered nodes."""
    id: str
    effect: str
    policy: int
    when: tuple | None
    unless: tuple | None
    reason: tuple | None
    annotations: dict


def compile_program(policy_set: CheckedPolicySet, revision: str, indexed: bool = True) -> Program:
    """Compile a checked policy set. ``indexed=False`` gives flat trees (every rule in turn)."""
    lowerer = Lowerer(dict(policy_set.data))
    targets = [lowerer.expr(p.target, p) if p.target is not None else None for p in policy_set.policies]
    rules: list[_Lowered] = []
    candidates: dict[str, list[index.Candidate]] = {"forbid": [], "permit": []}
    for pi, policy in enumerate(policy_set.policies):
        for rule in policy.rules:
            r = rule.rule
            when = lowerer.expr(r.when, policy) if r.when is not None else None
            unless = lowerer.expr(r.unless, policy) if r.unless is not None else None
            reason = None
            if r.reason is not None:
                reason = tuple(p if isinstance(p, str) else lowerer.expr(p, policy) for p in r.reason.parts)
            position = len(rules)
            rules.append(_Lowered(rule.id, rule.effect, pi, when, unless, reason, dict(rule.annotations)))
            guards = index.guards_of([targets[pi], when])
            candidates[rule.effect].append(index.Candidate(position, guards))

    build = index.build if indexed else index.flat
    specializer = Specializer()

    def specialized(tree: tuple) -> tuple:
        if tree[0] == "leaf":
            return ("leaf", specializer.entries(tree[1], tree[2], rules, targets))
        _, path, branches, default, error = tree
        return ("switch", path, {k: specialized(v) for k, v in branches.items()}, specialized(default),
                None if error is None else specialized(error))

    trees = [specialized(build(candidates[effect])) for effect in ("forbid", "permit")]

    tabulator = Tabulator()
    tabulated_entries: dict[int, tuple] = {}  # an entry shared by leaves stays shared

    def tabulated(tree: tuple) -> tuple:
        if tree[0] == "leaf":
            out = []
            for entry in tree[1]:
                done = tabulated_entries.get(id(entry))
                if done is None:
                    rule, *clauses = entry
                    done = tabulated_entries[id(entry)] = (rule, *(tabulator.rewrite(c) for c in clauses))
                out.append(done)
            return ("leaf", tuple(out))
        _, path, branches, default, error = tree
        return ("switch", path, {k: tabulated(v) for k, v in branches.items()}, tabulated(default),
                None if error is None else tabulated(error))

    trees = [tabulated(tree) for tree in trees]
    splitter = Splitter(tabulator)
    trees = [splitter.tree(tree) for tree in trees]
    rules = [r if r.reason is None else
             replace(r, reason=tuple(p if isinstance(p, str) else tabulator.rewrite(p) for p in r.reason))
             for r in rules]

    def leaf_roots(tree: tuple) -> list[list[tuple]]:
        out = []
        for route, entries in _leaves(tree, ()):
            roots = list(route)
            for rule, *clauses in entries:
                roots.extend(c for c in clauses if c is not None)
                roots.extend(p for p in (rules[rule].reason or ()) if not isinstance(p, str))
            out.append(roots)
        return out

    uses = per_request_uses([leaf_roots(tree) for tree in trees])
    cse = CommonSubexpressions(uses)
    # Limits are evaluated after the decision, in the same request context (the evaluators keep
    # its CACHED slots until then): tabulated like the rules, their nodes shared with the rules
    # reuse the rules' slots, and a node a limit reads twice (``defined(x) and x == …``) gets one.
    index_of = {id(p): i for i, p in enumerate(policy_set.policies)}
    lowered_limits = [
        (policy, limit, tuple(tabulator.rewrite(n) for n in (
            targets[index_of[id(policy)]],
            None if limit.rule.when is None else lowerer.expr(limit.rule.when, policy),
            None if limit.rule.unless is None else lowerer.expr(limit.rule.unless, policy),
            *(lowerer.expr(k, policy) for k in limit.rule.keys))))
        for policy, limit in policy_set.limits()]

    def rebuilt(node):
        return None if node is None else cse.rebuild(node)

    entries: dict[int, tuple] = {}  # an entry shared by leaves stays shared

    def rebuilt_entry(entry: tuple) -> tuple:
        done = entries.get(id(entry))
        if done is None:
            rule, *clauses = entry
            done = entries[id(entry)] = (rule, *(rebuilt(c) for c in clauses))
        return done

    def rebuilt_tree(tree: tuple) -> tuple:
        if tree[0] == "leaf":
            return ("leaf", tuple(rebuilt_entry(e) for e in tree[1]))
        _, path, branches, default, error = tree
        return ("switch", rebuilt(path), {k: rebuilt_tree(v) for k, v in branches.items()},
                rebuilt_tree(default), None if error is None else rebuilt_tree(error))

    forbid_tree, permit_tree = (rebuilt_tree(t) for t in trees)
    final_rules = tuple(
        RuleCode(r.id, r.effect, r.policy,
                 None if r.reason is None else tuple(p if isinstance(p, str) else rebuilt(p) for p in r.reason),
                 r.annotations)
        for r in rules)
    for _, _, nodes in lowered_limits:  # (after the rules: their nodes keep the slots they had)
        for key, n in count_uses([n for n in nodes if n is not None]).items():
            uses[key] = uses.get(key, 0) + n
    limits = tuple(
        LimitCode(limit.id, index_of[id(policy)], limit.rule.count, limit.rule.period, limit.message,
                  dict(limit.annotations), *(rebuilt(n) for n in nodes[:3]), tuple(rebuilt(k) for k in nodes[3:]))
        for policy, limit, nodes in lowered_limits)
    return Program(revision, tuple(p.name for p in policy_set.policies), final_rules, forbid_tree, permit_tree,
                   cse.slots, limits)


def _leaves(tree: tuple, route: tuple):
    """(switch paths on the way, entries) of every leaf."""
    if tree[0] == "leaf":
        yield route, tree[1]
        return
    _, path, branches, default, error = tree
    route = route + (path,)
    for sub in (*branches.values(), default, error):
        if sub is not None:
            yield from _leaves(sub, route)
