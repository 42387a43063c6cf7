"""pytest plugin (entry point ``pytest11``, name ``pdp``): policy test suites as pytest items.

Collection is opt-in: installing pdp must not change what other projects' pytest runs
collect. With ``pdp_suites = true`` in the ini file (or ``--pdp-suites``), ``pytest
policies/`` collects every ``*_test.yaml`` suite under ``policies/`` and runs each test (and
each matrix cell) as one pytest item, so policy tests run beside a team's other tests, with
pytest's ``-k``, ``--junitxml`` and reporting. Without it the plugin only registers its
options.

Which policies a suite tests: those under the ``pdp_paths`` ini option when it is set
(paths relative to the ini file), else under the pytest argument (a folder) that holds the
suite, else in the suite's own folder. A broken suite is a collection error showing the
positioned message; a failed test shows what ``pdp test`` shows. Disable with ``-p no:pdp``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..errors import PolicyError
from . import report
from .runner import Tester, TestResult
from .suite import Suite, TestCase

_TESTERS = pytest.StashKey[dict]()


def pytest_addoption(parser) -> None:
    parser.addini("pdp_suites", type="bool", default=False,
                  help="pdp: collect *_test.yaml policy suites as tests (default: false)")
    parser.getgroup("pdp").addoption("--pdp-suites", action="store_true", default=False,
                                     help="collect *_test.yaml policy suites as tests (as pdp_suites = true)")
    parser.addini("pdp_paths", type="paths", default=[],
                  help="pdp: policy files or folders the *_test.yaml suites test "
                       "(default: the pytest argument folder that holds each suite)")


def _enabled(config) -> bool:
    return bool(config.getoption("pdp_suites") or config.getini("pdp_suites"))


def pytest_collect_file(file_path: Path, parent):
    if file_path.name.endswith("_test.yaml") and _enabled(parent.config):
        return PolicySuiteFile.from_parent(parent, path=file_path)
    return None


def _policy_paths(config, suite_path: Path) -> tuple[str, ...]:
    configured = config.getini("pdp_paths")
    if configured:
        return tuple(str(p) for p in configured)
    here = config.invocation_params.dir
    holders = []
    for arg in config.args:
        candidate = (here / str(arg).split("::", 1)[0]).resolve()
        if candidate.is_dir() and (candidate == suite_path or candidate in suite_path.parents):
            holders.append(candidate)
    root = min(holders, key=lambda p: len(p.parts)) if holders else suite_path.parent
    return (_shown(root, here),)


def _shown(path: Path, here: Path) -> str:
    try:
        return str(path.relative_to(here)) or "."
    except ValueError:
        return str(path)


def _tester(config, paths: tuple[str, ...]) -> Tester:
    """One loaded policy set per distinct paths, for the whole session (a load error too)."""
    cache = config.stash.setdefault(_TESTERS, {})
    if paths not in cache:
        try:
            cache[paths] = Tester.load(paths)
        except PolicyError as err:
            cache[paths] = err
    found = cache[paths]
    if isinstance(found, PolicyError):
        raise found
    return found


class PolicyTestFailed(Exception):
    def __init__(self, result: TestResult):
        super().__init__(result.problems[0] if result.problems else "failed")
        self.result = result


class PolicySuiteFile(pytest.File):
    """A ``*_test.yaml`` file: one item per test and per matrix cell."""

    def collect(self):
        here = self.config.invocation_params.dir
        suite_path = Path(self.path).resolve()
        tester = _tester(self.config, _policy_paths(self.config, suite_path))
        suite = tester.load_suite(suite_path, _shown(suite_path, here))
        for case in suite.tests:
            yield PolicyTestItem.from_parent(self, name=case.name, suite=suite, case=case, tester=tester)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, PolicyError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class PolicyTestItem(pytest.Item):
    """One policy test: decide its request and compare with what it expects."""

    def __init__(self, *, suite: Suite, case: TestCase, tester: Tester, **kwargs):
        super().__init__(**kwargs)
        self.suite = suite
        self.case = case
        self.tester = tester

    def runtest(self) -> None:
        result = self.tester.run_case(self.case, self.suite)
        if not result.passed:
            raise PolicyTestFailed(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, PolicyTestFailed):
            return report.failure(excinfo.value.result, header=False)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.case.line - 1, self.case.id
