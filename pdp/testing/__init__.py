"""Policy testing: YAML suites (SPEC §6), the runner, its reports, and the control report.

``pdp test`` and ``pdp report`` are built on these modules, and so is the pytest plugin.
"""

from .runner import RunResult, Tester, TestResult
from .suite import Suite, TestCase, load_suite

__all__ = ["RunResult", "Suite", "TestCase", "TestResult", "Tester", "load_suite"]
