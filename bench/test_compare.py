"""In-process comparison with pytest-benchmark: pdp ``decide`` / ``decide_many`` against Cedar
(cedarpy), Rego (regopy) and Casbin (pycasbin) on the same policies and requests
(bench/harness.py), each engine checked to decide like pdp — the decision, and for pdp, Cedar
and Rego the rules that determined it — before anything is timed.

    pytest bench/test_compare.py --benchmark-only                     # about a minute
    pytest bench/test_compare.py --benchmark-only --benchmark-json=out.json

Groups: ``N rules: one decision per call`` (pdp decide, cedarpy is_authorized, regopy query,
Casbin enforce) and ``N rules: batch of 100`` (pdp decide_many, cedarpy is_authorized_batch;
Rego and Casbin have no batch call). Engines whose package is not installed are skipped with
the reason. ``python bench/report.py`` runs this file and puts its table in bench/RESULTS.md.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

#: rules ⇒ (types, rules per type)
SIZES = {100: (10, 10), 1000: (100, 10)}
#: Casbin's ABAC model parses every policy line's rule on every request (~50 µs a line here);
#: past this many rules one decision takes longer than the whole group's time budget.
CASBIN_MAX_RULES = 100
BATCH = 100


@pytest.fixture(scope="module", params=sorted(SIZES), ids=lambda n: f"{n}-rules")
def prepared(request):
    types, per_type = SIZES[request.param]
    workload = harness.targeted(types, per_type, requests=200)
    ok, skipped = harness.available()
    adapters = {}
    for name in ok:
        if name == "casbin" and workload.rules > CASBIN_MAX_RULES:
            skipped[name] = f"casbin: over {CASBIN_MAX_RULES} rules a decision takes tens of ms (see the scaling curve)"
            continue
        adapters[name] = harness.ENGINES[name](workload)
    harness.check_agreement(workload, adapters)  # raises before any timing when engines disagree
    return workload, adapters, skipped


def _adapter(prepared, name):
    workload, adapters, skipped = prepared
    if name not in adapters:
        pytest.skip(skipped.get(name, f"{name} is not available"))
    return workload, adapters[name]


@pytest.mark.parametrize("engine", list(harness.ENGINES))
def test_decide(benchmark, prepared, engine):
    workload, adapter = _adapter(prepared, engine)
    inputs = itertools.cycle(adapter.prepare(workload.requests))
    call = adapter.call
    benchmark.group = f"{workload.rules} rules: one decision per call"
    benchmark.extra_info.update(engine=engine, rules=workload.rules, decisions_per_call=1,
                                version=harness.ENGINES[engine].version())
    benchmark(lambda: call(next(inputs)))


@pytest.mark.parametrize("engine", [name for name, cls in harness.ENGINES.items() if cls.batched])
def test_batch(benchmark, prepared, engine):
    workload, adapter = _adapter(prepared, engine)
    batches = itertools.cycle([adapter.prepare_batch(workload.requests[i:i + BATCH])
                               for i in range(0, len(workload.requests), BATCH)])
    call = adapter.batch_call
    benchmark.group = f"{workload.rules} rules: batch of {BATCH}"
    benchmark.extra_info.update(engine=engine, rules=workload.rules, decisions_per_call=BATCH,
                                version=harness.ENGINES[engine].version())
    benchmark(lambda: call(next(batches)))
