"""Policy test suites: a ``*_test.yaml`` file ⇒ a :class:`Suite` of :class:`TestCase` s.

The format is SPEC §6 plus a few extensions (all documented in the README, "Writing and
testing policies"):

- ``fixtures`` has four tables: ``identities``, ``actions``, ``resources`` and ``contexts``.
  A test names a fixture or gives an inline map; an ``action`` string that is not an action
  fixture is a bare action name.
- ``context`` at the top of a suite is merged under every test's own context (a common
  ``time`` for deterministic ``now``).
- ``data`` at the top replaces ``data.NAME`` for this suite's tests (each NAME given).
- ``with`` on a test (or a matrix) is deep-merged into the built request: maps merge, any
  other value replaces, ``null`` removes the key — "the good request, except …".
- ``matrix`` entries expand identities × actions × resources into one test per cell, with
  an expectations table (one row per identity).
- ``envoy`` on a test gives its request as Envoy would send it (method, path, principal, …;
  ``envoy_cases``), mapped to the pdp request by the server's own Envoy mapping; ``envoy`` at
  the top of a suite is deep-merged under every Envoy test's map.

Every problem is a ``PolicyError`` positioned in the suite file; unknown keys are problems,
so a typo never silently drops a check. Problems are collected across the whole file.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Diagnostic, EvalError, PolicyError, RequestError
from ..loader import MAX_POLICY_BYTES
from ..request import parse_request
from ..source import SourceFile
from ..values import parse_time
from ..yamlio import MarkedList, MarkedMap, decode_text, load_yaml_marked

SUITE_KEYS = ("suite", "description", "fixtures", "context", "envoy", "data", "tests", "matrix")
FIXTURE_KINDS = ("identities", "actions", "resources", "contexts", "tokens")
TEST_KEYS = ("name", "description", "identity", "action", "resource", "context", "envoy", "token", "with", "limits",
             "expect", "reasons")
MATRIX_KEYS = ("name", "description", "identities", "actions", "resources", "context", "with", "expect")
WITH_KEYS = ("identity", "action", "resource", "context")
EXPECTATIONS = ("allow", "deny")

Mark = tuple[int, int]


@dataclass(frozen=True)
class TestCase:
    """One test: a complete request and what the decision must be."""

    __test__ = False  # not a pytest test class

    suite: str
    name: str
    request: dict
    expect: str  # "ALLOW" | "DENY"
    reasons: tuple[str, ...]  # rule ids that must be among the decision's reasons
    file: str
    line: int
    column: int
    reason_marks: tuple[Mark, ...] = ()
    #: The payload of a token taken as verified (the root ``token`` is made from it), or None.
    token: dict | None = None
    # Velocity limits (SPEC §9): units left, before this test, in the budget of each named limit
    # rule for the key this request meets; other budgets are full (each test starts afresh).
    limits: tuple[tuple[str, int, Mark], ...] = ()

    @property
    def id(self) -> str:
        """``suite::name``: what ``-k`` matches and what reports show."""
        return f"{self.suite}::{self.name}"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class Suite:
    name: str
    file: str  # as shown in messages
    path: Path
    source: SourceFile = field(repr=False)
    tests: list[TestCase] = field(default_factory=list)
    data: dict | None = None  # data.NAME overrides for this suite's tests
    data_mark: Mark = (0, 0)

    def diagnostic(self, mark: Mark, message: str, code: str = "suite_error") -> Diagnostic:
        return self.source.diagnostic(mark[0], mark[1], message, code)


def load_suite(path: str | Path, display: str | None = None) -> Suite:
    """Read and check one suite file; raises ``PolicyError`` with every problem found."""
    path = Path(path)
    display = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise PolicyError(Diagnostic(display, 0, 0, f"file is {size} bytes; the limit is {MAX_POLICY_BYTES} bytes",
                                         "suite_error"))
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(Diagnostic(display, 0, 0, f"cannot read the file: {exc.strerror}", "suite_error")) from None
    text = decode_text(raw, display)
    source = SourceFile(display, text)
    document = load_yaml_marked(text, source)
    return _SuiteReader(path, display, source).read(document)


def suite_name_of(path: Path) -> str:
    """The default suite name: the file name without ``_test.yaml``."""
    return path.name[: -len("_test.yaml")] if path.name.endswith("_test.yaml") else path.stem


class _SuiteReader:
    def __init__(self, path: Path, display: str, source: SourceFile):
        self.path = path
        self.display = display
        self.source = source
        self.problems: list[Diagnostic] = []
        self.fixtures: dict[str, dict] = {kind: {} for kind in FIXTURE_KINDS}
        self.default_context: dict = {}
        self.default_envoy: MarkedMap | None = None

    # -- problems --

    def problem(self, mark: Mark, message: str) -> None:
        diagnostic = self.source.diagnostic(mark[0], mark[1], message, "suite_error")
        if diagnostic not in self.problems:  # a matrix row is read once per resource
            self.problems.append(diagnostic)

    def keys(self, value: MarkedMap, allowed: tuple[str, ...], what: str) -> None:
        for key in value:
            if key not in allowed:
                self.problem(value.key_marks[key],
                             f"unknown key {key!r} in {what}; expected one of: {', '.join(allowed)}")

    def require(self, value: MarkedMap, key: str, what: str) -> bool:
        if key not in value or value[key] is None:
            self.problem((value.line, value.column), f"{what} is missing the required key {key!r}")
            return False
        return True

    # -- the document --

    def read(self, document: object) -> Suite:
        suite = Suite(suite_name_of(self.path), self.display, self.path, self.source)
        if not isinstance(document, MarkedMap):
            mark = (getattr(document, "line", 1) or 1, getattr(document, "column", 1) or 1)
            what = "an empty file" if document is None else _kind(document)
            self.problem(mark, f"a test suite is a mapping with 'tests' or 'matrix', got {what}")
            raise PolicyError(self.problems)
        self.keys(document, SUITE_KEYS, "the suite")
        if "suite" in document:
            name = document["suite"]
            if isinstance(name, str) and name.strip():
                suite.name = name.strip()
            else:
                self.problem(document.value_marks["suite"], "'suite' must be a non-empty string (the suite's name)")
        if "description" in document and not isinstance(document["description"], str):
            self.problem(document.value_marks["description"], "'description' must be a string")
        if "fixtures" in document:
            self.read_fixtures(document["fixtures"], document.value_marks["fixtures"])
        if "context" in document:
            context = document["context"]
            if isinstance(context, MarkedMap):
                self.default_context = context
            else:
                self.problem(document.value_marks["context"],
                             f"the suite's 'context' must be a mapping (merged into every test's context), "
                             f"got {_kind(context)}")
        if "envoy" in document:
            envoy = document["envoy"]
            if isinstance(envoy, MarkedMap):
                self.default_envoy = envoy
            else:
                self.problem(document.value_marks["envoy"],
                             f"the suite's 'envoy' must be a mapping (merged under every Envoy test's 'envoy'), "
                             f"got {_kind(envoy)}")
        if "data" in document:
            data = document["data"]
            suite.data_mark = document.value_marks["data"]
            if isinstance(data, MarkedMap):
                suite.data = _plain(data)
            else:
                self.problem(suite.data_mark, f"'data' must be a mapping of data names to values, got {_kind(data)}")
        if "tests" not in document and "matrix" not in document:
            self.problem((document.line, document.column), "a test suite needs 'tests' or 'matrix' (or both)")
        names: dict[str, Mark] = {}
        for key, reader in (("tests", self.read_test), ("matrix", self.read_matrix)):
            if key not in document:
                continue
            items = document[key]
            if not isinstance(items, MarkedList):
                self.problem(document.value_marks[key], f"'{key}' must be a list, got {_kind(items)}")
                continue
            for item, mark in zip(items, items.item_marks):
                for case in reader(suite, item, mark):
                    first = names.get(case.name)
                    if first is not None:
                        self.problem((case.line, case.column),
                                     f"duplicate test name {case.name!r} (first at line {first[0]}, "
                                     f"column {first[1]})")
                        continue
                    names[case.name] = (case.line, case.column)
                    suite.tests.append(case)
        if self.problems:
            raise PolicyError(sorted(self.problems, key=lambda d: (d.line, d.column)))
        return suite

    def read_fixtures(self, fixtures: object, mark: Mark) -> None:
        if not isinstance(fixtures, MarkedMap):
            self.problem(mark, f"'fixtures' must be a mapping with {', '.join(FIXTURE_KINDS)}, got {_kind(fixtures)}")
            return
        self.keys(fixtures, FIXTURE_KINDS, "'fixtures'")
        for kind in FIXTURE_KINDS:
            table = fixtures.get(kind)
            if table is None:
                continue
            if not isinstance(table, MarkedMap):
                self.problem(fixtures.value_marks[kind],
                             f"fixtures '{kind}' must be a mapping of names to {_one(kind)} maps, got {_kind(table)}")
                continue
            for name, value in table.items():
                if isinstance(value, MarkedMap) or (kind == "actions" and isinstance(value, str)):
                    self.fixtures[kind][name] = value
                else:
                    self.problem(table.value_marks[name],
                                 f"{_one(kind)} fixture {name!r} must be a mapping, got {_kind(value)}")

    # -- request parts --

    def part(self, kind: str, value: object, mark: Mark) -> dict | None:
        """A fixture name or an inline map ⇒ a fresh plain dict (None after reporting a problem)."""
        fixtures = self.fixtures[kind]
        if isinstance(value, str):
            if value in fixtures:
                found = fixtures[value]
                return {"name": found} if isinstance(found, str) else _plain(found)
            if kind == "actions":
                return {"name": value}
            known = ", ".join(sorted(fixtures)) or "none are defined"
            self.problem(mark, f"unknown {_one(kind)} fixture {value!r} (known: {known})")
            return None
        if isinstance(value, MarkedMap):
            return _plain(value)
        expected = ("an action name, an action fixture name or a mapping" if kind == "actions"
                    else f"an {_one(kind)} fixture name or a mapping" if kind == "identities"
                    else f"a {_one(kind)} fixture name or a mapping")
        self.problem(mark, f"'{_one(kind)}' must be {expected}, got {_kind(value)}")
        return None

    def request(self, item: MarkedMap, parts: dict[str, tuple[object, Mark]], what: str) -> dict | None:
        """Build a complete request from its four parts, the suite context and ``with``."""
        request: dict = {}
        ok = True
        for root, kind in (("identity", "identities"), ("action", "actions"), ("resource", "resources")):
            value, mark = parts[root]
            built = self.part(kind, value, mark)
            ok = ok and built is not None
            request[root] = built
        context = _plain(self.default_context)
        if "context" in parts:
            value, mark = parts["context"]
            built = self.part("contexts", value, mark)
            ok = ok and built is not None
            context = _merge(context, built or {})
        if context:
            request["context"] = context
        marks = {root: mark for root, (_, mark) in parts.items()}
        return self.finish(item, request, marks, what, ok)

    def finish(self, item: MarkedMap, request: dict, marks: dict[str, Mark], what: str, ok: bool = True) -> dict | None:
        """Apply the test's ``with`` to a built request and check the result (SPEC §3);
        ``marks`` place a problem with a request root."""
        if "with" in item:
            patch = item["with"]
            mark = item.value_marks["with"]
            if not isinstance(patch, MarkedMap):
                self.problem(mark, f"'with' must be a mapping with {', '.join(WITH_KEYS)}, got {_kind(patch)}")
                return None
            self.keys(patch, WITH_KEYS, "'with'")
            for root in WITH_KEYS:
                if root not in patch:
                    continue
                value = patch[root]
                if root == "action" and isinstance(value, str):
                    value = {"name": value}
                if not isinstance(value, dict):
                    self.problem(patch.value_marks[root], f"'with.{root}' must be a mapping, got {_kind(value)}")
                    ok = False
                    continue
                request[root] = _merge(request.get(root) or {}, _plain(value))
        if not ok:
            return None
        try:
            parse_request(request)
        except RequestError as err:
            root = err.path.split(".", 1)[0].split("[", 1)[0]
            self.problem(marks.get(root, (item.line, item.column)), f"{what}: the request is not valid: {err}")
            return None
        return request

    def envoy_request(self, item: MarkedMap, what: str) -> dict | None:
        """An Envoy test's request: its ``envoy`` map (over the suite's) ⇒ CheckRequest ⇒ the
        server's mapping ⇒ the suite context under its context ⇒ ``with``."""
        from ..server.envoy_authz import envoy_to_request
        from .envoy_cases import EnvoyCaseError, to_check_request

        given, mark = item["envoy"], item.value_marks["envoy"]
        if not isinstance(given, MarkedMap):
            self.problem(mark, f"'envoy' must be a mapping (method, path, principal, ...), got {_kind(given)}")
            return None
        fields = _merge(_plain(self.default_envoy) if self.default_envoy is not None else {}, _plain(given))
        try:
            check_request = to_check_request(fields)
        except EnvoyCaseError as err:
            self.envoy_problem(given, err, mark, what)
            return None
        request = envoy_to_request(check_request)
        request["context"] = _merge(_plain(self.default_context), request["context"])
        return self.finish(item, request, {root: mark for root in WITH_KEYS}, what)

    def envoy_problem(self, given: MarkedMap, err, mark: Mark, what: str) -> None:
        """Report a bad Envoy entry where it is written: in the test's map, else once in the
        suite's (every Envoy test meets it), else at the test's map."""
        for source, prefix in ((given, f"{what}: "), (self.default_envoy, "the suite's 'envoy': ")):
            if source is None or err.key not in source:
                continue
            inner = source[err.key]
            if err.name and isinstance(inner, MarkedMap) and err.name in inner:
                at = inner.value_marks[err.name]
            else:
                at = (source.key_marks if err.at_key else source.value_marks)[err.key]
            diagnostic = self.source.diagnostic(at[0], at[1], prefix + err.message, "suite_error")
            if diagnostic not in self.problems:
                self.problems.append(diagnostic)
            return
        self.problem(mark, f"{what}: {err.message}")

    def reasons(self, item: MarkedMap) -> tuple[tuple[str, ...], tuple[Mark, ...]] | None:
        if "reasons" not in item:
            return (), ()
        reasons = item["reasons"]
        if isinstance(reasons, str):
            return (reasons,), (item.value_marks["reasons"],)
        if not isinstance(reasons, MarkedList) or not all(isinstance(r, str) and r for r in reasons):
            self.problem(item.value_marks["reasons"], "'reasons' must be a list of rule ids (policy.rule)")
            return None
        return tuple(reasons), tuple(reasons.item_marks)

    def expectation(self, value: object, mark: Mark) -> str | None:
        if isinstance(value, str) and value.lower() in EXPECTATIONS:
            return value.upper()
        self.problem(mark, f"expected 'allow' or 'deny', got {_shown(value)}")
        return None

    # -- tests --

    def read_test(self, suite: Suite, item: object, mark: Mark) -> list[TestCase]:
        if not isinstance(item, MarkedMap):
            self.problem(mark, f"a test must be a mapping, got {_kind(item)}")
            return []
        self.keys(item, TEST_KEYS, "a test")
        name = self.name(item, "a test")
        what = f"test {name!r}" if name else "a test"
        if "envoy" in item:
            for root in WITH_KEYS:
                if root in item:
                    self.problem(item.key_marks[root],
                                 f"{what} gives its request in 'envoy', so it cannot give '{root}' too "
                                 f"(use 'with' to change the mapped request)")
            if name is None or not self.require(item, "expect", what) or any(root in item for root in WITH_KEYS):
                return []
            request = self.envoy_request(item, what)
        else:
            present = [self.require(item, key, what) for key in ("identity", "action", "resource", "expect")]
            if name is None or not all(present):
                return []
            parts = {root: (item[root], item.value_marks[root]) for root in WITH_KEYS if item.get(root) is not None}
            request = self.request(item, parts, what)
        expect = self.expectation(item["expect"], item.value_marks["expect"])
        reasons = self.reasons(item)
        token = None
        if item.get("token") is not None:
            token = self.token(item["token"], item.value_marks["token"])
            if token is None:
                return []
        limits = self.limits(item)
        if request is None or expect is None or reasons is None or limits is None:
            return []
        return [TestCase(suite.name, name, request, expect, reasons[0], self.display, mark[0], mark[1], reasons[1],
                         token, limits)]

    def token(self, value: object, mark: Mark) -> dict | None:
        """A test's token: the payload (a fixture name or a map) of a token taken as verified.
        ``iat``, ``nbf`` and ``exp`` may be written as RFC 3339 times; they become epoch seconds."""
        claims = self.part("tokens", value, mark)
        if claims is None:
            return None
        for claim in ("iat", "nbf", "exp"):
            if isinstance(claims.get(claim), str):
                try:
                    claims[claim] = parse_time(claims[claim])
                except EvalError as err:
                    self.problem(mark, f"token {claim}: {err.message}")
                    return None
        return claims

    def limits(self, item: MarkedMap) -> tuple[tuple[str, int, Mark], ...] | None:
        """``limits: {policy.limit: UNITS, ...}``: units left in those budgets before the test."""
        if "limits" not in item:
            return ()
        value, mark = item["limits"], item.value_marks["limits"]
        if not isinstance(value, MarkedMap):
            self.problem(mark, "'limits' must map limit rule ids to the units left, as "
                               f"{{velocity.charges: 0}}, got {_kind(value)}")
            return None
        out = []
        for rule, units in value.items():
            where = value.value_marks.get(rule, mark)
            if type(units) is not int or units < 0:
                self.problem(where, f"the units left in {rule!r} must be a whole number of at least 0, "
                                    f"got {units}")
                return None
            out.append((str(rule), units, where))
        return tuple(out)

    def name(self, item: MarkedMap, what: str) -> str | None:
        if not self.require(item, "name", what):
            return None
        name = item["name"]
        if not isinstance(name, (str, int, float)) or isinstance(name, bool) or not str(name).strip():
            self.problem(item.value_marks["name"], "'name' must be a non-empty string")
            return None
        return str(name).strip()

    def read_matrix(self, suite: Suite, item: object, mark: Mark) -> list[TestCase]:
        if not isinstance(item, MarkedMap):
            self.problem(mark, f"a matrix must be a mapping, got {_kind(item)}")
            return []
        self.keys(item, MATRIX_KEYS, "a matrix")
        name = self.name(item, "a matrix")
        what = f"matrix {name!r}" if name else "a matrix"
        present = [self.require(item, key, what) for key in ("identities", "actions", "resources", "expect")]
        if name is None or not all(present):
            return []
        axes: dict[str, list[str]] = {}
        for key in ("identities", "actions", "resources"):
            values = item[key]
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                self.problem(item.value_marks[key], f"'{key}' of a matrix must be a non-empty list of "
                                                    f"{'action names or ' if key == 'actions' else ''}fixture names")
                return []
            if len(set(values)) != len(values):
                self.problem(item.value_marks[key], f"'{key}' of a matrix lists a name twice")
                return []
            axes[key] = values
        table = item["expect"]
        table_mark = item.value_marks["expect"]
        if not isinstance(table, MarkedMap):
            self.problem(table_mark, "the 'expect' of a matrix is a table: one row per identity "
                                     "(allow, deny, a list with one entry per action, or a mapping per resource)")
            return []
        for identity in table:
            if identity not in axes["identities"]:
                self.problem(table.key_marks[identity],
                             f"row {identity!r} is not one of the matrix identities ({', '.join(axes['identities'])})")
        cases: list[TestCase] = []
        for identity in axes["identities"]:
            if identity not in table:
                self.problem(table_mark, f"{what}: the expectations table has no row for identity {identity!r}")
                continue
            for resource in axes["resources"]:
                cells = self.row(table, identity, resource, axes)
                if cells is None:
                    continue
                for action, (expected, cell_mark) in zip(axes["actions"], cells):
                    cell_name = f"{name} [{identity} {action} {resource}]"
                    parts = {"identity": (identity, item.value_marks["identities"]),
                             "action": (action, item.value_marks["actions"]),
                             "resource": (resource, item.value_marks["resources"])}
                    if item.get("context") is not None:
                        parts["context"] = (item["context"], item.value_marks["context"])
                    request = self.request(item, parts, f"{what}, cell {identity} {action} {resource}")
                    expect = self.expectation(expected, cell_mark)
                    if request is None or expect is None:
                        continue
                    cases.append(TestCase(suite.name, cell_name, request, expect, (), self.display,
                                          cell_mark[0], cell_mark[1]))
        return cases

    def row(self, table: MarkedMap, identity: str, resource: str, axes) -> list[tuple[object, Mark]] | None:
        """The expectations of one identity on one resource: one (value, mark) per action."""
        actions = axes["actions"]
        row, mark = table[identity], table.value_marks[identity]
        if isinstance(row, MarkedMap):
            if resource not in row:
                self.problem(mark, f"row {identity!r} has no entry for resource {resource!r}")
                return None
            for key in row:
                if key not in axes["resources"]:
                    self.problem(row.key_marks[key], f"{key!r} is not one of the matrix resources "
                                                     f"({', '.join(axes['resources'])})")
            row, mark = row[resource], row.value_marks[resource]
        elif isinstance(row, MarkedList) and len(axes["resources"]) > 1:
            self.problem(mark, f"with several resources, row {identity!r} must be allow, deny, "
                               "or a mapping of resource names to expectations")
            return None
        if isinstance(row, MarkedList):
            if len(row) != len(actions):
                self.problem(mark, f"row {identity!r} has {len(row)} entries but the matrix has "
                                   f"{len(actions)} actions ({', '.join(actions)})")
                return None
            return list(zip(row, row.item_marks))
        return [(row, mark)] * len(actions)


# ---- helpers ------------------------------------------------------------------------------


def _plain(value: object) -> object:
    """A deep copy with plain dicts and lists (no marks)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _merge(base: dict, patch: dict) -> dict:
    """``patch`` deep-merged over ``base``: maps merge, other values replace, ``None`` removes."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, str) else _kind(value)


def _one(kind: str) -> str:
    return {"identities": "identity", "actions": "action", "resources": "resource", "contexts": "context",
            "tokens": "token"}[kind]
