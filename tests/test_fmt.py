"""``pdp fmt``: the canonical layout, comments kept, idempotence, decisions unchanged, bad input
reported with its position and never written, ``--check`` and ``--diff``."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdp.cli import main
from pdp.syntax.formatter import _tokens, format_source
from pdp.syntax.parser import SyntaxProblem, lark_parser

from strategies import load_policy_set, policy_sets, requests

ROOT = Path(__file__).resolve().parents[1]

MESSY = """\
# header

# about payments
@owner("payments-security")   # on the annotation
policy payments {   # on the brace
  target resource.type=="payment"
  let fresh = age( identity.credential.issued_at )<1h   # fresh
  # about the rule below

  @control("OWASP-NHI7") forbid long_lived_credential unless fresh
    reason "issued {age(identity.credential.issued_at)}s ago; # not a comment"



  permit billing_may_charge
    when identity.spiffe_id matches "spiffe://acme.prod/ns/billing/sa/*"   # the workload
     and action.name in ["charge","refund",]
     # scopes too
        and identity.scopes contains "payments:write"
    reason "billing"
  permit listed when action.name in [
      "a",   # first
      "b"
    ] and not (identity.x or
      identity.y)
  # end of the body
}
policy empty {}
policy only_comment {
  # nothing yet
}
# the end
"""

CANONICAL = """\
# header

# about payments
@owner("payments-security")  # on the annotation
policy payments {  # on the brace
  target resource.type == "payment"
  let fresh = age(identity.credential.issued_at) < 1h  # fresh
  # about the rule below

  @control("OWASP-NHI7")
  forbid long_lived_credential
    unless fresh
    reason "issued {age(identity.credential.issued_at)}s ago; # not a comment"

  permit billing_may_charge
    when identity.spiffe_id matches "spiffe://acme.prod/ns/billing/sa/*"  # the workload
     and action.name in ["charge", "refund"]
     # scopes too
     and identity.scopes contains "payments:write"
    reason "billing"
  permit listed
    when action.name in [
      "a",  # first
      "b",
    ] and not (identity.x
            or identity.y)
  # end of the body
}

policy empty {}

policy only_comment {
  # nothing yet
}
# the end
"""


def test_the_canonical_layout():
    assert format_source(MESSY) == CANONICAL


def test_formatting_is_idempotent_on_the_example():
    assert format_source(CANONICAL) == CANONICAL


@pytest.mark.parametrize("text, expected", [
    ("", ""),
    ("\n\n", ""),
    ("# only a comment\n", "# only a comment\n"),
    ("policy p{permit a}", "policy p {\n  permit a\n}\n"),
    # no blank line after `{` or before `}`; several blank lines become one
    ("policy p {\n\n  permit a\n\n\n  permit b\n\n}\n", "policy p {\n  permit a\n\n  permit b\n}\n"),
    ("policy p {\n  permit a\n\n  # later\n}\n", "policy p {\n  permit a\n\n  # later\n}\n"),
    ("policy p {\r\n  permit a when x.y in [1,2]\r\n}\r\n", "policy p {\n  permit a\n    when x.y in [1, 2]\n}\n"),
    # calls, indexes, `not in`, negative numbers, durations and keywords as attribute names
    ('policy p { forbid f when not ( len ( identity . scopes ) > -1 ) or resource [ "a b" ] . policy not in [ 1h30m ] }',
     'policy p {\n  forbid f\n    when not (len(identity.scopes) > -1) or resource["a b"].policy not in [1h30m]\n}\n'),
    # an `or` chain broken in an `unless`: the operator is right-aligned under the keyword
    ("policy p {\n  forbid f unless a.b or\n c.d\n}\n", "policy p {\n  forbid f\n    unless a.b\n        or c.d\n}\n"),
    # a broken chain in a let and in a target
    ("policy p {\n  target a.b and\n c.d\n  let x = a.b\n or c.d\n  permit r when x\n}\n",
     "policy p {\n  target a.b\n     and c.d\n  let x = a.b\n       or c.d\n  permit r\n    when x\n}\n"),
    # a limit rule: its head on one line (keys comma-separated), each clause on its own
    ('policy p {\n  @owasp("NHI2")   limit c 50 per 1h by identity.id,resource.type when action.name=="charge"'
     ' unless identity.id == "x" reason "too many"\n  limit d 5 per 1m by identity.id # note\n}\n',
     'policy p {\n  @owasp("NHI2")\n  limit c 50 per 1h by identity.id, resource.type\n    when action.name == "charge"\n'
     '    unless identity.id == "x"\n    reason "too many"\n  limit d 5 per 1m by identity.id  # note\n}\n'),
    # a multi-line call keeps one argument per line
    ('policy p { permit r when context.ip in cidr(\n"10.0.0.0/8", # office\n"fd00::/8") }',
     'policy p {\n  permit r\n    when context.ip in cidr(\n      "10.0.0.0/8",  # office\n      "fd00::/8",\n    )\n}\n'),
])
def test_layout_cases(text, expected):
    assert format_source(text) == expected
    assert format_source(expected) == expected


def test_every_comment_is_kept_in_order():
    text = "# a\npolicy p { # b\n  # c\n  permit r # d\n    when x.y # e\n    and z.w # f\n  # g\n} # h\n# i\n"
    out = format_source(text)
    assert [line.split("#", 1)[1].strip() for line in out.splitlines() if "#" in line] \
        == ["a", "b", "c", "d", "e", "f", "g", "h", "i"]


def test_a_syntax_error_is_positioned():
    with pytest.raises(SyntaxProblem) as caught:
        format_source("policy p {\n  permit r when a.b = 1\n}\n", "bad.pdl")
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.file, diagnostic.line, diagnostic.column) == ("bad.pdl", 2, 21)
    assert "use '==' to compare" in diagnostic.message


# ---- the command -----------------------------------------------------------------------------


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["fmt", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_fmt_rewrites_files_in_place_and_says_which(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    messy = tmp_path / "sub" / "a.pdl"
    messy.write_text(MESSY)
    tidy = tmp_path / "b.pdl"
    tidy.write_text(CANONICAL)
    (tmp_path / "x.data.yaml").write_text("a: 1\n")  # not a policy: left alone
    code, out, err = run(capsys, tmp_path)
    assert (code, err) == (0, "")
    assert out == f"formatted {messy}\n"
    assert messy.read_text() == CANONICAL
    assert tidy.read_text() == CANONICAL
    assert (tmp_path / "x.data.yaml").read_text() == "a: 1\n"


def test_check_lists_the_files_that_would_change_and_writes_nothing(tmp_path, capsys):
    messy = tmp_path / "a.pdl"
    messy.write_text(MESSY)
    (tmp_path / "b.pdl").write_text(CANONICAL)
    code, out, _ = run(capsys, "--check", tmp_path)
    assert code == 1
    assert out == f"would reformat {messy}\n"
    assert messy.read_text() == MESSY
    messy.write_text(CANONICAL)
    assert run(capsys, "--check", tmp_path) == (0, "", "")


def test_diff_prints_the_change_and_writes_nothing(tmp_path, capsys):
    messy = tmp_path / "a.pdl"
    messy.write_text("policy p {\npermit a when x.y==1\n}\n")
    code, out, _ = run(capsys, "--diff", messy)
    assert code == 0
    assert "-permit a when x.y==1\n+  permit a\n+    when x.y == 1\n" in out
    assert messy.read_text() == "policy p {\npermit a when x.y==1\n}\n"


def test_bad_input_is_reported_with_its_position_and_left_untouched(tmp_path, capsys):
    bad = tmp_path / "bad.pdl"
    bad.write_text("policy p {\n  permit r when a.b = 1\n}\n")
    messy = tmp_path / "messy.pdl"
    messy.write_text(MESSY)
    code, out, err = run(capsys, tmp_path)
    assert code == 1
    assert err.startswith(f"{bad}:2:21: unexpected '='")
    assert "^" in err
    assert bad.read_text() == "policy p {\n  permit r when a.b = 1\n}\n"
    assert messy.read_text() == CANONICAL  # the other files are still formatted
    assert out == f"formatted {messy}\n"


def test_a_missing_path_is_an_error(tmp_path, capsys):
    code, _, err = run(capsys, tmp_path / "nope")
    assert code == 1
    assert "no such file or directory" in err


def test_standard_input_to_standard_output(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(MESSY))
    code, out, _ = run(capsys, "-")
    assert (code, out) == (0, CANONICAL)
    monkeypatch.setattr(sys, "stdin", io.StringIO(MESSY))
    assert run(capsys, "--check", "-")[0] == 1


def test_the_file_mode_is_kept(tmp_path, capsys):
    path = tmp_path / "a.pdl"
    path.write_text(MESSY)
    path.chmod(0o640)
    run(capsys, path)
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.pdl"]  # no temporary file left


def test_the_shipped_policies_are_formatted(capsys):
    assert run(capsys, "--check", ROOT / "policies", ROOT / "examples") == (0, "", "")


# ---- properties: idempotent, and never a different decision ------------------------------------


def _scramble(text: str, seed: int) -> str:
    """The same tokens with random blanks, line breaks and comments between them."""
    rng = random.Random(seed)
    tokens = sorted(_tokens(lark_parser(keep_all_tokens=True).parse(text, start="start")), key=lambda t: t.start_pos)
    out: list[str] = []
    for tok in tokens:
        out.append(tok.value)
        roll = rng.random()
        if roll < 0.15:
            out.append(f"  # note {rng.randrange(100)}\n")
        elif roll < 0.3:
            out.append("\n" + " " * rng.randrange(6))
        elif roll < 0.35:
            out.append("\n\n# own line\n")
        else:
            out.append(" " * rng.randrange(1, 3))
    return "".join(out)


def _view(decision) -> tuple:
    return (decision.decision,
            [(r.rule, r.effect, r.message, dict(r.annotations)) for r in decision.reasons],
            [(e.rule, e.message) for e in decision.errors])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=policy_sets(max_policies=3, max_limits=2), seed=st.integers(0, 2**32 - 1),
       reqs=st.lists(requests(), min_size=1, max_size=6))
def test_formatting_never_changes_a_decision_and_is_idempotent(texts, seed, reqs):
    scrambled = [_scramble(text, seed + i) for i, text in enumerate(texts)]
    formatted = [format_source(text) for text in scrambled]
    assert [format_source(text) for text in formatted] == formatted
    assert [format_source(text) for text in texts] == [format_source(format_source(t)) for t in texts]
    before, after = load_policy_set(scrambled), load_policy_set(formatted)
    for request in reqs:
        assert _view(after.decide(request)) == _view(before.decide(request))
