"""Times for people (pdp/times.py): durations as people read them, and zones from the
standard library's zoneinfo with the tzdata package where the system has no zone database."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from pdp import times
from pdp.syntax.literals import parse_duration
from pdp.times import human_duration

from serverkit import PDP_HOME


def test_doctests():
    assert doctest.testmod(times).failed == 0


@settings(max_examples=300, deadline=None)
@given(seconds=st.one_of(st.integers(-10**12, 10**12), st.floats(-1e12, 1e12, allow_nan=False)))
def test_a_duration_for_people_is_a_duration_literal_that_never_overstates(seconds):
    text = human_duration(seconds)
    assert text.startswith("-") == (seconds < 0 and text != "0s")
    shown = parse_duration(text.lstrip("-"))
    # Cut, never rounded up: three units from the largest one, the rest dropped.
    magnitude = abs(seconds)
    sizes = [86400, 3600, 60, 1]
    if magnitude >= 1:
        largest = next(i for i, size in enumerate(sizes) if magnitude >= size)
        step = sizes[min(largest + times.SHOWN_UNITS - 1, len(sizes) - 1)]
    else:
        step = 0.001
    assert 0 <= magnitude - shown < step + 1e-6


def test_zones_come_from_tzdata_where_the_system_has_no_database(tmp_path):
    """PYTHONTZPATH="" hides the system's zone database: zoneinfo then reads the tzdata package,
    a dependency of pdp, and policies with zones load and decide the same."""
    (tmp_path / "p.pdl").write_text('policy p {\n  permit a when hour(now, "Europe/Paris") == 11\n}\n')
    script = (
        "import json, sys, zoneinfo, pdp\n"
        "assert zoneinfo.TZPATH == (), zoneinfo.TZPATH\n"
        "d = pdp.load(sys.argv[1]).decide({'identity': {'type': 'w', 'id': 'a'}, 'action': 'r',\n"
        "    'resource': {'type': 't'}, 'context': {'time': '2026-11-27T10:05:00Z'}})\n"
        "print(json.dumps(d.to_dict()))\n")
    env = {**os.environ, "PYTHONTZPATH": "", "PYTHONPATH": str(PDP_HOME)}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["decision"] == "ALLOW"
