"""Which scope literals each permit tests on ``identity.scopes`` or ``token.scopes``, read from
the policy AST, so that ``pdp review`` can tell the scopes an identity used from those it only
holds.

A permit *tests* a scope when its policy's ``target`` or its ``when`` (through the ``let``s
they name) holds, in positive position (not under ``not``), one of:

- ``SCOPES contains "s"`` or ``"s" in SCOPES`` — true when ``s`` is presented;
- ``SCOPES contains_all ["a", "b"]`` — true when all are presented (each is then used);
- ``SCOPES contains_any ["a", "b"]`` — true when any is (those presented are used);

where SCOPES is ``identity.scopes`` or ``token.scopes``. Tests in ``unless`` are negative (the
permit applies when they are false) and are not grants; tests against computed values
(``identity.scopes contains data.api[...].scope``) are not literals and are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..check import CheckedPolicy, CheckedPolicySet
from ..syntax import ast

SCOPE_ROOTS = ("identity", "token")


@dataclass(frozen=True)
class ScopeTest:
    root: str  # "identity" or "token": whose scopes
    mode: str  # "one", "all" or "any"
    scopes: tuple[str, ...]

    def used(self, presented: dict[str, set[str]]) -> tuple[str, ...]:
        """The scopes this test found true on the presented ones (``{root: scopes}``)."""
        have = presented.get(self.root, set())
        if self.mode == "any":
            return tuple(s for s in self.scopes if s in have)
        return self.scopes if all(s in have for s in self.scopes) else ()


def _scopes_root(e: ast.Expr) -> str | None:
    if isinstance(e, ast.Attribute) and e.name == "scopes" and isinstance(e.obj, ast.Name) \
            and e.obj.name in SCOPE_ROOTS:
        return e.obj.name
    return None


def _literals(e: ast.Expr) -> tuple[str, ...] | None:
    if isinstance(e, ast.ListExpr) and all(isinstance(i, ast.Literal) and isinstance(i.value, str) for i in e.items):
        return tuple(i.value for i in e.items)  # type: ignore[union-attr]
    return None


def _tests(e: ast.Expr | None, policy: CheckedPolicy, positive: bool, seen: set[str]) -> list[ScopeTest]:
    if e is None:
        return []
    if isinstance(e, ast.Not):
        return _tests(e.operand, policy, not positive, seen)
    if isinstance(e, (ast.And, ast.Or)):
        return [t for operand in e.operands for t in _tests(operand, policy, positive, seen)]
    if isinstance(e, ast.Name) and e.name in policy.lets and e.name not in seen:
        return _tests(policy.lets[e.name].expr, policy, positive, seen | {e.name})
    if not positive or not isinstance(e, ast.Compare):
        return []
    root = _scopes_root(e.left)
    if root is not None:
        if e.op == "contains" and isinstance(e.right, ast.Literal) and isinstance(e.right.value, str):
            return [ScopeTest(root, "one", (e.right.value,))]
        lits = _literals(e.right)
        if lits and e.op in ("contains_all", "contains_any"):
            return [ScopeTest(root, "all" if e.op == "contains_all" else "any", lits)]
    root = _scopes_root(e.right)
    if root is not None and e.op == "in" and isinstance(e.left, ast.Literal) and isinstance(e.left.value, str):
        return [ScopeTest(root, "one", (e.left.value,))]
    return []


def permit_scope_tests(policy_set: CheckedPolicySet) -> dict[str, tuple[ScopeTest, ...]]:
    """Rule id ⇒ the scope tests that must hold for that permit to apply (permits with none
    are left out)."""
    out: dict[str, tuple[ScopeTest, ...]] = {}
    for policy in policy_set.policies:
        target = _tests(policy.target, policy, True, set())
        for rule in policy.rules:
            if rule.effect != "permit":
                continue
            tests = target + _tests(rule.rule.when, policy, True, set())
            if tests:
                out[rule.id] = tuple(tests)
    return out


def _uses_credential_age(e: ast.Expr | None, policy: CheckedPolicy, seen: set[str]) -> bool:
    """Whether ``e`` calls ``age`` (or ``time``) on something under ``identity.credential`` or
    ``token``: the shape of a credential lifetime rule."""
    if e is None:
        return False
    if isinstance(e, ast.Call):
        if e.func in ("age", "time") and any(_under_credential(a) for a in e.args):
            return True
        return any(_uses_credential_age(a, policy, seen) for a in e.args)
    if isinstance(e, ast.Not):
        return _uses_credential_age(e.operand, policy, seen)
    if isinstance(e, (ast.And, ast.Or)):
        return any(_uses_credential_age(o, policy, seen) for o in e.operands)
    if isinstance(e, ast.Compare):
        return _uses_credential_age(e.left, policy, seen) or _uses_credential_age(e.right, policy, seen)
    if isinstance(e, ast.Name) and e.name in policy.lets and e.name not in seen:
        return _uses_credential_age(policy.lets[e.name].expr, policy, seen | {e.name})
    return False


def _under_credential(e: ast.Expr) -> bool:
    path = []
    while isinstance(e, (ast.Attribute, ast.Index)):
        if isinstance(e, ast.Attribute):
            path.append(e.name)
        e = e.obj
    if not isinstance(e, ast.Name):
        return False
    path.append(e.name)
    path.reverse()
    return path[0] == "token" or path[:2] == ["identity", "credential"]


def lifetime_rules(policy_set: CheckedPolicySet) -> set[str]:
    """Forbid rules that judge a credential's age: they call ``age``/``time`` on
    ``identity.credential.*`` or ``token.*`` in their ``when`` or ``unless`` (through lets)."""
    out = set()
    for policy in policy_set.policies:
        for rule in policy.rules:
            if rule.effect != "forbid":
                continue
            if _uses_credential_age(rule.rule.when, policy, set()) \
                    or _uses_credential_age(rule.rule.unless, policy, set()):
                out.add(rule.id)
    return out
