"""``pdp check`` lint (pdp/check/lint.py): warnings with file:line:column, the source line and a
caret, for what loads but cannot be meant; exit 0 when there are only warnings, 1 with
``--strict``. And the error the issue met: an unknown ``data.NAME`` fails with a position."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pdp
from pdp.cli import main

REPO = Path(__file__).resolve().parents[1]


def check(tmp_path: Path, policy: str, capsys, *flags: str, data: dict | None = None) -> tuple[int, str]:
    (tmp_path / "p.pdl").write_text(policy, encoding="utf-8")
    for name, value in (data or {}).items():
        (tmp_path / f"{name}.data.json").write_text(json.dumps(value), encoding="utf-8")
    code = main(["check", str(tmp_path), *flags])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def warnings_of(tmp_path: Path, policy: str, data: dict | None = None) -> list[tuple[int, int, str]]:
    (tmp_path / "p.pdl").write_text(policy, encoding="utf-8")
    for name, value in (data or {}).items():
        (tmp_path / f"{name}.data.json").write_text(json.dumps(value), encoding="utf-8")
    return [(w.line, w.column, w.message) for w in pdp.load(tmp_path).policy_set.warnings]


def test_a_glob_with_a_bracket_is_a_warning_with_its_position(tmp_path, capsys):
    code, out = check(tmp_path, 'policy p {\n  permit business_hours when context.time matches "*T1[0-6]:*"\n}\n', capsys)
    assert code == 0
    assert (f"{tmp_path}/p.pdl:2:51: warning: the glob \"*T1[0-6]:*\" has '[', which matches only itself: "
            "globs have no character classes") in out
    assert '  permit business_hours when context.time matches "*T1[0-6]:*"\n' + " " * 50 + "^\n" in out
    assert "1 warning\nok: 1 policy, 1 rule" in out


def test_strict_makes_warnings_fail_and_json_lists_them(tmp_path, capsys):
    policy = 'policy p {\n  permit a when resource.path matches "/v1/[id]"\n}\n'
    code, out = check(tmp_path, policy, capsys, "--strict")
    assert code == 1 and "warning: the glob" in out and "ok:" not in out
    code, out = check(tmp_path, policy, capsys, "--json")
    answer = json.loads(out)
    assert code == 0 and answer["ok"] is True
    assert [(w["line"], w["column"], w["code"]) for w in answer["warnings"]] == [(2, 39, "lint_glob")]
    code, out = check(tmp_path, policy, capsys, "--json", "--strict")
    assert code == 1 and json.loads(out)["ok"] is False


def test_comparisons_that_can_never_hold(tmp_path):
    policy = """policy p {
  permit a when hour(now, "UTC") == "9"
  permit b when 1 == "1"
  permit c when data.limits.max == "3"
  permit d when weekday(now, "UTC") in ["Sat", "Sunday"]
  permit e when hour(now, "Europe/Paris") == 24
  permit f when 3 in ["a", "b"]
  permit g when len(identity.scopes) != "2"
  permit h when date(now, "UTC") >= "2026-1-5"
  permit i when "a" == "a"
}
"""
    assert warnings_of(tmp_path, policy, {"limits": {"max": 3}}) == [
        (2, 17, 'hour(now, "UTC") == "9" can never hold: it compares a number with a string, and values of '
                'different types are never equal'),
        (3, 17, '1 == "1" compares two constants: it never holds'),
        (4, 17, 'data.limits.max == "3" can never hold: it compares a number with a string, and values of '
                'different types are never equal'),
        (5, 48, 'weekday(...) never gives "Sunday": it gives "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"'),
        (6, 46, "hour(...) never gives 24: it gives a whole number from 0 to 23"),
        (7, 17, '3 in ["a", "b"] can never hold: a number is never equal to the string items of the list'),
        (8, 17, 'len(identity.scopes) != "2" always holds: it compares a number with a string, and values of '
                'different types are never equal'),
        (9, 37, 'date(...) never gives "2026-1-5": it gives a date as "YYYY-MM-DD"'),
        (10, 17, '"a" == "a" compares two constants: it always holds'),
    ]


def test_rules_that_can_never_apply(tmp_path):
    policy = """policy p {
  target resource.type == "payment"
  let is_invoice = resource.type == "invoice"
  forbid a when is_invoice and action.name == "x"
  permit b when action.name in ["read", "list"] and action.name == "write"
  permit c when identity.env == "prod" and false
  permit d unless true
  permit e when resource.type in ["payment", "refund"] and action.name == "read"
}
"""
    assert warnings_of(tmp_path, policy) == [
        (3, 20, 'rule p.a can never apply: resource.type must be "payment" (at 2:10) and "invoice" here'),
        (5, 53, 'rule p.b can never apply: action.name must be one of "list", "read" (at 5:17) and "write" here'),
        (6, 44, "rule p.c can never apply: this condition is false"),
        (7, 19, "rule p.d can never apply: its unless is true"),
    ]


@pytest.mark.parametrize("policy", [
    'policy p {\n  permit a when identity.env == resource.env and identity.env == "prod"\n}\n',
    'policy p {\n  permit a when resource.path matches "/v1/*" and hour(now, "UTC") >= 9\n}\n',
    'policy p {\n  target resource.type == "a"\n  permit a when resource.type == "a" or resource.type == "b"\n}\n',
    'policy p {\n  permit a when weekday(now, "UTC") not in ["Sat", "Sun"] and date(now, "UTC") < "2027-01-01"\n}\n',
])
def test_sensible_policies_have_no_warnings(tmp_path, policy):
    assert warnings_of(tmp_path, policy) == []


def test_the_shipped_policies_and_examples_have_no_warnings(capsys):
    assert main(["check", str(REPO / "policies"), "--strict"]) == 0
    assert main(["check", str(REPO / "examples" / "payments"), "--strict"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_unknown_data_name_fails_check_with_its_position(tmp_path, capsys):
    """The issue's policy: a typo in a data name passed `pdp check`, then denied every request."""
    (tmp_path / "identities.data.yaml").write_text("billing: {env: prod}\n", encoding="utf-8")
    code, out = check(tmp_path, "policy inventory {\n  let entry = data.identites[identity.id]\n"
                                "  forbid unknown unless defined(entry) reason \"not in the identity inventory\"\n}\n",
                      capsys)
    assert code == 1
    assert (f"{tmp_path}/p.pdl:2:20: unknown data name 'identites': no identites.data.yaml, .yml or .json is "
            "loaded; did you mean data.identities?") in out


def test_the_readme_warning_example_is_the_real_output(tmp_path, capsys, monkeypatch):
    """README's lint section shows a policy and what ``pdp check`` prints for it, verbatim."""
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Warnings: `pdp check` lint"):]
    policy, shown = re.search(r"```\n(policy hours \{.*?\n)```\n\n```console\n\$ pdp check hours.pdl\n(.*?)```",
                              section, re.S).groups()
    (tmp_path / "hours.pdl").write_text(policy, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "hours.pdl"]) == 0
    captured = capsys.readouterr()
    assert captured.err + captured.out == shown
