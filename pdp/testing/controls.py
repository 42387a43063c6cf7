"""The control report (``pdp report``): which framework controls are enforced by which rules,
and which tests cover those rules — the framework-alignment view an auditor asks for.

A control is an annotation value: ``@owasp("NHI7")`` says the rule serves OWASP NHI7,
``@nist_csf("PR.AA-01, PR.AA-05")`` that it serves two NIST CSF 2.0 subcategories (values
are split at commas and spaces). Rules inherit their policy's annotations. A rule *covers*
its controls in the tests where it applied (the coverage of ``pdp test --coverage``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Sequence

from .runner import RuleInfo, RunResult

#: The OWASP Non-Human Identities Top 10 (2025), in order: the report lists every entry, so a
#: risk that no rule addresses shows up as a gap.
OWASP_NHI_2025 = {
    "NHI1": "Improper Offboarding",
    "NHI2": "Secret Leakage",
    "NHI3": "Vulnerable Third-Party NHI",
    "NHI4": "Insecure Authentication",
    "NHI5": "Overprivileged NHI",
    "NHI6": "Insecure Cloud Deployment Configurations",
    "NHI7": "Long-Lived Secrets",
    "NHI8": "Environment Isolation",
    "NHI9": "NHI Reuse",
    "NHI10": "Human Use of NHI",
}

#: NIST CSF 2.0 categories, to name a subcategory id such as PR.AA-05 by its category.
NIST_CSF_2_CATEGORIES = {
    "GV.OC": "Organizational Context",
    "GV.RM": "Risk Management Strategy",
    "GV.RR": "Roles, Responsibilities, and Authorities",
    "GV.PO": "Policy",
    "GV.OV": "Oversight",
    "GV.SC": "Cybersecurity Supply Chain Risk Management",
    "ID.AM": "Asset Management",
    "ID.RA": "Risk Assessment",
    "ID.IM": "Improvement",
    "PR.AA": "Identity Management, Authentication, and Access Control",
    "PR.AT": "Awareness and Training",
    "PR.DS": "Data Security",
    "PR.PS": "Platform Security",
    "PR.IR": "Technology Infrastructure Resilience",
    "DE.CM": "Continuous Monitoring",
    "DE.AE": "Adverse Event Analysis",
    "RS.MA": "Incident Management",
    "RS.AN": "Incident Analysis",
    "RS.CO": "Incident Response Reporting and Communication",
    "RS.MI": "Incident Mitigation",
    "RC.RP": "Incident Recovery Plan Execution",
    "RC.CO": "Incident Recovery Communication",
}


@dataclass(frozen=True)
class Framework:
    key: str  # the annotation key
    title: str
    catalog: dict[str, str] = field(default_factory=dict)  # every control of the framework, when known
    complete: bool = False  # True: list the catalog's controls that no rule serves

    def name_of(self, control: str) -> str:
        if control in self.catalog:
            return self.catalog[control]
        if self.key == "nist_csf":
            return NIST_CSF_2_CATEGORIES.get(control.split("-", 1)[0], "")
        return ""


KNOWN_FRAMEWORKS = {
    "owasp": Framework("owasp", "OWASP Non-Human Identities Top 10 (2025)", OWASP_NHI_2025, complete=True),
    "nist_csf": Framework("nist_csf", "NIST Cybersecurity Framework (CSF) 2.0"),
}
DEFAULT_FRAMEWORKS = ("owasp", "nist_csf")


@dataclass
class TestRef:
    __test__ = False

    id: str
    passed: bool
    file: str
    line: int


@dataclass
class RuleRef:
    rule: RuleInfo
    tests: list[TestRef]


@dataclass
class Control:
    id: str
    name: str
    rules: list[RuleRef]

    @property
    def status(self) -> str:
        """``covered`` (every rule applied in a test), ``partly covered``, ``not covered``
        (rules but no test), ``not addressed`` (no rule)."""
        if not self.rules:
            return "not addressed"
        tested = sum(1 for r in self.rules if r.tests)
        if tested == len(self.rules):
            return "covered"
        return "partly covered" if tested else "not covered"


@dataclass
class FrameworkView:
    framework: Framework
    controls: list[Control]


@dataclass
class ControlReport:
    revision: str
    frameworks: list[FrameworkView]
    unannotated: list[RuleInfo]
    rules: int
    tests: int
    failed: int
    coverage: float

    def to_dict(self) -> dict:
        return {
            "revision": self.revision,
            "summary": {"rules": self.rules, "tests": self.tests, "passed": self.tests - self.failed,
                        "failed": self.failed, "rule_coverage": round(self.coverage, 1)},
            "frameworks": [{
                "key": view.framework.key,
                "title": view.framework.title,
                "controls": [{
                    "id": c.id, "name": c.name, "status": c.status,
                    "rules": [{"rule": r.rule.id, "effect": r.rule.effect, "file": r.rule.file,
                               "line": r.rule.line,
                               "tests": [{"id": t.id, "passed": t.passed, "file": t.file, "line": t.line}
                                         for t in r.tests]}
                              for r in c.rules],
                } for c in view.controls],
            } for view in self.frameworks],
            "unannotated": [{"rule": r.id, "effect": r.effect, "file": r.file, "line": r.line}
                            for r in self.unannotated],
        }


def control_ids(value: str) -> list[str]:
    """``"PR.AA-01, PR.AA-05"`` ⇒ ``["PR.AA-01", "PR.AA-05"]``."""
    return [part for part in re.split(r"[,\s]+", value) if part]


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def build(rules: Sequence[RuleInfo], run: RunResult, revision: str,
          keys: Sequence[str] = DEFAULT_FRAMEWORKS) -> ControlReport:
    """The report over ``rules`` (in source order), with the tests of ``run``."""
    tests_of: dict[str, list[TestRef]] = {r.id: [] for r in rules}
    for result in run.results:
        ref = TestRef(result.case.id, result.passed, result.case.file, result.case.line)
        for rule in result.applied:
            if rule in tests_of:
                tests_of[rule].append(ref)
    views = []
    annotated: set[str] = set()
    for key in keys:
        framework = KNOWN_FRAMEWORKS.get(key) or Framework(key, f"@{key}")
        serving: dict[str, list[RuleRef]] = {}
        for rule in rules:
            value = rule.annotations.get(key)
            if value is None:
                continue
            annotated.add(rule.id)
            for control in control_ids(value):
                serving.setdefault(control, []).append(RuleRef(rule, tests_of[rule.id]))
        ids = set(serving) | (set(framework.catalog) if framework.complete else set())
        controls = [Control(c, framework.name_of(c), serving.get(c, [])) for c in sorted(ids, key=_natural)]
        views.append(FrameworkView(framework, controls))
    unannotated = [r for r in rules if r.id not in annotated]
    coverage = run.coverage.percent if rules else 100.0
    return ControlReport(revision, views, unannotated, len(rules), len(run.results), run.failed, coverage)


# ---- rendering --------------------------------------------------------------------------------


def _summary_line(report: ControlReport) -> str:
    return (f"revision {report.revision}: {report.rules} rules, {report.tests} tests "
            f"({report.tests - report.failed} passed, {report.failed} failed), "
            f"rule coverage {report.coverage:.1f}%")


def render_text(report: ControlReport) -> str:
    out = [f"Control report — {_summary_line(report)}"]
    for view in report.frameworks:
        out.append("")
        out.append(f"{view.framework.title}  (annotation @{view.framework.key})")
        if not view.controls:
            out.append("  no rule carries this annotation")
        for control in view.controls:
            name = f"  {control.name}" if control.name else ""
            out.append(f"  {control.id}{name}  [{control.status}]")
            for ref in control.rules:
                out.append(f"    {ref.rule.effect} {ref.rule.id}  ({ref.rule.file}:{ref.rule.line})")
                if not ref.tests:
                    out.append("      no test makes it apply")
                for test in ref.tests:
                    out.append(f"      tested by {test.id}{'' if test.passed else '  (FAILING)'}")
    if report.unannotated:
        out.append("")
        out.append(f"Rules with no {' or '.join('@' + v.framework.key for v in report.frameworks)} annotation:")
        for rule in report.unannotated:
            out.append(f"  {rule.effect} {rule.id}  ({rule.file}:{rule.line})")
    return "\n".join(out)


def render_json(report: ControlReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: ControlReport) -> str:
    out = ["# Control report", "", _summary_line(report)[0].upper() + _summary_line(report)[1:] + "."]
    for view in report.frameworks:
        out += ["", f"## {view.framework.title}", "",
                f"Controls are read from the `@{view.framework.key}` annotation of rules and policies.", ""]
        if not view.controls:
            out.append("No rule carries this annotation.")
            continue
        out += ["| Control | Name | Rules | Tests | Status |", "|---|---|---|---|---|"]
        for c in view.controls:
            tests = len({t.id for r in c.rules for t in r.tests})
            out.append(f"| {_md(c.id)} | {_md(c.name)} | {len(c.rules)} | {tests} | {c.status} |")
        for c in view.controls:
            if not c.rules:
                continue
            out += ["", f"### {_md(c.id)} {_md(c.name)}".rstrip(), ""]
            for ref in c.rules:
                out.append(f"- `{ref.rule.effect} {ref.rule.id}` ({ref.rule.file}:{ref.rule.line})")
                if not ref.tests:
                    out.append("  - **no test makes it apply**")
                for t in ref.tests:
                    out.append(f"  - {_md(t.id)}{'' if t.passed else ' — **failing**'}")
    if report.unannotated:
        out += ["", "## Rules without a control annotation", ""]
        out += [f"- `{r.effect} {r.id}` ({r.file}:{r.line})" for r in report.unannotated]
    return "\n".join(out)


RENDERERS = {"text": render_text, "json": render_json, "markdown": render_markdown}
