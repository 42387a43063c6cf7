"""Reasons worded by the compiled evaluator (parts joined in C, ``duration()`` in C, the
records' fields set in place) are the reference evaluator's, character for character: on
durations at the edges of C's arithmetic, on generated numbers, and on messages that mix
character widths or pass the length cap."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from pdp.decision import MAX_REASON_CHARS

from strategies import write_policy_set
from test_differential import _check_all

_DURATION_RULES = (
    '  forbid shown when defined(context.d) reason "{identity.id} is {duration(context.d)} old"\n'
    '  forbid worded when duration(context.d) == "1h" reason "exactly {duration(context.d)}"\n'
    '  permit any when identity.id == "x" reason "{duration(context.d)}"\n'
)

_DURATIONS = [
    0, 1, -1, 59, 60, 61, 3599, 3600, 3605, 86399, 86400, 90061, 522994, 2**31, 2**53, 2**53 + 1, 2**62, -(2**62),
    2**62 + 1, 2**63 - 1, -(2**63),
    0.0, -0.0, 0.0001, -0.0001, 0.001, 0.25, 0.999, 0.9999999, 1.0, 1.5, 59.9, -90.5, 522993.919123888,
    1e15, 2.0**53 - 1, 2.0**53, -(2.0**53), 1e300, 5e-324, -5e-324,
    True, False, "1h", [1], {"a": 1}, None,
]


@pytest.fixture(scope="module")
def durations(tmp_path_factory):
    root = tmp_path_factory.mktemp("durations")
    return pdp.load(write_policy_set(root, [f"policy p {{\n{_DURATION_RULES}}}\n"], None), backend="reference")


def _requests(values):
    return [{"identity": {"type": "w", "id": "x"}, "action": "r", "resource": {"type": "t"},
             "context": {} if d is None else {"d": d}} for d in values]


def test_durations_at_their_edges(durations):
    """Ints and floats at the bounds of the C path (2**53, 2**62, a request's 64 bits), below
    a second, negative and huge; booleans, strings, lists and maps get the reference's error."""
    _check_all(durations, _requests(_DURATIONS))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1),
                                 st.integers(min_value=-10**7, max_value=10**7),
                                 st.floats(allow_nan=False, allow_infinity=False),
                                 st.floats(min_value=-10**6, max_value=10**6)), min_size=1, max_size=8))
def test_generated_durations_agree(durations, values):
    _check_all(durations, _requests(values))


_WIDE_RULES = (
    '  forbid mixed when defined(context.a) reason "é{context.a}:{context.b} — {context.n} {context.list}!"\n'
    '  permit one when identity.id == "x" reason "{context.a}"\n'
    '  permit two when identity.id == "x" reason "{context.a}{context.b}"\n'
)

#: Characters of every width CPython stores strings in (1, 2 and 4 bytes), and ASCII.
_CHARS = st.sampled_from(["a", "Z", " ", "\"", "\\", "\n", "é", "ÿ", "Ā", "€", "中", "\U0001F600", "\U00010000"])
_TEXTS = st.one_of(st.text(_CHARS, max_size=12), st.text(_CHARS, min_size=1, max_size=3).map(lambda t: t * 700),
                   st.just("x" * (MAX_REASON_CHARS + 1)))


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    root = tmp_path_factory.mktemp("wide")
    return pdp.load(write_policy_set(root, [f"policy p {{\n{_WIDE_RULES}}}\n"], None), backend="reference")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.fixed_dictionaries({"a": _TEXTS, "b": _TEXTS}, optional={
    "n": st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1),
                   st.floats(allow_nan=False, allow_infinity=False), st.booleans()),
    "list": st.lists(_TEXTS, max_size=3)}), min_size=1, max_size=6))
def test_messages_of_every_width_and_length_agree(wide, values):
    """Parts of different widths joined into one message, and messages past the cap (cut
    where the reference cuts them, ``...[truncated]``)."""
    _check_all(wide, [{"identity": {"type": "w", "id": "x"}, "action": "r", "resource": {"type": "t"},
                       "context": v} for v in values])
