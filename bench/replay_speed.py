"""How fast ``pdp replay`` reads and decides a decision log, and which JSON library to read it with.

1. Generates a decision log of N lines (default 1,000,000) the way ``pdp serve`` writes it:
   requests against the shipped library (policies/), decided by it, formatted by
   ``pdp.server.decision_log.DecisionLog.format`` (input included).
2. Parses every line with ``json.loads``, ``orjson.loads`` and ``msgspec.json.decode``
   (each in turn, ``--rounds`` times, medians kept).
3. Runs the whole replay (``pdp.audit.replay.replay``: read, parse, ``decide_many`` in chunks,
   compare) against the same policies, and reports lines per second.

Raw figures go to ``--out`` (JSON), with the machine's load average before and after.

    python bench/replay_speed.py --lines 1000000 --out bench/results/replay-DATE.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import pdp  # noqa: E402
from pdp.server.decision_log import DecisionLog  # noqa: E402

POLICIES = HERE.parent / "policies"
BASE = 1_796_032_800.0  # 2026-11-30T10:00:00Z
IDENTITIES = [
    ("billing", "spiffe://acme.prod/ns/billing/sa/api", ["payments:write", "payments:read"]),
    ("reporting", "spiffe://acme.prod/ns/reporting/sa/etl", ["payments:read"]),
    ("warehouse", "spiffe://acme.prod/ns/warehouse/sa/stock", ["inventory:read", "inventory:write"]),
    ("storefront", "spiffe://acme.prod/ns/storefront/sa/web", ["inventory:read", "pricing:read"]),
    ("unknown-bot", "spiffe://acme.prod/ns/x/sa/bot", ["payments:read"]),
]
OPERATIONS = [("payment", "charge"), ("payment", "read"), ("inventory", "read"), ("inventory", "reserve"),
              ("price", "read"), ("order", "read")]


def requests(n: int, seed: int = 7):
    rng = random.Random(seed)
    for i in range(n):
        who, spiffe, scopes = IDENTITIES[rng.randrange(len(IDENTITIES))]
        rtype, action = OPERATIONS[rng.randrange(len(OPERATIONS))]
        when = BASE + i * 0.01
        issued = when - rng.choice((60, 600, 3000, 7200))
        yield when, {
            "identity": {"type": "workload", "id": who, "spiffe_id": spiffe, "env": "prod", "scopes": scopes,
                         "credential": {"kind": "jwt", "issued_at": _rfc3339(issued)}},
            "action": {"name": action},
            "resource": {"type": rtype, "id": f"{rtype}-{i % 997}", "env": "prod"},
            "context": {"source_ip": f"10.1.{i % 200}.{i % 250}"},
        }


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def generate(path: Path, n: int) -> None:
    engine = pdp.load(str(POLICIES))
    log = DecisionLog.__new__(DecisionLog)  # only format() is used: no file, no thread
    log.include_input = True
    with open(path, "wb") as out:
        batch: list[tuple[float, dict]] = []
        for item in requests(n):
            batch.append(item)
            if len(batch) == 4096:
                _write(out, log, engine, batch)
                batch = []
        if batch:
            _write(out, log, engine, batch)


def _write(out, log, engine, batch) -> None:
    # Decided at the time each line will carry, as the server decides with its clock.
    decided = engine.decide_many([{**r, "context": {**r["context"], "time": t}} for t, r in batch])
    out.write(b"".join(log.format((t, "pdp", f"r{int(t * 100)}", r, d, 41_000, None, None))
                       for (t, r), d in zip(batch, decided)))


def parse_all(path: Path, loads) -> float:
    start = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            loads(line)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import msgspec
    import orjson

    from pdp.audit.replay import replay

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "decisions.jsonl"
        t = time.perf_counter()
        generate(path, args.lines)
        size = path.stat().st_size
        print(f"generated {args.lines:,} lines ({size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s")
        parsers = {"json": json.loads, "orjson": orjson.loads, "msgspec": msgspec.json.Decoder().decode}
        parse: dict[str, list[float]] = {name: [] for name in parsers}
        for _ in range(args.rounds):
            for name, loads in parsers.items():
                parse[name].append(parse_all(path, loads))
        for name, times in parse.items():
            med = statistics.median(times)
            print(f"parse {name:8s} {med:6.2f}s  {med / args.lines * 1e6:5.2f} µs/line")
        engine = pdp.load(str(POLICIES))
        whole = []
        for _ in range(args.rounds):
            result = replay([str(path)], engine, examples=0)
            whole.append(result.seconds)
        med = statistics.median(whole)
        print(f"replay   {med:6.2f}s  {args.lines / med:,.0f} lines/s  (decisions {result.decisions:,}, "
              f"changed {result.changed:,})")
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} CPUs)")
    if args.out:
        args.out.write_text(json.dumps({
            "lines": args.lines, "bytes": size, "rounds": args.rounds,
            "parse_seconds": parse, "replay_seconds": whole, "decisions": result.decisions,
            "changed": result.changed, "backend": engine.backend,
            "load_average_before": load_before, "load_average_after": load_after,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "versions": {"orjson": orjson.__version__, "msgspec": msgspec.__version__},
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
