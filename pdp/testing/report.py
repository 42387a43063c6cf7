"""What a test run prints: failures with their trace, the summary line, the coverage table,
and JUnit XML for CI systems."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Sequence

from ..explain import RuleTrace, render_rules
from .runner import Coverage, RunResult, TestResult


def summary(run: RunResult) -> str:
    """The last line of every run: ``N passed, M failed``."""
    return f"{run.passed} passed, {run.failed} failed"


def failure(result: TestResult, header: bool = True) -> str:
    """One failed test: where, what was expected, what came, and the trace of the deciding rules.

    The first line is ``FAIL suite::name: first problem`` (without ``header``: the problem alone,
    for a runner that names the test itself)."""
    case = result.case
    problem = result.problems[0] if result.problems else "failed"
    lines = [f"FAIL {case.id}: {problem}" if header else problem, f"  at {case.where}"]
    expected = case.expect
    if case.reasons:
        expected += f" with {', '.join(case.reasons)} among the reasons"
    lines.append(f"  expected: {expected}")
    decision = result.decision
    if decision is None:
        lines.extend(f"  {p}" for p in result.problems)
        return "\n".join(lines)
    lines.append(f"  actual:   {decision.decision}")
    for reason in decision.reasons:
        if reason.rule == "default":
            lines.append(f"    because {reason.message} (default deny)")
            continue
        message = f": {reason.message}" if reason.message else ""
        lines.append(f"    because {reason.effect} {reason.rule}{message}")
    for error in decision.errors:
        lines.append(f"    error in {error.rule}: {error.message}")
    for problem in result.problems:
        if not problem.startswith("expected "):  # those are shown above
            lines.append(f"  {problem}")
    if result.explanation is not None:
        traces = deciding_traces(result)
        if traces:
            lines.append("  trace:")
            lines.extend("    " + line for line in _render_traces(traces))
    return "\n".join(lines)


def deciding_traces(result: TestResult) -> list[RuleTrace]:
    """The rules worth showing under a failure: those that decided (the reasons), those the test
    expected among the reasons, and — when nothing permitted — the permits that were evaluated."""
    explanation = result.explanation
    decision = result.decision
    if explanation is None or decision is None:
        return []
    wanted = {r.rule for r in decision.reasons} | set(result.case.reasons) | {e.rule for e in decision.errors}
    default_deny = [r.rule for r in decision.reasons] == ["default"]
    chosen = []
    for trace in explanation.rules:
        if trace.rule in wanted:
            chosen.append(trace)
        elif default_deny and trace.effect == "permit" and trace.rule in result.evaluated:
            chosen.append(trace)
    return chosen


def _render_traces(traces: list[RuleTrace]) -> list[str]:
    # The explain renderer's rule traces, without its blank lines (none inside a failure).
    return [line for line in render_rules(traces) if line]


def passed_line(result: TestResult) -> str:
    return f"PASS {result.case.id}"


# ---- coverage ----------------------------------------------------------------------------------


def coverage_table(coverage: Coverage) -> str:
    """Per policy: rules, how many applied in some test, how many were evaluated, the percentage;
    then the rules no test made apply and the rules never evaluated, by name."""
    header = ("policy", "rules", "applied", "evaluated", "coverage")
    rows = [(p.policy, str(len(p.rules)), str(p.covered), str(p.evaluated), f"{p.percent:.1f}%")
            for p in coverage.policies]
    total = ("total", str(coverage.total), str(coverage.covered), str(coverage.evaluated),
             f"{coverage.percent:.1f}%")
    widths = [max(len(r[i]) for r in [header, *rows, total]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))

    out = ["Rule coverage (a rule is covered when it applied in at least one test):", line(header)]
    out.extend(line(r) for r in rows)
    out.append("-" * len(line(header)))
    out.append(line(total))
    not_applied = [r for r in coverage.rules if r.evaluated_in and not r.applied_in]
    never = [r for r in coverage.rules if not r.evaluated_in]
    if not_applied:
        out.append("")
        out.append("Evaluated but no test made them apply:")
        for r in not_applied:
            n = len(r.evaluated_in)
            out.append(f"  {r.rule.effect} {r.rule.id}  ({r.rule.file}:{r.rule.line}; "
                       f"evaluated in {n} test{'s' if n != 1 else ''})")
    if never:
        out.append("")
        out.append("Never evaluated (no test reached them):")
        for r in never:
            out.append(f"  {r.rule.effect} {r.rule.id}  ({r.rule.file}:{r.rule.line})")
    if not not_applied and not never:
        out.append("Every rule applied in at least one test.")
    return "\n".join(out)


# ---- JUnit XML ---------------------------------------------------------------------------------


def junit_xml(run: RunResult) -> bytes:
    """JUnit XML (the common Jenkins/GitLab/GitHub dialect): one <testsuite> per suite file."""
    root = ET.Element("testsuites", name="pdp", tests=str(len(run.results)), failures=str(run.failed),
                      errors="0", time=f"{sum(r.seconds for r in run.results):.6f}")
    by_suite: dict[tuple[str, str], list[TestResult]] = {}
    for suite in run.suites:
        by_suite.setdefault((suite.name, suite.file), [])
    for result in run.results:
        by_suite.setdefault((result.case.suite, result.case.file), []).append(result)
    for (name, file), results in by_suite.items():
        failed = sum(1 for r in results if not r.passed)
        suite_el = ET.SubElement(root, "testsuite", name=name, file=file, tests=str(len(results)),
                                 failures=str(failed), errors="0", skipped="0",
                                 time=f"{sum(r.seconds for r in results):.6f}")
        for result in results:
            case = result.case
            case_el = ET.SubElement(suite_el, "testcase", classname=name, name=case.name, file=case.file,
                                    line=str(case.line), time=f"{result.seconds:.6f}")
            if not result.passed:
                failure_el = ET.SubElement(case_el, "failure", message=result.problems[0], type="PolicyTestFailure")
                failure_el.text = failure(result)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


__all__ = ["summary", "failure", "deciding_traces", "passed_line", "coverage_table", "junit_xml"]
