"""Issue 3's and issue 11's speed figures: decide / decide_many per decision, side by side with
Cedar; the shipped library (policies/) with a realistic traffic mix and a set with many
untargeted rules beside the 10-rule set; scaling with policy-set size, load and bundle start;
10,000 rules whose conditions test many attributes (workloads.varied) beside 10 such rules;
a random ~350-rule set in PDL and Cedar (random_sets.py) against cedarpy's batch API.
Run (medians are what counts):

    pytest bench/test_engine_speed.py --benchmark-only --benchmark-json=bench/results/engine.json
    python bench/engine_report.py bench/results/engine.json > bench/ENGINE.md

Every group checks, before timing, that the engines compared give the same decisions.
Everything here is timed on one CPU (see ``one_cpu``); PDP_BENCH_ANY_CPU=1 leaves the
process free to move.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import pdp
from pdp import runtime

sys.path.insert(0, str(Path(__file__).parent))
import random_sets  # noqa: E402
import workloads  # noqa: E402

BATCH = 200


@pytest.fixture(scope="module", autouse=True)
def one_cpu():
    """Pin this process to one CPU (the last it may use) while the module runs, and restore
    its affinity after. A process the scheduler moves to the other core mid-round finds its
    caches cold: on the 2-core VM pdp's decisions (memory-bound) ran ~10% slower unpinned,
    and with a wide spread, while cedarpy's batch (single-threaded, as its CPU time equal to
    its wall time shows) took the same time either way. Every engine compared here runs
    pinned alike."""
    if os.environ.get("PDP_BENCH_ANY_CPU") or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(before)})
    try:
        yield max(before)
    finally:
        os.sched_setaffinity(0, before)


@pytest.fixture(scope="module")
def set200(tmp_path_factory):
    pdl, cedar = workloads.targeted(20, 10)
    root = workloads.write_pdl(tmp_path_factory.mktemp("s200"), pdl)
    reqs = workloads.requests(20, BATCH)
    return root, cedar, reqs


def _per_decision(benchmark, n):
    benchmark.extra_info["decisions_per_round"] = n


@pytest.mark.parametrize("backend", sorted(runtime.EVALUATORS))
def test_decide_200_rules(benchmark, set200, backend):
    root, _, reqs = set200
    engine = pdp.load(root, backend=backend)
    reference = pdp.load(root, backend="reference")
    assert [engine.decide(r) for r in reqs] == [reference.decide(r) for r in reqs]
    benchmark.group = "200 rules: per batch of 200 decisions"
    _per_decision(benchmark, len(reqs))
    decide = engine.decide
    benchmark(lambda: [decide(r) for r in reqs])


@pytest.mark.parametrize("backend", sorted(runtime.EVALUATORS))
def test_decide_many_200_rules(benchmark, set200, backend):
    root, _, reqs = set200
    engine = pdp.load(root, backend=backend)
    benchmark.group = "200 rules: per batch of 200 decisions"
    _per_decision(benchmark, len(reqs))
    benchmark(engine.decide_many, reqs)


def test_cedarpy_batch_200_rules(benchmark, set200):
    cedarpy = pytest.importorskip("cedarpy")
    root, cedar, reqs = set200
    engine = pdp.load(root)
    cedar_reqs, entities = workloads.cedar_batch(reqs)
    # Cedar at its fastest through cedarpy: policies parsed once (a PolicySet), not per call.
    policies = cedarpy.PolicySet.from_str(cedar) if hasattr(cedarpy, "PolicySet") else cedar
    results = cedarpy.is_authorized_batch(cedar_reqs, policies, entities)
    rule_ids = engine.rule_ids  # Cedar names policies policy0, policy1, … in source order
    for r, c in zip(reqs, results):
        d = engine.decide(r)
        assert not c.diagnostics.errors, c.diagnostics.errors
        assert d.decision == ("ALLOW" if c.allowed else "DENY")
        mine = sorted(x.rule for x in d.reasons if x.rule != "default")
        assert mine == sorted(rule_ids[int(p.removeprefix("policy"))] for p in c.diagnostics.reasons)
    benchmark.group = "200 rules: per batch of 200 decisions"
    _per_decision(benchmark, len(reqs))
    benchmark(cedarpy.is_authorized_batch, cedar_reqs, policies, entities)


@pytest.fixture(scope="module")
def scaling(tmp_path_factory):
    small = workloads.write_pdl(tmp_path_factory.mktemp("s10"), workloads.targeted(1, 10)[0])
    big = workloads.write_pdl(tmp_path_factory.mktemp("s10k"), workloads.targeted(1000, 10)[0])
    return small, big


@pytest.fixture(scope="module")
def library():
    """The shipped library and 200 requests of its traffic mix (workloads.library_requests)."""
    engine = pdp.load(workloads.LIBRARY, backend="reference")
    return workloads.library_requests(dict(engine.policy_set.data), BATCH)


@pytest.mark.parametrize("backend", sorted(runtime.EVALUATORS))
def test_decide_shipped_library(benchmark, library, backend):
    engine = pdp.load(workloads.LIBRARY, backend=backend)
    reference = pdp.load(workloads.LIBRARY, backend="reference")
    decisions = [reference.decide(r) for r in library]
    assert [engine.decide(r) for r in library] == decisions
    assert {d.decision for d in decisions} == {"ALLOW", "DENY"}
    benchmark.group = "scaling: per batch of 200 decisions"
    _per_decision(benchmark, len(library))
    decide = engine.decide
    benchmark(lambda: [decide(r) for r in library])


def test_decide_many_shipped_library(benchmark, library):
    engine = pdp.load(workloads.LIBRARY)
    benchmark.group = "scaling: per batch of 200 decisions"
    _per_decision(benchmark, len(library))
    benchmark(engine.decide_many, library)


@pytest.fixture(scope="module")
def untargeted(tmp_path_factory):
    """300 rules in 30 policies, every other one untargeted (150 rules meet every request)."""
    return workloads.write_pdl(tmp_path_factory.mktemp("mixed"), workloads.mixed(30, 10))


def test_decide_300_rules_half_untargeted(benchmark, untargeted):
    engine = pdp.load(untargeted)
    reqs = workloads.requests(30, BATCH, seed=13)
    reference = pdp.load(untargeted, backend="reference")
    assert [engine.decide(r) for r in reqs] == [reference.decide(r) for r in reqs]
    benchmark.group = "scaling: per batch of 200 decisions"
    _per_decision(benchmark, len(reqs))
    decide = engine.decide
    benchmark(lambda: [decide(r) for r in reqs])


@pytest.mark.parametrize("size", ["10 rules", "10,000 rules in 1,000 policies"])
def test_scaling_per_decision(benchmark, scaling, size):
    small, big = scaling
    root = small if size == "10 rules" else big
    types = 1 if size == "10 rules" else 1000
    engine = pdp.load(root)
    # The same request shapes; each targets one of the set's resource types.
    reqs = workloads.requests(types, BATCH, seed=11)
    reference = pdp.load(root, backend="reference")
    assert [engine.decide(r) for r in reqs[:50]] == [reference.decide(r) for r in reqs[:50]]
    benchmark.group = "scaling: per batch of 200 decisions"
    _per_decision(benchmark, len(reqs))
    decide = engine.decide
    benchmark(lambda: [decide(r) for r in reqs])


def test_load_and_compile_10k_rules(benchmark, scaling):
    _, big = scaling
    benchmark.group = "start"
    engine = benchmark.pedantic(pdp.load, args=(big,), rounds=3, iterations=1)
    assert len(engine.rule_ids) == 10_000


def test_start_from_bundle_10k_rules(benchmark, scaling, tmp_path):
    _, big = scaling
    bundle = tmp_path / "big.bundle"
    pdp.write_bundle(pdp.load(big), bundle)
    benchmark.group = "start"
    engine = benchmark.pedantic(pdp.load_bundle, args=(bundle,), rounds=5, iterations=1)
    assert len(engine.rule_ids) == 10_000


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """10 rules and 10,000 rules in 1,000 targeted policies whose conditions test many
    attributes (workloads.varied: environments, tiers, scopes, actions, networks, globs, data
    lookups, labels, ages), with requests of the same vocabulary."""
    small = workloads.write_varied(tmp_path_factory.mktemp("v10"), 1, 10)
    big = workloads.write_varied(tmp_path_factory.mktemp("v10k"), 1000, 10)
    return small, big


@pytest.mark.parametrize("size", ["10 rules", "10,000 rules in 1,000 policies"])
def test_varied_conditions_per_decision(benchmark, varied, size):
    root = varied[0] if size == "10 rules" else varied[1]
    engine = pdp.load(root)
    reqs = workloads.varied_requests(1 if size == "10 rules" else 1000, BATCH)
    reference = pdp.load(root, backend="reference")
    decisions = [reference.decide(r) for r in reqs]
    assert [engine.decide(r) for r in reqs] == decisions
    assert {d.decision for d in decisions} == {"ALLOW", "DENY"}
    benchmark.group = "varied conditions: per batch of 200 decisions"
    _per_decision(benchmark, len(reqs))
    decide = engine.decide
    benchmark(lambda: [decide(r) for r in reqs])


def test_load_and_compile_10k_varied_rules(benchmark, varied):
    benchmark.group = "start"
    engine = benchmark.pedantic(pdp.load, args=(varied[1],), rounds=3, iterations=1)
    assert len(engine.rule_ids) == 10_000


@pytest.fixture(scope="module")
def random_set(tmp_path_factory):
    """A random policy set of about 350 rules in 60 policies, half of them with a random
    condition as target and half untargeted (random_sets.py), in PDL and Cedar, and 200
    requests; pdp and Cedar checked to agree on every error-free request."""
    model = random_sets.policy_set()
    root = workloads.write_pdl(tmp_path_factory.mktemp("random"), model.pdl())
    reqs = random_sets.requests(BATCH)
    return model, root, reqs


def test_decide_random_350_rules(benchmark, random_set):
    model, root, reqs = random_set
    engine = pdp.load(root)
    reference = pdp.load(root, backend="reference")
    pdl_reqs = [r.pdl() for r in reqs]
    decisions = [reference.decide(r) for r in pdl_reqs]
    assert [engine.decide(r) for r in pdl_reqs] == decisions
    assert {d.decision for d in decisions} == {"ALLOW", "DENY"}
    benchmark.group = "random 350 rules: per batch of 200 decisions"
    _per_decision(benchmark, len(reqs))
    decide = engine.decide
    benchmark(lambda: [decide(r) for r in pdl_reqs])


def test_decide_many_random_350_rules(benchmark, random_set):
    _, root, reqs = random_set
    engine = pdp.load(root)
    benchmark.group = "random 350 rules: per batch of 200 decisions"
    _per_decision(benchmark, len(reqs))
    benchmark(engine.decide_many, [r.pdl() for r in reqs])


def test_cedarpy_batch_random_350_rules(benchmark, random_set):
    cedarpy = pytest.importorskip("cedarpy")
    model, root, reqs = random_set
    cedar_reqs, entities = random_sets.cedar_batch(reqs)
    policies = cedarpy.PolicySet.from_str(model.cedar()) if hasattr(cedarpy, "PolicySet") else model.cedar()
    results = cedarpy.is_authorized_batch(cedar_reqs, policies, entities)
    counts = random_sets.agreement(pdp.load(root).decide_many([r.pdl() for r in reqs]), results, model)
    assert counts["error-free"] >= len(reqs) // 2 and 0 < counts["ALLOW"] < counts["error-free"], counts
    benchmark.group = "random 350 rules: per batch of 200 decisions"
    _per_decision(benchmark, len(reqs))
    benchmark(cedarpy.is_authorized_batch, cedar_reqs, policies, entities)
