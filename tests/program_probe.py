"""Run by tests/test_malformed_programs.py in a child process, so that a crash (SIGSEGV) fails
the test instead of killing pytest: reads a pickled list of cases from stdin, tries each one
through every public entry point, and prints one JSON line per case as soon as it is done.

A case is ``("bundle", bytes)`` (load_bundle on every backend, then decide) or ``("program",
name)``: the Program ``MALFORMED[name]`` of test_malformed_programs.py (some are too deep to
pickle), given to Engine(program) and to each EVALUATORS[name](program), then decided. The outcome of
an entry point is ``"PolicyError: <message>"``, ``"ok"`` (it loaded and decided: a Decision,
or a RequestError for the probe request) or ``"<exception type>: <message>"``.
"""

from __future__ import annotations

import json
import pickle
import sys
import tempfile
from pathlib import Path

import pdp
from pdp import runtime

REQUESTS = [
    {"identity": {"type": "workload", "id": "billing", "env": "prod", "scopes": ["payments:write"]},
     "action": "charge", "resource": {"type": "payment", "id": "p1", "amount": 5},
     "context": {"time": "2026-11-27T10:05:00Z", "source_ip": "10.1.2.3"}},
    {"identity": {"type": "user", "id": "x"}, "action": "read", "resource": {"type": "doc"}},
]


def _try(start) -> str:
    try:
        engine = start()
        for r in REQUESTS:
            d = engine.decide(r)
            assert isinstance(d, pdp.Decision), d
            engine.decide_many([r])
        return "ok"
    except pdp.PolicyError as err:
        return f"PolicyError: {err}"
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which judges it
        return f"{type(exc).__name__}: {exc}"


def main() -> None:
    cases = pickle.load(sys.stdin.buffer)
    backends = ["reference", *sorted(runtime.EVALUATORS)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.bundle"
        for i, (kind, payload) in enumerate(cases):
            outcomes = {}
            if kind == "bundle":
                path.write_bytes(payload)
                for b in backends:
                    outcomes[f"load_bundle/{b}"] = _try(lambda: pdp.load_bundle(path, backend=b))
            else:
                from test_malformed_programs import MALFORMED

                payload = MALFORMED[payload][0]
                for b in backends:
                    outcomes[f"Engine/{b}"] = _try(lambda: pdp.Engine(payload, (), None, b))
                for name, evaluator in runtime.EVALUATORS.items():
                    outcomes[f"EVALUATORS[{name}]"] = _try(lambda: evaluator(payload))
            print(json.dumps({"case": i, "outcomes": outcomes}), flush=True)


if __name__ == "__main__":
    main()
