"""A malformed program never crashes the interpreter: a bundle whose structure is wrong (a node
row cut short, an item of the wrong type, an index out of range, a tree of the wrong shape)
is a PolicyError from load_bundle, and so is a malformed Program given to pdp.Engine or to an
evaluator's constructor (pdp.runtime.EVALUATORS). Each case runs in a child process
(tests/program_probe.py), so a segfault fails the test instead of killing pytest."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp
from pdp.compile import ir
from pdp.compile.program import Program, RuleCode
from pdp.compile.verify import MAX_NODE_DEPTH, verify

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def probe(cases: list) -> list[dict]:
    """Run ``cases`` in a child process; the outcomes of each, or fail on a crash."""
    # The child imports the very pdp this process runs (installed or checked out) and the tests' helpers.
    where = [str(Path(pdp.__file__).resolve().parents[1]), str(HERE), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(where)}
    done = subprocess.run([sys.executable, str(HERE / "program_probe.py")], input=pickle.dumps(cases),
                          capture_output=True, timeout=300, env=env)
    lines = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    assert done.returncode == 0, (f"the probe died (exit {done.returncode}) on case {len(lines)}: "
                                  f"{cases[len(lines)] if len(lines) < len(cases) else '?'!r:.300}\n"
                                  f"{done.stderr.decode()[-2000:]}")
    assert len(lines) == len(cases)
    backends = {"reference", *pdp.runtime.EVALUATORS}  # the child ran every backend this process has
    for (kind, _), line in zip(cases, lines):
        ran = {entry.split("/")[-1].removeprefix("EVALUATORS[").removesuffix("]") for entry in line["outcomes"]}
        assert ran >= (backends if kind == "bundle" else set(pdp.runtime.EVALUATORS)), line
    return [line["outcomes"] for line in lines]


@pytest.fixture(scope="module")
def engine():
    return pdp.load(REPO / "policies")


@pytest.fixture(scope="module")
def bundle(engine) -> list:
    """The good bundle, decoded: [header, body]."""
    return msgpack.unpackb(pdp.compile.program.encode(engine.program, engine.sources), raw=False,
                           strict_map_key=False)


def packed(doc: list) -> bytes:
    return msgpack.packb(doc, use_bin_type=True)


def only_policy_errors_or_ok(outcomes: dict) -> None:
    for entry, outcome in outcomes.items():
        assert outcome == "ok" or outcome.startswith("PolicyError: "), (entry, outcome)


# ---- hand-made malformed programs ----------------------------------------------------------

PATH_ENV = (ir.PATH, "identity", ("env",), ("identity", "identity.env"))
PATH_TYPE = (ir.PATH, "resource", ("type",), ("resource", "resource.type"))


def program(when=None, tree=None, rules=None, slots=0, **changes) -> Program:
    rules = rules if rules is not None else (RuleCode("p.r", "permit", 0, None, {}),)
    tree = tree if tree is not None else ("leaf", ((0, None, when, None),))
    return dataclasses.replace(Program("rev", ("p",), rules, ("leaf", ()), tree, slots), **changes)


MALFORMED = {
    "truncated CONST": (program(when=(ir.CONST,)), "a CONST node has 1 field, got 0"),
    "truncated PATH": (program(when=(ir.EQ_STR, (ir.PATH, "identity", ("env",)), "x", False)), "PATH node has 3"),
    "truncated EQ_STR": (program(when=(ir.EQ_STR, PATH_ENV, "x")), "EQ_STR node has 3 fields, got 2"),
    "PATH with too few texts": (program(when=(ir.EQ_STR, (ir.PATH, "identity", ("env",), ("identity",)), "x", False)),
                                "one text more than keys"),
    "EQ_STR text not a string": (program(when=(ir.EQ_STR, PATH_ENV, 5, False)), "str field must be a string"),
    "IN_STRS texts not strings": (program(when=(ir.IN_STRS, PATH_ENV, ("a", 1), False)), "tuple of strings"),
    "negate not a bool": (program(when=(ir.EQ_STR, PATH_ENV, "x", "no")), "must be true or false"),
    "AND items not a tuple": (program(when=(ir.AND, [PATH_ENV])), "tuple of nodes"),
    "child not a node": (program(when=(ir.NOT, "x")), "a node must be a non-empty tuple"),
    "empty node": (program(when=()), "a node must be a non-empty tuple"),
    "unknown opcode": (program(when=(99, 1)), "unknown opcode 99"),
    "opcode of another type": (program(when=("0", 1)), "unknown opcode"),
    "unknown root": (program(when=(ir.EQ_STR, (ir.PATH, "nobody", ("env",), ("nobody", "nobody.env")), "x", False)),
                     "must be one of identity"),
    "unknown operator": (program(when=(ir.COMPARE, "<>", PATH_ENV, PATH_ENV)), "is not an operator"),
    "unknown built-in": (program(when=(ir.CALL, "nope", (PATH_ENV,))), "not a built-in"),
    "built-in without its argument": (program(when=(ir.COMPARE, ">", (ir.CALL, "time", ()), (ir.CONST, 1))),
                                      "time takes 1 argument, got 0"),
    "bad glob": (program(when=(ir.MATCH_GLOB, PATH_ENV, "a***b")), "not a valid glob"),
    "bad network": (program(when=(ir.COMPARE, "in", PATH_ENV, (ir.CIDR, ("nope",)))), "not a list of networks"),
    "CONST not a JSON value": (program(when=(ir.CONST, {1, 2})), "not a JSON value"),
    "CACHED slot out of range": (program(when=(ir.CACHED, 0, PATH_ENV)), "not a slot below 0"),
    "CACHED slot shared": (program(when=(ir.AND, ((ir.CACHED, 0, (ir.CONST, True)), (ir.CACHED, 0, (ir.CONST, False)))),
                                   slots=1), "share CACHED slot 0"),
    "nested too deeply": (program(when=functools.reduce(lambda n, _: (ir.NOT, n),
                                                                                range(MAX_NODE_DEPTH + 1),
                                                                                (ir.CONST, True))),
                          f"deeper than {MAX_NODE_DEPTH}"),
    "rule index out of range": (program(tree=("leaf", ((3, None, None, None),))), "rule 3 out of range"),
    "negative rule index": (program(tree=("leaf", ((-1, None, None, None),))), "rule -1 out of range"),
    "rule index not an int": (program(tree=("leaf", (("0", None, None, None),))), "out of range"),
    "entry cut short": (program(tree=("leaf", ((0, None),))), "a leaf entry is (rule, target, when, unless)"),
    "leaf without entries": (program(tree=("leaf",)), "a leaf is ('leaf', entries)"),
    "unknown tree tag": (program(tree=("branch", ())), "expected a ('leaf', ...) or ('switch', ...)"),
    "tree not a tuple": (program(tree=["leaf", ()]), "expected a ('leaf', ...)"),
    "switch cut short": (program(tree=("switch", PATH_TYPE, {}, ("leaf", ()))), "a switch is"),
    "switch on a path that may fail, without an error branch": (
        program(tree=("switch", PATH_ENV, {"dev": ("leaf", ())}, ("leaf", ()), None)), "needs an error branch"),
    "branch keys not strings": (program(tree=("switch", PATH_TYPE, {1: ("leaf", ())}, ("leaf", ()), None)),
                                "branches must map strings"),
    "permit rule in the forbid tree": (program(forbid_tree=("leaf", ((0, None, None, None),))),
                                       "is a permit, in the forbid tree"),
    "bad effect": (program(rules=(RuleCode("p.r", "allow", 0, None, {}),)), "effect must be permit or forbid"),
    "policy index out of range": (program(rules=(RuleCode("p.r", "permit", 7, None, {}),)), "policy 7 out of range"),
    "reason part not a node": (program(rules=(RuleCode("p.r", "permit", 0, ("a", 5), {}),)), "a node must be"),
    "annotations not strings": (program(rules=(RuleCode("p.r", "permit", 0, None, {"k": 1}),)),
                                "annotations must map strings to strings"),
    "rules not a tuple": (program(rules=[RuleCode("p.r", "permit", 0, None, {})]), "rules must be a tuple"),
    "slots not a count": (program(slots=-1), "slots must be a count"),
}


def test_well_formed_programs_pass(engine):
    verify(engine.program)
    verify(program(when=(ir.EQ_STR, PATH_ENV, "x", False)))


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_programs_are_policy_errors(name):
    bad, words = MALFORMED[name]
    with pytest.raises(pdp.PolicyError, match="invalid program") as caught:
        verify(bad)
    assert words in str(caught.value), str(caught.value)


def test_every_entry_point_refuses_them_without_crashing():
    """Engine(program) on every backend and each EVALUATORS[...](program): a PolicyError
    naming the problem (checked in a child process: without the check, these crash it)."""
    names = list(MALFORMED)
    for name, outcomes in zip(names, probe([("program", n) for n in names])):
        for entry, outcome in outcomes.items():
            assert outcome.startswith("PolicyError: ") and MALFORMED[name][1] in outcome, (name, entry, outcome)


def test_something_that_is_not_a_program():
    for evaluator in pdp.runtime.EVALUATORS.values():
        with pytest.raises(pdp.PolicyError, match="expected a pdp Program, got dict"):
            evaluator({"rules": ()})


def test_a_bare_evaluator_object_decides_nothing_and_does_not_crash():
    """Evaluator.__new__ without __init__ (nothing linked): it denies, it does not crash."""
    for cls in pdp.runtime.EVALUATORS.values():
        if cls.backend == "compiled":
            d = cls.__new__(cls).decide({"identity": {"type": "w", "id": "x"}, "action": "r",
                                         "resource": {"type": "t"}})
            assert d.decision == "DENY" and d.reasons[0].rule == "default"


def test_decide_parsed_refuses_what_parse_request_did_not_make(engine):
    for cls in pdp.runtime.EVALUATORS.values():
        evaluator = cls(engine.program)
        bad = {"identity": "x", "action": {}, "resource": [], "context": 5}
        try:
            d = evaluator.decide_parsed(bad, 0.0)
        except TypeError:
            continue
        assert isinstance(d, pdp.Decision)  # the python evaluator reads it and fails closed


# ---- bundles: the decoded structure mutated -------------------------------------------------

_ODD = [None, -1, 0, 1, 2, 17, 10**6, -(2**63), "", "x", "leaf", "switch", "identity", [], {}, [1], [[0]],
        {"x": 1}, True, False, 1.5]


def _locations(doc: object, path: tuple = ()):
    """Every (container path, key) inside the body's program part."""
    if isinstance(doc, list):
        for i, x in enumerate(doc):
            yield path, i
            yield from _locations(x, path + (i,))
    elif isinstance(doc, dict):
        for k, x in doc.items():
            yield path, k
            yield from _locations(x, path + (k,))


def _at(doc: object, path: tuple) -> object:
    for key in path:
        doc = doc[key]  # type: ignore[index]
    return doc


@st.composite
def mutated(draw, bundle: list) -> bytes:
    """The good bundle with 1-3 changes inside its program: an item replaced by an odd value,
    a list cut short (a node row, an entry, a tree), an item appended."""
    doc = pickle.loads(pickle.dumps(bundle))  # a deep copy
    body = doc[1]
    program_part = {k: body[k] for k in ("nodes", "forbid_tree", "permit_tree", "rules", "slots", "policies")}
    places = list(_locations(program_part))
    for _ in range(draw(st.integers(1, 3))):
        path, key = draw(st.sampled_from(places))
        try:
            container = _at(program_part, path)
            how = draw(st.sampled_from(["replace", "replace", "cut", "append"]))
            if how == "replace" or not isinstance(container, list):
                container[key] = draw(st.sampled_from(_ODD))
            elif how == "cut":
                del container[key:]
            else:
                container.append(draw(st.sampled_from(_ODD)))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change moved this place: skip it
    body.update(program_part)
    return packed(doc)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_bundles_load_as_policy_errors_or_decide(bundle, data):
    """Whatever the change, load_bundle gives a PolicyError or an engine that decides."""
    cases = [("bundle", data.draw(mutated(bundle))) for _ in range(40)]
    for outcomes in probe(cases):
        only_policy_errors_or_ok(outcomes)


def test_node_rows_cut_short_are_policy_errors(bundle):
    """Each node row cut by one item, and each child index pointed out of range or backwards."""
    cases = []
    nodes = bundle[1]["nodes"]

    def with_row(i: int, row: list) -> bytes:  # the bundle with node row ``i`` replaced (not copied whole)
        rows = list(nodes)
        rows[i] = row
        return packed([bundle[0], {**bundle[1], "nodes": rows}])

    for i, row in enumerate(nodes):
        if len(row) > 1:
            cases.append(("bundle", with_row(i, row[:-1])))
    for bad_ref in (-1, len(nodes), "0"):
        i = next(i for i, r in enumerate(nodes) if r[0] in (ir.NOT, ir.EQ_STR, ir.IN_STRS, ir.MATCH_GLOB, ir.DEFINED))
        cases.append(("bundle", with_row(i, [nodes[i][0], bad_ref, *nodes[i][2:]])))
    assert len(cases) > 20
    for outcomes in probe(cases):
        for entry, outcome in outcomes.items():
            assert outcome.startswith("PolicyError: ") and "corrupt bundle" in outcome, (entry, outcome)
