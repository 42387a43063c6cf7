"""Shared value semantics (SPEC §1 "Operators", §1.1): types, equality, ordering, times, CIDRs, rendering."""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdp.errors import EvalError
from pdp.values import (
    CidrSet,
    compare,
    equal,
    is_number,
    json_number,
    parse_network,
    parse_time,
    render,
    type_name,
)

# --- type names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, name",
    [
        ("x", "string"),
        ("", "string"),
        (0, "number"),
        (1.5, "number"),
        (True, "bool"),
        (False, "bool"),
        ([], "list"),
        ((1,), "list"),
        ({}, "map"),
        (CidrSet.from_strings(["10.0.0.0/8"]), "cidr set"),
    ],
)
def test_type_name(value, name):
    assert type_name(value) == name


def test_bool_is_not_a_number():
    assert is_number(1) and is_number(1.5)
    assert not is_number(True) and not is_number("1")


# --- equality -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b",
    [
        (1, 1),
        (1, 1.0),
        (0, -0.0),
        (2**63, 2**63),
        ("a", "a"),
        ("", ""),
        (True, True),
        (False, False),
        ([], []),
        ([1, "a", [True]], [1.0, "a", [True]]),
        ([1, 2], (1, 2)),
        ({"a": 1, "b": [2]}, {"b": [2.0], "a": 1}),
        ({"a": {"b": {"c": [1]}}}, {"a": {"b": {"c": [1.0]}}}),
        (CidrSet.from_strings(["10.0.0.0/8", "fd00::/8"]), CidrSet.from_strings(["fd00::/8", "10.0.0.0/8"])),
    ],
)
def test_equal(a, b):
    assert equal(a, b) and equal(b, a)


@pytest.mark.parametrize(
    "a, b",
    [
        (True, 1),
        (False, 0),
        (1.0, True),
        ([True], [1]),
        ({"a": False}, {"a": 0}),
        ("1", 1),
        ("true", True),
        (1, 2),
        (2**53 + 1, float(2**53)),  # compared exactly, not through float
        ("a", "A"),
        ([1, 2], [2, 1]),
        ([1], [1, 1]),
        ({"a": 1}, {"a": 1, "b": 2}),
        ({"a": 1}, {"b": 1}),
        ({"a": [1, [2]]}, {"a": [1, [3]]}),
        ([], {}),
        ("10.0.0.0/8", CidrSet.from_strings(["10.0.0.0/8"])),
        (CidrSet.from_strings(["10.0.0.0/8"]), CidrSet.from_strings(["10.0.0.0/9"])),
    ],
)
def test_not_equal(a, b):
    assert not equal(a, b) and not equal(b, a)


def test_equal_never_raises_on_deep_nesting():
    deep_a: list = []
    deep_b: list = []
    for _ in range(100_000):
        deep_a, deep_b = [deep_a], [deep_b]
    assert equal(deep_a, deep_b)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_values, json_values)
def test_equal_is_reflexive_symmetric_and_agrees_with_json(a, b):
    assert equal(a, a)
    assert equal(a, b) == equal(b, a)
    # A JSON round trip keeps the value: equal to itself after it.
    assert equal(a, json.loads(json.dumps(a)))


# --- ordering -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, a, b, expected",
    [
        ("<", 1, 2, True),
        ("<", 2, 1, False),
        ("<=", 2, 2.0, True),
        (">", 2.5, 2, True),
        (">=", -1, 0, False),
        ("<", 2**63 - 1, 2**63, True),
        ("<", "a", "b", True),
        ("<", "B", "a", True),  # code point order, not locale
        ("<", "z", "é", True),
        ("<", "\uffff", "\U0001f600", True),  # code points, not UTF-16 units
        (">=", "abc", "ab", True),
        ("<=", "", "", True),
    ],
)
def test_compare(op, a, b, expected):
    assert compare(op, a, b) is expected


@pytest.mark.parametrize(
    "a, b, message",
    [
        ("a", 3, "cannot compare string with number using <"),
        (3, "a", "cannot compare number with string using <"),
        (True, 1, "cannot compare bool with number using <"),
        (True, False, "cannot compare bool with bool using <"),
        ([1], [2], "cannot compare list with list using <"),
        ({}, 1, "cannot compare map with number using <"),
    ],
)
def test_compare_errors(a, b, message):
    with pytest.raises(EvalError) as info:
        compare("<", a, b)
    assert info.value.message == message


def test_compare_names_the_operator():
    with pytest.raises(EvalError, match="using >="):
        compare(">=", "a", 1)
    with pytest.raises(ValueError):
        compare("==", 1, 1)


# --- times ----------------------------------------------------------------------------------


def epoch(dt: datetime) -> float:
    return dt.timestamp()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-27T10:00:00Z", datetime(2026, 11, 27, 10, tzinfo=timezone.utc)),
        ("2026-11-27t10:00:00z", datetime(2026, 11, 27, 10, tzinfo=timezone.utc)),
        ("2026-11-27 10:00:00Z", datetime(2026, 11, 27, 10, tzinfo=timezone.utc)),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=timezone.utc)),
        ("1969-12-31T23:59:59Z", datetime(1969, 12, 31, 23, 59, 59, tzinfo=timezone.utc)),
        ("2026-11-27T12:30:00+02:30", datetime(2026, 11, 27, 10, tzinfo=timezone.utc)),
        ("2026-11-27T05:00:00-05:00", datetime(2026, 11, 27, 10, tzinfo=timezone.utc)),
        ("2026-11-27T10:00:00-00:00", datetime(2026, 11, 27, 10, tzinfo=timezone.utc)),
        ("2026-01-01T00:30:00+01:00", datetime(2025, 12, 31, 23, 30, tzinfo=timezone.utc)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=timezone.utc)),
        ("2000-02-29T00:00:00Z", datetime(2000, 2, 29, tzinfo=timezone.utc)),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=timezone.utc)),
    ],
)
def test_parse_time_whole_seconds(text, expected):
    got = parse_time(text)
    assert type(got) is int
    assert got == int(epoch(expected))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-27T10:00:00.5Z", datetime(2026, 11, 27, 10, 0, 0, 500000, tzinfo=timezone.utc)),
        ("2026-11-27T11:00:00.25+01:00", datetime(2026, 11, 27, 10, 0, 0, 250000, tzinfo=timezone.utc)),
        ("2026-11-27T10:00:00.123456789Z", datetime(2026, 11, 27, 10, 0, 0, 123457, tzinfo=timezone.utc)),
    ],
)
def test_parse_time_fractions(text, expected):
    got = parse_time(text)
    assert type(got) is float
    assert got == pytest.approx(epoch(expected), abs=1e-6)


def test_zero_fraction_is_an_integer():
    assert parse_time("2026-11-27T10:00:00.000Z") == parse_time("2026-11-27T10:00:00Z")
    assert type(parse_time("2026-11-27T10:00:00.000Z")) is int


def test_leap_second_counts_as_59():
    assert parse_time("2016-12-31T23:59:60Z") == parse_time("2016-12-31T23:59:59Z")
    assert parse_time("2016-12-31T23:59:60.5Z") == parse_time("2016-12-31T23:59:59Z") + 0.5


@settings(max_examples=300)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_parse_time_agrees_with_datetime(local, offset_minutes):
    tz = timezone(timedelta(minutes=offset_minutes))
    dt = local.replace(microsecond=0, tzinfo=tz)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    # Built by hand: strftime does not zero-pad years < 1000 on every platform.
    text = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
        f"{sign}{hours:02d}:{minutes:02d}"
    )
    expected = (dt - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(seconds=1)
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "",
        "2026-11-27",
        "2026-11-27T10:00:00",  # no offset
        "2026-11-27T10:00Z",  # no seconds
        "2026-11-27T10:00:00.Z",  # empty fraction
        "2026-11-27T10:00:00+0100",
        "2026-11-27T10:00:00+01",
        "2026-11-27X10:00:00Z",
        "26-11-27T10:00:00Z",
        "2026-1-27T10:00:00Z",
        " 2026-11-27T10:00:00Z",
        "2026-11-27T10:00:00Z ",
        "2026-11-27T10:00:00UTC",
        "２０２６-11-27T10:00:00Z",  # non-ASCII digits
        "1764237600",  # epoch seconds as a string
    ],
)
def test_parse_time_rejects_malformed(text):
    with pytest.raises(EvalError) as info:
        parse_time(text)
    assert info.value.message == f"{text!r} is not an RFC 3339 time"


@pytest.mark.parametrize(
    "text, field",
    [
        ("2026-13-01T00:00:00Z", "month"),
        ("2026-00-01T00:00:00Z", "month"),
        ("2026-01-00T00:00:00Z", "day"),
        ("2026-01-32T00:00:00Z", "day"),
        ("2026-04-31T00:00:00Z", "day"),
        ("2025-02-29T00:00:00Z", "day"),
        ("1900-02-29T00:00:00Z", "day"),
        ("2026-01-01T24:00:00Z", "hour"),
        ("2026-01-01T00:60:00Z", "minute"),
        ("2026-01-01T00:00:61Z", "second"),
        ("2026-01-01T00:00:00+24:00", "offset hour"),
        ("2026-01-01T00:00:00+01:60", "offset minute"),
        ("0000-01-01T00:00:00Z", "year"),
    ],
)
def test_parse_time_rejects_out_of_range(text, field):
    with pytest.raises(EvalError) as info:
        parse_time(text)
    assert info.value.message == f"{text!r} is not an RFC 3339 time ({field} out of range)"


def test_parse_time_quotes_long_text_briefly():
    with pytest.raises(EvalError) as info:
        parse_time("x" * 10_000)
    assert len(info.value.message) < 120


@pytest.mark.parametrize("number", [0, 1764237600, -5, 1764237600.25, 2**62])
def test_epoch_numbers_pass_through(number):
    got = parse_time(number)
    assert got == number and type(got) is type(number)


@pytest.mark.parametrize(
    "value, message",
    [
        (True, "time expects a string or number, got bool"),
        (False, "time expects a string or number, got bool"),
        ([1], "time expects a string or number, got list"),
        ({}, "time expects a string or number, got map"),
        (float("inf"), "time expects a finite number, got Infinity"),
        (float("nan"), "time expects a finite number, got NaN"),
    ],
)
def test_parse_time_rejects_other_types(value, message):
    with pytest.raises(EvalError) as info:
        parse_time(value)
    assert info.value.message == message


# --- networks and CIDR sets -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, normalized",
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("10.1.2.3", "10.1.2.3/32"),
        ("10.1.2.3/32", "10.1.2.3/32"),
        ("fd00::/8", "fd00::/8"),
        ("FD00:0::/8", "fd00::/8"),
        ("::1", "::1/128"),
        ("::/0", "::/0"),
    ],
)
def test_parse_network(text, normalized):
    assert str(parse_network(text)) == normalized


@pytest.mark.parametrize(
    "text, message",
    [
        ("10.1.0.0/8", "'10.1.0.0/8' has host bits set; did you mean 10.0.0.0/8?"),
        ("192.168.1.1/24", "'192.168.1.1/24' has host bits set; did you mean 192.168.1.0/24?"),
        ("fd00::1/8", "'fd00::1/8' has host bits set; did you mean fd00::/8?"),
        ("nope", "'nope' is not an IP network"),
        ("", "'' is not an IP network"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP network"),
        ("10.0.0/8", "'10.0.0/8' is not an IP network"),
        ("010.0.0.0/8", "'010.0.0.0/8' is not an IP network"),
        ("10.0.0.0/", "'10.0.0.0/' is not an IP network"),
        (" 10.0.0.0/8", "' 10.0.0.0/8' is not an IP network"),
        ("fe80::%eth0/64", "'fe80::%eth0/64' is not an IP network"),
        ("::/129", "'::/129' is not an IP network"),
    ],
)
def test_parse_network_errors(text, message):
    with pytest.raises(ValueError) as info:
        parse_network(text)
    assert str(info.value) == message


def test_parse_network_rejects_non_strings():
    with pytest.raises(ValueError, match="got number"):
        parse_network(167772160)  # type: ignore[arg-type]


NETS = CidrSet.from_strings(["10.0.0.0/8", "192.168.1.0/24", "fd00::/8", "203.0.113.7"])


@pytest.mark.parametrize(
    "ip, expected",
    [
        ("10.0.0.0", True),
        ("10.1.2.3", True),
        ("10.255.255.255", True),
        ("11.0.0.0", False),
        ("9.255.255.255", False),
        ("192.168.1.77", True),
        ("192.168.2.1", False),
        ("203.0.113.7", True),
        ("203.0.113.8", False),
        ("fd00::1", True),
        ("fdff:ffff::1", True),
        ("fe00::1", False),
        ("FD12::ABCD", True),
        ("::1", False),
        # IPv4-mapped IPv6 addresses match IPv4 networks
        ("::ffff:10.1.2.3", True),
        ("::ffff:a01:203", True),
        ("::ffff:11.1.2.3", False),
        ("::ffff:192.168.1.5", True),
        # ... but IPv4-compatible (deprecated) and NAT64 addresses do not
        ("::10.1.2.3", False),
        ("64:ff9b::10.1.2.3", False),
    ],
)
def test_cidr_contains(ip, expected):
    assert NETS.contains(ip) is expected


@pytest.mark.parametrize(
    "ip, message",
    [
        ("nope", "'nope' is not an IP address"),
        ("", "'' is not an IP address"),
        ("10.1.2", "'10.1.2' is not an IP address"),
        ("10.1.2.3.4", "'10.1.2.3.4' is not an IP address"),
        ("10.1.2.256", "'10.1.2.256' is not an IP address"),
        ("010.1.2.3", "'010.1.2.3' is not an IP address"),
        ("10.1.2.3/32", "'10.1.2.3/32' is not an IP address"),
        ("10.0.0.0/8", "'10.0.0.0/8' is not an IP address"),
        ("fd00::/8", "'fd00::/8' is not an IP address"),
        ("1０.1.2.3", "'1０.1.2.3' is not an IP address"),  # full-width digit
        (" 10.1.2.3", "' 10.1.2.3' is not an IP address"),
        ("fd00:::1", "'fd00:::1' is not an IP address"),
        (3, "in cidr(...) expects a string IP address, got number"),
        (True, "in cidr(...) expects a string IP address, got bool"),
        (["10.1.2.3"], "in cidr(...) expects a string IP address, got list"),
    ],
)
def test_cidr_contains_errors(ip, message):
    with pytest.raises(EvalError) as info:
        NETS.contains(ip)
    assert info.value.message == message


@settings(max_examples=500)
@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=6),
    st.integers(0, 2**32 - 1),
)
def test_cidr_contains_agrees_with_ipaddress_v4(specs, address):
    networks = [ipaddress.IPv4Network((a, p), strict=False) for a, p in specs]
    cidrs = CidrSet(networks)
    ip = ipaddress.IPv4Address(address)
    expected = any(ip in n for n in networks)
    assert cidrs.contains(str(ip)) is expected
    assert cidrs.contains(f"::ffff:{ip}") is expected


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)), max_size=6),
    st.integers(0, 2**128 - 1),
)
def test_cidr_contains_agrees_with_ipaddress_v6(specs, address):
    networks = [ipaddress.IPv6Network((a, p), strict=False) for a, p in specs]
    ip = ipaddress.IPv6Address(address)
    if ip.ipv4_mapped is not None:
        return
    assert CidrSet(networks).contains(str(ip)) is any(ip in n for n in networks)


def test_cidr_set_basics():
    a = CidrSet.from_strings(["10.0.0.0/8", "FD00::/8", "10.0.0.0/8"])
    assert a.strings() == ["10.0.0.0/8", "fd00::/8"]
    assert a == CidrSet.from_strings(["fd00::/8", "10.0.0.0/8"])
    assert hash(a) == hash(CidrSet.from_strings(["fd00::/8", "10.0.0.0/8"]))
    assert a != CidrSet.from_strings(["10.0.0.0/8"])
    assert repr(a) == 'cidr("10.0.0.0/8", "fd00::/8")'
    assert not CidrSet([]).contains("10.1.2.3")
    with pytest.raises(ValueError, match="has host bits set"):
        CidrSet.from_strings(["10.0.0.0/8", "10.1.0.0/8"])


def test_cidr_overlapping_and_adjacent_networks_merge():
    s = CidrSet.from_strings(["10.0.0.0/9", "10.128.0.0/9", "10.64.0.0/10", "12.0.0.0/8"])
    assert s.contains("10.0.0.0") and s.contains("10.200.0.1") and s.contains("12.3.4.5")
    assert not s.contains("11.0.0.0") and not s.contains("13.0.0.0")


# --- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        ("plain text", "plain text"),
        ('say "hi"', 'say "hi"'),
        ("", ""),
        (3, "3"),
        (-7, "-7"),
        (2**64, "18446744073709551616"),
        (3.0, "3"),
        (-0.0, "0"),
        (3.5, "3.5"),
        (0.1, "0.1"),
        (1e15, "1000000000000000"),
        (1e16, "1e+16"),
        (1.5e300, "1.5e+300"),
        (True, "true"),
        (False, "false"),
        ([], "[]"),
        ({}, "{}"),
        ([1, 2.0, "a", True, None], '[1,2,"a",true,null]'),
        ({"k": [1.0, {"x": 2.5}]}, '{"k":[1,{"x":2.5}]}'),
        (["é", "☃"], '["é","☃"]'),
        ((1, 2), "[1,2]"),
        (CidrSet.from_strings(["10.0.0.0/8", "fd00::/8"]), '["10.0.0.0/8","fd00::/8"]'),
        ({"nets": CidrSet.from_strings(["10.0.0.1"])}, '{"nets":["10.0.0.1/32"]}'),
    ],
)
def test_render(value, text):
    assert render(value) == text


def test_json_number():
    assert json_number(3.0) == 3 and type(json_number(3.0)) is int
    assert type(json_number(3.5)) is float
    assert type(json_number(1e16)) is float
    assert type(json_number(7)) is int


@settings(max_examples=300)
@given(json_values)
def test_render_is_json_for_containers(value):
    if isinstance(value, (list, dict)):
        assert equal(json.loads(render(value)), value)
