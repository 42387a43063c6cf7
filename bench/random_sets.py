"""Random policy sets written in PDL and in Cedar, and requests for both: the workload of
"any policy set of a few hundred rules" (issue 11), seeded so every run times the same set.

The model and its two renderings are those of the Cedar differential test
(``tests/cedar_translate.py``: one small language both engines share, every expression
parenthesised alike); this module draws from it with ``random.Random(seed)`` instead of
hypothesis, and with sizes of a real policy set rather than of a property test: ``policies``
policies of about ``rules / policies`` rules each, about half of them with a target (a random
condition: no resource-type index applies to them either), conditions up to three levels
deep. Requests are well typed (a present attribute has the type the policies expect) and a
few attributes are missing, so some forbids fail closed in pdp.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import cedar_translate as m  # noqa: E402


class _Draw:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choice(self, items):
        return self.rng.choice(list(items))

    def value(self, kind: str):
        r = self.rng
        if kind == m.STR_ENV:
            return r.choice(m.ENV)
        if kind == m.STR_WHO:
            return r.choice(m.WHO)
        if kind == m.STR_NAME:
            return "".join(r.choice("ab-é") for _ in range(r.randrange(4)))
        if kind == m.INT:
            return r.choice(m.SMALL_INTS)
        if kind == m.BOOL:
            return r.random() < 0.5
        if kind == m.LIST:
            return tuple(sorted(r.sample(m.TAG[:5], r.randrange(4))))
        if kind == m.REC:
            return {f: self.value(k) for f, k in m.REC_FIELDS.items() if r.random() < 0.99}
        raise AssertionError(kind)

    def attr(self, kind: str) -> m.Attr:
        return self.choice(m.BY_KIND[kind])

    def atom(self):
        r = self.rng
        form = r.randrange(11)
        if form <= 1:  # == / != (twice as likely as the others)
            left = self.choice([a for k in m.SCALAR_KINDS + [m.LIST] for a in m.BY_KIND[k]])
            right = self.attr(left.kind) if r.random() < 0.25 else m.LitV(self.value(left.kind))
            return m.Compare(r.choice(["==", "!="]), left, right)
        if form == 2:
            right = self.attr(m.INT) if r.random() < 0.3 else m.LitV(r.choice(m.SMALL_INTS))
            return m.Compare(r.choice(["<", "<=", ">", ">="]), self.attr(m.INT), right)
        if form == 3:
            kind = r.choice([m.STR_ENV, m.STR_WHO, m.INT])
            items = tuple(dict.fromkeys(self.value(kind) for _ in range(1 + r.randrange(3))))
            return m.In(self.attr(kind), m.LitV(items), r.random() < 0.3)
        if form == 4:
            return m.In(self.attr(r.choice([m.STR_ENV, m.STR_WHO])), self.attr(m.LIST), r.random() < 0.3)
        if form == 5:
            return m.Contains("contains", self.attr(m.LIST), m.LitV(r.choice(m.TAG[:5])))
        if form == 6:
            return m.Contains(r.choice(["contains_any", "contains_all"]), self.attr(m.LIST),
                              m.LitV(self.value(m.LIST) or ("pii",)))
        if form == 7:
            pattern = "".join(r.choice(["a", "b", "-", "*"]) for _ in range(1 + r.randrange(3)))
            return m.Matches(self.attr(m.STR_NAME), m._glob(list(pattern)))
        if form == 8:
            return m.Defined(self.choice(m.PATHS))
        if form == 9:
            return m.Truth(self.attr(m.BOOL))
        names = tuple(r.sample(m.ACTIONS, 1 + r.randrange(2)))
        return m.ActionIs(r.choice(["==", "!="] if len(names) == 1 else ["in", "not in"]), names)

    def selective(self):
        """An atom true for few requests: equality with a literal, membership, an action."""
        r = self.rng
        form = r.randrange(4)
        if form == 0:
            left = self.choice([a for k in (m.STR_ENV, m.STR_WHO, m.INT, m.BOOL) for a in m.BY_KIND[k]])
            return m.Compare("==", left, m.LitV(self.value(left.kind)))
        if form == 1:
            kind = r.choice([m.STR_ENV, m.STR_WHO])
            return m.In(self.attr(kind), m.LitV((self.value(kind),)))
        if form == 2:
            return m.Contains("contains", self.attr(m.LIST), m.LitV(r.choice(m.TAG[:5])))
        return m.ActionIs("==", (r.choice(m.ACTIONS),))

    def condition(self, depth: int):
        r = self.rng
        if depth <= 1 or r.random() < 0.35:
            return self.atom()
        if r.random() < 0.15:
            return m.Not(self.condition(depth - 1))
        return m.BoolOp(r.choice(["and", "or"]), tuple(self.condition(depth - 1) for _ in range(2 + r.randrange(2))))


def policy_set(policies: int = 60, rules: int = 350, seed: int = 1) -> m.PolicySet:
    """About ``rules`` rules in ``policies`` policies; about half the policies have a target."""
    draw = _Draw(seed)
    r = draw.rng
    out = []
    for i in range(policies):
        target = draw.condition(2) if r.random() < 0.5 else None
        count = max(1, round(rules / policies * (0.5 + r.random())))
        body = []
        for j in range(count):
            if r.random() < 0.15:  # forbids are narrow: selective tests and one condition
                when = m.BoolOp("and", (*(draw.selective() for _ in range(3)), draw.condition(2)))
                body.append(m.Rule("forbid", f"r{j}", when, draw.condition(2) if r.random() < 0.3 else None))
            else:
                body.append(m.Rule("permit", f"r{j}", draw.condition(3) if r.random() < 0.9 else None,
                                   draw.condition(2) if r.random() < 0.3 else None))
        out.append(m.Policy(f"p{i}", target, tuple(body)))
    return m.PolicySet(tuple(out))


def requests(count: int, seed: int = 2) -> list[m.Request]:
    """Well-typed requests over the model's vocabulary; an attribute is missing one time in 100."""
    draw = _Draw(seed)
    r = draw.rng
    out = []
    for _ in range(count):
        roots: dict[str, dict] = {"identity": {}, "resource": {}, "context": {}}
        for (root, name), kind in m.ATTRS.items():
            if r.random() < 0.99:
                roots[root][name] = list(v) if isinstance(v := draw.value(kind), tuple) else v
        out.append(m.Request(r.choice(m.WHO), r.choice(m.ACTIONS), roots["identity"], roots["resource"],
                             roots["context"]))
    return out


def cedar_batch(reqs: list[m.Request]) -> tuple[list[dict], list[dict]]:
    """cedarpy's requests and the entities of the whole batch."""
    cedar_reqs, entities = [], []
    for i, req in enumerate(reqs):
        one, ents = req.cedar(i)
        cedar_reqs.append(one)
        entities.extend(ents)
    return cedar_reqs, entities


def agreement(decisions, results, model: m.PolicySet) -> dict[str, int]:
    """Check pdp's decisions against Cedar's (the differential test's first assertion: where
    neither reports an error, the same decision and the same determining rules); the counts."""
    ids = model.rule_ids()
    position = {rule: i for i, rule in enumerate(ids)}
    counts = {"error-free": 0, "with errors": 0, "ALLOW": 0}
    for d, c in zip(decisions, results, strict=True):
        if c.diagnostics.errors or d.errors:
            counts["with errors"] += 1
            continue
        counts["error-free"] += 1
        counts["ALLOW"] += d.allowed
        cedar_rules = sorted((ids[int(p.removeprefix("policy"))] for p in c.diagnostics.reasons),
                             key=position.__getitem__)
        assert d.decision == ("ALLOW" if c.allowed else "DENY"), (d, c.diagnostics)
        assert [x.rule for x in d.reasons] == (cedar_rules or ["default"]), (d, c.diagnostics)
    return counts
