"""The AST built during the parse (pdp/syntax/inline.py) is the one the parse tree gives.

Valid text is parsed once, building AST nodes in the LALR reductions; text with any problem
goes through the parse tree (recovery and diagnostics). Both must give the same nodes with
the same spans, which are left out of AST equality, so the comparison here includes them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings

import strategies
from pdp.source import Span, SourceFile
from pdp.syntax import to_ast
from pdp.syntax.parser import MAX_NESTING, SyntaxProblem, parse_tree
from pdp.syntax.to_ast import _ToAst, parse_module

ROOT = Path(__file__).resolve().parents[1]


def _shape(node):
    """The node with every span spelled out (file, line, column, end)."""
    if isinstance(node, Span):
        return ("span", node.file.name, node.line, node.column, node.end_line, node.end_column)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__,) + tuple(
            (f.name, _shape(getattr(node, f.name))) for f in dataclasses.fields(node))
    if isinstance(node, (list, tuple)):
        return tuple(_shape(item) for item in node)
    return node


def _from_tree(text: str, source: SourceFile):
    tree, diagnostics = parse_tree(text, source)
    builder = _ToAst(source)
    policies = builder.transform(tree)
    assert not diagnostics and not builder.diagnostics
    return policies


def _assert_same(text: str) -> None:
    source = SourceFile("p.pdl", text)
    inline = to_ast._parse_valid(text, source, "start")
    assert inline is not None, "valid text fell back to the tree parser"
    assert _shape(inline) == _shape(_from_tree(text, source))


CASES = {
    "empty": "",
    "comments only": "# nothing here\n\n# still nothing\n",
    "every kind of node": '''
@owner("team-a")
policy p {
  target resource.type == "doc" and (action.name in ["read", "list",] or identity.level >= 2)
  let ok = identity.scopes contains_any ["a", "b"]
  @severity("high")
  permit r1 when ok and not (identity.id in data.x.admins) unless identity.id not in []
    reason "hello {identity.id} {{literal}} {data.x.roles[\\"alice\\"]}"
  forbid r2 when (((identity.env))) != "prod" reason "plain"
  permit r3 when f() == g(1, 2.5, -3,) and 1h30m > 0s and true != false
  permit r4 when context.source_ip in cidr("10.0.0.0/8") and identity.id matches "a*"
}
policy q { }
''',
    "parentheses at both ends of a comparison": "policy p { permit r when (a.b) == (c[\"d\"]) }\n",
    "windows line ends": "policy p {\r\n  permit r when identity.id == \"a\"\r\n}\r\n",
    "keywords as attribute names": "policy p { permit r when resource.policy.when.in == 1 }\n",
    "a reason split by escapes": 'policy p { permit r when true reason "tab\\t{identity.id}\\u00e9{action.name}" }\n',
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_written_cases_build_the_same_nodes(name):
    _assert_same(CASES[name])


def test_shipped_policies_and_examples_build_the_same_nodes():
    files = sorted((ROOT / "policies").rglob("*.pdl")) + sorted((ROOT / "examples").rglob("*.pdl"))
    assert files
    for path in files:
        _assert_same(path.read_text(encoding="utf-8"))


@settings(max_examples=60, deadline=None)
@given(strategies.policy_sets(max_policies=3, depth=3))
def test_generated_policies_build_the_same_nodes(texts):
    for text in texts:
        _assert_same(text)


@pytest.mark.parametrize("text", [
    "policy p { permit r when a == }\n",                      # syntax error: recovery and messages
    'policy p { permit r when a == "\\q" }\n',                # bad escape, found while building
    "policy p { permit r when a == 1.5h }\n",                 # bad duration
    'policy p { permit r when true reason "{a ==}" }\n',      # error inside a reason's {...}
    "policy p { permit r when a.b ! c }\n",                   # unexpected character
])
def test_text_with_problems_is_left_to_the_tree_parser(text):
    assert to_ast._parse_valid(text, SourceFile("p.pdl", text), "start") is None
    with pytest.raises(SyntaxProblem):
        parse_module(text, SourceFile("p.pdl", text))


@pytest.mark.parametrize("expression", [
    "not " * (MAX_NESTING + 1) + "true",
    "a" + ".b" * (MAX_NESTING + 1),
])
def test_too_deep_nesting_is_reported_by_the_tree_parser(expression):
    text = f"policy p {{ permit r when {expression} }}\n"
    source = SourceFile("p.pdl", text)
    assert to_ast._parse_valid(text, source, "start") is None
    with pytest.raises(SyntaxProblem) as raised:
        parse_module(text, source)
    assert "nested too deeply" in str(raised.value)


def test_nesting_just_under_the_limit_is_built_inline():
    # start, policy, rule, when: the expression may be MAX_NESTING - 4 levels deep.
    _assert_same("policy p { permit r when " + "not " * (MAX_NESTING - 5) + "true }\n")
