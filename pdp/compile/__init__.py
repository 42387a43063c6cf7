"""Compiling: checked policy set ⇒ Program (plain data: expression DAG, rule table, decision trees).

The stages run in this order; each is a pure function of the previous one's output.
"""

from __future__ import annotations

from ..check import CheckedPolicySet
from . import index
from .cse import CommonSubexpressions
from .lower import Lowerer
from .program import Program, RuleCode

STAGES = (
    "lower",  # AST ⇒ interned nodes: paths, folded data and constants, specialised operators
    "guards",  # the leading equality guards of each rule (must run on the lowered, un-cached nodes)
    "index",  # guards ⇒ decision trees for the forbid and the permit phase
    "cse",  # shared nodes (and the index's paths) ⇒ CACHED slots; rebuilds every node
)


def compile_program(policy_set: CheckedPolicySet, revision: str, indexed: bool = True) -> Program:
    """Compile a checked policy set. ``indexed=False`` gives flat trees (every rule in turn)."""
    lowerer = Lowerer(dict(policy_set.data))
    targets = [lowerer.expr(p.target, p) if p.target is not None else None for p in policy_set.policies]
    rules = []
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
            rules.append(RuleCode(rule.id, rule.effect, pi, when, unless, reason, dict(rule.annotations)))
            guards = index.guards_of([targets[pi], when])
            candidates[rule.effect].append(index.Candidate(position, guards))

    build = index.build if indexed else index.flat
    trees = {effect: build(cands) for effect, cands in candidates.items()}

    cse = CommonSubexpressions()
    roots = [t for t in targets if t is not None]
    for r in rules:
        roots.extend(x for x in (r.when, r.unless) if x is not None)
        roots.extend(p for p in (r.reason or ()) if not isinstance(p, str))
    for root in roots:
        cse.use(root)
    for tree in trees.values():
        for path in _tree_paths(tree):
            cse.use(path)

    def rebuilt(node):
        return None if node is None else cse.rebuild(node)

    final_rules = tuple(
        RuleCode(r.id, r.effect, r.policy, rebuilt(r.when), rebuilt(r.unless),
                 None if r.reason is None else tuple(p if isinstance(p, str) else rebuilt(p) for p in r.reason),
                 r.annotations)
        for r in rules)
    policies = tuple((p.name, rebuilt(t)) for p, t in zip(policy_set.policies, targets))
    return Program(revision, policies, final_rules, _rebuild_tree(trees["forbid"], cse),
                   _rebuild_tree(trees["permit"], cse), cse.slots)


def _tree_paths(tree: tuple):
    if tree[0] == "switch":
        _, path, branches, default, error = tree
        yield path
        for sub in (*branches.values(), default, error):
            if sub is not None:
                yield from _tree_paths(sub)


def _rebuild_tree(tree: tuple, cse: CommonSubexpressions) -> tuple:
    if tree[0] == "leaf":
        return tree
    _, path, branches, default, error = tree
    return ("switch", cse.rebuild(path), {k: _rebuild_tree(v, cse) for k, v in branches.items()},
            _rebuild_tree(default, cse), None if error is None else _rebuild_tree(error, cse))
