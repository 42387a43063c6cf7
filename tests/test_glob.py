"""Glob matching (SPEC §1 "Glob", §1.1): semantics, validation, agreement with a reference, linearity."""

from __future__ import annotations

import time
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdp.glob import Glob, compile_glob, glob_error


def matches(pattern: str, text: str) -> bool:
    return compile_glob(pattern).match(text)


def reference(pattern: str, text: str) -> bool:
    """Obviously-correct memoized recursive matcher (exponential-free thanks to the cache)."""

    @lru_cache(maxsize=None)
    def go(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(text)
        if pattern.startswith("**", i):
            return go(i + 2, j) or (j < len(text) and go(i, j + 1))
        c = pattern[i]
        if c == "*":
            return go(i + 1, j) or (j < len(text) and text[j] != "/" and go(i, j + 1))
        if j == len(text):
            return False
        if c == "?":
            return text[j] != "/" and go(i + 1, j + 1)
        return text[j] == c and go(i + 1, j + 1)

    return go(0, 0)


# --- semantics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, text, expected",
    [
        # literals: whole-string match
        ("abc", "abc", True),
        ("abc", "abcd", False),
        ("abc", "ab", False),
        ("", "", True),
        ("", "a", False),
        # '*' does not cross '/'
        ("a*", "a", True),
        ("a*", "abc", True),
        ("a*", "ab/c", False),
        ("*", "", True),
        ("*", "/", False),
        ("*/b", "a/b", True),
        ("*/b", "x/y/b", False),
        ("a*c", "abbc", True),
        ("a*c", "ab/bc", False),
        ("spiffe://acme.prod/ns/billing/sa/*", "spiffe://acme.prod/ns/billing/sa/api", True),
        ("spiffe://acme.prod/ns/billing/sa/*", "spiffe://acme.prod/ns/billing/sa/api/x", False),
        ("spiffe://acme.prod/ns/billing/sa/*", "spiffe://acme.prod/ns/other/sa/api", False),
        # '**' crosses '/' and may be empty
        ("a/**", "a/", True),
        ("a/**", "a/x/y", True),
        ("a/**", "a", False),
        ("**", "", True),
        ("**", "x/y/z", True),
        ("**.txt", "dir/sub/f.txt", True),
        ("**.txt", "f.txt", True),
        ("**.txt", "f.txt.bak", False),
        ("a/**/b", "a//b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "a/x/b", True),
        ("a/**/b", "a/b", False),
        ("a/**/b", "a/x/y/c", False),
        ("**/x/**", "x", False),
        ("**/x/**", "a/x/b", True),
        ("**a**b**", "xxbxxa", False),
        ("**a**b**", "xxaxxb", True),
        # '?' is one character, never '/'
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a?c", "abbc", False),
        ("a?c", "a/c", False),
        ("??", "é☃", True),
        # mixed wildcards
        ("a/*/**/?", "a/b/c", False),
        ("a/*/**/?", "a/b//c", True),
        ("a/*/**/?", "a/b/x/y/c", True),
        ("*/**", "/", True),
        ("*/**", "a", False),
        ("*x**", "ax/b", True),
        ("*x**", "a/x", False),
        # everything else is literal: no classes, no escapes
        ("[ab]", "[ab]", True),
        ("[ab]", "a", False),
        ("a\\*", "a\\bc", True),
        ("a\\*", "a*", False),
        ("a.c", "abc", False),
        ("^a+$", "^a+$", True),
        # unicode is matched per code point
        ("ünï*", "ünïcode", True),
        ("ünï?", "ünïc", True),
        ("**☃", "a/b/☃", True),
        ("*☃", "a/☃", False),
    ],
)
def test_semantics(pattern, text, expected):
    assert matches(pattern, text) is expected
    assert reference(pattern, text) is expected  # the reference agrees with the spec too


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["***", "a/***", "****/b", "a*****b"])
def test_three_or_more_stars_are_malformed(pattern):
    message = glob_error(pattern)
    assert message == "'***' is not allowed in a glob; use '*' or '**'"
    with pytest.raises(ValueError, match=r"'\*\*\*' is not allowed"):
        compile_glob(pattern)
    with pytest.raises(ValueError):
        Glob(pattern)


@pytest.mark.parametrize("pattern", ["", "*", "**", "a/**/b", "* *", "*/**", "**/*", "?**?", "[", "\\"])
def test_valid_patterns(pattern):
    assert glob_error(pattern) is None
    assert compile_glob(pattern).pattern == pattern


def test_compile_is_cached():
    assert compile_glob("a/**/b") is compile_glob("a/**/b")
    assert compile_glob.cache_info().maxsize is not None  # bounded: patterns may come from requests


def test_glob_object():
    g = compile_glob("a*")
    assert g.pattern == "a*"
    assert g == Glob("a*")
    assert hash(g) == hash(Glob("a*"))
    assert "a*" in repr(g)


# --- agreement with the reference -----------------------------------------------------------

_pattern_chars = st.sampled_from(["a", "b", "/", "*", "?", "**"])
patterns = st.lists(_pattern_chars, max_size=10).map("".join).filter(lambda p: glob_error(p) is None)
texts = st.text(alphabet="ab/", max_size=12)


@settings(max_examples=3000, deadline=None)
@given(patterns, texts)
def test_agrees_with_reference(pattern, text):
    assert matches(pattern, text) == reference(pattern, text)


# Each fast path gets its own generator so none is exercised only by luck.
star_only = st.lists(st.sampled_from(["a", "b", "/", "*"]), max_size=10).map("".join).filter(
    lambda p: "**" not in p
)
dstar_only = st.lists(st.sampled_from(["a", "b", "/", "**"]), max_size=8).map("".join).filter(
    lambda p: "***" not in p
)
# '**' and '*' together with no '?' take the NFA path
mixed = st.lists(st.sampled_from(["a", "/", "*", "**"]), min_size=1, max_size=10).map("".join).filter(
    lambda p: glob_error(p) is None
)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(star_only, dstar_only, mixed), texts)
def test_fast_paths_agree_with_reference(pattern, text):
    assert matches(pattern, text) == reference(pattern, text)


@settings(max_examples=500, deadline=None)
@given(patterns, texts)
def test_text_built_from_pattern(pattern, text):
    """Texts derived from the pattern hit the matching cases more often than random ones."""
    derived = pattern.replace("**", text).replace("*", text.replace("/", "")).replace("?", "b")
    assert matches(pattern, derived) == reference(pattern, derived)
    assert matches(pattern, derived)


# --- linear time ----------------------------------------------------------------------------

N = 100_000


@pytest.mark.parametrize(
    "pattern, text, expected",
    [
        ("*a*a*a*a*a*b", "a" * N, False),
        ("**a**a**a**a**b", "a" * N, False),
        ("*a?*a?*a?*a?*b", "a" * N, False),  # '?' forces the NFA
        ("**a*?**a*a**?b", "a" * N, False),
        ("*a*a*a*a*a*b", "a" * N + "b", True),
        ("**a*?**a*a**?b", "a" * N + "b", True),
        ("*a*a*a*b", ("a/" * (N // 2)), False),
        ("**/a/**/a/**/b", "/a" * (N // 2), False),
        ("?" * 20 + "**" + "?" * 20, "a" * N, True),
        ("x**a*a*a**?b", "x" + "a" * N, False),
    ],
)
def test_pathological_inputs_are_linear(pattern, text, expected):
    g = compile_glob(pattern)
    started = time.perf_counter()
    assert g.match(text) is expected
    # A backtracking matcher needs ~N**k steps here; a linear one takes milliseconds.
    assert time.perf_counter() - started < 2.0


def test_nfa_reads_each_character_once():
    """Count the characters the NFA path pulls from the text: exactly one pass."""

    class CountingStr(str):
        reads = 0

        def __iter__(self):
            for c in str.__iter__(self):
                CountingStr.reads += 1
                yield c

    text = CountingStr("a" * 10_000)
    assert compile_glob("*b?*b?*").match(text) is False  # wildcards at both ends: no slicing
    assert CountingStr.reads == len(text)
