"""Linear time on request data, through the whole engine on every backend: ``matches`` with
pathological globs (literal ones, and patterns that are themselves request data), substring
search with a pathological needle, comparisons, case conversion, ``in``, ``contains_any``
and ``contains_all`` on two large lists, times, IP addresses, map keys and reason rendering,
all on 1 MB inputs.

A backtracking or quadratic implementation needs ~10^11 steps or more on these inputs
(hours); the linear one needs about a second per decision, so the time bounds below are
generous enough never to flake on a busy CI machine and still tell the two apart. Where a
step count can be observed (hashing in ``contains_any``), the test counts steps instead.
tests/test_glob.py covers the glob matcher on its own (one pass over the text per match).
"""

from __future__ import annotations

import time

import pytest

import pdp
from conftest import request
from pdp import operators, runtime
from pdp.decision import MAX_REASON_CHARS
from pdp.glob import MAX_GLOB_CHARS
from pdp.request import MAX_LIST_ITEMS

BACKENDS = [*sorted(runtime.EVALUATORS), "reference"]
MB = 1_000_000
#: Seconds one decision on 1 MB inputs may take: ~20x what it takes on a busy 2-core machine.
BOUND = 30.0

GLOBS = [
    "*a*a*a*a*a*b",
    "**a**a**a**a**b",
    "*a?*a?*a?*a?*b",
    "**a*?**a*a**?b",
    "?" * 20 + "**" + "?" * 20,
    "x**a*a*a**?b",
    "*a*a*a*b/*",
    "**/a/**/a/**/b",
    "*?a*?a*?a*?a*?",
    "a*" * 40 + "?",
]

POLICY = "policy globs {\n" + "".join(
    f'  permit g{i} when resource.path matches "{g}"\n' for i, g in enumerate(GLOBS)) + """\
  permit dynamic when resource.path matches identity.pattern
}

policy strings {
  permit substring when resource.path contains identity.needle
  permit prefix when resource.path startswith identity.needle
  permit suffix when resource.path endswith identity.needle
  permit cases when lower(resource.path) == upper(identity.needle)
  permit order when resource.path < identity.needle
  permit literal_set when resource.path in ["a", "b"]
  permit member when resource.path in identity.paths
  permit length when len(resource.path) == 3
  permit key when data.d[resource.path] == 1
  permit stamp when time(context.stamp) == 0
  permit address when context.ip in cidr("10.0.0.0/8")
  permit any_tag when identity.tags contains_any resource.tags
  permit all_tags when identity.tags contains_all resource.tags
  permit any_number when identity.numbers contains_any resource.numbers
  permit all_lists when identity.pairs contains_all resource.pairs
  forbid never when resource.path == identity.needle reason "{resource.path}"
}
"""


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    root = tmp_path_factory.mktemp("linear")
    (root / "p.pdl").write_text(POLICY, encoding="utf-8")
    (root / "d.data.json").write_text('{"d": {"a": 1}}', encoding="utf-8")
    return {b: pdp.load(root, backend=b) for b in BACKENDS}


def pathological_request(n: int, tail: str) -> dict:
    """Inputs of about ``n`` characters each that defeat naive matching and search."""
    half = n // 2
    lists = MAX_LIST_ITEMS
    return request(
        identity={
            "pattern": ("*a?" * (MAX_GLOB_CHARS // 3))[:MAX_GLOB_CHARS - 1] + "b",  # the longest allowed
            "needle": "a" * half + "b",  # substring search: a naive one does n * n/2 steps
            "paths": ["a" * (n - 1) + "c", "b" * n] * 10,
            "tags": [f"tag-{i:05d}" for i in range(lists)],
            "numbers": list(range(lists)),
            "pairs": [[i, str(i)] for i in range(lists // 2)],
        },
        resource={
            "path": "a" * n + tail,
            "tags": [f"tag-{i:05d}" for i in range(lists, 2 * lists)],  # none shared: a scan does 10^8 steps
            "numbers": [float(i) for i in range(lists, 2 * lists)],
            "pairs": [[float(i), str(i)] for i in range(lists // 2 - 1, -1, -1)],
        },
        context={"stamp": "1970-01-01T00:00:00." + "0" * n + "Z", "ip": "1" * n},
    )


def decide_timed(engine, raw):
    started = time.perf_counter()
    decision = engine.decide(raw)
    return decision, time.perf_counter() - started


@pytest.mark.parametrize("tail", ["", "b"])
def test_one_megabyte_inputs_decide_in_linear_time_on_every_backend(engines, tail):
    raw = pathological_request(MB, tail)
    decisions = {}
    for backend, engine in engines.items():
        decision, elapsed = decide_timed(engine, raw)
        assert elapsed < BOUND, f"{backend}: {elapsed:.1f}s"
        decisions[backend] = decision
    assert len(set(decisions.values())) == 1, decisions
    decision = decisions["reference"]
    applied = {r.rule for r in decision.reasons}
    # What each rule makes of these inputs (so the fast paths are known to be right, not only fast).
    assert decision.decision == "ALLOW"
    expected = {"globs.g4", "globs.g8", "globs.g9", "strings.order", "strings.stamp", "strings.all_lists"}
    if tail == "b":
        expected |= {"globs.g0", "globs.g1", "globs.g2", "globs.g3", "globs.dynamic", "strings.substring",
                     "strings.suffix"}
    assert applied == expected
    errors = {e.rule: e.message for e in decision.errors}
    assert set(errors) == {"strings.key", "strings.address"}
    assert errors["strings.key"] == 'data.d["' + "a" * 61 + '..."] is missing'  # quoted, cut at 64
    assert errors["strings.address"] == repr("1" * 61 + "...") + " is not an IP address"


def test_a_reason_rendering_a_megabyte_stays_small(engines):
    raw = pathological_request(MB, "")
    raw["identity"]["needle"] = raw["resource"]["path"]
    for backend, engine in engines.items():
        decision, elapsed = decide_timed(engine, raw)
        assert elapsed < BOUND, backend
        assert decision.decision == "DENY" and len(decision.reasons[0].message) == MAX_REASON_CHARS


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_glob_from_the_request_is_bounded(engines, backend):
    """A pattern longer than MAX_GLOB_CHARS is an evaluation error (cost O(text * pattern));
    one at the limit on a 1 MB text matches within the bound."""
    engine = engines[backend]
    raw = pathological_request(10, "")
    raw["identity"]["pattern"] = "*" + "?" * (MAX_GLOB_CHARS - 1)
    raw["resource"]["path"] = "x" * MB
    decision, elapsed = decide_timed(engine, raw)
    assert elapsed < BOUND
    assert "globs.dynamic" in {r.rule for r in decision.reasons}
    raw["identity"]["pattern"] = "*" + "?" * MAX_GLOB_CHARS
    errors = {e.rule: e.message for e in engine.decide(raw).errors}
    assert errors["globs.dynamic"] == f"a glob may be at most {MAX_GLOB_CHARS} characters, got {MAX_GLOB_CHARS + 1}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_contains_any_and_all_hash_instead_of_scanning(engines, monkeypatch, backend):
    """Count the steps: each item of the two lists is keyed once (nested items once more),
    never once per pair."""
    keyed = [0]
    real = operators._key

    def counting(v):
        keyed[0] += 1
        return real(v)

    monkeypatch.setattr(operators, "_key", counting)
    raw = pathological_request(10, "")
    engines[backend].decide(raw)
    n = MAX_LIST_ITEMS
    # Tags twice (any, all), numbers once, n pairs of 2 items (3 keys each): about 8n keys;
    # scanning would compare ~n^2 pairs.
    assert 6 * n <= keyed[0] <= 20 * n


@pytest.mark.parametrize("op", ["contains_any", "contains_all"])
@pytest.mark.parametrize("size", [0, 1, 15, 17, 40])
def test_the_hashing_path_agrees_with_the_scan(op, size):
    """The index gives pdp equality: 1 == 1.0, true != 1, lists and maps by value, and a
    cidr set (no key) still compared."""
    from pdp.builtins import cidr_set

    haystack = [1, "1", True, [1, {"a": 2.0}], {"b": [True]}, 2.5, cidr_set(("10.0.0.0/8",))] * size
    needles = [1.0, "1", 1, [1.0, {"a": 2}], {"b": [1]}, False, cidr_set(("10.0.0.0/8",)), 3]
    fn = operators.OPERATORS[op]
    for k in range(len(needles) + 1):
        for subset in (needles[:k], needles[k:]):
            scan = (any if op == "contains_any" else all)(operators.member(x, haystack) for x in subset)
            assert fn(haystack, subset) is scan, (subset, size)


def test_time_grows_linearly_with_the_input(engines):
    """The whole engine on 1/8 MB and on 1 MB: at most ~4x the linear ratio, where a quadratic
    step would show 64x (best of three runs each, on the pure-Python backend)."""
    engine = engines["python"]

    def best(n: int) -> float:
        raw = pathological_request(n, "b")
        return min(decide_timed(engine, raw)[1] for _ in range(3))

    small, large = best(MB // 8), best(MB)
    assert large < 32 * max(small, 0.005), (small, large)
