"""The benchmark suite in quick mode (bench/, issue 6): the comparison harness gives the same
decisions in every engine on small workloads and catches an engine that does not; the
pytest-benchmark suite runs a few rounds; the report renders. Correctness only — nothing here
is timed against a threshold.

Engines whose package is not installed (cedarpy, regopy, casbin) are skipped with the reason.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
import scaling  # noqa: E402

ENGINES = list(harness.ENGINES)


def adapter_or_skip(name: str, workload: harness.Workload) -> harness.Adapter:
    reason = harness.ENGINES[name].missing()
    if reason is not None:
        pytest.skip(f"{name}: {reason}")
    return harness.ENGINES[name](workload)


@pytest.fixture(scope="module")
def small() -> harness.Workload:
    return harness.targeted(3, 10, requests=200)


def test_the_workload_exercises_every_rule_shape(small):
    engine = harness.Pdp(small).engine
    decisions = [engine.decide(r) for r in small.requests]
    shapes = collections.Counter(reason.rule.split(".")[-1].rsplit("_", 1)[0]
                                 for d in decisions for reason in d.reasons)
    assert set(shapes) == {s.name for s in harness.SHAPES} | {"default"}, shapes
    allowed = sum(d.allowed for d in decisions)
    assert 0.15 * len(decisions) < allowed < 0.85 * len(decisions)
    assert not any(d.errors for d in decisions)  # no fail-closed case: the engines' semantics coincide


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_decides_like_pdp(small, engine):
    adapter = adapter_or_skip(engine, small)
    report = harness.check_agreement(small, {engine: adapter})[engine]
    assert report["requests"] == len(small.requests)
    assert report["reasons_compared"] is (engine != "casbin")  # casbin names no determining rules


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_decides_like_pdp_on_one_flat_policy(engine):
    workload = harness.targeted(1, 25, requests=60)
    harness.check_agreement(workload, {engine: adapter_or_skip(engine, workload)})


@pytest.mark.parametrize("pad", [scaling.pad_lists(50), scaling.pad_attributes(50)], ids=["lists", "attributes"])
@pytest.mark.parametrize("engine", ENGINES)
def test_engine_decides_like_pdp_on_large_requests(engine, pad):
    workload = harness.targeted(2, 10, requests=30, request_fn=pad)
    harness.check_agreement(workload, {engine: adapter_or_skip(engine, workload)})


def test_empty_policy_set_denies_everywhere():
    workload = harness.targeted(0, 10, requests=10)
    ok, _ = harness.available()
    adapters = {name: harness.ENGINES[name](workload) for name in ok}
    report = harness.check_agreement(workload, adapters)
    assert all(r["allowed"] == 0 for r in report.values())


def test_a_disagreement_is_caught_before_timing(small):
    cedarpy = pytest.importorskip("cedarpy", reason="cedarpy is not installed")
    assert cedarpy
    tampered = harness.targeted(3, 10, requests=200)
    tampered.cedar = tampered.cedar.replace("forbid(", "permit(", 1)  # type0.cross_env_2 now permits
    with pytest.raises(harness.Disagreement) as exc:
        harness.check_agreement(tampered, {"cedar": harness.Cedar(tampered)})
    message = str(exc.value)
    assert "disagreements, e.g." in message and "pdp: DENY ['type0.cross_env_2']" in message
    assert "cedar: ALLOW" in message


def test_a_batch_that_differs_from_single_calls_is_caught(small):
    class Lying(harness.Pdp):
        def batch_outcomes(self, result):
            return [harness.Outcome(not o.allowed, o.reasons) for o in super().batch_outcomes(result)]

    with pytest.raises(harness.Disagreement, match="decided alone"):
        harness.check_agreement(small, {"pdp": Lying(small)})


def test_latency_rounds_give_stats_for_every_engine(small):
    ok, _ = harness.available()
    adapters = {name: harness.ENGINES[name](small) for name in ok}
    out = scaling.latency(small, adapters, rounds=2, seconds=0.005, batch=20)
    for name, entry in out.items():
        single = entry["single"]
        assert single["calls"] >= 10 and single["p50_ns"] <= single["p99_ns"]
        assert len(entry["samples"]) == single["calls"]
        assert (entry["batch"] is not None) == harness.ENGINES[name].batched


def test_the_pytest_benchmark_suite_runs_a_few_rounds():
    pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed (pip install '.[bench]')")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "bench" / "test_compare.py"), "-k", "100-rules", "-q",
         "-p", "no:cacheprovider", "--benchmark-only", "--benchmark-min-rounds=2", "--benchmark-max-time=0.001",
         "--benchmark-warmup=off", "--benchmark-disable-gc"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "failed" not in done.stdout and "error" not in done.stdout.lower()


TINY = {"rounds": 1, "seconds": 0.005, "point_seconds": 0.005, "sizes": [10], "flat_sizes": [10],
        "start_sizes": [10], "memory_sizes": [10], "list_lengths": [0, 5], "attribute_counts": [0, 5],
        "wire_seconds": 0.2, "concurrency": [1, 2], "cold": False}


def test_the_report_renders_every_section(tmp_path, monkeypatch):
    import report

    monkeypatch.setattr(report, "QUICK", TINY)
    monkeypatch.setattr(scaling, "memory", lambda sizes, engines, progress=print: [
        {"rules": 10, "engine": e, "bytes": 1000} for e in engines])  # the subprocesses are slow; shape only
    assert report.main(["--quick", "--no-wire", "--no-pytest-benchmark", "--out-dir", str(tmp_path)]) == 0
    page = (tmp_path / "RESULTS.md").read_text()
    for heading in ("## Machine", "## Headline", "## 1. In process", "## 2. Policy-set size", "## 3. Request size",
                    "## 4. Start time", "## 5. Memory", "## 6. Over the wire", "## Caveats"):
        assert heading in page, heading
    assert "a quick smoke run" in page and "`python bench/report.py --quick" in page
    assert "**Checked before timing:** pdp " in page
    data = json.loads((tmp_path / "RESULTS.json").read_text())
    assert set(data) >= {"machine", "versions", "inprocess", "policy_size", "request_size", "start", "memory"}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (tmp_path / "plots").exists()
    else:
        for name in ("latency_cdf", "policy_size", "request_size", "start_time", "memory"):
            assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 1000
            assert f"plots/{name}.png" in page
    # --render-only rebuilds the same page from the data
    assert report.main(["--render-only", "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "RESULTS.md").read_text() == page
