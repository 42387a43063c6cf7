"""Running suites: (engine, suites) ⇒ one result per test, and rule coverage.

Only the public engine API is used: ``engine.decide`` gives the decision a test checks (it is
what production runs, whatever the backend), and ``engine.explain`` — the reference
evaluator with a trace — gives coverage and the trace shown under a failure. When the two
disagree the test fails and says so.

Coverage (SPEC §6): a rule is *covered* when it applied in at least one test, whether or not
it was among the reasons; a forbid that failed closed applies (SPEC §2), so it counts. A
rule is *evaluated* in a test when pdp reached the rule itself: its policy's target held (or
could not be evaluated) and, for a permit, no forbid had already decided the request. A rule
that is never evaluated is one no test even got close to; one that is evaluated but never
applies has a condition no test made true.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..decision import Decision
from ..engine import Engine, load
from ..errors import Diagnostic, PolicyError, RequestError
from ..limits import LIMIT_KEY, MemoryStore
from ..explain import APPLIED, FAILED, NOT_APPLIED, NOT_EVALUATED, Explanation, RuleTrace
from ..loader import DATA, DATA_SUFFIXES, POLICY, SUITE, discover
from .suite import Suite, TestCase, load_suite

_DATA_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


@dataclass(frozen=True)
class RuleInfo:
    """What a report needs to know about one rule of the loaded set."""

    id: str
    policy: str
    effect: str
    annotations: dict
    file: str
    line: int


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class

    case: TestCase
    problems: list[str]  # empty when the test passed
    decision: Decision | None = None
    explanation: Explanation | None = None
    applied: frozenset[str] = frozenset()
    evaluated: frozenset[str] = frozenset()
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class RuleCoverage:
    rule: RuleInfo
    applied_in: list[str] = field(default_factory=list)  # test ids
    evaluated_in: list[str] = field(default_factory=list)

    @property
    def covered(self) -> bool:
        return bool(self.applied_in)


@dataclass
class PolicyCoverage:
    policy: str
    rules: list[RuleCoverage]

    @property
    def covered(self) -> int:
        return sum(1 for r in self.rules if r.covered)

    @property
    def evaluated(self) -> int:
        return sum(1 for r in self.rules if r.evaluated_in)

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / len(self.rules) if self.rules else 100.0


@dataclass
class Coverage:
    policies: list[PolicyCoverage]

    @property
    def rules(self) -> list[RuleCoverage]:
        return [r for p in self.policies for r in p.rules]

    @property
    def total(self) -> int:
        return len(self.rules)

    @property
    def covered(self) -> int:
        return sum(1 for r in self.rules if r.covered)

    @property
    def evaluated(self) -> int:
        return sum(1 for r in self.rules if r.evaluated_in)

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / self.total if self.total else 100.0


@dataclass
class RunResult:
    results: list[TestResult]
    coverage: Coverage
    suites: list[Suite]

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def failures(self) -> list[TestResult]:
        return [r for r in self.results if not r.passed]


class Tester:
    """A loaded policy set with the suites found under the same paths."""

    __test__ = False

    def __init__(self, engine: Engine, entries: Sequence):  # entries: what loader.discover found
        self.engine = engine
        self.entries = list(entries)
        self._engines: dict[str, Engine] = {}
        self.rules = []
        for policy in engine.policy_set.policies:
            # Rules and limit rules, in source order.
            for rule in sorted((*policy.rules, *policy.limits), key=lambda r: (r.rule.span.line, r.rule.span.column)):
                span = rule.rule.name_span
                self.rules.append(RuleInfo(rule.id, policy.name, rule.effect, dict(rule.annotations),
                                           span.file.name if span.file else "", span.line))
        self.limit_ids = {limit.id for _, limit in engine.policy_set.limits()}
        self.rule_ids = {r.id for r in self.rules}

    @classmethod
    def load(cls, paths: Iterable[str | Path], trust: str | Path | None = None) -> "Tester":
        """Load the policies and data under ``paths`` (and the trust file ``trust``, SPEC §8);
        raises ``PolicyError``."""
        paths = list(paths)
        entries = discover(paths)
        return cls(load(paths, trust=trust), entries)

    @property
    def suite_files(self) -> list:
        return [e for e in self.entries if e.kind == SUITE]

    def load_suites(self) -> list[Suite]:
        """Read every suite found and check it against the loaded rules; raises ``PolicyError``
        with the problems of every broken suite."""
        suites, problems = [], []
        for entry in self.suite_files:
            try:
                suites.append(self.load_suite(entry.path, entry.display))
            except PolicyError as err:
                problems.extend(err.diagnostics)
        if problems:
            raise PolicyError(problems)
        return suites

    def load_suite(self, path: str | Path, display: str | None = None) -> Suite:
        suite = load_suite(path, display)
        problems = self.check(suite)
        if problems:
            raise PolicyError(problems)
        return suite

    def check(self, suite: Suite) -> list[Diagnostic]:
        """What a suite refers to that the policy set does not have: rule ids in ``reasons``,
        data names that cannot be overridden, data overrides that do not load."""
        problems = []
        for case in suite.tests:
            for rule, mark in zip(case.reasons, case.reason_marks):
                if rule != "default" and rule not in self.rule_ids:
                    near = _nearest(rule, self.rule_ids)
                    hint = f"; did you mean {near!r}?" if near else ""
                    problems.append(suite.diagnostic(mark, f"unknown rule {rule!r} in reasons{hint}"))
            for rule, _, mark in case.limits:
                if rule not in self.limit_ids:
                    near = _nearest(rule, self.limit_ids)
                    hint = f"; did you mean {near!r}?" if near else ""
                    problems.append(suite.diagnostic(mark, f"unknown limit rule {rule!r} in limits{hint}"))
        if suite.data is not None:
            bad = [name for name in suite.data if not _DATA_NAME.match(name)]
            for name in bad:
                problems.append(suite.diagnostic(suite.data_mark, f"{name!r} cannot be a data name"))
            if not bad:
                try:
                    self.engine_for(suite)
                except PolicyError as err:
                    problems.extend(suite.diagnostic(suite.data_mark, f"with this suite's data: {d.message}")
                                    for d in err.diagnostics)
        return sorted(problems, key=lambda d: (d.line, d.column))

    def engine_for(self, suite: Suite) -> Engine:
        """The engine a suite's tests run on: the loaded one, or one with ``data`` replaced."""
        if not suite.data:
            return self.engine
        key = json.dumps(suite.data, sort_keys=True)
        engine = self._engines.get(key)
        if engine is None:
            # Load the same files, with the overridden data files swapped for temporary ones;
            # the public loader does the work, so every backend sees the data it would see.
            with tempfile.TemporaryDirectory(prefix="pdp-test-data-") as tmp:
                paths: list[Path] = [e.path for e in self.entries
                                     if e.kind == POLICY or (e.kind == DATA and _data_name(e.path.name) not in suite.data)]
                for name, value in suite.data.items():
                    path = Path(tmp) / f"{name}.data.json"
                    path.write_text(json.dumps(value), encoding="utf-8")
                    paths.append(path)
                engine = load(paths)
            self._engines[key] = engine
        return engine

    def run_case(self, case: TestCase, suite: Suite) -> TestResult:
        """Run one test (its suite says which data it sees)."""
        started = time.perf_counter()
        engine = self.engine_for(suite)
        problems = []
        try:
            if engine.limiter is not None:
                # Each test starts with full budgets, but for those it sets (deterministic).
                engine = engine.with_limits(MemoryStore())
                problems.extend(_set_limits(engine, case))
            if case.token is None:
                decision = engine.decide(case.request)
            else:  # the test's token is taken as verified: suites test policies, not signatures
                decision = engine.decide_verified(case.request, case.token)
            explanation = engine.explain(case.request, claims=case.token)
        except RequestError as err:  # suites are validated when read; this is a safety net
            return TestResult(case, [f"the request is not valid: {err}"], seconds=time.perf_counter() - started)
        got = [r.rule for r in decision.reasons]
        if decision.decision != case.expect:
            problems.append(f"expected {case.expect}, got {decision.decision}")
        missing = [r for r in case.reasons if r not in got]
        if missing:
            problems.append(f"expected among the reasons: {', '.join(missing)}; "
                            f"the reasons were: {', '.join(got)}")
        reference = explanation.decision
        if any(LIMIT_KEY in r.annotations for r in decision.reasons):
            # explain takes no unit: it agrees with the decision before the budgets were asked.
            decision_checked, _ = engine.decide_claims(case.request, case.token)
            got_checked = [r.rule for r in decision_checked.reasons]
        else:
            decision_checked, got_checked = decision, got
        if reference.decision != decision_checked.decision or [r.rule for r in reference.reasons] != got_checked:
            problems.append(f"engine.decide ({engine.backend}) and engine.explain (the reference) disagree: "
                            f"{decision.decision} {got} vs {reference.decision} "
                            f"{[r.rule for r in reference.reasons]}")
        applied, evaluated = rule_outcomes(explanation.rules)
        return TestResult(case, problems, decision, explanation, applied, evaluated, time.perf_counter() - started)

    def run(self, suites: Sequence[Suite], patterns: Sequence[str] = ()) -> RunResult:
        results = [self.run_case(case, suite) for suite in suites for case in select(suite.tests, patterns)]
        return RunResult(results, self.coverage(results), list(suites))

    def coverage(self, results: Sequence[TestResult]) -> Coverage:
        by_rule = {r.id: RuleCoverage(r) for r in self.rules}
        for result in results:
            for rule in result.applied:
                if rule in by_rule:
                    by_rule[rule].applied_in.append(result.case.id)
            for rule in result.evaluated:
                if rule in by_rule:
                    by_rule[rule].evaluated_in.append(result.case.id)
        policies: dict[str, list[RuleCoverage]] = {}
        for info in self.rules:
            policies.setdefault(info.policy, []).append(by_rule[info.id])
        return Coverage([PolicyCoverage(name, rules) for name, rules in policies.items()])


def _set_limits(engine: Engine, case: TestCase) -> list[str]:
    """Set the units left in the budgets a test names (for the key its request meets)."""
    if not case.limits:
        return []
    problems = []
    _, claims = engine.decide_claims(case.request, case.token)
    met = {engine.limiter.limits[i].id: values for i, values in (claims or ())}
    for rule, units, _ in case.limits:
        values = met.get(rule)
        if values is None:
            problems.append(f"limits: the request does not meet {rule} (it is met only by requests that would "
                            f"otherwise be allowed and pass its conditions)")
        elif type(values) is str:
            problems.append(f"limits: {rule} cannot be evaluated for this request: {values}")
        else:
            limit = next(x for x in engine.limiter.limits if x.id == rule)
            engine.limits.set_remaining(limit.budget(values), units)
    return problems


def rule_outcomes(traces: Iterable[RuleTrace]) -> tuple[frozenset[str], frozenset[str]]:
    """(rules that applied, rules that were evaluated) in one explanation; see the module doc."""
    applied, evaluated = set(), set()
    for trace in traces:
        if trace.status == NOT_EVALUATED:
            continue
        if trace.status == NOT_APPLIED and all(clause == "target" for clause, _ in trace.clauses):
            continue  # its policy's target was false: the rule itself was never reached
        evaluated.add(trace.rule)
        if trace.status == APPLIED or (trace.status == FAILED and trace.effect == "forbid"):
            applied.add(trace.rule)
    return frozenset(applied), frozenset(evaluated)


def select(cases: Iterable[TestCase], patterns: Sequence[str]) -> list[TestCase]:
    """The tests whose id (``suite::name``) contains any of ``patterns``, ignoring case."""
    if not patterns:
        return list(cases)
    lowered = [p.lower() for p in patterns]
    return [c for c in cases if any(p in c.id.lower() for p in lowered)]


def _data_name(file_name: str) -> str:
    return next(file_name[: -len(s)] for s in DATA_SUFFIXES if file_name.endswith(s))


def _nearest(name: str, known: Iterable[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return found[0] if found else None
