"""Loading (SPEC §2 "Loading", §1 data): which files a path yields, in which order, data files,
YAML/JSON types, errors without a position, and the revision hash."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import pdp
from conftest import request, write_files

ALLOW_ALL = "policy {name} {{\n  permit {rule}\n}}\n"


def policy(name: str, rule: str = "r") -> str:
    return ALLOW_ALL.format(name=name, rule=rule)


def load_error(*paths) -> pdp.PolicyError:
    with pytest.raises(pdp.PolicyError) as info:
        pdp.load(*paths)
    return info.value


# ---- which files, in which order -----------------------------------------------------------


def test_folders_are_searched_recursively_in_sorted_order_of_relative_path(tmp_path):
    write_files(tmp_path, {
        "b.pdl": policy("b"),
        "a/z.pdl": policy("az"),
        "a.pdl": policy("a"),
        "a/b/c/deep.pdl": policy("deep"),
        "A.pdl": policy("upper"),
        "a-b.pdl": policy("dash"),
    })
    engine = pdp.load(tmp_path)
    # Code point order of the '/'-separated relative path: 'A' < 'a' and '-' < '.' < '/'.
    assert engine.rule_ids == ["upper.r", "dash.r", "a.r", "deep.r", "az.r", "b.r"]
    # Reasons follow the same order.
    decision = engine.decide(request())
    assert [r.rule for r in decision.reasons] == engine.rule_ids


def test_sorting_is_by_path_not_by_file_name(tmp_path):
    write_files(tmp_path, {"z/a.pdl": policy("za"), "y/b.pdl": policy("yb"), "x.pdl": policy("x")})
    assert pdp.load(tmp_path).rule_ids == ["x.r", "yb.r", "za.r"]


def test_names_starting_with_a_dot_are_skipped(tmp_path):
    write_files(tmp_path, {
        "ok.pdl": policy("ok"),
        ".hidden.pdl": "not a policy at all {",
        ".git/objects/x.pdl": "garbage",
        "sub/.cache/y.pdl": "garbage",
        ".secret.data.yaml": "{broken",
        "sub/.x.data.json": "{broken",
    })
    engine = pdp.load(tmp_path)
    assert engine.rule_ids == ["ok.r"]
    assert dict(engine.policy_set.data) == {}


def test_a_dot_folder_given_as_the_argument_is_searched(tmp_path, monkeypatch):
    write_files(tmp_path, {".policies/a.pdl": policy("a")})
    monkeypatch.chdir(tmp_path)
    assert pdp.load(".policies").rule_ids == ["a.r"]
    monkeypatch.chdir(tmp_path / ".policies")
    assert pdp.load(".").rule_ids == ["a.r"]


def test_other_files_in_a_folder_are_ignored(tmp_path):
    write_files(tmp_path, {
        "a.pdl": policy("a"),
        "README.md": "# policies",
        "notes.yaml": "{broken",
        "x.json": "{broken",
        "a.pdl.bak": "garbage",
        "suite_test.yml": "{broken",  # only _test.yaml names a suite
    })
    assert pdp.load(tmp_path).rule_ids == ["a.r"]


def test_suites_are_never_loaded_as_policies(tmp_path):
    write_files(tmp_path, {
        "a.pdl": policy("a"),
        "payments_test.yaml": "suite: payments\ntests: [}\n",  # broken YAML: never even read
        "sub/more_test.yaml": "policy p { permit r }\n",
    })
    assert pdp.load(tmp_path).rule_ids == ["a.r"]
    # Given as a file argument, a suite is accepted and contributes nothing.
    engine = pdp.load(tmp_path / "payments_test.yaml")
    assert engine.rule_ids == []


def test_a_suite_is_not_part_of_the_revision(tmp_path):
    write_files(tmp_path, {"a.pdl": policy("a"), "a_test.yaml": "suite: a\ntests: []\n"})
    before = pdp.load(tmp_path).revision
    (tmp_path / "a_test.yaml").write_text("suite: a\ntests: []\n# changed\n")
    (tmp_path / "b_test.yaml").write_text("suite: b\n")
    assert pdp.load(tmp_path).revision == before


def test_an_unknown_kind_of_file_as_an_argument_is_an_error(tmp_path):
    write_files(tmp_path, {"README.md": "# hi", "notes.yaml": "a: 1"})
    err = load_error(tmp_path / "README.md", tmp_path / "notes.yaml")
    assert [(d.file, d.line, d.column) for d in err.diagnostics] == [
        (str(tmp_path / "README.md"), 0, 0), (str(tmp_path / "notes.yaml"), 0, 0)]
    assert str(err).split("\n")[0] == (
        f"{tmp_path / 'README.md'}: not a policy (.pdl), data (.data.yaml, .data.yml, .data.json) "
        "or suite (_test.yaml) file")


def test_an_empty_folder_loads_an_empty_policy_set(tmp_path):
    engine = pdp.load(tmp_path)
    assert engine.rule_ids == []
    decision = engine.decide(request())
    assert decision.decision == "DENY" and [r.rule for r in decision.reasons] == ["default"]


# ---- arguments ---------------------------------------------------------------------------


def test_arguments_are_taken_in_the_order_given(tmp_path):
    write_files(tmp_path, {"one/b.pdl": policy("b"), "two/a.pdl": policy("a"), "c.pdl": policy("c")})
    assert pdp.load(tmp_path / "two", tmp_path / "c.pdl", tmp_path / "one").rule_ids == ["a.r", "c.r", "b.r"]
    assert pdp.load(tmp_path / "one", tmp_path / "two", tmp_path / "c.pdl").rule_ids == ["b.r", "a.r", "c.r"]


def test_paths_may_be_strings_paths_or_one_list(tmp_path):
    write_files(tmp_path, {"a.pdl": policy("a"), "b.pdl": policy("b")})
    a, b = tmp_path / "a.pdl", tmp_path / "b.pdl"
    expected = ["b.r", "a.r"]
    assert pdp.load(str(b), str(a)).rule_ids == expected
    assert pdp.load(b, a).rule_ids == expected
    assert pdp.load([b, str(a)]).rule_ids == expected
    assert pdp.load((str(b), a)).rule_ids == expected


def test_a_file_reached_twice_is_loaded_once(tmp_path):
    write_files(tmp_path, {"a.pdl": policy("a"), "sub/b.pdl": policy("b")})
    engine = pdp.load(tmp_path, tmp_path / "a.pdl", tmp_path / "sub", tmp_path / "sub" / ".." / "a.pdl")
    assert engine.rule_ids == ["a.r", "b.r"]


def test_a_file_argument_and_its_folder_give_the_same_policy_set(tmp_path):
    write_files(tmp_path, {"p/a.pdl": policy("a")})
    by_file = pdp.load(tmp_path / "p" / "a.pdl")
    by_folder = pdp.load(tmp_path / "p")
    assert by_file.rule_ids == by_folder.rule_ids == ["a.r"]
    # The relative path of a file argument is its name, so the revisions agree too.
    assert by_file.revision == by_folder.revision


# ---- missing paths and other errors without a position -----------------------------------


def test_a_missing_path_is_file_colon_message_with_position_zero(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = load_error("policies")
    assert (err.file, err.line, err.column) == ("policies", 0, 0)
    assert str(err) == "policies: no such file or directory"
    assert len(err.diagnostics) == 1


def test_every_missing_path_is_reported(tmp_path, monkeypatch):
    write_files(tmp_path, {"a.pdl": policy("a")})
    monkeypatch.chdir(tmp_path)
    err = load_error("nope", "a.pdl", os.path.join("dir", "gone.pdl"))
    assert str(err) == ("nope: no such file or directory\n"
                        f"{os.path.join('dir', 'gone.pdl')}: no such file or directory")
    assert (err.file, err.line, err.column) == ("nope", 0, 0)


def test_no_paths_at_all_is_an_error():
    for args in ((), ([],)):
        err = load_error(*args)
        assert str(err) == "<arguments>: no policy paths given"
        assert (err.line, err.column) == (0, 0)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from pdp import loader

    monkeypatch.setattr(loader, "MAX_POLICY_BYTES", 100)
    write_files(tmp_path, {"big.pdl": policy("big") + "#" * 200 + "\n", "small.pdl": policy("small")})
    err = load_error(tmp_path)
    size = (tmp_path / "big.pdl").stat().st_size
    assert str(err) == f"{tmp_path / 'big.pdl'}: file is {size} bytes; the limit is 100 bytes"
    (tmp_path / "big.pdl").write_text(policy("big"))
    assert pdp.load(tmp_path).rule_ids == ["big.r", "small.r"]


# ---- data files --------------------------------------------------------------------------

INVENTORY_POLICY = """\
policy inventory {
  permit known
    when data.identities[identity.id].team == "billing"
     and data.roles.admins contains identity.id
     and data.limits.max == 5
}
"""


def test_data_files_become_data_dot_name(tmp_path):
    write_files(tmp_path, {
        "p.pdl": INVENTORY_POLICY,
        "identities.data.yaml": "svc:\n  team: billing\n",
        "sub/roles.data.yml": "admins: [svc, root]\n",
        "limits.data.json": '{"max": 5}',
    })
    engine = pdp.load(tmp_path)
    assert dict(engine.policy_set.data) == {
        "identities": {"svc": {"team": "billing"}},
        "roles": {"admins": ["svc", "root"]},
        "limits": {"max": 5},
    }
    assert engine.decide(request()).allowed
    assert not engine.decide(request(identity={"id": "other"})).allowed


def test_a_data_name_is_the_file_name_before_the_suffix(tmp_path):
    write_files(tmp_path, {
        "my-roles.data.yaml": "a: 1\n",
        "v1.2.data.json": "[1, 2]",
        "p.pdl": 'policy p {\n  permit r when data["my-roles"].a == 1 and data["v1.2"] == [1, 2]\n}\n',
    })
    engine = pdp.load(tmp_path)
    assert set(engine.policy_set.data) == {"my-roles", "v1.2"}
    assert engine.decide(request()).allowed


def test_a_data_file_may_be_a_file_argument(tmp_path):
    write_files(tmp_path, {"p.pdl": INVENTORY_POLICY, "d/identities.data.yaml": "svc: {team: billing}\n",
                           "d/roles.data.yml": "admins: [svc]\n", "d/limits.data.json": '{"max": 5}'})
    engine = pdp.load(tmp_path / "p.pdl", tmp_path / "d" / "identities.data.yaml", tmp_path / "d")
    assert set(engine.policy_set.data) == {"identities", "roles", "limits"}
    assert engine.decide(request()).allowed


@pytest.mark.parametrize("second", ["sub/team.data.json", "team.data.yml", "x/y/team.data.yaml"])
def test_two_data_files_with_one_name_are_an_error(tmp_path, monkeypatch, second):
    write_files(tmp_path, {"team.data.yaml": "a: 1\n", second: "{}\n" if second.endswith("json") else "b: 2\n"})
    monkeypatch.chdir(tmp_path)
    err = load_error(".")
    files = sorted(["team.data.yaml", second])
    first_shown, second_shown = (os.path.normpath(f) for f in files)
    assert str(err) == f"{second_shown}: data name 'team' is also defined by {first_shown}"
    assert (err.file, err.line, err.column, err.code) == (second_shown, 0, 0, "data_duplicate")


def test_two_data_files_with_one_name_in_two_arguments_are_an_error(tmp_path):
    write_files(tmp_path, {"a/team.data.yaml": "a: 1\n", "b/team.data.json": "{}"})
    err = load_error(tmp_path / "b", tmp_path / "a")
    assert str(err) == (f"{tmp_path / 'a' / 'team.data.yaml'}: data name 'team' is also defined by "
                        f"{tmp_path / 'b' / 'team.data.json'}")


def test_an_empty_data_file_is_an_empty_map(tmp_path):
    write_files(tmp_path, {"e.data.yaml": "", "c.data.yaml": "# only a comment\n"})
    assert dict(pdp.load(tmp_path).policy_set.data) == {"e": {}, "c": {}}


def test_data_may_be_any_json_value(tmp_path):
    write_files(tmp_path, {"l.data.json": "[1, 2.5, \"x\"]", "s.data.yaml": "just a string\n", "n.data.json": "7"})
    assert dict(pdp.load(tmp_path).policy_set.data) == {"l": [1, 2.5, "x"], "s": "just a string", "n": 7}


YAML_TYPES = """\
switches: [no, on, yes, off, y, n, NO, On]
booleans: [true, false, True, FALSE]
timestamp: 2026-11-27T10:00:00Z
date: 2001-12-14
spaced_time: 2001-12-14 21:59:43.10 -5
int: 42
negative: -7
float: 1.0
exponent: 1e3
hex: 0x1F
octal: 0o17
yaml11_octal: 017
underscored: 1_000
sexagesimal: 1:30
infinity: .inf
not_a_number: .nan
quoted_number: "42"
version: 1.10
empty_string: ""
binaryish: 0b101
"""


def test_yaml_is_read_with_json_types_only(tmp_path):
    write_files(tmp_path, {"t.data.yaml": YAML_TYPES})
    data = pdp.load(tmp_path).policy_set.data["t"]
    assert data == {
        "switches": ["no", "on", "yes", "off", "y", "n", "NO", "On"],
        "booleans": [True, False, True, False],
        "timestamp": "2026-11-27T10:00:00Z",
        "date": "2001-12-14",
        "spaced_time": "2001-12-14 21:59:43.10 -5",
        "int": 42,
        "negative": -7,
        "float": 1.0,
        "exponent": 1000.0,
        "hex": 31,
        "octal": 15,
        "yaml11_octal": 17,
        "underscored": "1_000",
        "sexagesimal": "1:30",
        "infinity": ".inf",
        "not_a_number": ".nan",
        "quoted_number": "42",
        "version": 1.1,
        "empty_string": "",
        "binaryish": "0b101",
    }
    # Integers and floats stay apart.
    assert type(data["int"]) is int and type(data["float"]) is float and type(data["exponent"]) is float
    assert all(type(v) is str for v in data["switches"])


def test_yaml_timestamps_stay_strings_that_time_reads(tmp_path):
    """Timestamps are strings; a policy turns an RFC 3339 one into a time with time()."""
    write_files(tmp_path, {
        "cfg.data.yaml": "cutoff: 2026-11-27T10:00:00Z\nday: 2026-11-27\n",
        "p.pdl": ('policy p {\n'
                  '  permit before_cutoff when now < time(data.cfg.cutoff)\n'
                  '  forbid day_is_not_a_time when time(data.cfg.day) > 0\n'
                  '}\n'),
    })
    engine = pdp.load(tmp_path)
    assert engine.policy_set.data["cfg"] == {"cutoff": "2026-11-27T10:00:00Z", "day": "2026-11-27"}
    # A bare date is not an RFC 3339 time: the forbid fails closed, naming the problem.
    early = engine.decide(request(context={"time": "2026-11-27T09:00:00Z"}))
    assert early.decision == "DENY"
    assert [r.rule for r in early.reasons] == ["p.day_is_not_a_time"]
    assert early.reasons[0].message.startswith("failed closed: ")
    assert [e.rule for e in early.errors] == ["p.day_is_not_a_time"]


def test_yaml_booleans_only_from_true_and_false(tmp_path):
    write_files(tmp_path, {
        "flags.data.yaml": "enabled: on\nstrict: true\n",
        "p.pdl": 'policy p {\n  permit strict when data.flags.strict\n  permit on when data.flags.enabled == "on"\n}\n',
    })
    decision = pdp.load(tmp_path).decide(request())
    assert [r.rule for r in decision.reasons] == ["p.strict", "p.on"]


def test_json_data_keeps_integers_and_floats_apart_and_exact(tmp_path):
    write_files(tmp_path, {"n.data.json": '{"i": 9007199254740993, "f": 1.0, "neg": -9223372036854775808}'})
    data = pdp.load(tmp_path).policy_set.data["n"]
    assert data == {"i": 9007199254740993, "f": 1.0, "neg": -(2**63)}
    assert type(data["i"]) is int and type(data["f"]) is float


@pytest.mark.parametrize("name, text, position, message", [
    ("d.data.yaml", "a: 1\na: 2\n", (2, 1), "duplicate key 'a' (first at line 1, column 1)"),
    ("d.data.yaml", "1: a\n", (1, 1), 'mapping keys must be strings, not an integer (quote it: "1")'),
    ("d.data.yaml", "a: [1\n", (2, 1), "did not find expected ',' or ']'"),
    ("d.data.yaml", "a: !!binary aGk=\n", (1, 4), "unsupported tag !!binary"),
    ("d.data.yaml", "base: &b {x: 1}\nother:\n  <<: *b\n", (3, 3), "merge keys ('<<') are not supported"),
    ("d.data.yaml", "a: 1\n---\nb: 2\n", (2, 1), "expected a single YAML document"),
    ("d.data.json", '{"a": 1,\n "a": 2}', (2, 2), "duplicate key 'a'"),
    ("d.data.json", '{"a": NaN}', (1, 7), "NaN is not a JSON value"),
    ("d.data.json", '{"a": 1,\n "b": }', (2, 7), "expecting value"),
])
def test_malformed_data_files_give_positioned_errors(tmp_path, monkeypatch, name, text, position, message):
    write_files(tmp_path, {name: text})
    monkeypatch.chdir(tmp_path)
    err = load_error(".")
    assert (err.file, (err.line, err.column)) == (name, position)
    assert err.message.startswith(message), err.message
    assert str(err).startswith(f"{name}:{position[0]}:{position[1]}: {message}")


def test_a_data_value_out_of_range_is_an_error_at_its_position(tmp_path, monkeypatch):
    write_files(tmp_path, {"n.data.json": '{"big": 18446744073709551616}'})
    monkeypatch.chdir(tmp_path)
    err = load_error(".")
    assert str(err) == ('n.data.json:1:9: data.n.big: integer does not fit in 64 bits\n'
                        '{"big": 18446744073709551616}\n'
                        '        ^')
    assert err.code == "data_value"


DEEP = "\n".join("  " * i + f"k{i}:" for i in range(33)) + " 1\n"


@pytest.mark.parametrize("name, text, position, message", [
    # SPEC 1.1: a null inside a list, an integer beyond 64 bits; also nesting past the request
    # limit and a lone surrogate, which no request could hold either.
    ("d.data.yaml", "admins:\n  ids:\n    - a\n    -\n    - b\n", (4, 6), "data.d.admins.ids[1]: null is not allowed"),
    ("d.data.yaml", "a: [1, null]\n", (1, 8), "data.d.a[1]: null is not allowed inside a list"),
    ("d.data.yaml", "x: {y: [1, 2]}\nlimits:\n  max: 99999999999999999999\n", (3, 8),
     "data.d.limits.max: integer does not fit in 64 bits"),
    ("d.data.yaml", "\ufeffa: -9223372036854775809\n", (1, 4), "data.d.a: integer does not fit"),
    ("d.data.yaml", "a: &x [1, ~]\nb: *x\n", (1, 11), "data.d.a[1]: null is not allowed"),
    ("d.data.yaml", DEEP, (33, 65), "data.d.k0.k1"),  # the map that is one level too deep
    ("d.data.json", '{"a": {"b": [0, 1]},\n "ids": [\n  "x",\n  null]}', (4, 3), "data.d.ids[1]: null is not allowed"),
    ("d.data.json", '[{"k": "[{,}]"}, {"n": -99999999999999999999}]', (1, 24), "data.d[1].n: integer does not fit"),
    ("d.data.json", '{"a\\"b": {"x": 18446744073709551616}}', (1, 16), 'data.d.a"b.x: integer does not fit'),
    ("d.data.json", '{"a": "\\udc00"}', (1, 7), "data.d.a: string holds a lone surrogate U+DC00"),
])
def test_bad_data_values_give_positioned_errors(tmp_path, monkeypatch, name, text, position, message):
    write_files(tmp_path, {name: text})
    monkeypatch.chdir(tmp_path)
    err = load_error(".")
    assert (err.file, (err.line, err.column), err.code) == (name, position, "data_value"), str(err)
    assert err.message.startswith(message), err.message
    assert str(err).startswith(f"{name}:{position[0]}:{position[1]}: {message}")


def test_errors_in_policies_and_data_are_reported_together_in_load_order(tmp_path, monkeypatch):
    write_files(tmp_path, {"b.pdl": "policy b {\n  permit r when nope\n}\n", "a.data.yaml": "x: 1\nx: 2\n"})
    monkeypatch.chdir(tmp_path)
    err = load_error(".")
    assert [(d.file, d.line, d.column) for d in err.diagnostics] == [("a.data.yaml", 2, 1), ("b.pdl", 2, 17)]


# ---- revision ----------------------------------------------------------------------------

POLICY_SET = {
    "payments.pdl": policy("payments"),
    "team/identity.pdl": policy("identity"),
    "roles.data.yaml": "admins: [svc]\n",
}


def revision_of(root: Path, files: dict | None = None) -> str:
    if files is not None:
        write_files(root, files)
    return pdp.load(root).revision


def test_revision_is_a_short_hex_content_hash_shown_in_decisions(tmp_path):
    engine = pdp.load(write_files(tmp_path, POLICY_SET))
    assert len(engine.revision) == 16 and int(engine.revision, 16) >= 0
    assert engine.decide(request()).revision == engine.revision
    assert engine.decide(request()).to_dict()["revision"] == engine.revision


def test_revision_is_deterministic(tmp_path):
    root = write_files(tmp_path, POLICY_SET)
    assert len({pdp.load(root).revision for _ in range(3)}) == 1


def test_revision_is_the_same_when_the_folder_moves(tmp_path):
    first = revision_of(tmp_path / "here", POLICY_SET)
    shutil.copytree(tmp_path / "here", tmp_path / "else" / "where")
    assert revision_of(tmp_path / "else" / "where") == first
    shutil.move(str(tmp_path / "here"), tmp_path / "moved")
    assert revision_of(tmp_path / "moved") == first


def test_revision_ignores_file_times_and_files_that_are_not_loaded(tmp_path):
    root = write_files(tmp_path, POLICY_SET)
    first = revision_of(root)
    os.utime(root / "payments.pdl", (0, 0))
    write_files(root, {"README.md": "docs", ".hidden.pdl": "garbage", "x_test.yaml": "suite: x\n"})
    assert revision_of(root) == first


def test_revision_changes_when_policy_content_changes(tmp_path):
    root = write_files(tmp_path, POLICY_SET)
    first = revision_of(root)
    (root / "payments.pdl").write_text(policy("payments") + "# a comment\n")
    second = revision_of(root)
    assert second != first
    (root / "payments.pdl").write_text(policy("payments"))
    assert revision_of(root) == first


def test_revision_changes_when_data_content_changes(tmp_path):
    root = write_files(tmp_path, POLICY_SET)
    first = revision_of(root)
    (root / "roles.data.yaml").write_text("admins: [svc, root]\n")
    assert revision_of(root) != first
    # The bytes count, not only the value: data is hashed as written.
    (root / "roles.data.yaml").write_text("admins:\n  - svc\n")
    assert revision_of(root) != first


def test_revision_changes_when_a_relative_path_changes(tmp_path):
    root = write_files(tmp_path, POLICY_SET)
    first = revision_of(root)
    (root / "team").rename(root / "teams")
    renamed_folder = revision_of(root)
    assert renamed_folder != first
    (root / "payments.pdl").rename(root / "payment.pdl")
    assert revision_of(root) not in (first, renamed_folder)


def test_revision_changes_when_a_file_is_added_or_removed(tmp_path):
    root = write_files(tmp_path, POLICY_SET)
    first = revision_of(root)
    write_files(root, {"extra.pdl": "# nothing here\n"})
    assert revision_of(root) != first
    (root / "extra.pdl").unlink()
    assert revision_of(root) == first
    (root / "roles.data.yaml").unlink()
    assert revision_of(root) != first


def test_revision_does_not_confuse_path_and_content_boundaries(tmp_path):
    """Moving bytes from the end of one file to the start of the next changes the revision."""
    one = revision_of(tmp_path / "one", {"a.pdl": "# x\n ", "b.pdl": "# y\n"})
    two = revision_of(tmp_path / "two", {"a.pdl": "# x\n", "b.pdl": " # y\n"})
    assert one != two


def test_revision_depends_on_argument_order(tmp_path):
    write_files(tmp_path, {"x/a.pdl": policy("a"), "y/b.pdl": policy("b")})
    assert pdp.load(tmp_path / "x", tmp_path / "y").revision != pdp.load(tmp_path / "y", tmp_path / "x").revision


def test_a_policy_set_that_fails_to_load_has_no_revision_but_reloading_the_fixed_one_works(tmp_path):
    root = write_files(tmp_path, POLICY_SET)
    first = revision_of(root)
    (root / "payments.pdl").write_text("policy payments {\n  permit r when\n")
    load_error(root)
    (root / "payments.pdl").write_text(policy("payments"))
    assert revision_of(root) == first
